"""Main-text quality and speed of the extract stage against gold/article-benchmark.json.

    .venv/bin/python benchmarks/bench_extract_quality.py [--skip-ipc]

Gold: 120 article pages (scrapinghub article-extraction-benchmark, URL -> articleBody); the pages
themselves sit in ../shared/data/web/*.warc.gz among 1,153 others.

Metric: bag-of-tokens precision/recall/F1 per page (tokens: lowercased `\\w+` runs, Unicode-aware,
multiset overlap), averaged over the 120 pages. A page a method returns nothing for scores 0.

Rows:
- plain trafilatura: `trafilatura.extract(payload_bytes)` with its defaults, in-process, on the
  HTTP payload (trafilatura decodes the bytes itself);
- curate default: our `Extract` source read over all four web WARCs, its rows for the gold URLs
  (so charset handling, child process and time limit are all in the measured path);
- curate variants: other Params, run through the same child process on the gold pages only.
docs/s is given per CPU second (this process plus the extraction child, measured with psutil),
which stays comparable when other jobs share the machine, and per wall-clock second.

Then the child-process cost: the same pages in-process vs through `ExtractionWorker`, page by
page interleaved, plus a no-op target to isolate the pipe round trip; and the per-page time
distribution over all 1,153 pages, which sets the `timeout_s` default.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))  # so the child process can import `null_target` from this module
DATA = REPO.parent / "shared" / "data"

from processors.extract import Extract, ExtractParams  # noqa: E402
from processors.html_text import ExtractionWorker, process_html  # noqa: E402
from processors.warc import ReadStats, decode_http_body, iter_records, parse_http_response  # noqa: E402

_TOKEN = re.compile(r"\w+")


def null_target(payload, http_charset, http_language, url, settings):
    """Does nothing: measures the pipe round trip alone."""
    return "", "utf-8", None


def tokens(text: str) -> Counter:
    return Counter(_TOKEN.findall(text.lower()))


def prf(pred: str, gold: str) -> tuple[float, float, float]:
    p, g = tokens(pred), tokens(gold)
    overlap = sum((p & g).values())
    precision = overlap / sum(p.values()) if p else 0.0
    recall = overlap / sum(g.values()) if g else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def load_pages() -> dict[str, tuple[bytes, str | None]]:
    """URL -> (HTTP payload, HTTP charset) for every HTML 200 page of web/."""
    pages = {}
    for path in sorted((DATA / "web").glob("*.warc.gz")):
        for rec in iter_records(str(path), max_block_bytes=1 << 30, stats=ReadStats()):
            if rec.record_type != "response":
                continue
            http = parse_http_response(rec.block)
            if http.status == 200:
                body = decode_http_body(rec.block[http.body_offset:], http.headers, 1 << 30)
                pages[rec.target_uri] = (body, http.charset())
    return pages


def score(outputs: dict[str, str], gold: dict[str, str]) -> tuple[float, float, float]:
    rows = [prf(outputs.get(url, ""), text) for url, text in gold.items()]
    return tuple(statistics.fmean(r[i] for r in rows) for i in range(3))


def child_cpu(worker: ExtractionWorker) -> float:
    """CPU seconds used so far by the worker's child process."""
    import psutil

    t = psutil.Process(worker.pid).cpu_times()
    return t.user + t.system


class Meter:
    """Wall and CPU time of a stretch of work, the CPU of a child process included. CPU time is
    what compares fairly on a shared machine; wall time is printed beside it."""

    def __init__(self, worker: ExtractionWorker | None = None) -> None:
        self.worker = worker
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.child0 = child_cpu(worker) if worker else 0.0

    def stop(self) -> tuple[float, float]:
        cpu = time.process_time() - self.cpu0
        if self.worker:
            cpu += child_cpu(self.worker) - self.child0
        return time.perf_counter() - self.wall0, cpu


