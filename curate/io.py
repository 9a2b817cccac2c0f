"""Atomic output files and commit markers.

Every file appears complete or not at all: write to a temporary name in the same folder, flush and
fsync, then rename (atomic on POSIX). A stage's commit marker is written last, after every part and
its stats, so a folder with a marker is always whole.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

COMMIT_MARKER = "_COMMITTED"
# Underscore-prefixed like every non-data file, so `pyarrow.dataset(stage_folder)` loads the folder.
STATS_FILE = "_stats.json"
TASKS_DIR = "_tasks"
# The run summary at the output root: underscore-prefixed too, so `pyarrow.dataset(OUTPUT)` reads
# the documents of every stage folder and skips it (a plain summary.json made the reader fail).
SUMMARY_FILE = "_summary.json"
OLD_SUMMARY_FILE = "summary.json"  # what older runs wrote: removed when a run rewrites the summary
PARQUET_OPTS = dict(compression="zstd", compression_level=3, use_dictionary=["source", "domain",
                                                                            "lang", "warc_file"])


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def check_inputs(uris: list[str], parquet: bool, what: str, columns: dict[str, str] | None = None) -> None:
    """Refuse unusable local inputs before any work starts (and before Ray starts): Parquet files
    whose footer cannot be read (empty, cut short, not Parquet; ~1 ms each) or that lack a column
    a stage needs (`columns`: column -> the stage needing it), or a run whose every input is
    empty. One empty file among others is the reader's counted skip, not an error."""
    from curate.errors import UserError, one_line
    from processors.uris import is_remote

    local = [u for u in uris if not is_remote(u)]
    paths = [u[len("file://"):] if u.startswith("file://") else u for u in local]
    if paths and len(paths) == len(uris) and all(os.path.isfile(p) and os.path.getsize(p) == 0 for p in paths):
        raise UserError(f"{what}: {paths[0]}{f' and {len(paths) - 1} more' if len(paths) > 1 else ''}: "
                        "empty file (0 bytes): nothing to read")
    if parquet:
        for p in paths:
            try:
                names = pq.read_metadata(p).schema.to_arrow_schema().names
            except (pa.ArrowException, OSError) as e:
                raise UserError(f"{p}: not a readable Parquet file ({one_line(str(e))})") from None
            missing = [c for c in (columns or {}) if c not in names]
            if missing:
                raise UserError(f"{p}: no column {missing[0]!r}, which stage {columns[missing[0]]!r} needs "
                                f"(columns: {', '.join(names)})")


class AtomicParquetWriter:
    """Streams batches into one Parquet file that only appears, complete, on `close()`."""

    def __init__(self, path: Path, schema: pa.Schema | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _tmp_name(self.path)
        self.schema = schema
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return  # an empty batch must not fix the file's schema
        if self._writer is None:
            self.schema = self.schema or table.schema
            opts = dict(PARQUET_OPTS)
            opts["use_dictionary"] = [c for c in opts["use_dictionary"] if c in self.schema.names]
            self._writer = pq.ParquetWriter(self.tmp, self.schema, **opts)
        if table.schema != self.schema:
            table = conform(table, self.schema)
        self._writer.write_table(table, row_group_size=10_000)
        self.rows += table.num_rows

    def close(self) -> bool:
        """Publish the file; returns False (and writes nothing) if no batch was ever written."""
        if self._writer is None:
            return False
        self._writer.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)
        return True

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - we are already failing; keep the first error
                pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicParquetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Fit a batch to `schema` (a file's, or a step's unified input schema): its columns in that
    order and those types, missing ones as nulls; a column the schema lacks is an error (it would
    be lost silently otherwise)."""
    extra = [n for n in table.column_names if n not in schema.names]
    if extra:
        raise ValueError(f"batch has columns {extra} that earlier batches of this part lacked")
    cols = [table[f.name].cast(f.type) if f.name in table.column_names
            else pa.nulls(table.num_rows, type=f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def is_committed(folder: Path) -> bool:
    return (Path(folder) / COMMIT_MARKER).is_file()


def commit(folder: Path, info: dict[str, Any]) -> None:
    write_json_atomic(Path(folder) / COMMIT_MARKER, info)


def read_commit(folder: Path) -> dict[str, Any]:
    return read_json(Path(folder) / COMMIT_MARKER)


def reset_folder(folder: Path) -> None:
    """Remove a stage folder entirely (used by --force and for stale uncommitted group stages)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)


def parquet_parts(folder: Path) -> list[str]:
    return sorted(str(p) for p in Path(folder).glob("part-*.parquet"))


def remove_stale_parts(folder: Path, keep: Iterable[str]) -> int:
    """Delete parts (and temporaries) not produced by this run's committed tasks."""
    keep = set(keep)
    removed = 0
    for p in Path(folder).glob("part-*.parquet"):
        if p.name not in keep:
            p.unlink()
            removed += 1
    for p in Path(folder).glob(".part-*.tmp-*"):
        p.unlink(missing_ok=True)
    return removed
