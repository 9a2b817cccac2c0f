"""Runs a validated pipeline on Ray: segment by segment, committed, resumable.

For each segment the runner (1) skips it if its folder is committed with the same fingerprint,
(2) otherwise runs its tasks on Ray Data, skipping tasks whose marker shows they finished before a
crash, (3) writes `_stats.json` for each of its stages and (4) writes the commit marker last.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from curate import fingerprint
from curate.chain import done_tasks, load_task_records, task_id, task_key
from curate.config import ConfigError, PipelineConfig
from curate.io import (
    COMMIT_MARKER, OLD_SUMMARY_FILE, STATS_FILE, SUMMARY_FILE, TASKS_DIR, check_inputs, commit, is_committed, parquet_parts, read_commit, read_json, remove_stale_parts, reset_folder,
    write_json_atomic,
)
from curate.plan_graph import Segment, build_segments
from curate.resources import StepResources, step_resources
from curate.ray_session import ensure_ray, quiet_ray_data
from curate.prefilter_rules import with_prefilter_rules
from curate.stats import StageStats, merge
from processors.base import ProcessorError, Source
from processors.uris import DATASET_IGNORE, expand_all

log = logging.getLogger("curate")
RUNNING_MARKER = "_RUNNING"


class StageFailed(RuntimeError):
    """A step failed; the message names it and the root cause (e.g. a full or read-only disk).

    Nothing of that step is committed, and earlier committed steps stay: a rerun resumes there.
    """


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(nxt, BaseException):
            break
        exc = nxt
    return exc


@dataclass
class RunOptions:
    resume: bool = True  # skip committed segments (and finished tasks of an interrupted one)
    force: bool = False  # redo every segment from scratch
    address: str | None = None  # Ray cluster; overrides the YAML's ray.address
    progress: bool = True
    workers: int | None = None  # parallel workers per stage; default: the cluster's CPUs


@dataclass
class RunResult:
    output: Path
    final_dir: Path
    stats: list[StageStats] = field(default_factory=list)
    wall_s: float = 0.0


# ---------------------------------------------------------------- Ray lifecycle
@contextmanager
def ray_context(cfg: PipelineConfig, opts: RunOptions) -> Iterator[None]:
    """Join a cluster (address given), reuse an initialised Ray, or start an embedded one."""
    started = ensure_ray(opts.address or cfg.ray.address, cfg.ray.num_cpus, cfg.ray.object_store_memory)
    import ray

    quiet_ray_data()  # our progress is per task and counts documents; our summary says what matters
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _resources(cfg: PipelineConfig, opts: RunOptions, seg: Segment) -> StepResources:
    import ray

    return step_resources(seg.stages, opts.workers or cfg.ray.workers, ray.cluster_resources().get("CPU", 1))


def _remote_args(seg: Segment) -> dict[str, Any]:
    return seg.resources.task_args()


# ---------------------------------------------------------------- progress
class Progress:
    """Tasks done and documents written; a live bar on a terminal, a line a minute otherwise."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label, self.total, self.done, self.docs = label, total, 0, 0
        self.enabled = enabled
        self._bar = None
        self._last = time.monotonic()
        if enabled and sys.stderr.isatty():
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                                       TextColumn, TimeElapsedColumn, TimeRemainingColumn)
            self._bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("{task.fields[docs]:,} docs"),
                                     TimeElapsedColumn(), TimeRemainingColumn(), transient=True)
            self._task = self._bar.add_task(label, total=total, docs=0)
            self._bar.start()

    def update(self, docs: int) -> None:
        self.done += 1
        self.docs += docs
        if self._bar is not None:
            self._bar.update(self._task, advance=1, docs=self.docs)
        elif self.enabled and (time.monotonic() - self._last > 60 or self.done == self.total):
            self._last = time.monotonic()
            print(f"[{self.label}] {self.done}/{self.total} tasks, {self.docs:,} docs",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# ---------------------------------------------------------------- segments
def _settings_digest(seg: Segment, cfg: PipelineConfig, state_digests: dict[str, str] | None = None) -> str:
    """What the user chose for this step: its stages' settings, the seed, driver-built state."""
    payload: dict[str, Any] = {"stages": [s.model_dump(mode="json") for s in seg.stages], "seed": cfg.seed}
    states = {s.name: state_digests[s.name] for s in seg.stages if s.name in (state_digests or {})}
    if states:  # driver-built state (e.g. evaluation n-grams): a change of its files reruns the step
        payload["states"] = states
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _fingerprint(seg: Segment, upstream: str, cfg: PipelineConfig,
                 state_digests: dict[str, str] | None = None) -> str:
    """Settings, what the step reads (`upstream`: the previous step's fingerprint, or the inputs'
    identities for the first) and the code version of each of its stages."""
    payload = {
        "settings": _settings_digest(seg, cfg, state_digests),
        "upstream": upstream,
        "code": {s.name: fingerprint.stage_code_version(s.kind) for s in seg.stages},
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _prepare_folder(out_dir: Path, fingerprint: str, opts: RunOptions, mode: str) -> None:
    """Start clean unless an interrupted run with the same fingerprint left finished tasks."""
    running = out_dir / RUNNING_MARKER
    same = running.is_file() and read_json(running).get("fingerprint") == fingerprint
    # Cluster steps resume part by part in removal (their phases resume in their own work dir, keyed by
    # this fingerprint); unit steps restart: their intermediate phases are not committed.
    if opts.force or not opts.resume or not same or mode == "units":
        reset_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(running, {"fingerprint": fingerprint, "pid": os.getpid()})


def _collect(ds, progress: Progress) -> list[dict[str, Any]]:
    recs = []
    for row in ds.iter_rows():
        rec = json.loads(row["record"])
        recs.append(rec)
        progress.update(rec.get("rows", 0))
    return recs


Task = tuple[str | None, str]  # (reading stage name or None for Parquet input, URI)
GROUP_MAX_FILES = 500  # small local inputs share a task (and an output part) up to these limits
GROUP_MAX_BYTES = 32 << 20
SMALL_FILE_BYTES = 2 << 20  # only files below this are grouped: a WARC is always a task of its own


def group_tasks(tasks: list[Task]) -> list[tuple[str | None, list[str]]]:
    """Consecutive small local inputs of one reader become one task; the grouping depends only
    on the input listing, so a rerun after a crash forms the same tasks (and part names)."""
    groups: list[tuple[str | None, list[str]]] = []
    size = 0
    open_group = False  # whether the last group still takes small files
    for reader, uri in tasks:
        try:
            nbytes = os.path.getsize(uri) if "://" not in uri else SMALL_FILE_BYTES
        except OSError:
            nbytes = 0
        small = nbytes < SMALL_FILE_BYTES
        last = groups[-1] if groups else None
        # Only a reader's own inputs are grouped: Parquet parts of a stage may differ in columns
        # (one part per source), and one output part must have one schema.
        if (small and open_group and reader is not None and last is not None and last[0] == reader
                and len(last[1]) < GROUP_MAX_FILES and size + nbytes <= GROUP_MAX_BYTES):
            last[1].append(uri)
            size += nbytes
        else:
            groups.append((reader, [uri]))
            size = nbytes
            open_group = small
    return groups


def _run_file_segment(seg: Segment, tasks: list[Task], out_dir: Path, workers: int,
                      opts: RunOptions) -> list[dict[str, Any]]:
    import ray
    from curate.ray_tasks import FileTaskWorker

    groups = group_tasks(tasks)
    keys = [task_key(r, us) for r, us in groups]
    done = done_tasks(out_dir, keys) if opts.resume else set()
    todo = [g for g, k in zip(groups, keys) if k not in done]
    progress = Progress(seg.name, len(groups), opts.progress)
    progress.done = len(groups) - len(todo)
    try:
        if todo:
            ds = ray.data.from_items([{"reader": r, "uris": json.dumps(us)} for r, us in todo],
                                     override_num_blocks=len(todo))
            ds = ds.map_batches(
                FileTaskWorker,
                fn_constructor_kwargs=dict(readers=seg.readers, body=seg.body, out_dir=str(out_dir)),
                batch_size=1, batch_format="pyarrow",
                # One task in flight per actor: tasks are whole files, and Ray Data's default of
                # several queued per actor let the first actor up take every file while the
                # other idled (measured: 2 CPUs no faster than 1).
                compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo)),
                                                   max_tasks_in_flight_per_actor=1),
                **_remote_args(seg),
            )
            _collect(ds, progress)
    finally:
        progress.close()
    wanted = {task_id(k) for k in keys}
    return [r for r in load_task_records(out_dir) if r["task"] in wanted]


