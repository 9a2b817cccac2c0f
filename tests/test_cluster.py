"""The sample pipeline on a real two-node Ray cluster equals the embedded run.

The cluster is started with `ray.cluster_utils.Cluster` (a head and a worker node on this machine,
each with its own raylet, object store and CPU), and `curate run --address` joins it from a
separate driver process, as a user would. Only the nodes this test starts are stopped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest

REPO = Path(__file__).resolve().parents[1]
CURATE = str(Path(sys.executable).parent / "curate")


def _run(args: list[str]) -> float:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.perf_counter()
    res = subprocess.run([CURATE, *args, "--no-progress"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return time.perf_counter() - t0


def _docs(folder: Path) -> list[tuple[str, str]]:
    t = pads.dataset(str(folder), format="parquet").to_table(columns=["id", "text"])
    return sorted(zip(t["id"].to_pylist(), t["text"].to_pylist()))


@pytest.mark.cluster
@pytest.mark.slow
def test_sample_pipeline_on_two_node_cluster_equals_embedded(shared_data, tmp_path):
    from ray.cluster_utils import Cluster

    node = dict(num_cpus=1, object_store_memory=400 * 2**20, memory=3 * 2**30)
    cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        wall_cluster = _run(["run", "pipelines/sample.yaml", "-o", str(tmp_path / "cluster"),
                             "--address", cluster.address])
    finally:
        cluster.shutdown()
    wall_embedded = _run(["run", "pipelines/sample.yaml", "-o", str(tmp_path / "embedded")])
    summary = json.loads((tmp_path / "cluster" / "_summary.json").read_text())
    final = Path(summary["final"]).name
    cluster_docs = _docs(tmp_path / "cluster" / final)
    embedded_docs = _docs(tmp_path / "embedded" / final)
    assert len(cluster_docs) > 1000
    assert cluster_docs == embedded_docs
    print(f"\nsample pipeline: two-node cluster {wall_cluster:.1f} s, embedded {wall_embedded:.1f} s, "
          f"{len(cluster_docs)} documents identical")
