"""Issue 13, nothing grows on the driver: the near-dedup broadcast lookup is built by a Ray task
(the driver only passes block references on), and a run's terminal shows curate's own lines."""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def test_broadcast_lookup_is_sorted_off_the_driver(ray_session, monkeypatch):
    from curate import cluster_dedup as cd

    ray = ray_session
    rng = np.random.default_rng(4)
    uids = rng.permutation(6000).astype(np.int64)
    blocks = [pa.table({cd.UID: uids[i:i + 1500], "payload": pa.array([f"p{u}" for u in uids[i:i + 1500]]),
                        "other": np.zeros(1500)}) for i in range(0, 6000, 1500)]
    ds = ray.data.from_arrow(blocks).materialize()
    schema = pa.schema([(cd.UID, pa.int64()), ("payload", pa.string()), ("other", pa.float64())])

    def fetch(*_a, **_k):
        raise AssertionError("the driver fetched the blocks")

    monkeypatch.setattr(ray, "get", fetch)
    ref = cd._collect_sorted(ds, cd.UID, ["payload"], schema)
    monkeypatch.undo()
    got = ray.get(ref)
    want = pa.concat_tables(blocks).select([cd.UID, "payload"]).sort_by(cd.UID)
    assert got.equals(want)
    assert got.column(cd.UID).to_pylist() == list(range(6000))
    # A dataset without blocks: the empty lookup typed by the schema.
    empty = ray.get(cd._collect_sorted(ray.data.from_arrow(blocks).limit(0).materialize(),
                                       cd.UID, ["payload"], schema))
    assert empty.num_rows == 0
    assert empty.schema.equals(pa.schema([(cd.UID, pa.int64()), ("payload", pa.string())]))


_RAY_LINE = ("[2026-12-02 18:34:21,610 E 7675 7675] core_worker.cc:2465: Actor with class name: "
             "'MapWorker(MapBatches(FileTaskWorker))' and ID: '14a9cad1564c49a44be6de2a01000000' has constructor "
             "arguments in the object store and max_restarts > 0. If the arguments in the object store go out of "
             "scope or are lost, the actor restart will fail. See https://github.com/ray-project/ray/issues/53727 "
             "for more details.\n")


def test_driver_stderr_drops_only_ray_datas_restart_false_alarm():
    """The filter ensure_ray installs: Ray Data's map-worker restart warning (written by the C++
    logger straight to fd 2) is dropped; a real error, the same warning for an actor of ours,
    a partial progress line and an uncaught exception's traceback all come through."""
    import subprocess
    import sys

    other = _RAY_LINE.replace("MapWorker(MapBatches(FileTaskWorker))", "Components")
    code = f"""if True:
        import os, sys
        from curate.ray_session import StderrFilter
        StderrFilter()
        os.write(2, b"progress 1/2\\r")
        os.write(2, {_RAY_LINE.encode()!r})
        os.write(2, b"[E] core_worker.cc:99: a real error\\n" + {other.encode()!r})
        print("python line", file=sys.stderr)
        raise SystemExit("the last words")
    """
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    err = res.stderr.decode()
    assert res.returncode == 1
    assert "MapWorker" not in err
    assert err.startswith("progress 1/2\r[E] core_worker.cc:99: a real error\n" + other + "python line\n"), err
    assert "the last words" in err


def test_cli_run_terminal_shows_curate_lines_only(tmp_path):
    """A small `curate run` (its own embedded Ray, as users run it): stderr holds curate's
    progress, none of Ray's core-worker or token-authentication lines; stdout the summary."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pyarrow.parquet as pq

    doc = "The quick brown fox jumps over the lazy dog near the river bank today. " * 8
    part = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(40)], "source": ["cc"] * 40,
                             "text": [f"{i}. {doc}" for i in range(40)]}), part)
    yaml_path = tmp_path / "p.yaml"
    yaml_path.write_text(f"inputs: [{str(part)!r}]\noutput: {tmp_path / 'out'}\nray: {{num_cpus: 1}}\n"
                         "stages:\n  - fineweb: {}\n")
    curate = str(Path(sys.executable).parent / "curate")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    res = subprocess.run([curate, "run", str(yaml_path)], env={**env, "RAY_USAGE_STATS_ENABLED": "0"},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "[fineweb]" in res.stderr and "40 docs" in res.stderr, res.stderr  # curate's progress
    assert "core_worker.cc" not in res.stderr and "Token authentication" not in res.stderr, res.stderr
    assert "fineweb" in res.stdout and "output:" in res.stdout
