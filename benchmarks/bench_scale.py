"""Scale benchmark: exact + near dedup at 1M and 4M documents on 2 CPUs; memory, spilling; datatrove.

    .venv/bin/python benchmarks/bench_scale.py --sizes 1M 4M --datatrove     # the issue's figures
    .venv/bin/python benchmarks/bench_scale.py --sizes 20k 80k --datatrove   # a check in minutes
    .venv/bin/python benchmarks/bench_scale.py --summary                     # tables of the last run

Corpus: `build_dedup_corpus.py --chunk-docs` (real paragraphs from the 1,153 pages of
shared/data/web, planted near-duplicate families, exact Jaccard truth), built once for the largest
size in benchmarks/results/dedup-corpus-scale/seed<S>-chunk<N>/ and reused. Chunk c depends on
(seed, c) only, so a smaller size is the first chunks of the larger one: the 1M run reads
exactly the first quarter of the 4M corpus's documents.

Per size, a pipeline YAML written here (exact_dedup, then minhash_dedup at --threshold with its
side output) runs as `curate run PIPELINE --address ADDR --no-progress`: the command users run
against a cluster, here a one-node Ray this benchmark starts fresh for each run (--num-cpus CPUs,
an object store of --object-store-gb) in the environment curate gives its embedded Ray
(curate.ray_session.prepare_environment). Hosting Ray here keeps the driver apart from Ray's
processes and lets the object store's counters be read after the run, before Ray stops.

Measured, per run:
  wall s          the `curate run` process from start to exit (read the Parquet inputs, both
                  steps, write every output) plus the seconds this Ray took to start
  driver          peak RSS of the `curate run` process, sampled every 0.2 s with psutil
  largest worker  the highest peak RSS of one Ray worker process (title `ray::...`), sampled the
                  same way; `private` is RSS minus shared pages (the object store's pages a
                  worker has mapped count in its RSS, and are bounded by the store's size)
  Ray daemons     peak of raylet + GCS + Ray's agents together (not the bar; shown for scale)
  spilled         bytes the raylet spilled from the object store to disk during the run: the
                  cumulative `spilled_bytes_total` of its store stats (what
                  `ray memory --stats-only` prints as "Spilled N MiB"), read with
                  ray._private.internal_api.get_memory_info_reply after the driver exits;
                  restored likewise
  store peak      highest `object_store_bytes_used` of the same stats, polled once a second

Bars (issue 13): the largest worker's peak grows at most 1.3x when the corpus grows 4x (for
another ratio r of sizes, at most 1.3^(log4 r)); the driver's peak stays under 1 GB (10^9 B).

--datatrove, on the --datatrove-size corpus (default 1M when it is among --sizes, else the
smallest): curate's minhash_dedup alone (the same YAML without exact_dedup, as datatrove's MinHash
has no exact step), then datatrove 0.10.1's four MinHash steps (bench_minhash.run_datatrove: its
whitespace word tokenizer, the fastest it has; the same bands x rows; one task per input file,
--num-cpus workers; its own venv benchmarks/.venvs/datatrove-minhash, created on first use) on
the same files: the wall-time ratio, and each tool's pair precision and recall against the planted
duplicates (bench_minhash.evaluate: a predicted pair is right when both documents lie in one
true cluster at the threshold).

Results: --out (default benchmarks/results/bench_scale.json), written after every run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO), str(REPO / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _common import CURATE, RESULTS, SHARED, print_table
from build_dedup_corpus import build_chunked, chunk_files

DEFAULT_OUT = RESULTS / "bench_scale.json"
CORPORA = RESULTS / "dedup-corpus-scale"
WORKER_BAR = 1.3  # largest worker's growth per 4x documents
DRIVER_BAR = 1e9  # bytes
MB = 2**20


# ---------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: a size is a number with an optional k or M (20k, 1M)")
    n = float(m.group(1)) * {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}[m.group(2)]
    if n < 1 or n != int(n):
        raise argparse.ArgumentTypeError(f"{text!r}: not a whole number of documents")
    return int(n)


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def default_chunk_docs(sizes: list[int]) -> int:
    """Documents per corpus file: at most 50,000, and at least four files at the smallest size;
    every size must be a whole number of chunks."""
    per = min(50_000, max(1, min(sizes) // 4))
    while any(s % per for s in sizes):
        per -= 1
    return per


# ---------------------------------------------------------------------------------------------
# Ray, hosted here; memory sampled from outside the driver
# ---------------------------------------------------------------------------------------------


class HostedRay:
    """A fresh one-node Ray in this process, with the environment curate's embedded Ray gets."""

    def __init__(self, num_cpus: int, object_store_bytes: int) -> None:
        self.num_cpus, self.object_store_bytes = num_cpus, object_store_bytes
        self.address = ""
        self.start_s = 0.0
        self._tmp = ""

    def __enter__(self) -> "HostedRay":
        import logging

        from curate.ray_session import _AUTH_NOTICE_LOGGER, prepare_environment

        prepare_environment()
        import ray

        logging.getLogger(_AUTH_NOTICE_LOGGER).setLevel(logging.ERROR)  # as curate quiets it

        # its own short temp dir (Unix socket paths are limited to 107 bytes): spilled objects
        # go there too, and none of it mixes with other Ray sessions on the machine
        self._tmp = tempfile.mkdtemp(prefix="bsc-", dir="/tmp")
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=self.num_cpus, object_store_memory=self.object_store_bytes,
                 include_dashboard=False, log_to_driver=False, configure_logging=False, _temp_dir=self._tmp)
        self.start_s = time.perf_counter() - t0
        self.address = ray.get_runtime_context().gcs_address
        return self

    @property
    def temp_dir(self) -> str:
        return self._tmp

    def store_stats(self):
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        return get_memory_info_reply(get_state_from_address(self.address)).store_stats

    def __exit__(self, *exc) -> None:
        import ray

        ray.shutdown()
        shutil.rmtree(self._tmp, ignore_errors=True)


