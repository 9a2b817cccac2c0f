"""Near-dedup phases commit and resume; killed workers are never counted twice.

On real data: 800 documents resampled from pages of a real WARC (benchmarks/build_dedup_corpus.py),
40% in planted near-duplicate families, written as 4 Parquet parts.

- the driver is SIGKILLed during the components phase; the same command then resumes at
  components (signatures and edges reused) and its output equals an uninterrupted run's (same
  ids kept, same cluster id for every document, kept or dropped);
- a Ray worker is SIGKILLed while the near-dedup runs; Ray retries its task, and the stage's
  stats equal a clean run's and `curate check` passes.
"""
from __future__ import annotations

import os

os.environ.setdefault("RAY_num_workers_soft_limit", "8")  # see test_minhash.py
os.environ.setdefault("RAY_ADDRESS", "local")  # see test_minhash.py

import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
CURATE = str(Path(sys.executable).with_name("curate"))


@pytest.fixture(scope="module")
def parts(shared_data, tmp_path_factory) -> list[str]:
    spec = importlib.util.spec_from_file_location("build_dedup_corpus", REPO / "benchmarks" / "build_dedup_corpus.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    pages = builder._extract_file(str(shared_data / "web" / "pages-0002.warc.gz"), limit=40)
    pool, boiler = builder.paragraph_pools(pages)
    docs, _, meta = builder.build_corpus(pool, boiler, 800, seed=5, random_pairs=100, log=lambda *a: None)
    assert meta["families"] > 60
    folder = tmp_path_factory.mktemp("dedup_in")
    paths = []
    for k in range(4):
        p = folder / f"part-{k}.parquet"
        pq.write_table(docs.slice(k * 200, 200), p)
        paths.append(str(p))
    return paths


def _yaml(tmp: Path, parts: list[str], out: Path) -> Path:
    cfg = tmp / f"{out.name}.yaml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "name": "dedup-resume", "inputs": parts, "output": str(out),
        "ray": {"num_cpus": 2, "object_store_memory": 200_000_000},
        "stages": [{"minhash_dedup": {"side_output": True}}],
    }))
    return cfg


def _clusters(stage_dir: Path) -> tuple[set, set]:
    kept = pads.dataset(str(stage_dir), format="parquet").to_table(columns=["id", "cluster_id"])
    dropped = pads.dataset(str(stage_dir / "_dropped"), format="parquet").to_table(columns=["id", "cluster_id"])
    pairs = lambda t: set(zip(t.column("id").to_pylist(), t.column("cluster_id").to_pylist()))  # noqa: E731
    return pairs(kept), pairs(dropped)


def _stats(stage_dir: Path) -> dict:
    st = json.loads((stage_dir / "_stats.json").read_text())
    return {k: st[k] for k in ("docs_in", "docs_out", "drops", "counters", "by_source", "bytes_out")}


@pytest.fixture(scope="module")
def clean_run(ray_session, parts, tmp_path_factory) -> Path:
    """An uninterrupted run of the same pipeline (in this session's Ray)."""
    from curate.config import load_pipeline
    from curate.runner import RunOptions, run_pipeline

    tmp = tmp_path_factory.mktemp("dedup_clean")
    run_pipeline(load_pipeline(_yaml(tmp, parts, tmp / "out")), RunOptions(progress=False))
    return tmp / "out" / "minhash_dedup"


@pytest.mark.slow
def test_driver_killed_in_components_resumes_there_and_equals_clean_run(parts, clean_run, tmp_path, capsys):
    out = tmp_path / "out"
    cmd = [CURATE, "run", str(_yaml(tmp_path, parts, out))]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # its own session: the kill reaches the driver and the embedded Ray it started, nothing else
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "components round 1" in line:
                os.killpg(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    work = out / "_work" / "minhash_dedup"
    assert (work / "signatures" / "_COMMITTED").is_file() and (work / "edges" / "_COMMITTED").is_file()
    assert not (work / "components" / "_COMMITTED").exists()

    # The same pipeline again, through the same engine in this process (the session's Ray): what is
    # under test is what the killed driver left behind; a second `curate run` would only add a Ray start.
    from curate.config import load_pipeline
    from curate.runner import RunOptions, run_pipeline

    capsys.readouterr()
    run_pipeline(load_pipeline(_yaml(tmp_path, parts, out)), RunOptions(progress=True))
    again = capsys.readouterr().err
    assert "resuming at phase components: signatures, edges committed earlier, reused" in again, again[-3000:]
    assert "signatures of" not in again  # the committed phases did not run again
    kept, dropped = _clusters(out / "minhash_dedup")
    ref_kept, ref_dropped = _clusters(clean_run)
    assert kept == ref_kept and dropped == ref_dropped
    assert len(dropped) > 60 and len(kept) + len(dropped) == 800
    assert _stats(out / "minhash_dedup") == _stats(clean_run)
    assert not work.exists()  # removed once every part was written


def _ray_workers_busy() -> list:
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):  # only processes this session started
        try:
            title = " ".join(p.cmdline())
        except psutil.Error:
            continue
        # a task of a data step (map or shuffle), never Ray's own agents or actors: the raylet
        # fate-shares with its agents, and this session's driver with the raylet
        if title.startswith(("ray::MapBatches(", "ray::HashShuffle")):
            found.append((p, title))
    return found


