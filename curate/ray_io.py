"""Reading Parquet parts into Ray Data with memory per task that does not grow with the input.

`ray.data.read_parquet` packs several files into one read task, more of them as the input grows
(measured on Ray 2.60: 2 files in one task for 25k documents, 3 per task for 100k), and a task
holds what it read until it ends -- so the largest worker grew with the corpus. Here every task
reads one file and streams it in record batches of at most `batch_rows` rows, so a task's memory
is bounded by one row group plus one output block, whatever the number or size of the files.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 4096  # rows per record batch read from a file


def read_parquet_parts(paths: Sequence[str], columns: list[str] | None = None, batch_rows: int = BATCH_ROWS,
                       remote_args: dict[str, Any] | None = None):
    """A Ray Dataset of the rows of `paths` (local paths or filesystem URIs), one read task per
    file, in file order then row order. `remote_args`: the read tasks' num_cpus, memory,
    concurrency (a step's resources)."""
    import ray

    if not paths:
        raise ValueError("read_parquet_parts: no files")
    listing = ray.data.from_items([{"path": str(p)} for p in paths], override_num_blocks=len(paths))
    return listing.map_batches(
        _read_files,
        batch_size=1,  # one file per call: a file is the unit of work and of memory
        batch_format="pyarrow",
        fn_kwargs={"columns": columns, "batch_rows": batch_rows},
        **(remote_args or {}),
    )


def _open(path: str) -> pq.ParquetFile:
    if "://" in path:  # a filesystem URI (s3://, gs://, file://): pyarrow's filesystems
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        return pq.ParquetFile(filesystem.open_input_file(inner))
    return pq.ParquetFile(path)


def _read_files(listing: pa.Table, columns: list[str] | None, batch_rows: int) -> Iterator[pa.Table]:
    for path in listing.column("path").to_pylist():
        pf = _open(path)
        schema = pf.schema_arrow if columns is None else pa.schema([pf.schema_arrow.field(c) for c in columns])
        emitted = False
        for rb in pf.iter_batches(batch_size=batch_rows, columns=columns):
            emitted = True
            yield pa.Table.from_batches([rb], schema=schema)
        if not emitted:  # an empty file still contributes its schema
            yield schema.empty_table()


ROWS_PER_PARTITION = 25_000


def num_partitions(parts: Sequence[str]) -> int:
    """Hash partitions of a whole-dataset step over these Parquet parts: one per 25k rows, at least 8.

    Rows per partition are what a reducer holds (a join of shingle sets, a bucket's members), so
    they must not grow with the corpus: with one partition per 100k rows and a floor of 8, a
    reducer held 31k rows at 250k documents and 100k at 1M, and the largest worker's private
    memory grew 1.6x (benchmarks/bench_scale.py). Independent of the CPU count, so 1 and 2 CPUs
    give the same partitions and output parts. Read from the files' footers only.
    """
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    return max(8, -(-rows // ROWS_PER_PARTITION))


def unified_schema(paths: Sequence[str]) -> pa.Schema:
    """One schema for every part of a step's input, from their footers: parts of different sources
    differ in columns (the crawl's `warc_file`, absent from code), in nullability and in all-null
    columns. A step that writes one output part per input part conforms every part to it, so the
    output reads as one dataset whichever part `pyarrow.dataset` happens to open first."""
    schema = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in paths], promote_options="permissive")
    return pa.schema([f.with_nullable(True) for f in schema])
