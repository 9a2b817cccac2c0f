"""`make bench` (benchmarks/run_all.py) runs every benchmark file, and each command it names exists."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_run_all_lists_every_benchmark_and_only_existing_scripts():
    out = subprocess.run([sys.executable, "benchmarks/run_all.py", "--list"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    names = {line.split()[0] for line in out}
    scripts = {line.split()[1] for line in out}
    expected = {p.stem.removeprefix("bench_") for p in (REPO / "benchmarks").glob("bench_*.py")}
    assert names == expected
    missing = [s for s in scripts if not (REPO / "benchmarks" / s).is_file()]
    assert not missing, f"run_all names scripts that do not exist: {missing}"


def test_run_all_refuses_an_unknown_name():
    proc = subprocess.run([sys.executable, "benchmarks/run_all.py", "--only", "no_such_bench"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown benchmark" in proc.stderr