def test_worker_killed_during_near_dedup_counts_once_and_check_passes(ray_session, parts, clean_run, tmp_path):
    from curate.check import check_output
    from curate.config import load_pipeline
    from curate.runner import RunOptions, run_pipeline

    out = tmp_path / "out"
    cfg = load_pipeline(_yaml(tmp_path, parts, out))
    error: list[BaseException] = []

    def run() -> None:
        try:
            run_pipeline(cfg, RunOptions(progress=False))
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            error.append(e)

    t = threading.Thread(target=run)
    t.start()
    killed = []
    work = out / "_work" / "minhash_dedup"
    while t.is_alive() and not killed:
        # a task of the dedup itself: after the signatures phase started, before the removal ended
        if (work / "signatures").is_dir():
            for p, title in _ray_workers_busy():
                try:
                    p.send_signal(signal.SIGKILL)
                    killed.append(title)
                    break
                except Exception:  # noqa: BLE001 - it finished meanwhile: try the next one
                    continue
        time.sleep(0.05)
    t.join(timeout=600)
    assert not error, error
    assert killed, "no busy Ray worker was seen during the dedup"
    assert _stats(out / "minhash_dedup") == _stats(clean_run), killed
    assert _clusters(out / "minhash_dedup") == _clusters(clean_run)
    report = check_output(out)
    assert report.problems == [], report.problems


def _run_yaml(tmp: Path, parts: list[str], out: Path, stages: list[dict]) -> Path:
    cfg = tmp / f"{out.name}.yaml"
    cfg.write_text(json.dumps({"name": "dedup-fused", "inputs": parts, "output": str(out),
                               "stages": stages}))
    return cfg


def test_removal_resumes_part_by_part_and_counts_once(ray_session, parts, clean_run, tmp_path, monkeypatch, capsys):
    """A run that fails after removal wrote its parts, with two parts' outputs then deleted (as a
    crash mid-removal leaves them): the rerun redoes those two only, from the committed phases."""
    import curate.cluster_runner as cr
    from curate.check import check_output
    from curate.config import load_pipeline
    from curate.runner import RunOptions, StageFailed, run_pipeline

    out = tmp_path / "out"
    cfg = load_pipeline(_yaml(tmp_path, parts, out))
    real_write = cr.write_json_atomic

    def fail_on_head_record(path, obj):  # the driver's last write of the step (workers import their own)
        if Path(path).stem == cr.task_id("cluster:minhash_dedup"):
            raise OSError("disk gone")
        real_write(path, obj)

    monkeypatch.setattr(cr, "write_json_atomic", fail_on_head_record)
    with pytest.raises(StageFailed):
        run_pipeline(cfg, RunOptions(progress=False))
    monkeypatch.undo()
    stage = out / "minhash_dedup"
    tids = [cr.removal_task_id(p) for p in parts]
    assert all((stage / "_tasks" / f"{t}.json").is_file() for t in tids)
    for t in tids[1::2]:  # parts 1 and 3 never finished
        (stage / "_tasks" / f"{t}.json").unlink()
        (stage / f"part-{t}.parquet").unlink()
        (stage / "_dropped" / f"part-{t}.parquet").unlink(missing_ok=True)
    (stage / "_dropped" / f".part-{tids[1]}.parquet.tmp-1").write_bytes(b"torn")  # a killed writer's
    kept_before = {t: (stage / f"part-{t}.parquet").stat().st_mtime_ns for t in tids[0::2]}

    capsys.readouterr()
    run_pipeline(cfg, RunOptions(progress=True))
    err = capsys.readouterr().err
    assert "resuming at phase removal" in err and "signatures of" not in err, err
    assert "2 of them written earlier, reused" in err, err
    assert {t: (stage / f"part-{t}.parquet").stat().st_mtime_ns for t in kept_before} == kept_before
    assert all((stage / f"part-{t}.parquet").is_file() for t in tids)
    assert not list((stage / "_dropped").glob(".part-*"))
    assert _clusters(stage) == _clusters(clean_run)
    assert _stats(stage) == _stats(clean_run)  # each part counted once
    assert not (out / "_work" / "minhash_dedup").exists()
    assert check_output(out).problems == []

    # killed after the step's last record, before its commit (the work dir already gone): the
    # rerun takes every record as it is and runs no phase again
    commit = json.loads((stage / "_COMMITTED").read_text())
    (stage / "_COMMITTED").unlink()
    (stage / "_RUNNING").write_text(json.dumps({"fingerprint": commit["fingerprint"]}))
    run_pipeline(cfg, RunOptions(progress=True))
    err = capsys.readouterr().err
    assert "all 4 parts written earlier, reused" in err and "signatures of" not in err, err
    assert _stats(stage) == _stats(clean_run)
    assert check_output(out).problems == []


