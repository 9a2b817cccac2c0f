"""Where one worker's time goes: extract -> language_id(en, de) -> gopher_quality on the 1,153 pages.

    .venv/bin/python benchmarks/profile_extract.py [--mode full|fast] [--trafilatura-xpath] [--cprofile N]

One process does every step in order, page by page, the way one worker of the throughput benchmark
does (extraction in-process here: the child process only adds its pipe round trip, measured by
bench_extract_quality.py). Each step is timed in CPU seconds of this process (time.process_time),
which stays comparable when other jobs share the machine; wall seconds are printed beside.

Steps: start-up (imports, model loading), WARC parsing (FastWARC + gzip), HTTP (headers, payload
decoding), charset (bytes -> str), pre-pass (fast mode: resiliparse text + language ID + rules that
can only reject), extraction (trafilatura), declared language, language ID (fastText), rules
(Gopher quality), Arrow (building the batch table), Parquet (writing it).

`--mode fast` runs the extract stage's pre-pass (processors.prefilter, with the rules the engine
hands it from gopher_quality) and extracts only the pages it cannot reject, as `curate run` does by
default; `--mode full` extracts every page (`extract: {prefilter: false}`). `--trafilatura-xpath`
runs trafilatura's own XPath expressions instead of the exact stand-ins of
processors.trafilatura_speedups (the extraction child's default). `--cprofile N` also prints the N
functions with the most cumulative time.
"""
from __future__ import annotations

import argparse
import time

T_START_WALL, T_START_CPU = time.perf_counter(), time.process_time()

import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WEB = REPO.parent / "shared" / "data" / "web"


