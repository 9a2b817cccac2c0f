"""Runs a cluster-dedup step (exact or near duplicates) inside the segment runner.

`curate.cluster_dedup.identify` runs the committed phases (signatures, edges, components,
survivors) in a work dir beside the step's folder, `<output>/_work/<step>/`: a driver killed
mid-dedup resumes at the first phase without a commit marker, reusing the committed ones (the
work dir is keyed by the step's fingerprint, the parts and the settings; `--force` clears it).
Removal then streams every input part through a filter against that part's survivors file --
one task per part, writing one kept part (with any row-wise stages fused after the dedup
applied on the way) and, when the stage asks for a side output, one `_dropped/` part, both named
after the input part so a retry overwrites rather than duplicates. A part's task record
(`_tasks/<tid>.json`) is written last, so a rerun with the same fingerprint skips the parts
whose record and files exist: removal resumes part by part. The work dir is removed once every
part is written.

Row-wise stages before the step that do not checkpoint (`Segment.pre`) are fused into its reads
(`FusedReader`): every read of an input part -- signatures, the exact check's re-read of parts
holding linked documents, removal -- runs them on the same batches, so each read yields the same
rows in the same order (a document's uid is its position in what the reader yields). They are
counted from the removal read only, in each part's task record, so once per part.

Resources: the step's `num_cpus`, `memory` and `concurrency` (`Segment.resources`, from
`curate.resources.step_resources`, as for every kind of step) go to every map of every phase
and to the removal tasks.

Per-source stats: the documents in per source are counted by the signatures phase (its
`sources_in`); the kept ones per source (and their text bytes) come with each part's task
record, so a retried task is counted once. Dropped per source = in - kept.
"""
from __future__ import annotations

import json
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.chain import REMOVED_DIR, Chain, part_name, read_parquet_batches, task_id, task_marker
from curate.cluster_dedup import PartReader
from curate.config import StageSpec
from curate.io import TASKS_DIR, AtomicParquetWriter, conform, read_json, reset_folder, write_json_atomic
from curate.ray_io import unified_schema
from curate.stats import StageStats, source_counts, text_bytes

DROPPED_DIR = "_dropped"  # underscore: `pyarrow.dataset(stage_folder)` skips it
WORK_DIR = "_work"  # <output>/_work/<step>: the committed phases (underscore: datasets skip it)


def work_dir_of(out_dir: Path) -> Path:
    return Path(out_dir).parent / WORK_DIR / Path(out_dir).name


def removal_task_id(path: str) -> str:
    """A part's removal task: its kept part, `_dropped/` part and task record are named after it."""
    return task_id(f"dedup-removal:{path}")


class FusedReader(PartReader):
    """Reads an input part through the row-wise stages fused before the cluster step.

    The part is read in the chain's own batches (`read_parquet_batches`), whatever the caller's
    batch size, so the stages see the same batches on every read; a stage's output depends only
    on its input (row-wise stages are deterministic), so every read yields the same rows.
    Stats and removed rows (side outputs) are kept only where the caller passes `stats` (the
    removal read); the other reads drop them batch by batch."""

    def __init__(self, pre: list[StageSpec], schema: pa.Schema | None = None) -> None:
        super().__init__(schema)
        self.pre = list(pre)

    def _chain(self) -> Chain:
        # one chain per worker process, set up once (models load once), as file tasks do
        from curate.ray_tasks import _cached_pre_chain

        return _cached_pre_chain(self.pre)

    def _scratch(self) -> dict[str, StageStats]:
        return {s.name: StageStats(stage=s.name, kind=s.kind, tasks=1) for s in self.pre}

    def names(self, path: str) -> list[str]:
        chain = self._chain()
        names = chain.apply_body(super().schema(path).empty_table(), self._scratch()).column_names
        chain.side = {}
        return names

    def batches(self, path: str, columns: list[str] | None, batch_rows: int,
                stats: dict | None = None) -> Iterator[pa.Table]:
        chain = self._chain()
        chain.side = {}  # a failed earlier attempt in this process may have left rows
        counted = stats if stats is not None else self._scratch()
        for batch in read_parquet_batches(path):
            if self.unified is not None:  # before the stages: their output schema follows
                batch = conform(batch, self.unified)
            out = chain.apply_body(batch, counted)
            if stats is None:
                chain.side = {}
            if columns is not None:
                out = out.select(columns)
            for start in range(0, out.num_rows, max(1, batch_rows)):
                yield out.slice(start, batch_rows)

    def write_side(self, out_dir: Path, tid: str) -> None:
        """The removal read's removed rows, as a file step's (`<step>/_removed/<stage>/`)."""
        self._chain().write_side(out_dir, tid)

    def discard_side(self) -> None:
        self._chain().side = {}


