"""Runs a chain of processors over batches and writes one output part per task (no Ray here).

The runner hands each worker a list of tasks; a task is one input (a WARC URI, a Parquet part,
or a hash partition). The worker pushes the task's batches through the row-wise processors of
the segment, streams kept rows into one atomic Parquet part, then writes the task's stats as a
marker. A task with a marker is done: reruns skip it, retries overwrite the same part name, so no
document is ever written twice.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.config import StageSpec
from curate.io import TASKS_DIR, AtomicParquetWriter, write_json_atomic
from curate.stats import StageStats, text_bytes
from processors.base import BatchResult, Processor, Source

READ_BATCH_ROWS = 2_000
REMOVED_DIR = "_removed"  # side outputs of row-wise stages: <segment folder>/_removed/<stage>/


def task_id(uri: str) -> str:
    """Stable short name for an input: its output part and marker are named after it."""
    return hashlib.sha1(uri.encode("utf-8")).hexdigest()[:20]


def task_key(reader: str | None, uris: list[str]) -> str:
    """A task is keyed by its reading stage and inputs: two sources may read one file."""
    key = "\x00".join(uris)
    return key if reader is None else f"{reader}\x00{key}"


def part_name(tid: str) -> str:
    return f"part-{tid}.parquet"


def task_marker(out_dir: Path, tid: str) -> Path:
    return Path(out_dir) / TASKS_DIR / f"{tid}.json"


class MissingInput(Exception):
    """An input listed at planning time is gone at read time: counted, not fatal."""


def read_parquet_batches(uri: str, rows: int = READ_BATCH_ROWS) -> Iterator[pa.Table]:
    """Batches of a Parquet part, local or remote (fsspec), with bounded memory."""
    import fsspec

    try:
        f = fsspec.open(uri, "rb").open()
    except FileNotFoundError as e:
        raise MissingInput(uri) from e
    with f:
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(batch_size=rows):
            yield pa.Table.from_batches([batch])


def _split_by_source(table: pa.Table) -> list[tuple[str, pa.Table]]:
    if "source" not in table.column_names or table.num_rows == 0:
        return [("", table)]
    col = table["source"]
    values = pc.unique(col).to_pylist()
    if len(values) == 1:
        return [(values[0] or "", table)]
    return [(v or "", table.filter(pc.fill_null(pc.equal(col, v), False) if v is not None
                                    else pc.is_null(col))) for v in sorted(values, key=str)]


def _with_columns_of(proc: Processor, part: pa.Table) -> pa.Table:
    """Passed-through rows get the columns the processor would have added, as nulls, so every
    batch of a part has one schema (the processor on zero rows tells the names and types)."""
    schema = proc.process(part.slice(0, 0)).table.schema
    for f in schema:
        if f.name not in part.column_names:
            part = part.append_column(f, pa.nulls(part.num_rows, type=f.type))
    return part


def apply_per_source(proc: Processor, only: list[str] | None, table: pa.Table,
                     st: StageStats, side: list[pa.Table] | None = None) -> pa.Table:
    """Run one row-wise processor, separately per source so drops are known per source.

    Rows of sources outside `only` pass through untouched (e.g. web heuristics skip code); columns
    the processor adds are null for them.
    """
    st.docs_in += table.num_rows
    st.bytes_in += text_bytes(table)
    outs = []
    for source, part in _split_by_source(table):
        if only is not None and source not in only:
            st.count_source(source, part.num_rows, part.num_rows, {}, applied=False)
            outs.append(_with_columns_of(proc, part))
            continue
        t0 = time.perf_counter()
        result: BatchResult = proc.process(part)
        st.busy_s += time.perf_counter() - t0
        st.drops.update(result.drops)
        st.counters.update(result.counters)
        st.count_source(source, part.num_rows, result.table.num_rows, result.drops,
                        counters={k: result.counters[k] for k in proc.summary_counters if result.counters.get(k)})
        outs.append(result.table)
        if side is not None and result.side is not None and result.side.num_rows:
            side.append(result.side)
    out = outs[0] if len(outs) == 1 else pa.concat_tables(outs, promote_options="permissive")
    st.docs_out += out.num_rows
    st.bytes_out += text_bytes(out)
    return out


class Chain:
    """A head (Source, or plain Parquet) followed by row-wise processors."""

    def __init__(self, head: StageSpec | None, body: list[StageSpec]) -> None:
        self.head_spec = head
        self.body_specs = body
        self.head: Processor | None = head.build() if head else None
        self.body: list[Processor] = [s.build() for s in body]
        self.side: dict[str, list[pa.Table]] = {}  # stage name -> removed rows of the current task

    def setup(self) -> None:
        for p in ([self.head] if self.head else []) + self.body:
            p.setup()

    def _new_stats(self) -> dict[str, StageStats]:
        specs = ([self.head_spec] if self.head_spec else []) + self.body_specs
        return {s.name: StageStats(stage=s.name, kind=s.kind, tasks=1) for s in specs}

    def _head_batches(self, uri: str, stats: dict[str, StageStats]) -> Iterator[pa.Table]:
        if isinstance(self.head, Source):
            st = stats[self.head_spec.name]
            t0 = time.perf_counter()
            for result in self.head.read(uri):
                st.busy_s += time.perf_counter() - t0
                st.docs_out += result.table.num_rows
                st.docs_in += result.table.num_rows + sum(result.drops.values())
                st.bytes_out += text_bytes(result.table)
                st.drops.update(result.drops)
                st.counters.update(result.counters)
                yield result.table
                t0 = time.perf_counter()
            st.busy_s += time.perf_counter() - t0
        else:
            yield from read_parquet_batches(uri)

    def apply_body(self, table: pa.Table, stats: dict[str, StageStats]) -> pa.Table:
        for spec, proc in zip(self.body_specs, self.body):
            table = apply_per_source(proc, spec.sources, table, stats[spec.name],
                                     self.side.setdefault(spec.name, []))
        return table

    def write_side(self, out_dir: Path, tid: str) -> None:
        """Write (and forget) the task's side outputs, one part per stage that kept any; before
        the task's marker, so a finished task always has them and a retry overwrites them."""
        for name, tables in self.side.items():
            if tables:
                with AtomicParquetWriter(Path(out_dir) / REMOVED_DIR / name / part_name(tid)) as w:
                    w.write(pa.concat_tables(tables, promote_options="permissive"))
        self.side = {}

    def run_file_task(self, uris: list[str], out_dir: Path) -> dict[str, Any]:
        """Read a group of inputs, run the chain, write one part and its marker.

        Small inputs (files of a code folder) are grouped so a part holds many of them; a WARC is
        a group of one.
        """
        stats = self._new_stats()
        key = task_key(self.head_spec.name if self.head_spec else None, uris)
        tid = task_id(key)
        writer = AtomicParquetWriter(Path(out_dir) / part_name(tid))
        first = self.body_specs[0].name if self.body_specs else None
        try:
            for uri in uris:
                try:
                    for table in self._head_batches(uri, stats):
                        writer.write(self.apply_body(table, stats))
                except MissingInput:
                    name = self.head_spec.name if self.head_spec else first
                    if name is not None:
                        stats[name].drops["input_missing"] += 1
        except BaseException:
            writer.abort()
            self.side = {}
            raise
        wrote = writer.close()
        self.write_side(out_dir, tid)
        label = uris[0] if len(uris) == 1 else f"{uris[0]} (+{len(uris) - 1} more)"
        return self._finish(stats, out_dir, tid, label, part_name(tid) if wrote else None, writer.rows)

    def _finish(self, stats: dict[str, StageStats], out_dir: Path, tid: str, uri: str,
                part: str | None, rows: int) -> dict[str, Any]:
        record = {
            "task": tid, "input": uri, "part": part, "rows": rows,
            "stats": {name: s.to_dict() for name, s in stats.items()},
        }
        write_json_atomic(task_marker(out_dir, tid), record)
        return record


def load_task_records(out_dir: Path) -> list[dict[str, Any]]:
    folder = Path(out_dir) / TASKS_DIR
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def done_tasks(out_dir: Path, keys: Iterable[str]) -> set[str]:
    """Task keys whose task already finished (marker present) in an uncommitted stage folder."""
    return {k for k in keys if task_marker(out_dir, task_id(k)).is_file()}
