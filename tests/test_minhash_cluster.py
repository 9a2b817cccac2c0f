"""The same cluster ids on one embedded Ray node and on a two-node local cluster.

The two-node cluster is a head and a worker started with `ray start --block` on 127.0.0.1, each
with 1 CPU and its own memory and object-store limits (co-located nodes would otherwise each
claim the whole machine), and auth disabled for every process of it (Ray 2.60 otherwise rejects
the joining worker with InvalidAuthToken). The driver runs in a subprocess: it cannot share this
session's embedded Ray. Teardown signals only the processes this test started (and their process
groups) -- never `ray stop`, which would stop every Ray on the machine.
"""
from __future__ import annotations

import os

os.environ.setdefault("RAY_num_workers_soft_limit", "8")  # see test_minhash.py
os.environ.setdefault("RAY_ADDRESS", "local")  # see test_minhash.py

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typing_extensions import Self

REPO = Path(__file__).resolve().parents[1]
RAY_BIN = str(Path(sys.executable).with_name("ray"))

DRIVER = textwrap.dedent(
    """
    import json, sys, time
    import pyarrow as pa, pyarrow.parquet as pq, ray
    from curate.cluster_dedup import run_cluster_dedup
    from processors.minhash import MinHashDedup, MinHashDedupParams

    address, docs_path, out_path = sys.argv[1:4]
    ray.init(address=address, log_to_driver=False)
    deadline = time.time() + 60
    while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.time() < deadline:
        time.sleep(0.5)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    docs = pq.read_table(docs_path)
    ds = ray.data.from_arrow([docs.slice(i, 50) for i in range(0, docs.num_rows, 50)])
    kept, stats = run_cluster_dedup(ds, MinHashDedup(MinHashDedupParams(side_output=True)), num_partitions=4)
    dropped = stats.pop("dropped")
    rows = []
    for d in (kept, dropped):
        for t in ray.get(d.to_arrow_refs()):
            rows += list(zip(t.column("id").to_pylist(), t.column("cluster_id").to_pylist()))
    nodes = [n for n in ray.nodes() if n["Alive"]]
    json.dump({"rows": rows, "stats": stats, "nodes": len(nodes),
               "cpus": sum(n["Resources"].get("CPU", 0) for n in nodes)}, open(out_path, "w"))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_args() -> list[str]:
    return [
        "--block",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        f"--memory={1_500_000_000}",
        f"--object-store-memory={150_000_000}",
        f"--node-manager-port={_free_port()}",
        f"--object-manager-port={_free_port()}",
    ]


def load_builder():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_dedup_corpus", REPO / "benchmarks" / "build_dedup_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class LocalCluster:
    """A head and a worker node started with `ray start`; stops only what it started."""

    def __init__(self, tmp: Path) -> None:
        self.env = dict(
            {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
            RAY_AUTH_MODE="disabled",
            RAY_USAGE_STATS_ENABLED="0",
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # nothing to drain; stop at once on SIGTERM
            PYTHONPATH=str(REPO),
        )
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tmp = tmp
        # Ray's socket paths must stay under 107 characters: pytest's tmp_path is too deep
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []

    def _start(self, args: list[str], log: str) -> None:
        out = open(self.tmp / log, "wb")  # noqa: SIM115 - the node keeps writing until __exit__
        self.logs.append(out)
        self.procs.append(
            subprocess.Popen([RAY_BIN, "start", *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def __enter__(self) -> Self:
        self._start(
            ["--head", f"--port={self.port}", "--include-dashboard=false", "--disable-usage-stats",
             f"--temp-dir={self.ray_tmp}", *_node_args()],
            "head.log",
        )
        deadline = time.time() + 90
        status = [RAY_BIN, "status", f"--address={self.address}"]
        while subprocess.run(status, env=self.env, capture_output=True, check=False).returncode:
            if time.time() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError("head node did not start: " + (self.tmp / "head.log").read_text()[-2000:])
            time.sleep(1)
        self._start([f"--address={self.address}", *_node_args()], "worker.log")
        return self

    def __exit__(self, *exc) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # `ray start --block` drains and stops its own node
        for p in reversed(self.procs):
            try:
                p.wait(timeout=45)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)  # anything left in the session this test created
            except ProcessLookupError:
                pass
        for f in self.logs:
            f.close()
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


@pytest.mark.cluster
def test_same_clusters_on_one_node_and_on_two_nodes(ray_session, shared_data, tmp_path):
    from curate.cluster_dedup import run_cluster_dedup
    from processors.minhash import MinHashDedup, MinHashDedupParams

    builder = load_builder()
    pages = builder._extract_file(str(shared_data / "web" / "pages-0001.warc.gz"), limit=60)
    pool, boiler = builder.paragraph_pools(pages)
    docs, _, _ = builder.build_corpus(pool, boiler, 300, seed=11, random_pairs=1000, log=lambda *a: None)
    docs_path = tmp_path / "docs.parquet"
    pq.write_table(docs, docs_path)

    # one embedded node (this session's Ray)
    ds = ray_session.data.from_arrow([docs.slice(i, 100) for i in range(0, docs.num_rows, 100)])
    kept, stats = run_cluster_dedup(ds, MinHashDedup(MinHashDedupParams(side_output=True)), num_partitions=2)
    dropped = stats.pop("dropped")
    embedded = set()
    for d in (kept, dropped):
        for t in ray_session.get(d.to_arrow_refs()):
            embedded |= set(zip(t.column("id").to_pylist(), t.column("cluster_id").to_pylist()))
    assert len(embedded) == docs.num_rows
    assert stats["counters"]["clusters"] > 10  # there is something to agree on

    # two nodes, separate driver process
    out = tmp_path / "two_nodes.json"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    with LocalCluster(tmp_path) as cluster:
        r = subprocess.run(
            [sys.executable, str(driver), cluster.address, str(docs_path), str(out)],
            env=cluster.env, cwd=str(REPO), capture_output=True, text=True, timeout=240, check=False,
        )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["nodes"] == 2 and res["cpus"] == 2
    two_nodes = {tuple(x) for x in res["rows"]}
    assert two_nodes == embedded
    assert res["stats"]["drops"] == stats["drops"]
    for k in ("candidate_pairs", "edges", "clusters"):
        assert res["stats"]["counters"][k] == stats["counters"][k]