def _run_segment(cfg: PipelineConfig, opts: RunOptions, seg: Segment, tasks: list,
                 out_dir: Path, prev_dir: Path | None = None) -> list[dict[str, Any]]:
    # Every kind of step gets the same resources (num_cpus, memory, concurrency/workers): the
    # file tasks here, unit and cluster dedup and jobs through `seg.resources`.
    seg.resources = _resources(cfg, opts, seg)
    workers = seg.resources.concurrency
    if seg.mode in ("source", "parquet"):
        return _run_file_segment(seg, tasks, out_dir, workers, opts)
    if seg.mode == "job":
        return _run_job_segment(cfg, seg, prev_dir, out_dir)
    if seg.mode == "units":
        from curate.unit_runner import run_unit_segment
        return run_unit_segment(seg, [u for _, u in tasks], out_dir, workers, opts)
    from curate.cluster_runner import run_cluster_segment
    return run_cluster_segment(seg, [u for _, u in tasks], out_dir, workers, opts)


def _run_job_segment(cfg: PipelineConfig, seg: Segment, prev_dir: Path | None,
                     out_dir: Path) -> list[dict[str, Any]]:
    if prev_dir is None:
        raise ConfigError(f"step {seg.name!r} needs an earlier step's output")
    job = seg.head.build()
    job.resources = seg.resources
    result = job.run(prev_dir, out_dir, cfg.seed)
    st = StageStats(stage=seg.head.name, kind=seg.head.kind, tasks=1,
                    docs_in=int(result.get("docs_in", 0)), docs_out=int(result.get("docs_out", 0)))
    st.drops.update(result.get("drops", {}))
    st.counters.update(result.get("counters", {}))
    if seg.body:
        raise ConfigError(f"step {seg.name!r}: nothing may be fused after a job")
    return [{"task": task_id(f"job:{seg.head.name}"), "input": str(prev_dir), "part": None,
             "rows": 0, "stats": {seg.head.name: st.to_dict()}}]


