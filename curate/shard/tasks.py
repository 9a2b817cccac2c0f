"""The work of each sharding step on one input, as plain functions (no Ray here).

The engine (engine.py) runs them on Ray workers; tests can call them directly. Each writes its
output atomically and, last, a small JSON marker holding its result, so a rerun skips it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import formats as fmt
from . import mixer
from .manifest import shard_name
from .pack import BucketPlan, documents_bucket, pack_bucket, sort_rows
from processors.tokenizer import Tokenizer
from .writer import (BODY, HEAD, SCATTER_SCHEMA, ScatterWriter, TokenCacheWriter, bucket_refs, list_array,
                     list_lengths, list_values, np_array, read_blobs, read_token_cache, write_marker,
                     write_shard)


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except Exception:  # noqa: BLE001
        return 0.0


# ---------------------------------------------------------------- tokenise
def tokenize_task(tok: Tokenizer, task: dict[str, Any], *, text_column: str, id_column: str | None,
                  batch_docs: int, mix_seed: int, compression: str | None) -> dict[str, Any]:
    """Tokenise rows [row_start, row_end) of one pool file (documents whose epoch-0 position is in
    [u_lo, u_hi) when the pool is sampled) into one token-cache file."""
    t0 = time.perf_counter()
    path = task["file"]
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    if text_column not in names:
        raise ValueError(f"{path}: no {text_column!r} column (columns: {names})")
    has_id = bool(id_column) and id_column in names
    cols = [text_column] + ([id_column] if has_id else [])
    meta = pf.metadata
    starts = np.zeros(meta.num_row_groups + 1, dtype=np.int64)
    starts[1:] = np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    lo_row, hi_row = task["row_start"], task["row_end"]
    groups = [i for i in range(meta.num_row_groups) if starts[i] < hi_row and starts[i + 1] > lo_row]
    ranged = task["u_lo"] > 0.0 or task["u_hi"] < 1.0
    writer = TokenCacheWriter(Path(task["out"]), compression)
    stats = {"documents_read": 0, "documents_empty": 0, "documents_outside_sample": 0, "documents": 0,
             "tokens": 0, "chars": 0, "encode_s": 0.0}
    try:
        row = int(starts[groups[0]]) if groups else hi_row
        for batch in (pf.iter_batches(batch_size=batch_docs, row_groups=groups, columns=cols) if groups else []):
            n = batch.num_rows
            lo, hi = max(lo_row, row), min(hi_row, row + n)
            if hi > lo:
                b = batch.slice(lo - row, hi - lo)
                texts = b.column(0).to_pylist()
                ids = b.column(1).to_pylist() if has_id else None
                if ids is not None and any(i is None for i in ids):
                    ids = [i if i is not None else f"\x00#{task['file_index']}:{lo + j}" for j, i in enumerate(ids)]
                h = mixer.doc_hashes(task["pool"], ids, task["file_index"], lo, len(texts))
                ref = mixer.doc_refs(task["file_index"], lo, len(texts))
                keep = np.fromiter((bool(t) for t in texts), dtype=bool, count=len(texts))
                stats["documents_read"] += len(texts)
                stats["documents_empty"] += int((~keep).sum())
                if ranged:
                    u0 = mixer.epoch_positions(h, 0, mix_seed, task["pool"], 0.0)[0]
                    inside = (u0 >= task["u_lo"]) & (u0 < task["u_hi"])
                    stats["documents_outside_sample"] += int((keep & ~inside).sum())
                    keep &= inside
                idx = np.flatnonzero(keep)
                if len(idx):
                    chosen = [texts[i] for i in idx]
                    t1 = time.perf_counter()
                    flat, lens = tok.encode(chosen)
                    stats["encode_s"] += time.perf_counter() - t1
                    writer.write(h[idx], ref[idx], flat, lens)
                    stats["chars"] += sum(len(t) for t in chosen)
            row += n
            if row >= hi_row:
                break
        writer.close()
    except BaseException:
        writer.abort()
        raise
    stats.update(documents=writer.rows, tokens=writer.tokens)
    record = {**{k: task[k] for k in ("id", "pool", "file", "row_start", "row_end", "u_lo", "u_hi")},
              "cache": task["out"], "cache_bytes": os.path.getsize(task["out"]), **stats,
              "wall_s": time.perf_counter() - t0, "rss_mb": _rss_mb()}
    write_marker(task["marker"], record)
    return record


# ---------------------------------------------------------------- mixer statistics
def mix_stats_task(cache: str, pool: dict[str, Any], mix_seed: int, gap: float, want: str,
                   bin_index: int | None = None) -> Any:
    """`hist`: token mass per bin of u over the partial epoch; `bin`: the documents of one bin."""
    t = read_token_cache(cache, ["doc_hash", "doc_ref", "n_tokens"])
    if t.num_rows == 0:
        return np.zeros(mixer.HIST_BINS, dtype=np.int64) if want == "hist" else None
    h = t["doc_hash"].to_numpy()
    n = t["n_tokens"].to_numpy().astype(np.int64)
    k = pool["full_epochs"]
    u = mixer.epoch_positions(h, k, mix_seed, pool["name"], gap)[k]
    bins = mixer.hist_bins(u)
    if want == "hist":
        return np.bincount(bins, weights=n, minlength=mixer.HIST_BINS).astype(np.int64)
    sel = bins == bin_index
    return {"u": u[sel], "h": h[sel], "ref": t["doc_ref"].to_numpy()[sel], "n": n[sel]}


# ---------------------------------------------------------------- scatter
def _truncate(tokens: pa.ListArray, lens: np.ndarray, kept: np.ndarray) -> pa.ListArray:
    """Keep the first kept[i] tokens of each list (kept <= lens)."""
    if np.array_equal(lens, kept):
        return tokens
    values = list_values(tokens)
    mask = np.ones(len(values), dtype=bool)
    ends = np.cumsum(lens)
    for i in np.flatnonzero(kept < lens):
        mask[ends[i] - lens[i] + kept[i]: ends[i]] = False
    return list_array(values[mask], kept)


def scatter_task(task: dict[str, Any], pool: dict[str, Any], *, mix_seed: int, gap: float, buckets: int,
                 seq_len: int | None, compression: str | None) -> dict[str, Any]:
    """Route every selected copy of the cache file's documents to its bucket (see writer.py)."""
    t0 = time.perf_counter()
    pm = mixer.PoolMix(pool["name"], pool["index"], pool["planned_tokens"], pool["tokenized_tokens"],
                       pool["full_epochs"], pool["remainder"],
                       mixer.Boundary.from_dict(pool["boundary"]) if pool.get("boundary") else None)
    t = read_token_cache(task["cache"])
    writer = ScatterWriter(Path(task["out"]), compression)
    copies = 0
    tokens_out = 0
    try:
        if t.num_rows:
            h = t["doc_hash"].to_numpy()
            ref = t["doc_ref"].to_numpy()
            n = t["n_tokens"].to_numpy().astype(np.int64)
            tokens = t["tokens"].combine_chunks()
            for k, take, g, kept in mixer.select_copies(pm, h, ref, n, mix_seed, gap):
                if len(take) == 0:
                    continue
                b = mixer.bucket_of(g, buckets)
                order = np.lexsort((ref[take], h[take], g, b))
                rows = take[order]
                kept = kept[order]
                toks = _truncate(tokens.take(np_array(rows)), n[rows], kept)
                table = pa.table({
                    "key": np_array(g[order]), "pool": np_array(np.full(len(rows), pm.index), pa.uint16()),
                    "doc_hash": np_array(h[rows]), "doc_ref": np_array(ref[rows]),
                    "epoch": np_array(np.full(len(rows), k), pa.uint16()), "tokens": toks}, schema=SCATTER_SCHEMA)
                bsorted = b[order]
                cuts = np.searchsorted(bsorted, np.arange(buckets + 1))
                cum = np.concatenate([[0], np.cumsum(kept)])
                for bucket in np.unique(bsorted):
                    s, e = int(cuts[bucket]), int(cuts[bucket + 1])
                    writer.write(int(bucket), BODY, table.slice(s, e - s), int(cum[e] - cum[s]))
                    if seq_len:
                        # The first <= seq_len tokens of this run of the bucket, for the bucket before.
                        j = int(np.searchsorted(cum[s + 1: e + 1] - cum[s], seq_len, side="left"))
                        j = min(j, e - s - 1)
                        head = table.slice(s, j + 1)
                        head_len = kept[s: s + j + 1].copy()
                        over = int(head_len.sum()) - seq_len
                        if over > 0:
                            head_len[-1] -= over
                            head = head.set_column(5, "tokens", _truncate(
                                head["tokens"].combine_chunks(), kept[s: s + j + 1], head_len))
                        writer.write(int(bucket), HEAD, head, int(head_len.sum()))
                copies += len(rows)
                tokens_out += int(kept.sum())
        idx = writer.close()
    except BaseException:
        writer.abort()
        raise
    record = {"id": task["id"], "pool": pm.name, "scatter": task["out"], "scatter_bytes": os.path.getsize(task["out"]),
              "copies": copies, "tokens": tokens_out,
              "blobs": int(len(idx)), "wall_s": time.perf_counter() - t0, "rss_mb": _rss_mb()}
    write_marker(task["marker"], record)
    return record


