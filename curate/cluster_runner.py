"""Runs a cluster-dedup step (near duplicates) inside the segment runner.

`curate.cluster_dedup.identify` runs the committed phases (signatures, edges, components,
survivors) in a work dir beside the step's folder, `<output>/_work/<step>/`: a driver killed
mid-dedup resumes at the first phase without a commit marker, reusing the committed ones (the
work dir is keyed by the step's fingerprint, the parts and the settings; `--force` clears it).
Removal then streams every input part through a filter against that part's survivors file --
one task per part, writing one kept part (with any row-wise stages fused after the dedup
applied on the way) and, when the stage asks for a side output, one `_dropped/` part, both named
after the input part so a retry overwrites rather than duplicates. The work dir is removed once
every part is written.

Per-source stats: the documents in per source are counted by the signatures phase (its
`sources_in`); the kept ones per source (and their text bytes) come with each part's task
record, so a retried task is counted once. Dropped per source = in - kept.
"""
from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.chain import Chain, part_name, task_id
from curate.io import TASKS_DIR, AtomicParquetWriter, read_json, reset_folder, write_json_atomic
from curate.stats import StageStats, source_counts, text_bytes

DROPPED_DIR = "_dropped"  # underscore: `pyarrow.dataset(stage_folder)` skips it
WORK_DIR = "_work"  # <output>/_work/<step>: the committed phases (underscore: datasets skip it)


def work_dir_of(out_dir: Path) -> Path:
    return Path(out_dir).parent / WORK_DIR / Path(out_dir).name


def _remove_parts(listing: pa.Table, body: list, out_dir: str, survivors: str, cluster_col: str,
                  keep_dropped: bool) -> pa.Table:
    """Removal of one input part: its rows stream through the filter against the part's
    survivors file; kept rows go through the fused body and into one part."""
    from curate.cluster_dedup import KEEP, PART, assign_part

    records = []
    for path, idx in zip(listing.column("path").to_pylist(), listing.column(PART).to_pylist()):
        chain = Chain(None, body)
        chain.setup()
        stats = {s.name: StageStats(stage=s.name, kind=s.kind, tasks=1) for s in body}
        tid = task_id(f"dedup-removal:{path}")
        kept_w = AtomicParquetWriter(Path(out_dir) / part_name(tid))
        drop_w = AtomicParquetWriter(Path(out_dir) / DROPPED_DIR / part_name(tid)) if keep_dropped else None
        by_source: Counter = Counter()
        nbytes = rows = 0
        try:
            for t in assign_part(path, idx, survivors, cluster_col):
                keep = t.column(KEEP)
                kept = t.filter(keep).drop_columns([KEEP])
                if drop_w is not None:
                    drop_w.write(t.filter(pc.invert(keep)).drop_columns([KEEP]))
                by_source.update(source_counts(kept))
                nbytes += text_bytes(kept)
                out = chain.apply_body(kept, stats) if body else kept
                kept_w.write(out)
                rows += out.num_rows
            wrote = kept_w.close()
            if drop_w is not None:
                drop_w.close()
        except BaseException:
            kept_w.abort()
            if drop_w is not None:
                drop_w.abort()
            raise
        chain.write_side(Path(out_dir), tid)
        record = {"task": tid, "input": path, "part": part_name(tid) if wrote else None, "rows": rows,
                  "stats": {n: s.to_dict() for n, s in stats.items()},
                  # what the dedup itself kept from this part, before any fused stage after it
                  "dedup_out": {"by_source": dict(by_source), "bytes": nbytes}}
        write_json_atomic(Path(out_dir) / TASKS_DIR / f"{tid}.json", record)
        records.append(json.dumps(record))
    return pa.table({"record": pa.array(records, pa.string())})


def run_cluster_segment(seg, parts: list[str], out_dir: Path, workers: int, opts) -> list[dict[str, Any]]:
    import ray

    from curate.cluster_dedup import PART, identify
    from curate.ray_io import num_partitions

    if not parts:
        return []
    head = seg.head
    proc = head.build()
    work = work_dir_of(out_dir)
    if opts.force or not opts.resume:
        reset_folder(work)
    running = Path(out_dir) / "_RUNNING"  # the runner's marker: the step's fingerprint keys the work dir
    step_key = read_json(running).get("fingerprint") if running.is_file() else None

    def on_phase(msg: str) -> None:
        if opts.progress:
            print(f"[{head.name}] {msg}", file=sys.stderr, flush=True)

    ident = identify(parts, proc, work_dir=work, num_partitions=num_partitions(parts), on_phase=on_phase,
                     step_key=step_key)
    info = ident.stats(proc.drop_reason)
    listing = ray.data.from_items([{"path": p, PART: i} for i, p in enumerate(parts)], override_num_blocks=len(parts))
    records = [json.loads(r["record"]) for r in listing.map_batches(
        _remove_parts, batch_size=1, batch_format="pyarrow",
        fn_kwargs=dict(body=seg.body, out_dir=str(out_dir), survivors=str(ident.survivors_dir),
                       cluster_col=proc.cluster_column, keep_dropped=proc.side_output),
    ).iter_rows()]
    on_phase(f"removal: {sum(r['rows'] for r in records):,} documents written from {len(parts):,} parts")
    rows_in = int(info["counters"].get("docs", 0))
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
    shutil.rmtree(work, ignore_errors=True)  # every part is written: the phases are not needed again
    return records + [head_record]
