"""MinHash near-dedup benchmark: quality against planted truth, speed, memory, and datatrove.

    .venv/bin/python benchmarks/build_dedup_corpus.py --docs 100000 --out benchmarks/results/dedup-corpus-100k
    .venv/bin/python benchmarks/bench_minhash.py --corpus benchmarks/results/dedup-corpus-100k \
        --thresholds 0.7 0.8 0.9 --datatrove --memory

Sections (each optional, results in --out as JSON, a summary on stdout):

signatures  Signatures per second on one core, CPU time (`time.process_time`), same documents:
            our batch MinHasher (text -> signatures, normalisation included) against a
            `datasketch.MinHash.update` loop per document, with the shingles precomputed for
            datasketch (so its figure excludes shingling: a conservative ratio), for both
            datasketch 32-bit schemes. update_batch and MinHash.bulk for reference.
dedup       `curate.cluster_dedup.run_cluster_dedup` with `minhash_dedup` on a local Ray
            (--num-cpus, default 2) for every --thresholds value: wall time, stage counters, and
            pair precision / recall against the truth (see `evaluate`).
datatrove   datatrove 0.10.1's four MinHash stages (signature, buckets, cluster, filter) with
            LocalPipelineExecutor on the same shards and the same LSH layout (bands x rows),
            in its own venv (benchmarks/.venvs/datatrove-minhash, created on first use): wall time per
            stage and the same precision / recall.
memory      peak RSS of every Ray worker process (sampled every 0.2 s) for the corpus and for
            its first quarter, partitions scaled with the input size.

Quality (`evaluate`): at threshold t the truth graph links every planted pair whose exact
Jaccard is >= t; its connected components are the true clusters. A system's clusters give its
predicted pairs (every pair inside one output cluster). Precision = predicted pairs that lie in
one true cluster / predicted pairs; recall = true-cluster pairs predicted / true-cluster pairs.
Also reported: the direct versions (a predicted pair is right iff its own exact Jaccard >= t;
a truth pair with Jaccard >= t is found iff both ends share an output cluster), recall per
Jaccard band, and any predicted pair across families (its exact Jaccard is computed: an unplanted
similar pair would show up here).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typing_extensions import Self

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO), str(REPO / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray Data's shuffle-map tasks use their own worker pool; with one idle worker allowed per CPU,
# Ray would kill and respawn workers between stages (seconds each on 2 CPUs).
os.environ.setdefault("RAY_num_workers_soft_limit", "8")

from processors.minhash import MinHashDedup, MinHashDedupParams, MinHasher
from processors.shingles import shingles_py

PRESETS = {
    # the processor's defaults: exact verification, LSH layout from datasketch's optimisation
    # with weights (0.05, 0.95) -- 16 x 8 at 0.8
    "default": {},
    # b-bit signature verification and datasketch's default weights (0.5, 0.5) -- 9 x 13 at 0.8
    "signature": {"verify": "signature"},
    # no verification, datasketch's layout: what datatrove does
    "none": {"verify": "none"},
    # exact verification with the weights of the previous default (0.1, 0.9) -- 14 x 9 at 0.8
    "w0.1": {"false_positive_weight": 0.1, "false_negative_weight": 0.9},
}
# datatrove's MinHash steps import `regex` and `tokenizers` (datatrove.pipeline.dedup) without
# declaring them in its base install, and hashes `str` shingles, which xxhash 4 refuses; its own
# venv, apart from the throughput benchmark's (other pins)
DT_VENV_NAME = "datatrove-minhash"
DT_PACKAGES = ["datatrove==0.10.1", "regex", "tokenizers", "spacy", "xxhash<4", "pyarrow", "orjson"]


# ---------------------------------------------------------------------------------------------
# Quality
# ---------------------------------------------------------------------------------------------


class _UF:
    def __init__(self) -> None:
        self.p: dict[str, str] = {}

    def find(self, x: str) -> str:
        p = self.p
        p.setdefault(x, x)
        root = x
        while p[root] != root:
            root = p[root]
        while p[x] != root:
            p[x], x = root, p[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


def _pairs_in(groups: dict[str, list[str]]):
    for members in groups.values():
        m = sorted(members)
        for i in range(len(m)):
            for j in range(i + 1, len(m)):
                yield m[i], m[j]


def evaluate(pred: dict[str, str], docs: pa.Table | None, truth: pa.Table, t: float, extra_j: dict | None = None,
             texts_of=None) -> dict:
    """Pair precision / recall of predicted clusters (id -> cluster id) at threshold t.

    Texts are needed only for predicted pairs the truth does not list: from `docs` (id, text), or
    from `texts_of(ids) -> texts` when the corpus is too large to hold (bench_scale.py)."""
    tj = {(a, b): j for a, b, j in zip(*(truth.column(c).to_pylist() for c in ("id_a", "id_b", "jaccard")))}
    groups: dict[str, list[str]] = {}
    for d, c in pred.items():
        groups.setdefault(c, []).append(d)
    groups = {c: m for c, m in groups.items() if len(m) > 1}
    pred_pairs = list(_pairs_in(groups))
    # exact Jaccard of predicted pairs across families (not in the truth file)
    cross = [(a, b) for a, b in pred_pairs if (a, b) not in tj]
    cross_j = dict(extra_j or {})
    need = [p for p in cross if p not in cross_j]
    if need:
        from build_dedup_corpus import jaccard, shingle_sets

        docs_needed = sorted({x for p in need for x in p})
        if texts_of is not None:
            needed_texts = texts_of(docs_needed)
        else:
            text = dict(zip(docs.column("id").to_pylist(), docs.column("text").to_pylist()))
            needed_texts = [text[d] for d in docs_needed]
        sets = dict(zip(docs_needed, shingle_sets(needed_texts)))
        for a, b in need:
            cross_j[(a, b)] = jaccard(sets[a], sets[b])
    jof = lambda p: tj.get(p, cross_j.get(p, 0.0))
    # truth components at t (planted pairs, plus any unplanted pair found similar)
    uf = _UF()
    for (a, b), j in tj.items():
        if j >= t:
            uf.union(a, b)
    unplanted = [(p, j) for p, j in cross_j.items() if j >= t]
    for (a, b), _ in unplanted:
        uf.union(a, b)
    comp = {d: uf.find(d) for d in list(uf.p)}
    true_groups: dict[str, list[str]] = {}
    for d, c in comp.items():
        true_groups.setdefault(c, []).append(d)
    n_true = sum(len(m) * (len(m) - 1) // 2 for m in true_groups.values())
    n_pred = len(pred_pairs)
    both = Counter((pred[d], comp[d]) for d in comp if d in pred)
    tp = sum(k * (k - 1) // 2 for k in both.values())
    direct_tp = sum(1 for p in pred_pairs if jof(p) >= t)
    true_direct = [(p, j) for p, j in list(tj.items()) + unplanted if j >= t]
    found = [pred.get(a) is not None and pred.get(a) == pred.get(b) for (a, b), _ in true_direct]
    bands = {}
    edges = [t, t + 0.025, t + 0.05, t + 0.1, 1.0001]
    for lo, hi in itertools.pairwise(edges):
        sel = [f for ((_, j), f) in zip(true_direct, found) if lo <= j < hi]
        bands[f"{lo:.3f}-{min(hi, 1.0):.3f}"] = {"pairs": len(sel), "recall": round(float(np.mean(sel)), 4) if sel else None}
    fp_j = [jof(p) for p in pred_pairs if jof(p) < t]
    removed = sum(len(m) - 1 for m in groups.values())
    true_removed = sum(len(m) - 1 for m in true_groups.values())
    return {
        "threshold": t,
        "precision": round(tp / n_pred, 4) if n_pred else 1.0,
        "recall": round(tp / n_true, 4) if n_true else 1.0,
        "precision_direct": round(direct_tp / n_pred, 4) if n_pred else 1.0,
        "recall_direct": round(float(np.mean(found)), 4) if found else 1.0,
        "predicted_pairs": n_pred,
        "true_pairs": n_true,
        "true_direct_pairs": len(true_direct),
        "recall_by_jaccard": bands,
        "false_pairs_jaccard_median": round(float(np.median(fp_j)), 4) if fp_j else None,
        "cross_family_predicted_pairs": len(cross),
        "unplanted_pairs_at_threshold": len(unplanted),
        "docs_removed": removed,
        "docs_removed_ideal": true_removed,
    }


# ---------------------------------------------------------------------------------------------
# Signatures: ours vs datasketch, one core, CPU time
# ---------------------------------------------------------------------------------------------


def bench_signatures(docs: pa.Table, n_docs: int, n_baseline: int, reps: int = 3) -> dict:
    from datasketch import MinHash

    texts = docs.column("text").slice(0, n_docs).combine_chunks()
    base_texts = texts.slice(0, n_baseline).to_pylist()
    t0 = time.process_time()
    shingles = [shingles_py(t) for t in base_texts]
    shingling_s = time.process_time() - t0  # the same normalisation, in plain Python
    n_sh_base = sum(map(len, shingles))
    out: dict = {"docs": n_docs, "baseline_docs": n_baseline, "mean_chars": round(float(np.mean([len(t) for t in base_texts])), 1)}
    for scheme in ("affine32", "legacy"):
        res: dict = {}
        for h in ("sha1", "xxh32"):
            mh = MinHasher(128, 1, scheme, h)
            best = float("inf")
            for _ in range(reps):
                t0 = time.process_time()
                for s in range(0, n_docs, 1000):
                    mh.signatures(texts.slice(s, 1000))
                best = min(best, time.process_time() - t0)
            res[f"ours_{h}_docs_per_s"] = round(n_docs / best, 1)
        # the same documents as the baseline, in one batch
        mh = MinHasher(128, 1, scheme, "sha1")
        best = float("inf")
        for _ in range(reps):
            t0 = time.process_time()
            mh.signatures(pa.array(base_texts))
            best = min(best, time.process_time() - t0)
        ours_same = n_baseline / best
        t0 = time.process_time()
        for sh in shingles:
            m = MinHash(num_perm=128, seed=1, scheme=scheme)
            for s in sh:
                m.update(s)
        loop = n_baseline / (time.process_time() - t0)
        t0 = time.process_time()
        for sh in shingles:
            m = MinHash(num_perm=128, seed=1, scheme=scheme)
            m.update_batch(sh)
        batch = n_baseline / (time.process_time() - t0)
        t0 = time.process_time()
        MinHash.bulk(shingles, num_perm=128, seed=1, scheme=scheme)
        bulk = n_baseline / (time.process_time() - t0)
        res.update(
            {
                "ours_sha1_same_docs_per_s": round(ours_same, 1),
                "datasketch_update_loop_docs_per_s": round(loop, 1),
                "datasketch_update_batch_docs_per_s": round(batch, 1),
                "datasketch_bulk_docs_per_s": round(bulk, 1),
                "speedup_vs_update_loop": round(ours_same / loop, 1),
                "speedup_vs_shingling_plus_update_loop": round(ours_same * (1 / loop + shingling_s / n_baseline), 1),
                "speedup_vs_update_batch": round(ours_same / batch, 1),
                "datasketch_us_per_shingle_update_loop": round(1e6 / (loop * n_sh_base / n_baseline), 2),
            }
        )
        out[scheme] = res
    return out


# ---------------------------------------------------------------------------------------------
# Our pipeline on Ray
# ---------------------------------------------------------------------------------------------


def _collect_pred(kept, dropped) -> dict[str, str]:
    import ray

    pred: dict[str, str] = {}
    for d in (kept, dropped):
        for t in ray.get(d.to_arrow_refs()):
            pred.update(zip(t.column("id").to_pylist(), t.column("cluster_id").to_pylist()))
    return pred


class RssSampler:
    """Peak RSS of Ray worker processes (children of the raylets) and of this driver."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.psutil = psutil
        self.interval = interval
        self.peak_worker = 0  # RSS: includes pages of the shared object store a worker touched
        self.peak_worker_private = 0  # RSS minus shared pages (object store, libraries)
        self.peak_driver = 0
        self.per_pid: dict[int, int] = {}
        self.per_pid_private: dict[int, int] = {}
        self.peak_task = ""  # process title of the worker when it reached the private peak
        self.per_task_private: dict[str, int] = {}  # process title (the running task) -> peak
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _workers(self):
        me = self.psutil.Process()
        for p in me.children(recursive=True):
            try:
                name = " ".join(p.cmdline()[:3])
            except self.psutil.Error:  # the process ended
                continue
            if "default_worker.py" in name or name.startswith("ray::"):
                yield p

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for p in self._workers():
                    try:
                        mi = p.memory_info()
                    except self.psutil.Error:
                        continue
                    rss, private = mi.rss, mi.rss - mi.shared
                    title = ""
                    with contextlib.suppress(self.psutil.Error):
                        title = " ".join(p.cmdline()).strip()[:120]
                    if private > self.peak_worker_private:
                        self.peak_task = title
                    self.per_task_private[title] = max(self.per_task_private.get(title, 0), private)
                    self.per_pid[p.pid] = max(self.per_pid.get(p.pid, 0), rss)
                    self.per_pid_private[p.pid] = max(self.per_pid_private.get(p.pid, 0), private)
                    self.peak_worker = max(self.peak_worker, rss)
                    self.peak_worker_private = max(self.peak_worker_private, private)
                self.peak_driver = max(self.peak_driver, self.psutil.Process().memory_info().rss)
            except self.psutil.Error:  # a process vanished while listing
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def run_ours(shards: list[str], params: MinHashDedupParams, num_partitions: int, broadcast_rows: int | None = None) -> tuple[dict[str, str], dict, float, RssSampler]:
    import ray

    from curate.cluster_dedup import DEFAULT_BROADCAST_ROWS, run_cluster_dedup
    from curate.ray_io import read_parquet_parts

    kw = {"broadcast_rows": DEFAULT_BROADCAST_ROWS if broadcast_rows is None else broadcast_rows}
    with tempfile.TemporaryDirectory(dir=str(Path(shards[0]).parent.parent)) as out, RssSampler() as rss:
        # end to end like datatrove's four stages: read, dedup, write the kept and removed documents
        t0 = time.time()
        ds = read_parquet_parts(shards, columns=["id", "source", "url", "domain", "date", "text"])
        kept, stats = run_cluster_dedup(ds, MinHashDedup(params), num_partitions=num_partitions, **kw)
        dropped = stats.pop("dropped")
        kept.write_parquet(f"{out}/kept")
        if dropped is not None:
            dropped.write_parquet(f"{out}/removed")
        wall = time.time() - t0
        pred: dict[str, str] = {}
        for sub in ("kept", "removed"):
            if Path(f"{out}/{sub}").exists():
                t = pq.read_table(f"{out}/{sub}", columns=["id", "cluster_id"])
                pred.update(zip(t.column("id").to_pylist(), t.column("cluster_id").to_pylist()))
    return pred, stats, wall, rss