def _stage_dir(output: Path, name: str) -> Path:
    return output / name


def _write_stage_stats(output: Path, seg: Segment, stats: dict[str, StageStats], wall: float) -> None:
    for spec in seg.stages:
        s = stats.get(spec.name) or StageStats(stage=spec.name, kind=spec.kind)
        s.wall_s = wall
        stats[spec.name] = s
        write_json_atomic(_stage_dir(output, spec.name) / STATS_FILE, s.to_dict())


def _ship_states(cfg: PipelineConfig, processors: dict[str, Any]) -> dict[str, str]:
    """Build each processor's driver-side state once and put it in the object store; the stage
    spec carries the reference to every worker. Returns a digest per stage for fingerprints."""
    import pickle

    import ray

    digests = {}
    for spec in cfg.stages:
        state = processors[spec.name].prepare()
        if state is not None:
            digests[spec.name] = hashlib.sha1(pickle.dumps(state)).hexdigest()
            spec._state = ray.put(state)
    return digests


def _input_columns(cfg: PipelineConfig, processors: dict[str, Any]) -> dict[str, str]:
    """Columns Parquet inputs must hold: those a stage requires and no earlier stage provides
    (column -> the first stage needing it)."""
    provided: set[str] = set()
    needed: dict[str, str] = {}
    for spec in cfg.stages:
        proc = processors[spec.name]
        for column in proc.requires:
            if column not in provided:
                needed.setdefault(column, spec.name)
        provided |= set(proc.provides)
    return needed


