"""The Ray side of a segment: callable classes Ray Data runs in an actor pool.

Each actor builds its processors and calls `setup()` once (so models load once per worker), then
handles many tasks. Every call returns small JSON task records, never documents: documents go
straight from the worker to Parquet, and the driver only sums stats.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.chain import Chain, task_id
from curate.config import StageSpec
from curate.io import TASKS_DIR, write_json_atomic
from curate.stats import StageStats


def _records(recs: list[dict]) -> pa.Table:
    return pa.table({"record": pa.array([json.dumps(r) for r in recs], type=pa.string())})


class FileTaskWorker:
    """Runs the whole segment for each input it is handed (one output part per input).

    A segment may start with several reading stages (the crawl, a JSONL corpus, a code folder);
    each task names its reader, and every reader's chain is set up once, here.
    """

    def __init__(self, readers: list[StageSpec], body: list[StageSpec], out_dir: str) -> None:
        self.chains = {r.name: Chain(r, body) for r in readers} if readers else {None: Chain(None, body)}
        for chain in self.chains.values():
            chain.setup()
        self.out_dir = Path(out_dir)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _records([self.chains[r].run_file_task(json.loads(u), self.out_dir)
                         for r, u in zip(batch["reader"].to_pylist(), batch["uris"].to_pylist())])


# Steps around a shuffle run as plain tasks, not actor pools: Ray Data starts every actor pool
# of a plan up front, and actors holding all CPUs would starve the shuffle's own tasks (a
# deadlock seen with two pools on two CPUs). Ray reuses worker processes, so a per-process cache
# still loads each processor once per worker.
_CHAINS: dict[str, Chain] = {}


def _cached_chain(head: StageSpec | None, body: list[StageSpec]) -> Chain:
    # the driver-built state (an object reference) is part of the key: a later run with the same
    # parameters may have built it from changed files
    specs = ([head] if head is not None else []) + list(body)
    key = json.dumps(([] if head is not None else ["pre"]) + [s.model_dump(mode="json") for s in specs]
                     + [str(s._state) for s in specs], sort_keys=True)
    chain = _CHAINS.get(key)
    if chain is None:
        chain = Chain(head, body)
        chain.setup()
        _CHAINS[key] = chain
    return chain


GROUP_PARTITION = "_group_partition"  # the engine's partition of a row in a group step


def group_task_id(stage: str, partition: int, partitions: int) -> str:
    """A group step's task is its partition: the same name in every run over the same input, so
    a finished partition's marker tells a rerun to skip it and a retry overwrites its part."""
    return task_id(f"group:{stage}:{partition}/{partitions}")


def partition_index(column: pa.ChunkedArray | pa.Array, partitions: int) -> np.ndarray:
    """Stable partition of each key (0..partitions-1): the same in every process and run."""
    import xxhash

    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(col)
    if pa.types.is_fixed_size_binary(col.type) and col.type.byte_width >= 8 and col.null_count == 0:
        # hash digests already: their first 8 bytes are uniform
        data = np.frombuffer(col.buffers()[1], dtype=np.uint8)
        w = col.type.byte_width
        first = data[col.offset * w:(col.offset + n) * w].reshape(n, w)[:, :8].copy()
        h = first.view(np.uint64).ravel()
    elif pa.types.is_integer(col.type) and col.null_count == 0:
        h = col.to_numpy().astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # mix: keys may be small
        h ^= h >> np.uint64(29)
    else:
        vals = col.to_pylist()
        h = np.fromiter((xxhash.xxh3_64_intdigest(v if isinstance(v, bytes) else repr(v).encode())
                         for v in vals), dtype=np.uint64, count=n)
    return (h % np.uint64(partitions)).astype(np.int64)


PRE_DIR = "_pre"  # <step>/_tasks/_pre/<task>.json: stats of the row-wise stages fused before the head


def pre_task_id(path: str) -> str:
    return task_id(f"pre:{path}")


def _cached_pre_chain(pre: list[StageSpec]) -> Chain:
    return _cached_chain(None, pre)


def unified_schema(paths: list[str]) -> pa.Schema:
    """One schema for every part of a step's input, from their footers: parts of different sources
    differ in columns (the crawl's `warc_file`), in nullability and in all-null columns, and Ray's
    shuffle concatenates blocks only of one schema. Every field nullable, no metadata."""
    import pyarrow.parquet as pq

    schema = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in paths], promote_options="permissive")
    return pa.schema([f.with_nullable(True) for f in schema])


def conform(batch: pa.Table, schema: pa.Schema) -> pa.Table:
    """`batch` with the columns of `schema`, in its order and types (missing ones as nulls)."""
    cols = [batch.column(f.name).cast(f.type) if f.name in batch.column_names else pa.nulls(batch.num_rows, f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def key_parts(listing: pa.Table, head: StageSpec, pre: list[StageSpec], partitions: int, skip: list[int],
              out_dir: str, schema: pa.Schema):
    """Reads each input part (one per call, streamed by record batch), runs the row-wise stages
    fused before the head (`pre`), adds the Grouper's key and the row's engine partition, and
    drops rows of finished partitions (`skip`), so a resumed step shuffles only what is left.
    Every part is read into `schema` (`unified_schema`), so all blocks of the shuffle agree.

    The fused stages' stats go to a marker named after the part, written once the part is read:
    a retried or resumed read overwrites it, so they are counted once."""
    from curate.chain import read_parquet_batches

    head_proc = _cached_chain(head, []).head
    chain = _cached_pre_chain(pre) if pre else None
    skip_arr = np.asarray(skip, np.int64)
    for path in listing.column("path").to_pylist():
        stats = {s.name: StageStats(stage=s.name, kind=s.kind, tasks=1) for s in pre}
        if chain is not None:
            chain.side = {}  # a failed earlier attempt in this process may have left rows
        for batch in read_parquet_batches(path):
            batch = conform(batch, schema)  # before the fused stages: their output schema follows
            batch = chain.apply_body(batch, stats) if chain is not None else batch
            if batch.num_rows == 0:
                continue
            batch = head_proc.add_key(batch)
            part = partition_index(batch.column(head_proc.key_column), partitions)
            batch = batch.append_column(GROUP_PARTITION, pa.array(part, pa.int64()))
            if skip:
                batch = batch.filter(pa.array(~np.isin(part, skip_arr)))
            if batch.num_rows:
                yield batch
        if chain is not None:
            tid = pre_task_id(path)
            chain.write_side(Path(out_dir), tid)
            write_json_atomic(Path(out_dir) / TASKS_DIR / PRE_DIR / f"{tid}.json",
                              {"task": tid, "input": path, "part": None, "rows": 0,
                               "stats": {n: st.to_dict() for n, st in stats.items()}})


def reduce_partition(partition: pa.Table, head: StageSpec, body: list[StageSpec],
                     out_dir: str, partitions: int) -> pa.Table:
    """Reduces the engine partitions in one hash partition of Ray's (all rows of a key are in the
    same engine partition), each as its own task: one part and one marker per engine partition."""
    chain = _cached_chain(head, body)
    if partition.num_rows == 0:
        return _records([])
    part = partition.column(GROUP_PARTITION).to_numpy()
    table = partition.drop_columns([GROUP_PARTITION])
    records = []
    for p in np.unique(part):
        rows = table.filter(pa.array(part == p))
        records.append(chain.run_group_task(rows, Path(out_dir), group_task_id(head.name, int(p), partitions)))
    return _records(records)
