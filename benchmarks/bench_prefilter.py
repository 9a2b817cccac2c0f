"""The extract pre-pass against the full path: same decisions, same texts, same F1, less CPU.

    .venv/bin/python benchmarks/bench_prefilter.py

Both paths read the four WARCs of ../shared/data/web with the `Extract` source (child process,
charset handling and all), then run language_id(en, de) and gopher_quality, as the throughput
benchmark's pipeline does:

- full path: `extract: {prefilter: false}`, every page extracted by trafilatura;
- fast path: the default, with the rules the engine hands extract from gopher_quality (fewer than
  50 words, fewer than 2 stop words on the page's whole visible text: not extracted).

Printed: per page, whether both paths keep or drop it (and every page where they differ, with
both reasons); whether every kept text is identical; main-text F1 on gold/article-benchmark.json
of each path's extract output (a page the pre-pass rejects scores 0); CPU seconds of each path
(this process and the extraction child), which stays comparable on a shared machine.
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_extract_quality import Meter, score  # noqa: E402
from processors.extract import Extract, ExtractParams  # noqa: E402
from processors.gopher import GopherQuality  # noqa: E402
from processors.language_id import LanguageId, LanguageIdParams  # noqa: E402
from processors.warc import ReadStats, iter_records  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data"


def run_path(params: ExtractParams, lid: LanguageId, gopher: GopherQuality) -> dict:
    """url -> (extract text or None, final decision: None kept, else the drop reason), CPU s."""
    source = Extract(params)
    source.check()
    source.setup()
    meter = Meter(source._worker)
    texts: dict[str, str] = {}
    decisions: dict[str, str | None] = {}
    drops: Counter = Counter()
    for path in sorted((DATA / "web").glob("*.warc.gz")):
        for result in source.read(str(path)):
            drops.update(result.drops)
            table = result.table
            for url, text in zip(table["url"].to_pylist(), table["text"].to_pylist()):
                texts[url] = text
            table = lid.annotate(table)
            for stage in (lid, gopher):
                keep, reasons = stage.decide(table)
                for url, k, r in zip(table["url"].to_pylist(), keep, reasons):
                    if not k:
                        decisions[url] = r
                table = table.filter(pa.array(keep))
            for url in table["url"].to_pylist():
                decisions[url] = None
    wall, cpu = meter.stop()
    source.close()
    return {"texts": texts, "decisions": decisions, "drops": drops, "cpu": cpu, "wall": wall}


def html_urls() -> dict[str, int]:
    """url -> count of HTML 200 response records (the pages both paths see)."""
    urls: Counter = Counter()
    for path in sorted((DATA / "web").glob("*.warc.gz")):
        for rec in iter_records(str(path), max_block_bytes=1 << 30, stats=ReadStats()):
            if rec.record_type == "response":
                urls[rec.target_uri] += 1
    return urls


def main() -> None:
    lid = LanguageId(LanguageIdParams(languages=["en", "de"]))
    lid.setup()
    gopher = GopherQuality()
    rules = gopher.superset_rules()
    full = run_path(ExtractParams(prefilter=False), lid, gopher)
    fast = run_path(ExtractParams(prefilter_rules=rules), lid, gopher)
    urls = html_urls()
    assert all(n == 1 for n in urls.values()), "a URL appears twice: per-URL comparison is ambiguous"
    prefiltered = {k: v for k, v in fast["drops"].items() if k.startswith("prefilter:")}
    n_pre = sum(prefiltered.values())

    def verdict(run: dict, url: str) -> str:
        if url in run["decisions"]:
            return "kept" if run["decisions"][url] is None else run["decisions"][url]
        return "dropped in extract"

    same, differ = 0, []
    for url in urls:
        a, b = verdict(full, url), verdict(fast, url)
        if (a == "kept") == (b == "kept"):
            same += 1
        else:
            differ.append((url, a, b))
    kept = [u for u in urls if verdict(full, u) == "kept" and verdict(fast, u) == "kept"]
    identical = sum(full["texts"][u] == fast["texts"][u] for u in kept)
    # the full path's reason for every page the pre-pass did not extract
    not_extracted = [u for u in urls if u in full["texts"] and u not in fast["texts"]
                     and verdict(fast, u) != "kept"]
    why_full = Counter(verdict(full, u) for u in not_extracted)

    gold = json.loads((DATA / "gold" / "article-benchmark.json").read_text())
    f_full = score({u: full["texts"].get(u, "") for u in gold}, gold)
    f_fast = score({u: fast["texts"].get(u, "") for u in gold}, gold)
    gold_same = sum((verdict(full, u) == "kept") == (verdict(fast, u) == "kept") for u in gold)
    # gold pages the pre-pass did not extract: what the full pipeline does with them
    gold_skipped = [u for u in gold if u in full["texts"] and u not in fast["texts"]]
    gold_skipped_why = Counter(verdict(full, u) for u in gold_skipped)
    rest = {u: t for u, t in gold.items() if u not in gold_skipped}
    f_rest_full = score({u: full["texts"].get(u, "") for u in rest}, rest)
    f_rest_fast = score({u: fast["texts"].get(u, "") for u in rest}, rest)

    print(f"\n{len(urls)} response records of {DATA / 'web'}: extract -> language_id(en, de) -> gopher_quality\n")
    print(f"pages the pre-pass did not extract: {n_pre} ({dict(prefiltered)})")
    print(f"  the full path's verdict on them: {dict(why_full)}")
    print(f"keep/drop decisions identical: {same} of {len(urls)} ({100 * same / len(urls):.2f}%)")
    for url, a, b in differ:
        print(f"  differs: {url}: full path {a}, fast path {b}")
    print(f"kept by both: {len(kept)} (full path {sum(v is None for v in full['decisions'].values())}, "
          f"fast path {sum(v is None for v in fast['decisions'].values())}); identical texts: {identical} of {len(kept)}")
    print(f"gold pages ({len(gold)}): decisions identical {gold_same} of {len(gold)}; "
          f"F1 full path {f_full[2]:.4f} (P {f_full[0]:.4f} R {f_full[1]:.4f}), "
          f"fast path {f_fast[2]:.4f} (P {f_fast[0]:.4f} R {f_fast[1]:.4f}; a page it does not extract scores 0)")
    print(f"  gold pages the pre-pass does not extract: {len(gold_skipped)}; the full pipeline's verdict on them: "
          f"{dict(gold_skipped_why)}; F1 over the other {len(rest)}: full path {f_rest_full[2]:.4f}, "
          f"fast path {f_rest_fast[2]:.4f}")
    print(f"CPU seconds (this process + extraction child): full path {full['cpu']:.1f}, fast path {fast['cpu']:.1f} "
          f"({full['cpu'] / fast['cpu']:.2f}x less); wall {full['wall']:.1f} / {fast['wall']:.1f} s")


if __name__ == "__main__":
    main()
