"""Faults: a worker killed mid-stage, an output that turns read-only or full, vanished inputs.

Each test asserts zero documents lost and zero duplicated against an undisturbed run.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from curate.check import check_output, check_stage
from curate.config import load_pipeline, pipeline_from_dict
from curate.runner import RunOptions, run_pipeline

CURATE = str(Path(sys.executable).parent / "curate")


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> list[str]:
    import pyarrow as pa

    folder = tmp_path_factory.mktemp("docs")
    paths = []
    for k in range(4):
        rng = random.Random(k)
        words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
        rows = [{"id": f"d{k}-{i:04d}", "source": "cc", "url": None, "domain": None, "date": None,
                 "text": f"text {k} {i % 150}. " + " ".join(rng.choices(words, k=60)) + "."}
                for i in range(500)]
        p = folder / f"in-{k}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), p)
        paths.append(str(p))
    return paths


def _ids(folder: Path) -> list[str]:
    return sorted(pads.dataset(str(folder), format="parquet").to_table(columns=["id"])["id"].to_pylist())


def test_worker_killed_mid_stage_is_retried_without_loss(ray_session, docs, tmp_path):
    stages = [{"fault_inject": {"marker": str(tmp_path / "killed"), "after_rows": 600}},
              {"exact_dedup": {}}]
    faulty = run_pipeline(pipeline_from_dict({"inputs": docs, "output": str(tmp_path / "f"),
                                              "stages": stages}), RunOptions(progress=False))
    assert (tmp_path / "killed").exists()  # the kill really happened
    clean = run_pipeline(pipeline_from_dict({"inputs": docs, "output": str(tmp_path / "c"),
                                             "stages": [{"exact_dedup": {}}]}),
                         RunOptions(progress=False))
    assert _ids(faulty.final_dir) == _ids(clean.final_dir)
    assert faulty.stats[0].docs_in == 2000 == faulty.stats[0].docs_out  # counted once
    assert check_output(tmp_path / "f").ok


def _run_cli_with(cmd: list[str], preexec=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=preexec,
                          timeout=600)


def _yaml(tmp_path: Path, docs: list[str], out: Path) -> Path:
    p = tmp_path / f"{out.name}.yaml"
    p.write_text(f"inputs: {docs!r}\noutput: {out}\nray: {{num_cpus: 2}}\n"
                 "stages:\n  - fineweb: {checkpoint: true}\n  - exact_dedup: {}\n")
    return p


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_is_a_clear_error(docs, tmp_path):  # pragma: no cover - CI runs as root
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    res = _run_cli_with([CURATE, "run", str(_yaml(tmp_path, docs, out)), "--no-progress"])
    assert res.returncode != 0
    assert "ermission" in res.stdout + res.stderr
    assert not list(out.rglob("_COMMITTED"))


def test_full_disk_is_a_clear_error_and_rerun_finishes(ray_session, docs, tmp_path):
    """The output lives on a 256 kB tmpfs: the dedup step cannot write, as on a full disk."""
    out = tmp_path / "full"
    out.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(out)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yaml_path = _yaml(tmp_path, docs, out)
        res = _run_cli_with([CURATE, "run", str(yaml_path), "--no-progress"])
        assert res.returncode == 2
        text = res.stdout + res.stderr
        assert "No space left on device" in text and "nothing of it was committed" in text, text[-3000:]
        # Whatever step did commit must be whole. (A dedup's committed phases under `_work/` are
        # not steps: they are what the rerun resumes from.)
        for marker in out.glob("*/_COMMITTED"):
            _, problems = check_stage(marker.parent)
            assert not problems, problems
        # Space freed (the tmpfs grows): the same pipeline finishes the job from where it was. It
        # reruns through the same engine in this process (the session's Ray): what is under test
        # is what the failed run left on disk; a second `curate run` would only add a Ray start.
        subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
        run_pipeline(load_pipeline(yaml_path), RunOptions(progress=False))
        report = check_output(out)
        assert report.ok, report.problems
        # The undisturbed run in this process (the session's Ray): one `curate run` start fewer.
        clean = run_pipeline(load_pipeline(_yaml(tmp_path, docs, tmp_path / "clean")),
                             RunOptions(progress=False))
        assert _ids(out / "exact_dedup") == _ids(clean.final_dir)
    finally:
        subprocess.run(["umount", "-l", str(out)], capture_output=True)