class Monitor:
    """Peak RSS per process below this one, by role, and the object store's peak use.

    Roles: `driver` (the pid given), `worker` (a Ray worker: its title starts with `ray::`, or it
    still runs default_worker.py), `daemon` (raylet, GCS, Ray's agents: any other process under a
    hosted Ray) and `other` (no Ray running: e.g. datatrove's processes)."""

    def __init__(self, driver_pid: int | None = None, ray_host: HostedRay | None = None, interval: float = 0.2,
                 disk: list[Path] = ()) -> None:
        import psutil

        self.psutil = psutil
        self.driver_pid, self.ray_host, self.interval = driver_pid, ray_host, interval
        self.disk = list(disk)  # folders whose total size is sampled every 5 s (outputs, spilled objects)
        self.disk_peak = 0
        self.peak: dict[int, dict] = {}  # pid -> {role, rss, private, title}
        self.daemons_peak = 0
        self.store_peak = 0
        self.store_errors = 0
        self.driver_timeline: list[tuple[float, float]] = []  # (seconds, MiB) every 2 s: where it grows
        self._t0 = self._last_timeline = time.monotonic()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _role(self, p) -> tuple[str, str]:
        if p.pid == self.driver_pid:
            return "driver", "curate run"
        try:
            cmd = p.cmdline()
        except self.psutil.Error:
            return "", ""
        title = " ".join(cmd)[:100]
        if self.ray_host is None:
            return "other", title
        if cmd and (cmd[0].startswith("ray::") or any("default_worker.py" in c for c in cmd[:3])):
            return "worker", title
        return "daemon", title

    def _sample(self) -> None:
        daemons = 0
        for p in self.psutil.Process().children(recursive=True):
            role, title = self._role(p)
            if not role:
                continue
            try:
                mi = p.memory_info()
            except self.psutil.Error:  # it ended
                continue
            private = mi.rss - mi.shared
            e = self.peak.setdefault(p.pid, {"role": role, "rss": 0, "private": 0, "title": title, "cpu": 0.0,
                                             "tasks": set()})
            if title.startswith("ray::") and not title.startswith("ray::IDLE"):
                e["tasks"].add(title.split()[0])  # what this worker has run (its title names the task)
            try:
                ct = p.cpu_times()
                e["cpu"] = max(e["cpu"], ct.user + ct.system)
            except self.psutil.Error:
                pass
            e["role"] = role if e["role"] != "driver" else "driver"
            if mi.rss > e["rss"]:
                e["rss"], e["title"] = mi.rss, title
            e["private"] = max(e["private"], private)
            if role == "daemon":
                daemons += mi.rss
            if role == "driver" and time.monotonic() - self._last_timeline >= 2.0:
                self._last_timeline = time.monotonic()
                self.driver_timeline.append((round(time.monotonic() - self._t0, 1), round(mi.rss / MB, 1)))
        self.daemons_peak = max(self.daemons_peak, daemons)

    def _disk_bytes(self) -> int:
        total = 0
        for root in self.disk:
            for dirpath, _, names in os.walk(root):
                for n in names:
                    try:
                        total += os.lstat(os.path.join(dirpath, n)).st_size
                    except OSError:  # removed meanwhile
                        pass
        return total

    def _run(self) -> None:
        last_store = last_disk = 0.0
        while not self._stop.is_set():
            if self.disk and time.monotonic() - last_disk >= 5.0:
                last_disk = time.monotonic()
                self.disk_peak = max(self.disk_peak, self._disk_bytes())
            try:
                self._sample()
            except self.psutil.Error:
                pass
            if self.ray_host is not None and time.monotonic() - last_store >= 1.0:
                last_store = time.monotonic()
                try:
                    self.store_peak = max(self.store_peak, int(self.ray_host.store_stats().object_store_bytes_used))
                except Exception:  # noqa: BLE001 - a poll that fails is counted, not fatal
                    self.store_errors += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "Monitor":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    def cpu_s(self) -> float:
        """CPU seconds of every process seen (to the last sample: a process's last 0.2 s may be missed)."""
        return round(sum(e["cpu"] for e in self.peak.values()), 1)

    def largest(self, role: str) -> dict:
        found = [e for e in self.peak.values() if e["role"] == role]
        if not found:
            return {"rss_mb": None, "private_mb": None, "title": "", "processes": 0}
        top = max(found, key=lambda e: e["rss"])
        return {"rss_mb": round(top["rss"] / MB, 1), "private_mb": round(max(e["private"] for e in found) / MB, 1),
                "title": top["title"], "ran": sorted(top["tasks"]), "processes": len(found)}


