"""trafilatura with the XPath stand-ins of processors.trafilatura_speedups against its own XPath.

    .venv/bin/python benchmarks/bench_trafilatura_speedups.py [--every N]

Over the HTML pages of ../shared/data/web (every Nth; default all 1,153) and the multilingual
CC-MAIN-2020-34 sample, with the extract stage's trafilatura settings:

- selections: every call of a stand-in made while extracting runs the XPath too and compares
  the selected elements one by one (`checking()`); printed: calls compared per expression and
  pages where any call differed;
- texts: each page extracted with the stand-ins and with trafilatura's own expressions,
  identical or not;
- CPU seconds of extraction (time.process_time) for each, the two passes interleaved page by
  page so that load from other jobs falls on both alike.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"

from processors import trafilatura_speedups as speedups  # noqa: E402
from processors.extract import Extract, ExtractParams  # noqa: E402
from processors.html_text import decode_html, extract_main_text  # noqa: E402
from processors.warc import ReadStats, iter_records  # noqa: E402


def pages(every: int) -> list[tuple[str, str]]:
    source = Extract(ExtractParams())
    out = []
    files = [*sorted((DATA / "web").glob("*.warc.gz")), DATA / "cc" / "CC-MAIN-2020-34-sample.warc.gz"]
    n = 0
    for path in files:
        for rec in iter_records(str(path), max_block_bytes=5 << 20, stats=ReadStats()):
            if rec.record_type != "response":
                continue
            page = source._html_payload(rec)
            if isinstance(page, str):
                continue
            n += 1
            if n % every == 0 or path.parent.name == "cc":
                out.append((rec.target_uri, decode_html(page[0], page[1])[0]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=int, default=1, help="use every Nth page of web/")
    args = ap.parse_args()
    settings = ExtractParams().settings()
    todo = pages(args.every)
    names = speedups.install()
    print(f"{len(todo)} pages; stand-ins installed for: {', '.join(names)}")

    failed = 0
    with speedups.checking() as calls:
        for url, html in todo:
            try:
                extract_main_text(html, url, settings)
            except speedups.Mismatch as exc:
                failed += 1
                print(f"  differs: {url}: {exc}")
    print(f"selections compared: {sum(calls.values())} calls, pages with a differing selection: {failed}")

    cpu = {"stand-ins": 0.0, "trafilatura XPath": 0.0}
    same = 0
    for url, html in todo:
        texts = []
        for mode in cpu:
            speedups.install() if mode == "stand-ins" else speedups.uninstall()
            c0 = time.process_time()
            texts.append(extract_main_text(html, url, settings))
            cpu[mode] += time.process_time() - c0
        same += texts[0] == texts[1]
    speedups.install()
    print(f"identical texts: {same} of {len(todo)}")
    print(f"CPU s of extraction: trafilatura XPath {cpu['trafilatura XPath']:.2f}, stand-ins {cpu['stand-ins']:.2f} "
          f"({cpu['trafilatura XPath'] / cpu['stand-ins']:.2f}x less)")


if __name__ == "__main__":
    main()
