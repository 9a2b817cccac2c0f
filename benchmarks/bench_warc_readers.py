"""warcio vs FastWARC on the shared WARCs: records/s reading every record and its full block.

    .venv/bin/python benchmarks/bench_warc_readers.py [--repeat 3]

warcio and FastWARC (first row) parse the HTTP headers of response records (their default) and
read every record's block to the end; the best of `--repeat` interleaved rounds is reported. "curate iter_records" is our
layer on top of FastWARC (our own HTTP-agnostic block read, header dict, gzip-layout probe, byte
counting), to show what it costs. Files a reader refuses are listed, not timed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"

FILES = sorted((DATA / "web").glob("*.warc.gz")) + [
    DATA / "cc" / "CC-MAIN-2020-34-sample.warc.gz",
    DATA / "cc" / "CC-MAIN-2014-35-sample.warc",
    DATA / "edge" / "clueweb09-ja-warc0.18.warc.gz",
]
EXTRA = [DATA / "edge" / "single-gzip-member.warc.gz"]


def read_fastwarc(path: Path, parse_http: bool = True) -> tuple[int, int]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    n = size = 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.any_type, parse_http=parse_http):
            size += len(rec.reader.read())
            n += 1
    return n, size


def read_fastwarc_raw(path: Path) -> tuple[int, int]:
    return read_fastwarc(path, parse_http=False)


def read_warcio(path: Path) -> tuple[int, int]:
    from warcio.archiveiterator import ArchiveIterator

    n = size = 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f):
            size += len(rec.raw_stream.read())
            n += 1
    return n, size


def read_curate(path: Path) -> tuple[int, int]:
    from processors.warc import ReadStats, iter_records

    n = size = 0
    for rec in iter_records(str(path), max_block_bytes=1 << 30, stats=ReadStats()):
        size += len(rec.block)
        n += 1
    return n, size


READERS = {
    "warcio 1.8": read_warcio,
    "fastwarc 2.0, HTTP parsed": read_fastwarc,
    "fastwarc 2.0, no HTTP parsing": read_fastwarc_raw,
    "curate iter_records (fastwarc, quirks)": read_curate,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # warcio warns on every URI with a space; not the point here
    total_mb = sum(f.stat().st_size for f in FILES) / 1e6
    print(f"{len(FILES)} files, {total_mb:.1f} MB on disk; best of {args.repeat} rounds, readers interleaved")
    print("CPU s: process CPU time (robust to other load on the machine); wall s: elapsed\n")
    best_cpu = {name: float("inf") for name in READERS}
    best_wall = dict(best_cpu)
    records = {}
    for _ in range(args.repeat):
        for name, fn in READERS.items():  # interleaved, so machine load hits every reader alike
            w0, c0 = time.perf_counter(), time.process_time()
            records[name] = sum(fn(f)[0] for f in FILES)
            best_cpu[name] = min(best_cpu[name], time.process_time() - c0)
            best_wall[name] = min(best_wall[name], time.perf_counter() - w0)
    print(f"{'reader':40s} {'records':>8s} {'CPU s':>7s} {'wall s':>7s} {'records/s (CPU)':>16s} {'MB/s (CPU)':>11s}")
    for name in READERS:
        c = best_cpu[name]
        print(f"{name:40s} {records[name]:8d} {c:7.2f} {best_wall[name]:7.2f} {records[name] / c:16.0f} {total_mb / c:11.1f}")
    base = best_cpu["warcio 1.8"]
    print("\nspeed-up over warcio (CPU): " + ", ".join(
        f"{k} {base / v:.1f}x" for k, v in best_cpu.items() if k != "warcio 1.8"))
    print("\nfiles outside the table:")
    for f in EXTRA:
        for name, fn in READERS.items():
            try:
                n, _ = fn(f)
                print(f"  {f.name}: {name} reads {n} records")
            except Exception as exc:  # noqa: BLE001 - the point is to show who refuses what
                print(f"  {f.name}: {name} refuses it: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:90]}")


if __name__ == "__main__":
    main()