def run_worker(params: ExtractParams, pages: dict, urls: list[str]) -> tuple[dict, float, float]:
    worker = ExtractionWorker(params.settings(), params.timeout_s)
    worker.start()
    out, meter = {}, Meter(worker)
    for url in urls:
        body, charset = pages[url]
        status, value = worker.extract(body, charset, None, url)
        out[url] = value[0] if status == "ok" else ""
    wall, cpu = meter.stop()
    worker.close()
    return out, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-ipc", action="store_true", help="skip the in-process vs child comparison")
    args = ap.parse_args()
    gold = json.loads((DATA / "gold" / "article-benchmark.json").read_text())
    pages = load_pages()
    missing = [u for u in gold if u not in pages]
    if missing:
        sys.exit(f"{len(missing)} gold URLs are not in web/: {missing[:3]}")
    urls = list(gold)
    rows = []

    import trafilatura

    meter = Meter()
    plain = {u: trafilatura.extract(pages[u][0]) or "" for u in urls}
    wall, cpu = meter.stop()
    rows.append(("plain trafilatura.extract(html), defaults", score(plain, gold), len(urls) / cpu, len(urls) / wall))

    default = Extract(ExtractParams())
    default.check()
    default.setup()
    meter, ours, n_docs, drops = Meter(default._worker), {}, 0, Counter()
    for path in sorted((DATA / "web").glob("*.warc.gz")):
        for result in default.read(str(path)):
            drops.update(result.drops)
            n_docs += result.counters["html_pages"]
            for url, text in zip(result.table["url"].to_pylist(), result.table["text"].to_pylist()):
                if url in gold:
                    ours[url] = text
    wall, cpu = meter.stop()
    default.close()
    rows.append(("curate default (Extract over all web/) *", score(ours, gold), n_docs / cpu, n_docs / wall))

    variants = {
        "curate default, the 120 pages only": ExtractParams(),
        "curate favour_precision=false (balanced)": ExtractParams(favour_precision=False),
        "curate favour_recall=true": ExtractParams(favour_precision=False, favour_recall=True),
        "curate fallback=false": ExtractParams(fallback=False),
        "curate fallback=false, balanced": ExtractParams(fallback=False, favour_precision=False),
        "curate include_comments=true": ExtractParams(include_comments=True),
        "curate extractor=resiliparse": ExtractParams(extractor="resiliparse"),
    }
    for name, params in variants.items():
        out, wall, cpu = run_worker(params, pages, urls)
        rows.append((name, score(out, gold), len(urls) / cpu, len(urls) / wall))

    print(f"\nMain text vs gold/article-benchmark.json ({len(urls)} pages; bag-of-tokens, macro-averaged)\n")
    print(f"{'method':44s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'docs/s CPU':>11s} {'docs/s wall':>12s}")
    for name, (p, r, f), rate_cpu, rate_wall in rows:
        print(f"{name:44s} {p:9.3f} {r:7.3f} {f:6.3f} {rate_cpu:11.1f} {rate_wall:12.1f}")
    print(f"\n* docs/s over all {n_docs} web/ pages, WARC reading and decompression included; "
          f"drops there: {dict(drops) or 'none'}. docs/s CPU: pages per CPU second (this process "
          f"and the extraction child), the fair figure on a shared machine.")

    if args.skip_ipc:
        return
    print("\nChild process cost (default params, all web/ pages, page by page interleaved)")
    params = ExtractParams()
    settings = params.settings()
    worker = ExtractionWorker(settings, 60.0)
    worker.start()
    nulls = ExtractionWorker(settings, 60.0, target=null_target)
    nulls.start()
    child0, null0 = child_cpu(worker), child_cpu(nulls)
    wall = {"in": 0.0, "child": 0.0, "null": 0.0}
    cpu = dict(wall)
    t_in, sizes = [], []
    for url, (body, charset) in pages.items():
        w0, c0 = time.perf_counter(), time.process_time()
        process_html(body, charset, None, url, settings)
        w1, c1 = time.perf_counter(), time.process_time()
        worker.extract(body, charset, None, url)
        w2, c2 = time.perf_counter(), time.process_time()
        nulls.extract(body, charset, None, url)
        w3, c3 = time.perf_counter(), time.process_time()
        wall["in"] += w1 - w0
        wall["child"] += w2 - w1
        wall["null"] += w3 - w2
        cpu["in"] += c1 - c0
        cpu["child"] += c2 - c1  # parent side: pickling and sending
        cpu["null"] += c3 - c2
        t_in.append(c1 - c0)
        sizes.append(len(body))
    cpu["child"] += child_cpu(worker) - child0
    cpu["null"] += child_cpu(nulls) - null0
    worker.close()
    nulls.close()
    n = len(t_in)
    print(f"{'path':40s} {'CPU ms/page':>12s} {'wall ms/page':>13s}")
    for key, label in [("in", "in-process process_html"), ("child", "child process (ExtractionWorker)"),
                       ("null", "round trip alone (no-op target)")]:
        print(f"{label:40s} {1000 * cpu[key] / n:12.2f} {1000 * wall[key] / n:13.2f}")
    print(f"overhead: the round trip costs {100 * cpu['null'] / cpu['in']:.1f}% of the extraction's CPU time "
          f"(mean payload {statistics.fmean(sizes) / 1024:.0f} KiB, {n} pages)")
    q = statistics.quantiles(t_in, n=100)
    print(f"\nper-page extraction CPU time: p50 {1000 * q[49]:.0f} ms, p95 {1000 * q[94]:.0f} ms, "
          f"p99 {1000 * q[98]:.0f} ms, max {1000 * max(t_in):.0f} ms (timeout_s default {params.timeout_s:g} s, wall)")


if __name__ == "__main__":
    import bench_extract_quality  # noqa: F401 - import self by name so null_target pickles by module

    bench_extract_quality.main()
