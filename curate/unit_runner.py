"""Runs a unit-dedup step (`processors.base.UnitDedup`: paragraph dedup) inside the segment runner.

Only keys and positions are shuffled, never documents:

1. keys     one task per input part reads it (streamed by record batch) and emits a narrow row
            per unit: (key, document uid, part index, row, unit index). The uid (xxh3 of `id`)
            orders documents for `keep_first` independently of the partitioning.
2. count    hash shuffle on the key; each partition sorts its rows, counts the distinct
            documents per key, and emits (part, row, unit, documents) for every unit whose key
            is in more than `max_documents` documents (all, or all but the first document's).
3. apply    the parts and the removal rows meet by part index (a co-partitioned join of the
            small part listing with the removal rows, `curate.cluster_dedup.copartition`): the
            task of a part reads it where it lies, hands it with its removals to `remove`, runs
            the row-wise stages fused after the step, and writes one output part, its side
            output and its task record -- as every other step does.

No process holds every key: the count is per partition, and a partition holds the keys that
hash to it. Per-source stats are counted per part in step 3.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.chain import Chain, part_name, task_id
from curate.io import TASKS_DIR, AtomicParquetWriter, write_json_atomic
from curate.ray_io import _open, num_partitions
from curate.stats import StageStats, text_bytes
from processors.base import BatchResult

KEY, UID, PART, ROW, UNIT, DOCS = "_u_key", "_u_uid", "_u_part", "_u_row", "_u_unit", "_u_docs"
COUNTS_DIR = f"{TASKS_DIR}/_counts"  # per-partition counters of the count step (not task records)
_KW = {"batch_format": "pyarrow", "zero_copy_batch": True}
READ_ROWS = 4096
_UNIT_SCHEMA = pa.schema([(KEY, pa.uint64()), (UID, pa.int64()), (PART, pa.int64()), (ROW, pa.int64()),
                          (UNIT, pa.int32())])
_REMOVAL_SCHEMA = pa.schema([(PART, pa.int64()), (ROW, pa.int64()), (UNIT, pa.int32()), (DOCS, pa.int64())])
_LISTING_SCHEMA = pa.schema([(PART, pa.int64()), ("path", pa.string())])


def _unit_rows(listing: pa.Table, head) -> pa.Table:
    from curate.cluster_dedup import node_ids

    proc = head.build()
    proc.setup()
    out = []
    for part, path in zip(listing.column(PART).to_pylist(), listing.column("path").to_pylist()):
        base = 0
        pf = _open(path)
        columns = ["id", "text"] + (["source"] if head.sources is not None and "source" in pf.schema_arrow.names else [])
        for rb in pf.iter_batches(batch_size=READ_ROWS, columns=columns):
            batch = pa.Table.from_batches([rb])
            rows, units, keys = proc.units(batch)
            if "source" in columns:  # `sources:` only these sources' documents are counted and cut
                chosen = np.asarray(pc.fill_null(pc.is_in(batch.column("source"), pa.array(head.sources)), False))
                sel = chosen[rows]
                rows, units, keys = rows[sel], units[sel], keys[sel]
            uid = node_ids(batch.column("id"))
            out.append(pa.table({
                KEY: pa.array(np.asarray(keys, np.uint64)), UID: pa.array(uid[rows], pa.int64()),
                PART: pa.array(np.full(rows.size, part, np.int64)), ROW: pa.array(rows + base, pa.int64()),
                UNIT: pa.array(np.asarray(units, np.int32)),
            }, schema=_UNIT_SCHEMA))
            base += batch.num_rows
    return pa.concat_tables(out) if out else _UNIT_SCHEMA.empty_table()


def _count(part: pa.Table, max_documents: int, keep_first: bool, out_dir: str) -> pa.Table:
    if part.num_rows == 0:
        return _REMOVAL_SCHEMA.empty_table()
    key = part.column(KEY).to_numpy()
    uid = part.column(UID).to_numpy()
    order = np.lexsort((uid, key))
    key, uid = key[order], uid[order]
    new_doc = np.concatenate(([True], (key[1:] != key[:-1]) | (uid[1:] != uid[:-1])))
    new_key = np.concatenate(([True], key[1:] != key[:-1]))
    key_id = np.cumsum(new_key) - 1
    docs_per_key = np.bincount(key_id, weights=new_doc).astype(np.int64)
    docs = docs_per_key[key_id]
    remove = docs > max_documents
    if keep_first:  # the key's first document (smallest uid) keeps its units
        first_uid = uid[np.flatnonzero(new_key)][key_id]
        remove &= uid != first_uid
    # The partition's counters travel in a file named after its content (its first key and size):
    # a retried partition overwrites the same file, so the driver sums each partition once.
    counts = {"units": int(key.size), "distinct_keys": int(new_key.sum()),
              "repeated_keys": int(np.count_nonzero(docs_per_key > max_documents))}
    tid = task_id(f"units-count:{int(key[0])}:{int(uid[0])}:{key.size}")
    write_json_atomic(Path(out_dir) / COUNTS_DIR / f"{tid}.json", counts)
    sel = order[remove]
    return pa.table({PART: part.column(PART).take(pa.array(sel)), ROW: part.column(ROW).take(pa.array(sel)),
                     UNIT: part.column(UNIT).take(pa.array(sel)), DOCS: pa.array(docs[remove], pa.int64())},
                    schema=_REMOVAL_SCHEMA)


def _remove_per_source(proc, only: list[str] | None, table: pa.Table, rows: np.ndarray, units: np.ndarray,
                       docs: np.ndarray, st: StageStats) -> BatchResult:
    """`remove` once per source of the part (rows kept in order), so drops and headline counters
    are known per source; sources outside `only` were never counted and pass untouched."""
    if "source" not in table.column_names:
        return proc.remove(table, rows, units, docs)
    source = np.asarray(pc.fill_null(table.column("source"), "").to_pylist(), dtype=object)
    outs, side, drops, counters = [], [], Counter(), Counter()
    for src in sorted(set(source.tolist())):
        idx = np.flatnonzero(source == src)
        part = table.take(pa.array(idx))
        mine = np.isin(rows, idx)
        res = proc.remove(part, np.searchsorted(idx, rows[mine]), units[mine], docs[mine])
        applied = only is None or src in only
        st.count_source(src, part.num_rows, res.table.num_rows, res.drops, applied,
                        {k: res.counters[k] for k in proc.summary_counters if res.counters.get(k)})
        outs.append(res.table)
        drops.update(res.drops)
        counters.update(res.counters)
        if res.side is not None:
            side.append(res.side)
    return BatchResult(pa.concat_tables(outs, promote_options="permissive") if outs else table, drops, counters,
                       pa.concat_tables(side) if side else None)


def _apply(listing: pa.Table, removals: pa.Table, head, body: list, out_dir: str) -> pa.Table:
    proc = head.build()
    proc.setup()
    chain = Chain(None, body)
    chain.setup()
    records = []
    r_part = removals.column(PART).to_numpy() if removals.num_rows else np.zeros(0, np.int64)
    for part, path in zip(listing.column(PART).to_pylist(), listing.column("path").to_pylist()):
        sel = np.flatnonzero(r_part == part)
        table = _open(path).read()
        st = StageStats(stage=head.name, kind=head.kind, tasks=1, docs_in=table.num_rows, bytes_in=text_bytes(table))
        result = _remove_per_source(proc, head.sources, table, removals.column(ROW).to_numpy()[sel],
                                    removals.column(UNIT).to_numpy()[sel], removals.column(DOCS).to_numpy()[sel], st)
        st.docs_out, st.bytes_out = result.table.num_rows, text_bytes(result.table)
        st.drops.update(result.drops)
        st.counters.update(result.counters)
        stats = {head.name: st, **{s.name: StageStats(stage=s.name, kind=s.kind, tasks=1) for s in body}}
        out = chain.apply_body(result.table, stats) if body else result.table
        tid = task_id(f"units:{head.name}:{path}")
        written = None
        if out.num_rows:
            with AtomicParquetWriter(Path(out_dir) / part_name(tid)) as w:
                w.write(out)
            written = part_name(tid)
        if result.side is not None and result.side.num_rows:
            chain.side.setdefault(head.name, []).append(result.side)
        chain.write_side(Path(out_dir), tid)
        record = {"task": tid, "input": path, "part": written, "rows": out.num_rows,
                  "stats": {n: s.to_dict() for n, s in stats.items()}}
        write_json_atomic(Path(out_dir) / TASKS_DIR / f"{tid}.json", record)
        records.append(json.dumps(record))
    return pa.table({"record": pa.array(records, pa.string())})


def run_unit_segment(seg, parts: list[str], out_dir: Path, workers: int, opts) -> list[dict[str, Any]]:
    import ray

    from curate.cluster_dedup import copartition

    if not parts:
        return []
    head = seg.head
    proc = head.build()
    P = num_partitions(parts)
    res = seg.resources.map_args() if getattr(seg, "resources", None) is not None else {}
    listing = ray.data.from_items([{PART: i, "path": p} for i, p in enumerate(parts)],
                                  override_num_blocks=len(parts))
    removals = (
        listing.map_batches(_unit_rows, batch_size=1, fn_kwargs={"head": head}, batch_format="pyarrow", **res)
        .repartition(P, keys=[KEY])
        .map_batches(_count, batch_size=None, fn_kwargs={"max_documents": proc.max_documents,
                                                         "keep_first": proc.keep_first, "out_dir": str(out_dir)}, **_KW, **res)
    )
    applied = copartition(
        listing, removals, left_key=PART, right_key=PART, left_schema=_LISTING_SCHEMA,
        right_schema=_REMOVAL_SCHEMA, num_partitions=min(P, len(parts)), fn=_apply,
        fn_kwargs={"head": head, "body": seg.body, "out_dir": str(out_dir)},
    )
    records = [json.loads(r["record"]) for r in applied.iter_rows()]
    counts: Counter = Counter()
    for f in sorted((Path(out_dir) / COUNTS_DIR).glob("*.json")):
        counts.update(json.loads(f.read_text()))
    if opts.progress:
        print(f"[{head.name}] {counts.get('units', 0):,} units, {counts.get('distinct_keys', 0):,} distinct, "
              f"{counts.get('repeated_keys', 0):,} in more than {proc.max_documents} documents",
              file=sys.stderr, flush=True)
    # the engine's counters ride on one record, so they are summed once
    extra = {"task": task_id(f"units:{head.name}:counts"), "input": "unit counts", "part": None, "rows": 0,
             "stats": {head.name: StageStats(stage=head.name, kind=head.kind, counters=Counter(counts)).to_dict()}}
    write_json_atomic(Path(out_dir) / TASKS_DIR / f"{extra['task']}.json", extra)
    return records + [extra]