class Steps:
    """CPU and wall seconds per named step."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.order: list[str] = []

    def add(self, name: str, cpu: float, wall: float) -> None:
        if name not in self.cpu:
            self.order.append(name)
        self.cpu[name] += cpu
        self.wall[name] += wall

    def timed(self, name: str, fn, *args, **kwargs):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn(*args, **kwargs)
        self.add(name, time.process_time() - c0, time.perf_counter() - w0)
        return out


def run(mode: str) -> tuple[Steps, dict]:
    steps = Steps()
    c0, w0 = time.process_time(), time.perf_counter()
    import pyarrow as pa
    import pyarrow.parquet as pq

    from processors.extract import OUTPUT_SCHEMA, Extract, ExtractParams
    from processors.gopher import GopherQuality
    from processors.html_text import decode_html, declared_language, extract_main_text
    from processors.language_id import LanguageId, LanguageIdParams
    from processors.prefilter import reject_reason
    from processors.warc import ReadStats, decode_http_body, iter_records, parse_http_response
    steps.add("start-up: imports", time.process_time() - c0 + T_START_CPU_IMPORTS,
              time.perf_counter() - w0 + T_START_WALL_IMPORTS)

    lid = LanguageId(LanguageIdParams(languages=["en", "de"]))
    gopher = GopherQuality()
    rules = gopher.superset_rules() if mode == "fast" else []  # what the engine hands extract
    params = ExtractParams(prefilter=mode == "fast", prefilter_rules=rules)
    settings = params.settings()
    c0, w0 = time.process_time(), time.perf_counter()
    import trafilatura  # noqa: F401 - what the extraction child imports

    lid.setup()
    if mode == "fast":
        import resiliparse.extract.html2text  # noqa: F401
    steps.add("start-up: extractor import + model load", time.process_time() - c0, time.perf_counter() - w0)

    source = Extract(params)
    counts: dict = defaultdict(int)
    out_dir = Path("/tmp/profile_extract")
    out_dir.mkdir(exist_ok=True)
    for path in sorted(WEB.glob("*.warc.gz")):
        writer = None
        texts, urls, langs_declared, charsets = [], [], [], []
        records = iter_records(str(path), max_block_bytes=params.max_html_bytes + 65536, stats=ReadStats())
        while True:
            rec = steps.timed("WARC parsing", next, records, None)
            if rec is None:
                break
            if rec.record_type != "response":
                continue
            page = steps.timed("HTTP + payload", source._html_payload, rec)
            if isinstance(page, str):
                counts[f"drop:{page}"] += 1
                continue
            payload, http_charset, http_lang = page
            counts["html_pages"] += 1
            html, charset = steps.timed("charset", decode_html, payload, http_charset)
            if settings.prefilter:
                reason = steps.timed("pre-pass (visible text + rules)", reject_reason, html, settings.prefilter)
                if reason is not None:
                    counts[f"prefilter:{reason}"] += 1
                    continue
            text = steps.timed("extraction (trafilatura)", extract_main_text, html, rec.target_uri, settings)
            lang = steps.timed("declared language", declared_language, html, http_lang)
            if not text.strip():
                counts["drop:empty_text"] += 1
                continue
            texts.append(text)
            urls.append(rec.target_uri)
            langs_declared.append(lang)
            charsets.append(charset)
        n = len(texts)
        cols = {f.name: [None] * n for f in OUTPUT_SCHEMA}
        cols.update(id=urls, source=["cc"] * n, url=urls, text=texts, charset=charsets,
                    content_language=langs_declared, warc_file=[str(path)] * n)
        table = steps.timed("Arrow", pa.table, cols, schema=OUTPUT_SCHEMA)
        table = steps.timed("language ID (fastText)", lid.annotate, table)
        keep, reasons = steps.timed("language ID (fastText)", lid.decide, table)
        for r in reasons:
            if r:
                counts[r] += 1
        table = steps.timed("Arrow", table.filter, pa.array(keep))
        keep, reasons = steps.timed("rules (Gopher quality)", gopher.decide, table)
        for r in reasons:
            if r:
                counts[r] += 1
        table = steps.timed("Arrow", table.filter, pa.array(keep))
        counts["kept"] += table.num_rows

        def write(t=table, name=path.name):
            w = pq.ParquetWriter(out_dir / f"{name}.parquet", t.schema)
            w.write_table(t)
            w.close()

        steps.timed("Parquet", write)
    return steps, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["full", "fast"], default="full")
    ap.add_argument("--cprofile", type=int, default=0, help="also print the top N functions (cumulative)")
    ap.add_argument("--trafilatura-xpath", action="store_true",
                    help="trafilatura's own XPath expressions, not the stand-ins of processors.trafilatura_speedups")
    args = ap.parse_args()
    if args.trafilatura_xpath:
        from processors.html_text import _trafilatura
        from processors.trafilatura_speedups import uninstall

        _trafilatura()  # installs once per process; uninstalled it stays so
        uninstall()
    if args.cprofile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        steps, counts = run(args.mode)
        prof.disable()
    else:
        steps, counts = run(args.mode)
    total_cpu = sum(steps.cpu.values())
    pages = counts["html_pages"]
    xpaths = "trafilatura's own XPath" if args.trafilatura_xpath else "XPath stand-ins"
    print(f"\nOne worker, {pages} HTML pages of {WEB} (mode {args.mode}, {xpaths}): extract -> "
          f"language_id(en,de) -> gopher_quality\n")
    print(f"{'step':42s} {'CPU s':>8s} {'CPU ms/page':>12s} {'share':>6s} {'wall s':>8s}")
    for name in steps.order:
        cpu = steps.cpu[name]
        print(f"{name:42s} {cpu:8.2f} {1000 * cpu / pages:12.2f} {100 * cpu / total_cpu:5.1f}% {steps.wall[name]:8.2f}")
    print(f"{'total':42s} {total_cpu:8.2f} {1000 * total_cpu / pages:12.2f} {'100%':>6s} "
          f"{sum(steps.wall.values()):8.2f}")
    print("\ncounts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.cprofile:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.cprofile)


T_START_CPU_IMPORTS = time.process_time() - T_START_CPU  # interpreter-level imports above
T_START_WALL_IMPORTS = time.perf_counter() - T_START_WALL

if __name__ == "__main__":
    main()