def test_row_wise_stages_fuse_into_the_cluster_step_with_its_resources(ray_session, parts, tmp_path, monkeypatch):
    """gopher_quality before minhash_dedup: fused into the cluster step's reads (no segment of its
    own), it gives the same documents, clusters and stats as when it checkpoints; the step's
    num_cpus, memory and concurrency (the most any of its stages asks, the least concurrency)
    reach every map of the step."""
    import ray

    from curate.check import check_output
    from curate.config import load_pipeline
    from curate.runner import RunOptions, run_pipeline

    dedup = {"minhash_dedup": {"side_output": True}}
    apart = tmp_path / "apart"
    run_pipeline(load_pipeline(_run_yaml(tmp_path, parts, apart, [{"gopher_quality": {"checkpoint": True}}, dedup])),
                 RunOptions(progress=False))

    calls = []
    real_map = ray.data.Dataset.map_batches

    def spy(self, fn, *args, **kwargs):
        calls.append((getattr(fn, "__name__", str(fn)), {k: kwargs.get(k) for k in ("num_cpus", "memory", "concurrency")}))
        return real_map(self, fn, *args, **kwargs)

    monkeypatch.setattr(ray.data.Dataset, "map_batches", spy)
    fused = tmp_path / "fused"
    resources = {"num_cpus": 0.5, "memory": "64MB", "concurrency": 3}
    run_pipeline(load_pipeline(_run_yaml(tmp_path, parts, fused, [
        {"gopher_quality": {"num_cpus": 0.5}}, {"minhash_dedup": {"side_output": True, **resources}}])),
        RunOptions(progress=False))
    monkeypatch.undo()

    names = {n for n, _ in calls}
    assert {"_sign_parts", "_bucket_links", "_exact_payloads", "_large_star", "_elect", "_remove_parts"} <= names
    want = {"num_cpus": 0.5, "memory": 64_000_000, "concurrency": 3}
    assert [c for c in calls if c[1] != want] == []
    assert not list((fused / "gopher_quality").glob("part-*.parquet"))  # fused: no segment of its own
    assert json.loads((fused / "minhash_dedup" / "_COMMITTED").read_text())["stages"] == ["gopher_quality", "minhash_dedup"]
    assert _clusters(fused / "minhash_dedup") == _clusters(apart / "minhash_dedup")
    for stage in ("gopher_quality", "minhash_dedup"):
        a, b = _stats(fused / stage), _stats(apart / stage)
        # the components' rounds depend on the node ids, so on the part order, which differs
        # (the checkpointed filter's parts are named by hash, the fused step reads the inputs)
        a["counters"].pop("rounds", None), b["counters"].pop("rounds", None)
        assert a == b, stage
    gq = _stats(fused / "gopher_quality")
    assert gq["docs_in"] == 800 and gq["docs_out"] + sum(gq["drops"].values()) == 800 and gq["docs_out"] < 800
    assert _stats(fused / "minhash_dedup")["docs_in"] == gq["docs_out"]
    assert check_output(fused).problems == []