# ---------------------------------------------------------------- pack and write
def _read_refs(refs: list[tuple[str, np.ndarray]]) -> list[pa.Table]:
    tables: list[pa.Table] = []
    for path, rows in refs:
        tables.extend(read_blobs(path, rows))
    return tables


def write_formats(out_dir: str, name: str, rank: int, rows: fmt.Rows, formats: list[str], vocab_size: int,
                  tokenizer_name: str, sub: str = "") -> dict[str, Any]:
    """Write `rows` in every non-Parquet format asked for; per format its files and counts (and, for
    MDS and LitData, what the merged index needs)."""
    root = Path(out_dir)
    out: dict[str, Any] = {}
    for f in formats:
        if f == "parquet":  # written by write_shard
            continue
        base = f"{sub}{fmt.FORMAT_DIRS[f]}"
        extra: dict[str, Any] = {}
        if f == "megatron":
            recs = fmt.write_megatron(root, f"{base}/{name}", rows, vocab_size)
        elif f == "nanotron":
            recs = fmt.write_nanotron(root, f"{base}/{name}", rows, vocab_size, tokenizer_name)
        elif f == "mds":
            recs, index = fmt.write_mds(root, f"{base}/{name}", rows, vocab_size)
            extra = {"partition": name, "index": index}
        else:
            recs, chunks = fmt.write_litdata(root, base, rank, rows, vocab_size)
            extra = {"chunks": chunks}
        out[f] = {"files": [r.to_dict() for r in recs], "rows": rows.rows, "tokens": rows.tokens,
                  "segments": int(len(rows.segment_lengths)), **extra}
    return out