# ---------------------------------------------------------------------------------------------
# curate runs
# ---------------------------------------------------------------------------------------------


def write_pipeline(path: Path, name: str, files: list[Path], output: Path, threshold: float, exact: bool,
                   num_cpus: int, object_store_bytes: int) -> None:
    stages: list[dict] = [{"exact_dedup": {}}] if exact else []
    stages.append({"minhash_dedup": {"threshold": threshold, "side_output": True}})
    doc = {"name": name, "output": str(output), "seed": 0, "inputs": [str(f) for f in files],
           "ray": {"num_cpus": num_cpus, "object_store_memory": object_store_bytes}, "stages": stages}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def stage_stats(output: Path, stage: str) -> dict:
    f = output / stage / "_stats.json"
    if not f.exists():
        return {}
    d = json.loads(f.read_text())
    d = d[0] if isinstance(d, list) else d
    keep = ("docs_in", "docs_out", "drops", "wall_s", "busy_s", "tasks")
    return {k: d[k] for k in keep if k in d} | {"counters": {k: v for k, v in d.get("counters", {}).items()
                                                             if k in ("candidate_pairs", "edges", "rounds", "clusters")}}


def read_clusters(stage_dir: Path) -> dict[str, str]:
    """id -> cluster_id over the kept documents (the stage's own parts) and the side output."""
    files = sorted(stage_dir.glob("*.parquet")) + sorted((stage_dir / "_dropped").rglob("*.parquet"))
    pred: dict[str, str] = {}
    for f in files:
        if f.name.startswith("."):
            continue
        t = pq.read_table(f, columns=["id", "cluster_id"])
        pred.update(zip(t.column("id").to_pylist(), t.column("cluster_id").to_pylist()))
    return pred