# ---------------------------------------------------------------------------------------------
# datatrove
# ---------------------------------------------------------------------------------------------

DT_RUNNER = r'''
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer


class WhitespaceTokenizer(WordTokenizer):
    """After datatrove's simplify_text, words are what lies between spaces."""
    def word_tokenize(self, text):
        return text.split()
    def sent_tokenize(self, text):
        return [text]
    def span_tokenize(self, text):
        return [(0, len(text))]


def main():
    shards, work, tasks, workers, bands, rows, tokenizer = sys.argv[1:8]
    tasks, workers, bands, rows = int(tasks), int(workers), int(bands), int(rows)
    config = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows, seed=1,
                           hash_config=HashConfig(precision=64, hash_fc="xxhash"))
    language = "eng" if tokenizer == "default" else WhitespaceTokenizer()
    reader = lambda: ParquetReader(shards, text_key="text", id_key="id", glob_pattern="*.parquet")
    times = {}
    stages = [
        ("signatures", [reader(), MinhashDedupSignature(output_folder=f"{work}/sigs", config=config, language=language)], tasks),
        ("buckets", [MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=config)], bands),
        ("cluster", [MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids", config=config,
                                         save_cluster_id=True)], 1),
        ("filter", [reader(), MinhashDedupFilter(input_folder=f"{work}/remove_ids", load_cluster_ids=True,
                                                 exclusion_writer=JsonlWriter(f"{work}/removed")),
                    JsonlWriter(f"{work}/kept")], tasks),
    ]
    t_all = time.time()
    for name, pipeline, n in stages:
        t0 = time.time()
        LocalPipelineExecutor(pipeline=pipeline, tasks=n, workers=min(workers, n),
                              logging_dir=f"{work}/logs/{name}").run()
        times[name] = round(time.time() - t0, 2)
    times["total"] = round(time.time() - t_all, 2)
    json.dump(times, open(f"{work}/times.json", "w"))


if __name__ == "__main__":
    main()
'''