def pack_task(plan: dict[str, Any], scatter_list: str, *, mode: str, seq_len: int, seed: int,
              pool_names: list[str], provenance: bool, out_dir: str, marker: str, compression: str,
              compression_level: int | None, formats: tuple[str, ...] = ("parquet",), vocab_size: int = 0,
              tokenizer_name: str = "") -> dict[str, Any]:
    """Write one shard, in every format asked for: the sequences (or documents) of one bucket.

    `scatter_list`: a JSON file listing the scatter files. The task finds its bucket's blobs (and the
    heads of the buckets it borrows from) in their indexes itself, so the driver never gathers the
    tasks x buckets index rows of the whole run."""
    t0 = time.perf_counter()
    bp = BucketPlan(plan["bucket"], plan["skip"], [tuple(f) for f in plan["follow"]], plan["total"], plan["last"])
    files = json.loads(Path(scatter_list).read_text())
    rows = sort_rows(_read_refs(bucket_refs(files, bp.bucket, BODY)))
    t_read = time.perf_counter() - t0
    if mode == "packed":
        heads = [(take, sort_rows(_read_refs(bucket_refs(files, nb, HEAD)))) for nb, take in bp.follow]
        packed = pack_bucket(rows, heads, bp, seq_len, seed, pool_names, provenance)
    else:
        packed = documents_bucket(rows, bp.bucket, seed, pool_names, provenance)
    rss = _rss_mb()
    del rows
    name = shard_name(bp.bucket)
    t1 = time.perf_counter()
    if "parquet" in formats:
        sf = write_shard(Path(out_dir) / name, packed.table, packed.tokens, compression, compression_level)
        record = {"file": sf.file, "bytes": sf.bytes, "sha256": sf.sha256, "row_groups": sf.row_groups}
    else:
        record = {"file": None, "bytes": 0, "sha256": None, "row_groups": []}
    write_s = {"parquet": time.perf_counter() - t1}
    others = [f for f in formats if f != "parquet"]
    by_format: dict[str, Any] = {}
    if others:
        ids = packed.table["input_ids"]
        trows = fmt.Rows(list_values(ids), list_lengths(ids), packed.segment_lengths, packed.segments_per_row)
        stem = name.removesuffix(".parquet")
        for f in others:
            t2 = time.perf_counter()
            by_format.update(write_formats(out_dir, stem, bp.bucket, trows, [f], vocab_size, tokenizer_name))
            write_s[f] = time.perf_counter() - t2
    record.update({"bucket": bp.bucket, "rows": packed.table.num_rows, "tokens": packed.tokens,
                   "partial_rows": packed.partial, "formats": by_format,
                   "pool_tokens": {pool_names[i]: int(v) for i, v in enumerate(packed.pool_tokens) if v},
                   "read_s": t_read, "write_s": write_s, "wall_s": time.perf_counter() - t0,
                   "rss_mb": max(rss, _rss_mb()), "pid": os.getpid()})
    write_marker(marker, record)
    return record