def run_curate(label: str, files: list[Path], work: Path, args, exact: bool) -> tuple[dict, dict[str, str] | None]:
    """One `curate run` on a fresh hosted Ray; returns its figures (and id -> cluster_id if near-only)."""
    output = work / "out"
    shutil.rmtree(output, ignore_errors=True)  # a committed earlier run would be resumed, not rerun
    work.mkdir(parents=True, exist_ok=True)
    store = int(args.object_store_gb * 1024**3)
    yml = work / "pipeline.yaml"
    write_pipeline(yml, f"scale-{label}", files, output, args.threshold, exact, args.num_cpus, store)
    log_path = work / "curate.log"
    with HostedRay(args.num_cpus, store) as host:
        # taken after Ray started: ray.init turned token authentication on for this cluster
        # (RAY_AUTH_MODE=token), and a driver given an explicit address must be told so
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        cmd = [CURATE, "run", str(yml), "--address", host.address, "--no-progress"]
        with log_path.open("w") as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
            with Monitor(proc.pid, host, disk=[output, Path(host.temp_dir)]) as mon:
                rc = proc.wait()
            wall = time.perf_counter() - t0
        if rc != 0:
            tail = log_path.read_text()[-3000:]
            raise RuntimeError(f"curate run failed (exit {rc}); log {log_path}:\n{tail}")
        st = host.store_stats()
        spill = {"spilled_mb": round(st.spilled_bytes_total / MB, 1), "spilled_objects": int(st.spilled_objects_total),
                 "restored_mb": round(st.restored_bytes_total / MB, 1), "store_peak_mb": round(mon.store_peak / MB, 1),
                 "store_polls_failed": mon.store_errors, "disk_peak_mb": round(mon.disk_peak / MB, 1)}
        ray_start = host.start_s
    driver = mon.largest("driver")
    res = {
        "docs": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
        "files": len(files),
        "pipeline": ["exact_dedup", "minhash_dedup"] if exact else ["minhash_dedup"],
        "wall_s": round(wall + ray_start, 1),
        "ray_start_s": round(ray_start, 1),
        "cpu_s": mon.cpu_s(),  # driver + Ray workers + Ray daemons: a load-independent size of the work
        "driver_peak_mb": driver["rss_mb"],
        "driver_rss_timeline": mon.driver_timeline,
        "largest_worker": mon.largest("worker"),
        "ray_daemons_peak_mb": round(mon.daemons_peak / MB, 1),
        **spill,
        "stages": {s: stage_stats(output, s) for s in res_stages(exact)},
        "object_store_gb": args.object_store_gb,
        "num_cpus": args.num_cpus,
        "command": " ".join(cmd[:3]) + " --address ADDR --no-progress",
    }
    pred = None if exact else read_clusters(output / "minhash_dedup")
    if not args.keep:
        shutil.rmtree(output, ignore_errors=True)
    return res, pred


def res_stages(exact: bool) -> list[str]:
    return ["exact_dedup", "minhash_dedup"] if exact else ["minhash_dedup"]


# ---------------------------------------------------------------------------------------------
# datatrove and quality
# ---------------------------------------------------------------------------------------------