def _reader(pre: list[StageSpec], schema: pa.Schema) -> PartReader:
    return FusedReader(pre, schema) if pre else PartReader(schema)


def _remove_parts(listing: pa.Table, pre: list[StageSpec], schema: pa.Schema, body: list[StageSpec], out_dir: str, survivors: str,
                  cluster_col: str, keep_dropped: bool) -> pa.Table:
    """Removal of one input part: its rows (through the fused `pre` stages) stream through the
    filter against the part's survivors file; kept rows go through the fused body into one part."""
    from curate.cluster_dedup import KEEP, PART, assign_part

    reader = _reader(pre, schema)
    records = []
    for path, idx in zip(listing.column("path").to_pylist(), listing.column(PART).to_pylist()):
        chain = Chain(None, body)
        chain.setup()
        pre_stats = {s.name: StageStats(stage=s.name, kind=s.kind, tasks=1) for s in pre}
        stats = {s.name: StageStats(stage=s.name, kind=s.kind, tasks=1) for s in body}
        tid = removal_task_id(path)
        kept_w = AtomicParquetWriter(Path(out_dir) / part_name(tid))
        drop_w = AtomicParquetWriter(Path(out_dir) / DROPPED_DIR / part_name(tid)) if keep_dropped else None
        by_source: Counter = Counter()
        nbytes = nbytes_in = rows = 0
        try:
            for t in assign_part(path, idx, survivors, cluster_col, reader=reader,
                                 stats=pre_stats if pre else None):
                keep = t.column(KEEP)
                nbytes_in += text_bytes(t)
                kept = t.filter(keep).drop_columns([KEEP])
                if drop_w is not None:
                    drop_w.write(t.filter(pc.invert(keep)).drop_columns([KEEP]))
                by_source.update(source_counts(kept))
                nbytes += text_bytes(kept)
                out = chain.apply_body(kept, stats) if body else kept
                kept_w.write(out)
                rows += out.num_rows
            wrote = kept_w.close()
            dropped = drop_w.close() if drop_w is not None else False
        except BaseException:
            kept_w.abort()
            if drop_w is not None:
                drop_w.abort()
            reader.discard_side()
            raise
        reader.write_side(Path(out_dir), tid)
        chain.write_side(Path(out_dir), tid)
        # Written last: a part with this record is done (its files are complete), and the fused
        # stages before and after the dedup are counted here, once per part.
        record = {"task": tid, "input": path, "part": part_name(tid) if wrote else None, "rows": rows,
                  "dropped_part": part_name(tid) if dropped else None,
                  "stats": {n: s.to_dict() for n, s in {**pre_stats, **stats}.items()},
                  # what the dedup itself kept from this part, before any fused stage after it
                  "dedup_out": {"by_source": dict(by_source), "bytes": nbytes, "bytes_in": nbytes_in}}
        write_json_atomic(Path(out_dir) / TASKS_DIR / f"{tid}.json", record)
        records.append(json.dumps(record))
    return pa.table({"record": pa.array(records, pa.string())})


def finished_removal(out_dir: Path, path: str) -> dict[str, Any] | None:
    """The task record of a part whose removal finished in an earlier run of the same step (the
    folder is kept only for the same fingerprint), or None when its record or a file it names is
    missing."""
    marker = task_marker(out_dir, removal_task_id(path))
    if not marker.is_file():
        return None
    rec = read_json(marker)
    if rec.get("part") and not (Path(out_dir) / rec["part"]).is_file():
        return None
    if rec.get("dropped_part") and not (Path(out_dir) / DROPPED_DIR / rec["dropped_part"]).is_file():
        return None
    return rec


def _remove_temporaries(out_dir: Path) -> None:
    """Temporaries of parts a killed task was writing (the runner cleans the step folder's own)."""
    for folder in [out_dir / DROPPED_DIR, *sorted((out_dir / REMOVED_DIR).glob("*"))]:
        for p in folder.glob(".part-*.tmp-*"):
            p.unlink(missing_ok=True)


def run_cluster_segment(seg, parts: list[str], out_dir: Path, workers: int, opts) -> list[dict[str, Any]]:
    with warnings.catch_warnings():
        # `concurrency` is the step's ceiling; a phase with fewer inputs than that (one edge
        # file, a few parts) is normal, and Ray Data's warning about it would reach the console
        warnings.filterwarnings("ignore", message="The maximum number of concurrent tasks", category=UserWarning)
        return _run_cluster_segment(seg, parts, out_dir, workers, opts)