def pool_output_task(cache: str, pool: dict[str, Any], part: str, *, mix_seed: int, gap: float, row_len: int,
                     formats: list[str], out_dir: str, vocab_size: int, tokenizer_name: str,
                     marker: str) -> dict[str, Any]:
    """One token-cache file's share of its pool, once: every document the plan's first pass over the
    pool takes (all of them when the plan reads the pool for an epoch or more; else the planned sample,
    its boundary document cut), in that pass's order. Documents for Megatron and nanotron (which pack
    themselves); rows of `row_len` for MDS and LitData (the part's last row may be shorter)."""
    t0 = time.perf_counter()
    pm = mixer.PoolMix(pool["name"], pool["index"], pool["planned_tokens"], pool["tokenized_tokens"],
                       pool["full_epochs"], pool["remainder"],
                       mixer.Boundary.from_dict(pool["boundary"]) if pool.get("boundary") else None)
    t = read_token_cache(cache)
    h = t["doc_hash"].to_numpy()
    ref = t["doc_ref"].to_numpy()
    n = t["n_tokens"].to_numpy().astype(np.int64)
    sel = mixer.select_copies(pm, h, ref, n, mix_seed, gap)
    if sel:
        _, take, g, kept = sel[0]
        order = np.lexsort((ref[take], h[take], g))
        take, kept = take[order], kept[order]
    else:
        take, kept = np.zeros(0, np.int64), np.zeros(0, np.int64)
    tokens = t["tokens"].combine_chunks()
    values = list_values(_truncate(tokens.take(np_array(take)), n[take], kept)) if len(take) else \
        np.zeros(0, np.int32)
    sub = f"pools/{pm.name}/"
    out: dict[str, Any] = {}
    if len(take):
        for f in formats:
            if f == "parquet":
                continue
            rows = fmt.documents_as_rows(values, kept) if f in ("megatron", "nanotron") else \
                fmt.pack_documents(values, kept, row_len)
            rank = int(part.rsplit("-", 1)[-1])
            out.update(write_formats(out_dir, part, rank, rows, [f], vocab_size, tokenizer_name, sub))
    record = {"pool": pm.name, "part": part, "documents": int(len(take)), "tokens": int(kept.sum()),
              "formats": out, "wall_s": time.perf_counter() - t0, "rss_mb": _rss_mb()}
    write_marker(marker, record)
    return record


def load_marker(path: str | Path) -> dict[str, Any] | None:
    p = Path(path)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return None


__all__ = ["tokenize_task", "mix_stats_task", "scatter_task", "pack_task", "pool_output_task", "load_marker",
           "list_lengths",
           "HEAD", "BODY"]
