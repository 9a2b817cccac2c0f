"""Quality and speed of the hygiene stages (pii, decontaminate, paragraph_dedup) on real shared data.

    .venv/bin/python benchmarks/bench_hygiene.py [--work /tmp/curate-bench-hygiene] [--skip-cluster]

The crawl is the sample pipeline's: the four WARC/WET inputs of pipelines/sample.yaml, extracted
once by `curate extract` (trafilatura, as the sample) into WORK/crawl and reused.

1. PII. Labelled set: every crawl page (language from its top-level domain: de/at/ch -> German,
   fr -> French, es/mx/ar -> Spanish, else English) and 300 WikiText-2 valid paragraphs, each with
   three planted sentences holding e-mail addresses (9 styles, incl. `(at)`/`[at]` obfuscation and
   internationalised local parts), phone numbers (38 national
   and international formats of US, DE, GB, FR, ES, IT, IN, incl. bare 10-digit runs, found only
   after a phone word; each a valid number per libphonenumber) and IPv4/IPv6 addresses (public; compressed and full IPv6; IPv4
   with ports). Precision and recall per kind (a detection is right when it overlaps a planted
   item of its kind; detections the untouched host page already had are set aside, not counted
   either way). Then every detection on untouched text -- WikiText-2 valid+test, the stdlib
   code the sample reads, the crawl pages -- counted per kind, with each IP and phone detection
   printed for review. Throughput: one process, documents per second per core.
2. Decontamination. Eval set: WikiText-2 test paragraphs (40+ words) as JSONL. 100 of them are
   planted into 100 crawl pages at a paragraph boundary (50 verbatim, 50 lightly edited: case,
   punctuation, one word in about fifteen replaced). Recall of planted passages, clean pages
   touched (printed for review), throughput; then the same corpus through `curate
   decontaminate` embedded and on a two-node local Ray cluster (1 CPU per node), outputs compared.
3. Paragraph dedup on the crawl (`curate dedup --paragraphs`, defaults: a line in 2+ pages is
   removed from all): paragraphs and characters removed, the ten most removed paragraphs, and
   main-text F1 against gold/article-benchmark.json before and after (bag-of-tokens F1 of
   bench_extract_quality.py, macro-averaged over the gold pages present in the crawl).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import pyarrow as pa  # noqa: E402
import pyarrow.dataset as pads  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from _common import CURATE, SHARED, print_table  # noqa: E402
from hygiene_data import plant_passages, plant_pii, wikitext_paragraphs  # noqa: E402

CRAWL_INPUTS = [str(SHARED / "web" / "*.warc.gz"), str(SHARED / "cc" / "CC-MAIN-2020-34-sample.warc.gz"),
                str(SHARED / "cc" / "CC-MAIN-2014-35-sample.warc"), str(SHARED / "cc" / "CC-MAIN-2014-35-sample.warc.wet")]
LANG_BY_TLD = {"de": "de", "at": "de", "ch": "de", "fr": "fr", "es": "es", "mx": "es", "ar": "es"}


def curate(args: list[str], env: dict | None = None) -> str:
    res = subprocess.run([CURATE, *args, "--no-progress"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})})
    if res.returncode != 0:
        raise SystemExit(f"curate {' '.join(args[:2])} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.stdout


def crawl(work: Path) -> pa.Table:
    out = work / "crawl"
    curate(["extract", *CRAWL_INPUTS, "-o", str(out), "--set", "extract.timeout_s=10", "--num-cpus", "2"])
    return pads.dataset(str(out / "extract")).to_table()


def _lang(domain: str | None) -> str:
    tld = (domain or "").rsplit(".", 1)[-1]
    return LANG_BY_TLD.get(tld, "en")


# ---------------------------------------------------------------------------------------- PII
def bench_pii(docs: pa.Table, work: Path) -> None:
    from processors.pii import Pii, PiiParams, detect

    params = PiiParams()
    hosts = [(_lang(d), t) for d, t in zip(docs.column("domain").to_pylist(), docs.column("text").to_pylist()) if t]
    wiki_valid = wikitext_paragraphs(str(SHARED / "reference" / "wikitext-2-valid.txt"))
    hosts += [("en", t) for t in random.Random(1).sample(wiki_valid, 300)]
    planted = plant_pii(hosts, seed=7, per_doc=3)
    tp, fp, fn = Counter(), Counter(), Counter()
    by_lang = defaultdict(Counter)
    misses, extras = [], []
    for (lang, _), p in zip(hosts, planted):
        own = {p.host[s:e] for s, e, _ in detect(p.host, params, Counter())}
        found = detect(p.text, params, Counter())
        used = set()
        for s, e, sub in p.truth:
            hit = next((j for j, (fs, fe, fk) in enumerate(found) if fk == sub and fs < e and s < fe), None)
            if hit is None:
                fn[sub] += 1
                by_lang[lang]["miss"] += 1
                misses.append((sub, p.text[s:e]))
            else:
                tp[sub] += 1
                by_lang[lang]["hit"] += 1
                used.add(hit)
        for j, (fs, fe, fk) in enumerate(found):
            if j not in used and p.text[fs:fe] not in own:
                fp[fk] += 1
                extras.append((fk, p.text[max(0, fs - 30):fe + 10].replace("\n", " ")))
    rows = []
    for sub in ("email", "phone", "ipv4", "ipv6"):
        t, f, n = tp[sub], fp[sub], fn[sub]
        rows.append([sub, t + n, t, f, n, f"{t / (t + f):.3f}" if t + f else "-", f"{t / (t + n):.3f}" if t + n else "-"])
    T, F, N = sum(tp.values()), sum(fp.values()), sum(fn.values())
    rows.append(["all", T + N, T, F, N, f"{T / (T + F):.3f}", f"{T / (T + N):.3f}"])
    print(f"\n## PII: planted personal data in {len(planted):,} real documents "
          f"({len(planted) - 300:,} crawl pages, 300 WikiText paragraphs), 3 sentences each\n")
    print_table(["kind", "planted", "found", "false pos", "missed", "precision", "recall"], rows)
    print("\nrecall by page language: " + ", ".join(
        f"{lang} {c['hit'] / (c['hit'] + c['miss']):.3f} ({c['hit'] + c['miss']})" for lang, c in sorted(by_lang.items())))
    for sub, s in misses[:15]:
        print(f"  missed {sub}: {s!r}")
    for sub, s in extras[:15]:
        print(f"  false positive {sub}: {s!r}")

    # untouched text
    wiki = wiki_valid + wikitext_paragraphs(str(SHARED / "reference" / "wikitext-2-test.txt"))
    code = _stdlib_code()
    corpora = {"WikiText-2 valid+test paragraphs": wiki, "stdlib code (the sample's)": code,
               "crawl pages": [t for t in docs.column("text").to_pylist() if t]}
    rows = []
    review = []
    for name, texts in corpora.items():
        c, skips = Counter(), Counter()
        for t in texts:
            for s, e, k in detect(t, params, skips):
                c[k] += 1
                if k != "email":
                    review.append((name, k, t[max(0, s - 40):e + 12].replace("\n", " ")))
        rows.append([name, f"{len(texts):,}", c["email"], c["phone"], c["ipv4"], c["ipv6"],
                     sum(v for k, v in skips.items() if k.startswith("skip_"))])
    print("\n## PII detections on untouched real text (no planted data)\n")
    print_table(["corpus", "docs", "email", "phone", "ipv4", "ipv6", "candidates rejected by guards"], rows)
    print("\nevery phone/IP detection on untouched text, for review:")
    for name, k, ctx in review:
        print(f"  [{name}] {k}: {ctx!r}")

    # throughput: one process over the crawl pages
    table = docs.select(["id", "text"])
    proc = Pii()
    proc.setup()
    t0 = time.process_time()
    rounds = 0
    while time.process_time() - t0 < 10 or rounds < 1:
        proc.process(table)
        rounds += 1
    cpu = time.process_time() - t0
    mb = sum(len(t.encode()) for t in table.column("text").to_pylist() if t) / 1e6
    print(f"\nthroughput (one process, crawl pages, {rounds} passes): "
          f"{rounds * table.num_rows / cpu:,.0f} docs/s per core, {rounds * mb / cpu:.1f} MB/s per core")


def _stdlib_code() -> list[str]:
    import sysconfig

    root = Path(sysconfig.get_path("stdlib"))
    out = []
    for p in sorted(root.rglob("*.py")):
        rel = str(p)
        if any(x in rel for x in ("/site-packages/", "/test/", "/tests/", "/idlelib/")):
            continue
        try:
            out.append(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return out


# ---------------------------------------------------------------------------- decontamination
def bench_decontaminate(docs: pa.Table, work: Path, cluster: bool) -> None:
    from processors.decontaminate import Decontaminate, DecontaminateParams

    held_out = wikitext_paragraphs(str(SHARED / "reference" / "wikitext-2-test.txt"))
    eval_file = work / "eval-wikitext2-test.jsonl"
    with eval_file.open("w") as f:
        for p in held_out:
            f.write(json.dumps({"text": p}) + "\n")
    texts = [t or "" for t in docs.column("text").to_pylist()]
    planted, truth = plant_passages(texts, held_out, seed=11, n_exact=50, n_edited=50)
    table = docs.set_column(docs.column_names.index("text"), "text", pa.array(planted, pa.string()))
    params = DecontaminateParams(eval_sets=[{"name": "wikitext2_test", "paths": [str(eval_file)]}])
    proc = Decontaminate(params)
    t0 = time.perf_counter()
    index = proc.prepare()
    t_index = time.perf_counter() - t0
    print(f"\n## Decontamination: {len(held_out):,} WikiText-2 test paragraphs as the eval set "
          f"({index['keys'].size:,} distinct 13-grams, index built in {t_index:.2f} s, "
          f"{index['keys'].nbytes + index['masks'].nbytes:,} bytes); 100 passages planted in "
          f"{table.num_rows:,} crawl pages\n")
    rows = []
    for action in ("drop", "cut"):
        p = Decontaminate(params.model_copy(update={"action": action}))
        p.receive(index)
        t0 = time.process_time()
        res = p.process(table)
        cpu = time.process_time() - t0
        touched = {r["id"] for r in res.side.to_pylist()} if res.side is not None else set()
        ids = table.column("id").to_pylist()
        flagged = {i for i, x in enumerate(ids) if x in touched}
        exact = [d for d, (_, m) in truth.items() if m == "exact"]
        edited = [d for d, (_, m) in truth.items() if m == "edited"]
        clean = flagged - set(truth)
        rows.append([action, f"{sum(d in flagged for d in exact)}/{len(exact)}",
                     f"{sum(d in flagged for d in edited)}/{len(edited)}", len(clean),
                     dict(res.drops), res.counters.get("docs_cut", 0), f"{table.num_rows / cpu:,.0f}"])
        if action == "drop":
            for r in res.side.to_pylist():
                if ids.index(r["id"]) in clean:
                    print(f"  clean page touched: {r['url']}: {r['first_ngram']!r}")
    print_table(["action", "exact found", "edited found", "clean pages touched", "drops", "docs cut",
                 "docs/s per core"], rows)

    # the same through the CLI, embedded and on two nodes
    corpus = work / "decont-corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True)
    for k in range(4):
        pq.write_table(table.slice(k * ((table.num_rows + 3) // 4), (table.num_rows + 3) // 4), corpus / f"part-{k}.parquet")
    args = ["decontaminate", str(corpus), "--eval", f"wikitext2_test={eval_file}"]
    results = {}
    t0 = time.perf_counter()
    curate([*args, "-o", str(work / "decont-embedded"), "--force", "--num-cpus", "2"])
    results["embedded (2 CPUs)"] = (work / "decont-embedded", time.perf_counter() - t0)
    if cluster:
        LocalCluster = _load_test("test_minhash_cluster").LocalCluster
        tmp = work / "cluster-logs"
        tmp.mkdir(exist_ok=True)
        with LocalCluster(tmp) as c:
            _wait_nodes(c)
            t0 = time.perf_counter()
            curate([*args, "-o", str(work / "decont-cluster"), "--force", "--address", c.address], env=c.env)
            results["two-node cluster (1 CPU each)"] = (work / "decont-cluster", time.perf_counter() - t0)
    rows, ref = [], None
    for name, (out, wall) in results.items():
        kept = pads.dataset(str(out / "decontaminate")).to_table(columns=["id", "text"])
        removed = pads.dataset(str(out / "decontaminate" / "_removed" / "decontaminate")).to_table()
        st = json.loads((out / "decontaminate" / "_stats.json").read_text())
        sig = (sorted(zip(kept.column("id").to_pylist(), kept.column("text").to_pylist())),
               sorted(removed.column("id").to_pylist()))
        ref = ref or sig
        rows.append([name, st["docs_in"], st["docs_out"], st["drops"], len(sig[1]), "yes" if sig == ref else "NO",
                     f"{wall:.1f}"])
    print()
    print_table(["run", "docs in", "docs out", "drops", "side-output rows", "same output as first", "wall s"], rows)


def _load_test(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _wait_nodes(c) -> None:
    deadline = time.time() + 90
    ray_bin = str(Path(sys.executable).with_name("ray"))
    while time.time() < deadline:
        out = subprocess.run([ray_bin, "status", f"--address={c.address}"], env=c.env, capture_output=True, text=True)
        if out.stdout.count("node_") >= 2:
            return
        time.sleep(1)
    raise SystemExit("the worker node did not join")


# ------------------------------------------------------------------------------ paragraph dedup
def bench_paragraphs(docs: pa.Table, work: Path) -> None:
    from bench_extract_quality import prf

    out = work / "paragraphs"
    t0 = time.perf_counter()
    curate(["dedup", str(work / "crawl" / "extract"), "-o", str(out), "--paragraphs", "--force", "--num-cpus", "2",
            "--set", "paragraph_dedup.side_output=true"])
    wall = time.perf_counter() - t0
    st = json.loads((out / "paragraph_dedup" / "_stats.json").read_text())
    after = pads.dataset(str(out / "paragraph_dedup")).to_table(columns=["url", "text"])
    side = pads.dataset(str(out / "paragraph_dedup" / "_removed" / "paragraph_dedup")).to_table()
    lines_in = sum(len((t or "").split("\n")) for t in docs.column("text").to_pylist())
    chars_in = sum(len(t or "") for t in docs.column("text").to_pylist())
    c = st["counters"]
    print(f"\n## Paragraph dedup on the crawl ({st['docs_in']:,} pages, {lines_in:,} lines, {chars_in:,} chars; "
          f"defaults: a line in 2+ pages is removed from all; {wall:.1f} s wall with 2 CPUs)\n")
    print_table(["paragraphs removed", "chars removed", "share of chars", "docs modified", "docs dropped (too short)",
                 "distinct lines", "lines in 2+ pages"],
                [[f"{c['paragraphs_removed']:,}", f"{c['chars_removed']:,}", f"{c['chars_removed'] / chars_in:.2%}",
                  c.get("docs_modified", 0), st["drops"], f"{c.get('distinct_keys', 0):,}", f"{c.get('repeated_keys', 0):,}"]])
    from processors.shingles import normalize_py

    top = Counter()
    example = {}
    for t in side.column("text").to_pylist():
        k = normalize_py(t)
        top[k] += 1
        example.setdefault(k, t)
    print("\nthe ten most removed paragraphs:")
    print_table(["times removed", "paragraph"], [[n, example[k][:110]] for k, n in top.most_common(10)])

    gold = json.loads((SHARED / "gold" / "article-benchmark.json").read_text())
    gold = {u: (g["articleBody"] if isinstance(g, dict) else g) for u, g in gold.items()}
    before = dict(zip(docs.column("url").to_pylist(), docs.column("text").to_pylist()))
    after_map = dict(zip(after.column("url").to_pylist(), after.column("text").to_pylist()))
    urls = [u for u in gold if u in before]
    f_before = statistics.fmean(prf(before[u] or "", gold[u])[2] for u in urls)
    f_after = statistics.fmean(prf(after_map.get(u, "") or "", gold[u])[2] for u in urls)
    changed = sum(1 for u in urls if after_map.get(u) != before[u])
    print(f"\nmain-text F1 vs gold/article-benchmark.json ({len(urls)} gold pages in the crawl, {changed} changed): "
          f"before {f_before:.4f}, after {f_after:.4f}, change {f_after - f_before:+.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/curate-bench-hygiene", help="work folder (crawl cache, outputs)")
    ap.add_argument("--skip-cluster", action="store_true", help="no two-node Ray cluster run")
    ap.add_argument("--only", choices=["pii", "decontaminate", "paragraphs"], help="run one part")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    docs = crawl(work)
    print(f"crawl: {docs.num_rows:,} pages extracted by `curate extract` (cached in {work}/crawl)")
    if args.only in (None, "pii"):
        bench_pii(docs, work)
    if args.only in (None, "decontaminate"):
        bench_decontaminate(docs, work, cluster=not args.skip_cluster)
    if args.only in (None, "paragraphs"):
        bench_paragraphs(docs, work)


if __name__ == "__main__":
    main()