def texts_reader(files: list[Path]):
    def texts_of(ids: list[str]) -> list[str]:
        t = pads.dataset([str(f) for f in files], format="parquet").to_table(
            columns=["id", "text"], filter=pc.field("id").isin(pa.array(ids, pa.string())))
        text = dict(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
        return [text[i] for i in ids]

    return texts_of


def run_datatrove_same_files(files: list[Path], work: Path, args, bands: int, rows: int) -> tuple[dict, dict[str, str]]:
    from bench_minhash import ensure_datatrove_venv, run_datatrove

    ensure_datatrove_venv()  # created on first use, before anything is timed
    inputs = work / "dt-input"  # the same files, by hard link (a copy where links are refused)
    shutil.rmtree(inputs, ignore_errors=True)
    inputs.mkdir(parents=True)
    for f in files:
        try:
            os.link(f, inputs / f.name)
        except OSError:
            shutil.copy2(f, inputs / f.name)
    dt_work = work / "dt"
    shutil.rmtree(dt_work, ignore_errors=True)
    with Monitor(disk=[dt_work]) as mon:
        pred, stages, wall = run_datatrove(inputs, dt_work, len(files), args.num_cpus, bands, rows, "whitespace")
    res = {"wall_s": round(wall, 1), "cpu_s": mon.cpu_s(), "disk_peak_mb": round(mon.disk_peak / MB, 1), "stages_s": stages, "largest_process": mon.largest("other"),
           "word_tokenizer": "whitespace", "tasks": len(files), "workers": args.num_cpus}
    if not args.keep:
        shutil.rmtree(dt_work, ignore_errors=True)
    shutil.rmtree(inputs, ignore_errors=True)
    return res, pred


def earlier_datatrove_run(path: Path, corpus: Path, label: str, threshold: float, bands: int, rows: int,
                          num_cpus: int) -> dict:
    """datatrove's run from an earlier results file, when it was measured on the same corpus and size
    with the same settings; otherwise SystemExit saying what differs."""
    old = json.loads(Path(path).read_text())
    dt = old.get("datatrove") or {}
    want = {"corpus": str(corpus), "size": label, "threshold": threshold, "bands": bands, "rows": rows,
            "num_cpus": num_cpus}
    have = {"corpus": old.get("corpus"), "size": dt.get("size"), "threshold": dt.get("threshold"),
            "bands": dt.get("bands"), "rows": dt.get("rows"),
            "num_cpus": (dt.get("datatrove") or {}).get("num_cpus", (dt.get("curate") or {}).get("num_cpus"))}
    diff = {k: (have[k], v) for k, v in want.items() if have[k] != v}
    if diff or "datatrove" not in dt:
        raise SystemExit(f"{path}: no datatrove run with these settings to reuse (earlier, now: {diff or 'none recorded'})")
    return {**dt["datatrove"], "reused_from": str(path)}


def compare_with_datatrove(label: str, files: list[Path], truth: pa.Table, work: Path, args, out: dict, save) -> None:
    """Fills `out` (saved after each tool) with both tools' runs on `files` (datatrove's taken from
    --datatrove-from when given)."""
    from bench_minhash import evaluate

    from processors.minhash import MinHashDedup, MinHashDedupParams

    proc = MinHashDedup(MinHashDedupParams(threshold=args.threshold))
    out.update({"size": label, "threshold": args.threshold, "bands": proc.bands, "rows": proc.rows})
    print(f"== {label}: curate minhash_dedup alone ({proc.bands} x {proc.rows}) for the comparison", flush=True)
    ours, pred = run_curate(f"{label}-near", files, work / "near", args, exact=False)
    texts_of = texts_reader(files)
    ours["quality"] = evaluate(pred, None, truth, args.threshold, texts_of=texts_of)
    del pred
    out["curate"] = ours
    save()
    print(f"   {ours['wall_s']} s, P {ours['quality']['precision']} R {ours['quality']['recall']}", flush=True)
    if args.datatrove_from is not None:
        dt = earlier_datatrove_run(args.datatrove_from, Path(args.corpus_used), label, args.threshold, proc.bands,
                                   proc.rows, args.num_cpus)
        print(f"== {label}: datatrove MinHash taken from {args.datatrove_from} (measured there, same corpus and "
              "settings)", flush=True)
    else:
        print(f"== {label}: datatrove MinHash (whitespace words, {proc.bands} x {proc.rows}, {len(files)} tasks, "
              f"{args.num_cpus} workers)", flush=True)
        dt, dpred = run_datatrove_same_files(files, work, args, proc.bands, proc.rows)
        dt["quality"] = evaluate(dpred, None, truth, args.threshold, texts_of=texts_of)
        del dpred
    out["datatrove"] = dt
    out["curate_speedup"] = round(dt["wall_s"] / ours["wall_s"], 2)
    print(f"   {dt['wall_s']} s, P {dt['quality']['precision']} R {dt['quality']['recall']}", flush=True)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _mb(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def bars(results: dict) -> list[tuple[str, str, bool]]:
    """(what, figure, passed) for the issue's two memory bars."""
    runs = sorted(results.get("runs", {}).values(), key=lambda r: r["docs"])
    out = []
    for small, big in zip(runs, runs[1:]):
        ratio = big["docs"] / small["docs"]
        bar = WORKER_BAR ** math.log(ratio, 4)
        for kind in ("rss_mb", "private_mb"):
            a, b = small["largest_worker"][kind], big["largest_worker"][kind]
            if a and b:
                g = b / a
                out.append((f"largest worker {kind.removesuffix('_mb').replace('rss', 'RSS')}, "
                            f"{size_label(small['docs'])} -> {size_label(big['docs'])} (x{ratio:g} docs; bar <= x{bar:.2f})",
                            f"x{g:.2f} ({a:,.0f} -> {b:,.0f} MiB)", g <= bar))
    for r in runs:
        d = r["driver_peak_mb"]
        out.append((f"driver peak, {size_label(r['docs'])} (bar < 1 GB = 954 MiB)", f"{d:,.0f} MiB", d * MB < DRIVER_BAR))
    return out


def print_summary(results: dict) -> None:
    runs = sorted(results.get("runs", {}).values(), key=lambda r: r["docs"])
    if runs:
        r0 = runs[0]
        print(f"\nexact + near dedup (threshold {results['threshold']}), `curate run`, {r0['num_cpus']} CPUs, "
              f"object store {r0['object_store_gb']} GB; memory in MiB")
        rows = []
        for r in runs:
            ex, nr = r["stages"].get("exact_dedup", {}), r["stages"].get("minhash_dedup", {})
            w = r["largest_worker"]
            rows.append([size_label(r["docs"]), r["files"], r["wall_s"], r.get("cpu_s", "-"),
                         f"{ex.get('wall_s', '-')}", f"{nr.get('wall_s', '-')}",
                         f"{sum(ex.get('drops', {}).values()):,}", f"{sum(nr.get('drops', {}).values()):,}",
                         _mb(r["driver_peak_mb"]), _mb(w["rss_mb"]), _mb(w["private_mb"]), _mb(r["ray_daemons_peak_mb"]),
                         f"{r['spilled_mb']:,.0f} ({r['spilled_objects']:,})", f"{r['restored_mb']:,.0f}", _mb(r["store_peak_mb"]), _mb(r.get("disk_peak_mb"))])
        print_table(["docs", "files", "wall s", "CPU s", "exact s", "near s", "exact removed", "near removed", "driver",
                     "largest worker", "its private", "Ray daemons", "spilled MiB (objects)", "restored MiB",
                     "store peak", "disk peak"], rows)
        for what, fig, ok in bars(results):
            print(f"{'PASS' if ok else 'FAIL'}  {what}: {fig}")
        for r in runs:
            w = r["largest_worker"]
            print(f"largest worker at {size_label(r['docs'])} ran: {', '.join(w.get('ran', [])) or w['title']}")
    dt = results.get("datatrove")
    if dt and "datatrove" in dt:
        c, d = dt["curate"], dt["datatrove"]
        print(f"\nnear dedup of the same {size_label(c['docs'])} documents ({c['files']} files), threshold {dt['threshold']}, "
              f"{dt['bands']} x {dt['rows']}, {c['num_cpus']} CPUs; P / R: pairs against the planted duplicates")
        rows = [["curate minhash_dedup", "", c["wall_s"], c.get("cpu_s", "-"), "1.00x", c["quality"]["precision"], c["quality"]["recall"],
                 f"{c['quality']['predicted_pairs']:,}", f"{c['quality']['true_pairs']:,}",
                 _mb(max(c["driver_peak_mb"], c["largest_worker"]["rss_mb"] or 0))],
                ["datatrove 0.10.1 MinHash", "whitespace", d["wall_s"], d.get("cpu_s", "-"), f"{dt['curate_speedup']}x", d["quality"]["precision"],
                 d["quality"]["recall"], f"{d['quality']['predicted_pairs']:,}", f"{d['quality']['true_pairs']:,}",
                 _mb(d["largest_process"]["rss_mb"])]]
        print_table(["system", "word tokenizer", "wall s", "CPU s", "curate speed-up", "P", "R", "predicted pairs", "true pairs",
                     "largest process MiB"], rows)
        print(f"{'PASS' if dt['curate_speedup'] >= 1.5 else 'FAIL'}  curate at least 1.5x faster than datatrove: "
              f"{dt['curate_speedup']}x")
    if results.get("load_note"):
        print(results["load_note"])


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=[1_000_000, 4_000_000],
                    help="corpus sizes in documents (20k, 1M, ...); default 1M 4M")
    ap.add_argument("--datatrove", action="store_true", help="also compare with datatrove's MinHash on one size")
    ap.add_argument("--datatrove-size", type=parse_size, default=None,
                    help="the size for --datatrove (default 1M when among --sizes, else the smallest)")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--object-store-gb", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-docs", type=int, default=0,
                    help="documents per corpus file (default: 50,000, or a quarter of the smallest size)")
    ap.add_argument("--corpus", type=Path, default=None, help="corpus folder (default under benchmarks/results)")
    ap.add_argument("--build-workers", type=int, default=2, help="processes building the corpus")
    ap.add_argument("--work", type=Path, default=None, help="run outputs (default: a folder under /tmp, removed)")
    ap.add_argument("--keep", action="store_true", help="keep every run's output under --work")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--summary", action="store_true", help="print the tables of --out and exit")
    ap.add_argument("--datatrove-from", type=Path, default=None,
                    help="with --datatrove: take datatrove's run (wall time, P/R) from this earlier results "
                         "file instead of running it again; only when its corpus, size, threshold, bands x rows "
                         "and CPUs are these (datatrove's run does not depend on curate's code); curate's side "
                         "is run afresh")
    args = ap.parse_args(argv)
    if args.summary:
        print_summary(json.loads(args.out.read_text()))
        return 0

    sizes = sorted(set(args.sizes))
    chunk = args.chunk_docs or default_chunk_docs(sizes)
    bad = [s for s in sizes if s % chunk]
    if bad:
        ap.error(f"sizes {', '.join(map(size_label, bad))} are not whole numbers of --chunk-docs {chunk}")
    dt_size = args.datatrove_size or (1_000_000 if 1_000_000 in sizes else sizes[0])
    if args.datatrove and dt_size % chunk:
        ap.error(f"--datatrove-size {dt_size} is not a whole number of --chunk-docs {chunk}")
    corpus = args.corpus or CORPORA / f"seed{args.seed}-chunk{chunk}"
    args.corpus_used = corpus
    print(f"== corpus {corpus}: {size_label(max(sizes + [dt_size]))} documents in chunks of {chunk:,}", flush=True)
    t0 = time.time()
    meta = build_chunked(args.data, corpus, max(sizes + [dt_size]), chunk, seed=args.seed, workers=args.build_workers)
    print(f"   ready in {time.time() - t0:.0f} s", flush=True)

    work_root = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-", dir="/tmp"))
    results: dict = {"threshold": args.threshold, "corpus": str(corpus), "chunk_docs": chunk, "corpus_meta": meta,
                     "sizes": [size_label(s) for s in sizes], "runs": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(json.dumps(results, indent=2, default=str))
        os.replace(tmp, args.out)

    try:
        for n in sizes:
            label = size_label(n)
            files = chunk_files(corpus, n)["docs"]
            print(f"== {label}: exact + near dedup, {len(files)} files, {args.num_cpus} CPUs", flush=True)
            res, _ = run_curate(label, files, work_root / label, args, exact=True)
            results["runs"][label] = res
            save()
            print(f"   {res['wall_s']} s; driver {_mb(res['driver_peak_mb'])} MiB, largest worker "
                  f"{_mb(res['largest_worker']['rss_mb'])} MiB, spilled {res['spilled_mb']:,.0f} MiB", flush=True)
        if args.datatrove:
            cf = chunk_files(corpus, dt_size)
            truth = pa.concat_tables([pq.read_table(f) for f in cf["truth"]])
            results["datatrove"] = {}
            compare_with_datatrove(size_label(dt_size), cf["docs"], truth, work_root / f"{size_label(dt_size)}-dt",
                                   args, results["datatrove"], save)
            save()
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work_root, ignore_errors=True)
    print_summary(results)
    print(f"wrote {args.out}")
    return 0  # a missed bar is a FAIL line in the report, not a failed benchmark


if __name__ == "__main__":
    raise SystemExit(main())
