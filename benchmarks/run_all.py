"""Run every benchmark, one after another, and print a table of what ran (`make bench`).

    .venv/bin/python benchmarks/run_all.py [--only minhash shard ...] [--list]

Benchmarks run strictly in sequence, each in its own process: on a small machine a ratio measured
while another benchmark runs is not a result. Each one's output goes to
benchmarks/results/logs/<name>.log as well as the terminal; a failing benchmark is reported and the
rest still run. Every `benchmarks/bench_*.py` runs, with the arguments listed in STEPS where it
needs some (a corpus to build first, a size); one not listed there runs with its own defaults, so
a new benchmark is part of `make bench` as soon as it exists.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
LOGS = BENCH / "results" / "logs"
DEDUP_CORPUS = BENCH / "results" / "dedup-corpus-100k"

# name -> argument lists run in order (a step may first build its input). Names are the file stems
# without the `bench_` prefix.
STEPS: dict[str, list[list[str]]] = {
    "minhash": [
        ["build_dedup_corpus.py", "--docs", "100000", "--seed", "0", "--out", str(DEDUP_CORPUS)],
        ["bench_minhash.py", "--corpus", str(DEDUP_CORPUS), "--thresholds", "0.7", "0.8", "0.9",
         "--datatrove", "--memory"],
    ],
    # exact + near dedup at 1M and 4M documents (the corpus is built on first use), and datatrove at 1M
    "scale": [["bench_scale.py", "--sizes", "1M", "4M", "--datatrove"]],
}


def discover() -> dict[str, list[list[str]]]:
    """Every bench_*.py, with its STEPS entry or its defaults."""
    found: dict[str, list[list[str]]] = {}
    for path in sorted(BENCH.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        found[name] = STEPS.get(name, [[path.name]])
    return found


def run_step(name: str, argv: list[str], log) -> int:
    cmd = [sys.executable, str(BENCH / argv[0]), *argv[1:]]
    header = f"\n=== {name}: {' '.join(cmd)}\n"
    print(header, flush=True)
    log.write(header)
    log.flush()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # tee: the terminal shows progress, the log keeps it
        sys.stdout.write(line)
        log.write(line)
    return proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="run only these (names as in --list)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and their commands, run nothing")
    args = ap.parse_args()

    benches = discover()
    if args.only:
        unknown = sorted(set(args.only) - set(benches))
        if unknown:
            print(f"error: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(benches)}",
                  file=sys.stderr)
            return 2
        benches = {k: v for k, v in benches.items() if k in args.only}
    if args.list:
        for name, steps in benches.items():
            for argv in steps:
                print(f"{name:24s} {' '.join(argv)}")
        return 0

    LOGS.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, float, Path]] = []
    for name, steps in benches.items():
        log_path = LOGS / f"{name}.log"
        start = time.perf_counter()
        status = "ok"
        with log_path.open("w") as log:
            for argv in steps:
                rc = run_step(name, argv, log)
                if rc != 0:
                    status = f"failed (exit {rc} in {argv[0]})"
                    break
        rows.append((name, status, time.perf_counter() - start, log_path))

    print("\n| benchmark | result | wall s | log |\n|---|---|---|---|")
    for name, status, wall, log_path in rows:
        print(f"| {name} | {status} | {wall:.1f} | {log_path.relative_to(REPO)} |")
    return 0 if all(r[1] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
