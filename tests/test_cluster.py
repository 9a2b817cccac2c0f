"""The sample pipeline on a real two-node Ray cluster equals the embedded run.

The test runs pipelines/sample.yaml itself, every stage as written, on a smaller share of its inputs
(one of the four web WARCs, the WET, the WikiText validation split, one stdlib package): the stage
graph (extract, reads, row-wise filters, exact and near dedup, paragraph dedup, decontamination,
PII) is what the cluster must get right, and twice the full inputs cost CI minutes, not coverage.

The cluster is started with `ray.cluster_utils.Cluster` (a head and a worker node on this machine,
each with its own raylet, object store and CPU), and `curate run --address` joins it from a
separate driver process, as a user would. Only the nodes this test starts are stopped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
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


def _reduced_sample_yaml(shared_data: Path, tmp_path: Path) -> Path:
    """pipelines/sample.yaml with smaller inputs (absolute paths, so it runs from anywhere)."""
    import yaml

    cfg = yaml.safe_load((REPO / "pipelines" / "sample.yaml").read_text())
    inputs = {
        "extract": [str(shared_data / "web" / "pages-0001.warc.gz"),
                    str(shared_data / "cc" / "CC-MAIN-2014-35-sample.warc.wet")],
        "read_wiki": [str(shared_data / "reference" / "wikitext-2-valid.txt")],
        "read_code": [str(Path(sysconfig.get_path("stdlib")) / "json"),
                      str(Path(sysconfig.get_path("stdlib")) / "email")],
    }
    for entry in cfg["stages"]:
        (kind, body), = entry.items()
        name = body.get("name", kind)
        if name in inputs:
            body["inputs"] = inputs.pop(name)
        for key in ("domains_file",):
            if key in body:
                body[key] = str(REPO / body[key])
        for eval_set in body.get("eval_sets", []):
            eval_set["paths"] = [str((REPO / p).resolve()) for p in eval_set["paths"]]
    assert not inputs, f"sample.yaml no longer has the stages {sorted(inputs)}"
    path = tmp_path / "sample-reduced.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _docs(folder: Path) -> list[tuple[str, str]]:
    t = pads.dataset(str(folder), format="parquet").to_table(columns=["id", "text"])
    return sorted(zip(t["id"].to_pylist(), t["text"].to_pylist()))


@pytest.mark.cluster
@pytest.mark.slow
def test_sample_pipeline_on_two_node_cluster_equals_embedded(ray_session, shared_data, tmp_path):
    from ray.cluster_utils import Cluster

    pipeline = _reduced_sample_yaml(shared_data, tmp_path)
    node = dict(num_cpus=1, object_store_memory=400 * 2**20, memory=3 * 2**30)
    cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        wall_cluster = _run(["run", str(pipeline), "-o", str(tmp_path / "cluster"),
                             "--address", cluster.address])
    finally:
        cluster.shutdown()
    # The embedded reference runs through the same engine in this process (the session's Ray): the
    # cluster run above is the CLI with --address; a second `curate run` would only add a Ray start.
    from curate.config import load_pipeline
    from curate.runner import RunOptions, run_pipeline

    t0 = time.perf_counter()
    cfg = load_pipeline(pipeline).model_copy(update={"output": str(tmp_path / "embedded")})
    run_pipeline(cfg, RunOptions(progress=False))
    wall_embedded = time.perf_counter() - t0
    summary = json.loads((tmp_path / "cluster" / "_summary.json").read_text())
    final = Path(summary["final"]).name
    cluster_docs = _docs(tmp_path / "cluster" / final)
    embedded_docs = _docs(tmp_path / "embedded" / final)
    sources = set(pads.dataset(str(tmp_path / "cluster" / final), format="parquet")
                  .to_table(columns=["source"])["source"].to_pylist())
    assert sources == {"cc", "wiki", "code"}, sources  # every kind of input went through the graph
    assert len(cluster_docs) > 250, len(cluster_docs)
    assert cluster_docs == embedded_docs
    print(f"\nsample pipeline: two-node cluster {wall_cluster:.1f} s, embedded {wall_embedded:.1f} s, "
          f"{len(cluster_docs)} documents identical")