def _run_cluster_segment(seg, parts: list[str], out_dir: Path, workers: int, opts) -> list[dict[str, Any]]:
    import ray

    from curate.cluster_dedup import PART, identify
    from curate.ray_io import num_partitions

    if not parts:
        return []
    out_dir = Path(out_dir)
    head = seg.head
    proc = head.build()
    # the step's resources, as every kind of step gets them (the runner sets them before running)
    remote = seg.resources.map_args() if getattr(seg, "resources", None) is not None else {}
    pre = list(getattr(seg, "pre", None) or [])
    work = work_dir_of(out_dir)
    if opts.force or not opts.resume:
        reset_folder(work)
    running = out_dir / "_RUNNING"  # the runner's marker: the step's fingerprint keys the work dir
    step_key = read_json(running).get("fingerprint") if running.is_file() else None

    def on_phase(msg: str) -> None:
        if opts.progress:
            print(f"[{head.name}] {msg}", file=sys.stderr, flush=True)

    # Parts an interrupted run of the same step finished (the runner keeps the folder only for
    # the same fingerprint): their records stand, their removal is not redone.
    done: dict[str, dict[str, Any]] = {}
    if opts.resume and not opts.force:
        done = {p: rec for p in parts if (rec := finished_removal(out_dir, p)) is not None}
    head_tid = task_id(f"cluster:{head.name}")
    if len(done) == len(parts) and task_marker(out_dir, head_tid).is_file():
        on_phase(f"removal: all {len(parts):,} parts written earlier, reused")
        shutil.rmtree(work, ignore_errors=True)
        return [done[p] for p in parts] + [read_json(task_marker(out_dir, head_tid))]

    schema = unified_schema(parts)  # every output part in one schema, whatever its source
    ident = identify(parts, proc, work_dir=work, num_partitions=num_partitions(parts), on_phase=on_phase,
                     step_key=step_key, reader=_reader(pre, schema), remote_args=remote)
    info = ident.stats(proc.drop_reason)
    todo = [{"path": p, PART: i} for i, p in enumerate(parts) if p not in done]
    records = [done[p] for p in parts if p in done]
    if todo:
        listing = ray.data.from_items(todo, override_num_blocks=len(todo))
        records += [json.loads(r["record"]) for r in listing.map_batches(
            _remove_parts, batch_size=1, batch_format="pyarrow",
            fn_kwargs=dict(pre=pre, schema=schema, body=seg.body, out_dir=str(out_dir), survivors=str(ident.survivors_dir),
                           cluster_col=proc.cluster_column, keep_dropped=proc.side_output),
            **remote,
        ).iter_rows()]
    _remove_temporaries(out_dir)
    reused = f" ({len(done):,} of them written earlier, reused)" if done else ""
    on_phase(f"removal: {sum(r['rows'] for r in records):,} documents written from {len(parts):,} parts{reused}")
    rows_in = int(info["counters"].get("docs", 0))
    body_in = sum(r["stats"][seg.body[0].name]["docs_in"] for r in records) if seg.body else None
    kept_rows = body_in if body_in is not None else sum(r["rows"] for r in records)
    st = StageStats(stage=head.name, kind=head.kind, docs_in=rows_in, docs_out=kept_rows, tasks=1)
    st.drops.update(info.get("drops", {}))
    st.counters.update(info.get("counters", {}))
    st.bytes_out = sum(r["dedup_out"]["bytes"] for r in records)
    st.bytes_in = sum(r["dedup_out"].get("bytes_in", 0) for r in records)  # text into the dedup, after `pre`
    sources_in = info.get("sources_in") or {}
    if sources_in:
        kept_by: Counter = Counter()
        for r in records:
            kept_by.update(r["dedup_out"]["by_source"])
        reason = next(iter(info.get("drops") or {}), "dropped")
        for src, n in sorted(sources_in.items()):
            st.count_source(src, n, kept_by[src], {reason: n - kept_by[src]} if n > kept_by[src] else {},
                            applied=True)  # near-dedup runs across every source
    head_record = {"task": head_tid, "input": "cluster dedup", "part": None,
                   "rows": 0, "stats": {head.name: st.to_dict()}}
    write_json_atomic(out_dir / TASKS_DIR / f"{head_tid}.json", head_record)
    shutil.rmtree(work, ignore_errors=True)  # every part is written: the phases are not needed again
    return records + [head_record]