def ensure_datatrove_venv() -> Path:
    from _common import peer_venv

    return peer_venv(DT_VENV_NAME, DT_PACKAGES)


def run_datatrove(shards_dir: Path, work: Path, tasks: int, workers: int, bands: int, rows: int, tokenizer: str) -> tuple[dict[str, str], dict, float]:
    import gzip

    py = ensure_datatrove_venv()
    runner = work / "dt_runner.py"
    work.mkdir(parents=True, exist_ok=True)
    runner.write_text(DT_RUNNER)
    env = dict(os.environ, PYTHONPATH="", HF_HUB_OFFLINE="1")
    t0 = time.time()
    r = subprocess.run([str(py), str(runner), str(shards_dir), str(work), str(tasks), str(workers), str(bands), str(rows), tokenizer],
                       env=env, capture_output=True, text=True, check=False)
    wall = time.time() - t0
    if r.returncode:
        raise RuntimeError("datatrove failed:\n" + r.stderr[-4000:])
    times = json.loads((work / "times.json").read_text())
    pred: dict[str, str] = {}
    for sub in ("kept", "removed"):
        for f in sorted((work / sub).glob("*.jsonl.gz")):
            with gzip.open(f, "rt") as fh:
                for line in fh:
                    d = json.loads(line)
                    cid = d.get("metadata", {}).get("minhash_cluster_id", -1)
                    pred[d["id"]] = f"dt-{cid}" if cid != -1 else d["id"]
    return pred, times, wall