def run_pipeline(cfg: PipelineConfig, opts: RunOptions | None = None,
                 source: str = "<pipeline>") -> RunResult:
    opts = opts or RunOptions()
    t_start = time.monotonic()
    cfg = with_prefilter_rules(cfg)  # before fingerprints: later filters' rules shape the source
    segments = build_segments(cfg, source)
    output = Path(cfg.output)
    # Fail loudly before any work: every processor loads what it needs once on the driver.
    processors = {}
    for spec in cfg.stages:
        proc = spec.build()
        try:
            proc.check()
        except ProcessorError as e:
            raise ProcessorError(f"stage {spec.name!r} ({spec.kind}): {e}") from None
        processors[spec.name] = proc
    tasks: list[Task] = []
    readers = [spec for spec in cfg.stages if isinstance(processors[spec.name], Source)]
    for spec in readers:
        patterns = spec.inputs if spec.inputs is not None else cfg.inputs
        found = processors[spec.name].list_inputs(patterns)
        if not found:
            raise ConfigError(f"{source}: stage {spec.name!r} has no input files ({patterns})")
        tasks.extend((spec.name, u) for u in found)
    if not readers:
        tasks = [(None, u) for u in expand_all(cfg.inputs, suffixes=(".parquet",), ignore_prefixes=DATASET_IGNORE)]
    if not tasks:
        raise ConfigError(f"{source}: no input files (inputs: {cfg.inputs})")
    check_inputs([u for _, u in tasks], parquet=not readers, what=source,  # before Ray starts
                 columns=None if readers else _input_columns(cfg, processors))

    all_stats: list[StageStats] = []
    # The first step's upstream: every input's URI and identity (size and mtime, or ETag), so a
    # file rewritten in place reruns the steps that read it.
    upstream = hashlib.sha1(json.dumps([tasks, fingerprint.inputs_digest(u for _, u in tasks)]).encode()).hexdigest()
    prev_dir: Path | None = None
    with ray_context(cfg, opts):
        state_digests = _ship_states(cfg, processors)
        for seg in segments:
            out_dir = _stage_dir(output, seg.name)
            fp = _fingerprint(seg, upstream, cfg, state_digests)
            settings = _settings_digest(seg, cfg, state_digests)
            reuse, stale = False, None  # stale: why a committed step is redone
            if opts.resume and not opts.force and is_committed(out_dir):
                info = read_commit(out_dir)
                if info.get("fingerprint") == fp:
                    reuse = True
                elif info.get("settings") not in (None, settings):
                    raise ConfigError(
                        f"stage {seg.name!r} in {output} was committed by a run with other settings; "
                        f"rerun with --force to redo it, or choose another output")
                else:  # same settings: an input file or the code of a stage changed
                    stale = ("its inputs or the code of its stages changed since it was committed"
                             if info.get("settings") else "it was committed by an older curate")
            if reuse:
                for spec in seg.stages:
                    s = StageStats.from_dict(read_json(_stage_dir(output, spec.name) / STATS_FILE))
                    s.counters["skipped_resumed"] = 1
                    all_stats.append(s)
                log.info("stage %s: committed, skipped", seg.name)
            else:
                if stale:
                    log.warning("step %s: %s; running it again", seg.name, stale)
                    if opts.progress:
                        print(f"[{seg.name}] {stale}: running it again", file=sys.stderr, flush=True)
                    (out_dir / COMMIT_MARKER).unlink()
                t0 = time.monotonic()
                try:
                    _prepare_folder(out_dir, fp, opts, seg.mode)
                    records = _run_segment(cfg, opts, seg, tasks, out_dir, prev_dir)
                except (ConfigError, ProcessorError):
                    raise
                except Exception as e:  # noqa: BLE001 - re-raised with the step and root cause
                    cause = _root_cause(e)
                    raise StageFailed(
                        f"step {seg.name!r} failed, nothing of it was committed "
                        f"(committed steps are kept; rerun to resume): "
                        f"{type(cause).__name__}: {cause}") from e
                stats = merge(r["stats"] for r in records)
                _write_stage_stats(output, seg, stats, time.monotonic() - t0)
                parts = [r["part"] for r in records if r.get("part")]
                if seg.mode != "job":
                    remove_stale_parts(out_dir, parts)
                rows = sum(r["rows"] for r in records)
                commit(out_dir, {
                    "fingerprint": fp, "settings": settings, "stages": [s.name for s in seg.stages],
                    "upstream_dir": prev_dir.name if prev_dir is not None else None, "parts": len(parts),
                    "mode": seg.mode,
                    "rows": rows, "tasks": len(records),
                    "finished_at": datetime.now(timezone.utc).isoformat(),
                })
                (out_dir / RUNNING_MARKER).unlink(missing_ok=True)
                all_stats.extend(stats[s.name] for s in seg.stages)
            upstream = fp
            prev_dir = out_dir
            tasks = [(None, p) for p in parquet_parts(out_dir)]
    result = RunResult(output=output, final_dir=_stage_dir(output, segments[-1].name),
                       stats=all_stats, wall_s=time.monotonic() - t_start)
    (output / OLD_SUMMARY_FILE).unlink(missing_ok=True)  # an older run's: it would break pyarrow.dataset(OUTPUT)
    write_json_atomic(output / SUMMARY_FILE, {
        "pipeline": cfg.name, "final": str(result.final_dir), "wall_s": round(result.wall_s, 3),
        "stages": [s.to_dict() for s in all_stats],
    })
    return result
