"""Runs a cluster-dedup step (near duplicates) inside the segment runner.

`curate.cluster_dedup` does the distributed work and hands back the surviving documents as a
Ray Dataset; here they are written as parts (one per block, named after its content so a retry
overwrites rather than duplicates), with any row-wise stages fused after the dedup applied on the
way, and the removed documents go to `_dropped/` when the stage asks for a side output.

Per-source stats: the documents in per source are counted where the dedup reads them (its
`sources_in`); the kept ones per source (and their text bytes) come with each written block's
task record, so a retried block is counted once. Dropped per source = in - kept.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from curate.chain import Chain, part_name, task_id
from curate.io import TASKS_DIR, AtomicParquetWriter, write_json_atomic
from curate.stats import StageStats, source_counts, text_bytes

DROPPED_DIR = "_dropped"  # underscore: `pyarrow.dataset(stage_folder)` skips it


def _write_block(block: pa.Table, body: list, out_dir: str, prefix: str) -> pa.Table:
    chain = Chain(None, body)
    chain.setup()
    stats = {s.name: StageStats(stage=s.name, kind=s.kind, tasks=1) for s in body}
    ids = sorted(block["id"].to_pylist()) if block.num_rows else []
    tid = task_id(f"{prefix}:{ids[0] if ids else 'empty'}:{len(ids)}")
    table = chain.apply_body(block, stats) if body else block
    folder = Path(out_dir) if prefix == "kept" else Path(out_dir) / DROPPED_DIR
    part = None
    if table.num_rows:
        with AtomicParquetWriter(folder / part_name(tid)) as w:
            w.write(table)
        part = part_name(tid)
    chain.write_side(out_dir, tid)
    record = {"task": tid, "input": f"{prefix} block of {len(ids)} rows",
              "part": part if prefix == "kept" else None, "rows": table.num_rows if prefix == "kept" else 0,
              "stats": {n: s.to_dict() for n, s in stats.items()},
              # what the dedup itself kept in this block, before any fused stage after it
              "dedup_out": {"by_source": source_counts(block), "bytes": text_bytes(block)} if prefix == "kept" else None}
    write_json_atomic(Path(out_dir) / TASKS_DIR / f"{tid}.json", record)
    return pa.table({"record": [json.dumps(record)]})


def run_cluster_segment(seg, parts: list[str], out_dir: Path, workers: int, opts) -> list[dict[str, Any]]:
    import ray

    from curate.cluster_dedup import run_cluster_dedup
    from curate.ray_io import num_partitions, read_parquet_parts

    if not parts:
        return []
    head = seg.head
    proc = head.build()
    ds = read_parquet_parts(parts)  # one file per read task: worker memory independent of the input size

    def on_phase(msg: str) -> None:
        if opts.progress:
            print(f"[{head.name}] {msg}", file=sys.stderr, flush=True)

    kept, info = run_cluster_dedup(ds, proc, num_partitions=num_partitions(parts), on_phase=on_phase)
    dropped = info.pop("dropped", None)
    rows_in = int(info.get("counters", {}).get("docs", 0))
    records = []
    for row in kept.map_batches(_write_block, fn_kwargs=dict(body=seg.body, out_dir=str(out_dir),
                                                             prefix="kept"),
                                batch_size=None, batch_format="pyarrow").iter_rows():
        records.append(json.loads(row["record"]))
    if dropped is not None:
        for _ in dropped.map_batches(_write_block, fn_kwargs=dict(body=[], out_dir=str(out_dir),
                                                                  prefix="dropped"),
                                     batch_size=None, batch_format="pyarrow").iter_rows():
            pass
    body_in = sum(r["stats"][seg.body[0].name]["docs_in"] for r in records) if seg.body else None
    kept_rows = body_in if body_in is not None else sum(r["rows"] for r in records)
    st = StageStats(stage=head.name, kind=head.kind, docs_in=rows_in, docs_out=kept_rows, tasks=1)
    st.drops.update(info.get("drops", {}))
    st.counters.update(info.get("counters", {}))
    st.bytes_out = sum(r["dedup_out"]["bytes"] for r in records)
    sources_in = info.get("sources_in") or {}
    if sources_in:
        kept_by: Counter = Counter()
        for r in records:
            kept_by.update(r["dedup_out"]["by_source"])
        reason = next(iter(info.get("drops") or {}), "dropped")
        for src, n in sorted(sources_in.items()):
            st.count_source(src, n, kept_by[src], {reason: n - kept_by[src]} if n > kept_by[src] else {},
                            applied=True)  # near-dedup runs across every source
    head_record = {"task": task_id(f"cluster:{head.name}"), "input": "cluster dedup", "part": None,
                   "rows": 0, "stats": {head.name: st.to_dict()}}
    write_json_atomic(Path(out_dir) / TASKS_DIR / f"{head_record['task']}.json", head_record)
    return records + [head_record]