# ---------------------------------------------------------------------------------------------


def write_shards(docs: pa.Table, out: Path, n: int) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    per = -(-docs.num_rows // n)
    for i in range(n):
        p = out / f"part-{i:03d}.parquet"
        if not p.exists():
            pq.write_table(docs.slice(i * per, per), p, row_group_size=2000)
        paths.append(str(p))
    return paths


def print_summary(results: dict) -> None:
    """The figures the issue asks for, as tables (everything else is in the JSON)."""
    from _common import print_table

    sig = results.get("signatures")
    if sig:
        print(f"\nsignatures per second, one core (CPU time), {sig['baseline_docs']} docs of {sig['mean_chars']:.0f} chars")
        rows = []
        for scheme in ("affine32", "legacy"):
            r = sig[scheme]
            rows.append([scheme, f"{r['ours_sha1_same_docs_per_s']:,.0f}", f"{r['datasketch_update_loop_docs_per_s']:,.0f}",
                         f"{r['speedup_vs_update_loop']}x", f"{r['datasketch_bulk_docs_per_s']:,.0f}"])
        print_table(["scheme", "ours", "datasketch update loop", "ratio", "datasketch bulk"], rows)
    dd = results.get("dedup")
    if dd:
        print(f"\nnear-dedup on {results['docs']:,} docs, {results['num_cpus']} CPUs: pair precision / recall vs planted truth")
        rows = []
        for name, r in dd.items():
            q, c = r["quality"], r["stats"]["counters"]
            rows.append([name, f"{r['bands']}x{r['rows']}", q["precision"], q["recall"], f"{q['true_pairs']:,}",
                         f"{c.get('candidate_pairs', 0):,}", f"{c.get('edges', 0):,}", c.get("rounds"),
                         f"{r['stats']['drops'].get('near_duplicate', 0):,}", r["wall_s"]])
        print_table(["run", "bands x rows", "P", "R", "true pairs", "candidate pairs", "edges", "rounds", "removed", "wall s"], rows)
    dt = results.get("datatrove")
    if dt:
        ours = (dd or {}).get("t0.8")
        print("\nend to end at threshold 0.8 (read, dedup, write kept + removed), same documents and CPUs")
        rows = []
        if ours:
            rows.append(["curate", "", ours["wall_s"], "1.00x", ours["quality"]["precision"], ours["quality"]["recall"]])
        for tok, r in dt.items():
            rows.append(["datatrove 0.10.1", tok, r["wall_s"], f"{r.get('ours_speedup', '-')}x" if ours else "-",
                         r["quality"]["precision"], r["quality"]["recall"]])
        print_table(["system", "word tokenizer", "wall s", "curate speed-up", "P", "R"], rows)
    mem = results.get("memory")
    if mem:
        print("\npeak RSS per Ray worker (MB; private = RSS minus shared pages such as the object store)")
        rows = [[name, f"{m['docs']:,}", m["partitions"], m["peak_worker_private_rss_mb"], m["median_worker_peak_private_rss_mb"],
                 m["peak_worker_rss_mb"], m["peak_driver_rss_mb"], m["wall_s"]] for name, m in mem.items()]
        print_table(["corpus", "docs", "partitions", "largest worker (private)", "median worker", "largest worker (RSS)",
                     "driver", "wall s"], rows)
        if {"quarter", "full"} <= set(mem):
            a, b = mem["quarter"]["peak_worker_private_rss_mb"], mem["full"]["peak_worker_private_rss_mb"]
            print(f"largest worker, 4x the documents: x{b / a:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--thresholds", type=float, nargs="*", default=[0.7, 0.8, 0.9])
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=0, help="0: one per 12,500 documents, at least 2")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--sig-docs", type=int, default=3000)
    ap.add_argument("--baseline-docs", type=int, default=300)
    ap.add_argument("--skip-signatures", action="store_true")
    ap.add_argument("--skip-dedup", action="store_true")
    ap.add_argument("--presets", nargs="*", default=["default", "signature"], choices=sorted(PRESETS),
                    help="parameter presets to run at every threshold")
    ap.add_argument("--datatrove", action="store_true")
    ap.add_argument("--datatrove-tokenizer", choices=["default", "whitespace", "both"], default="both")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--subset", type=int, default=0, help="use only the first N documents (and their truth pairs)")
    ap.add_argument("--object-store-gb", type=float, default=3.0,
                    help="embedded Ray's object store; a worker's RSS includes the pages of it that it maps")
    ap.add_argument("--summary", action="store_true", help="print the tables of an earlier run's JSON and exit")
    args = ap.parse_args(argv)
    if args.summary:
        print_summary(json.loads((args.out or args.corpus / "bench.json").read_text()))
        return 0

    docs = pq.read_table(args.corpus / "docs.parquet")
    truth = pq.read_table(args.corpus / "truth.parquet")
    meta = json.loads((args.corpus / "meta.json").read_text())
    tag = ""
    if args.subset:
        docs = docs.slice(0, args.subset)
        keep = set(docs.column("id").to_pylist())
        truth = truth.filter(pa.array([a in keep and b in keep for a, b in zip(truth.column("id_a").to_pylist(), truth.column("id_b").to_pylist())]))
        tag = f"-first{args.subset}"
    out_path = args.out or (args.corpus / f"bench{tag}.json")
    results: dict = {"corpus": str(args.corpus), "docs": docs.num_rows, "corpus_meta": meta, "num_cpus": args.num_cpus}
    if out_path.exists():
        results = {**json.loads(out_path.read_text()), **results}

    def save() -> None:
        out_path.write_text(json.dumps(results, indent=2, default=str))

    if not args.skip_signatures:
        print("== signatures (one core, CPU time)")
        results["signatures"] = bench_signatures(docs, min(args.sig_docs, docs.num_rows), min(args.baseline_docs, docs.num_rows))
        print(json.dumps(results["signatures"], indent=2))
        save()

    shards_dir = args.corpus / f"shards{tag}-{args.shards}"
    shards = write_shards(docs, shards_dir, args.shards)
    P = args.partitions or max(2, docs.num_rows // 12_500)
    def start_ray() -> None:
        import logging

        import ray

        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, object_store_memory=int(args.object_store_gb * 1024**3))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    if not args.skip_dedup:
        start_ray()

    if not args.skip_dedup:
        results.setdefault("dedup", {})
        runs = [
            (f"t{t}" if preset == "default" else f"t{t}-{preset}", MinHashDedupParams(threshold=t, side_output=True, **PRESETS[preset]))
            for preset in args.presets for t in args.thresholds
        ]
        for name, params in runs:
            proc = MinHashDedup(params)
            print(f"== ours {name}: bands x rows = {proc.bands} x {proc.rows}, partitions {P}")
            pred, stats, wall, rss = run_ours(shards, params, P)
            ev = evaluate(pred, docs, truth, params.threshold)
            results["dedup"][name] = {
                "bands": proc.bands, "rows": proc.rows, "wall_s": round(wall, 2), "docs_per_s": round(docs.num_rows / wall, 1),
                "stats": stats, "quality": ev, "peak_worker_rss_mb": round(rss.peak_worker / 2**20, 1),
                "peak_worker_private_rss_mb": round(rss.peak_worker_private / 2**20, 1),
            }
            print(json.dumps(results["dedup"][name], indent=2))
            save()
            gc.collect()

    if args.datatrove:
        results.setdefault("datatrove", {})
        proc = MinHashDedup(MinHashDedupParams(threshold=0.8))
        toks = ["default", "whitespace"] if args.datatrove_tokenizer == "both" else [args.datatrove_tokenizer]
        for tok in toks:
            print(f"== datatrove ({tok} tokenizer), {proc.bands} x {proc.rows}, {args.num_cpus} workers")
            with tempfile.TemporaryDirectory(dir=str(args.corpus)) as work:
                pred, times, wall = run_datatrove(shards_dir, Path(work), args.shards, args.num_cpus, proc.bands, proc.rows, tok)
            ev = evaluate(pred, docs, truth, 0.8)
            results["datatrove"][tok] = {"wall_s": round(wall, 2), "stages_s": times, "quality": ev,
                                         "docs_per_s": round(docs.num_rows / wall, 1)}
            ours = results.get("dedup", {}).get("t0.8")
            if ours:
                results["datatrove"][tok]["ours_speedup"] = round(wall / ours["wall_s"], 2)
            print(json.dumps(results["datatrove"][tok], indent=2))
            save()

    if args.memory:
        results["memory"] = {}
        quarter = docs.slice(0, docs.num_rows // 4)
        # the same documents per input file (a read task's input), a quarter of the files
        qn = max(1, args.shards // 4)
        qshards = write_shards(quarter, args.corpus / f"shards-quarter-{qn}", qn)
        import ray

        for name, sh, n in (("quarter", qshards, quarter.num_rows), ("full", shards, docs.num_rows)):
            # a fresh Ray per size: workers are reused across runs, and what an allocator keeps
            # from one run would show up in the next one's figure
            if ray.is_initialized():
                ray.shutdown()
            start_ray()
            Pm = max(2, n // 12_500)
            print(f"== memory: {name} ({n} docs, {Pm} partitions)")
            pred, stats, wall, rss = run_ours(sh, MinHashDedupParams(threshold=0.8, side_output=True), Pm, broadcast_rows=0)
            results["memory"][name] = {
                "docs": n, "partitions": Pm, "wall_s": round(wall, 2),
                "peak_worker_rss_mb": round(rss.peak_worker / 2**20, 1),
                "peak_worker_private_rss_mb": round(rss.peak_worker_private / 2**20, 1),
                "median_worker_peak_private_rss_mb": round(float(np.median(list(rss.per_pid_private.values()))) / 2**20, 1) if rss.per_pid_private else None,
                "workers_seen": len(rss.per_pid),
                "peak_driver_rss_mb": round(rss.peak_driver / 2**20, 1),
                "peak_private_task": rss.peak_task,
                "peak_private_mb_by_task": {
                    k: round(v / 2**20, 1) for k, v in sorted(rss.per_task_private.items(), key=lambda kv: -kv[1])
                },
            }
            print(json.dumps(results["memory"][name], indent=2))
            save()
            del pred
            gc.collect()
    save()
    print_summary(results)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
