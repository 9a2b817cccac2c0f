"""Packing one bucket: sort its document copies by key, cut the token stream into sequences, shuffle.

The global token stream is every selected document copy in key order, each copy's tokens (EOS
included) back to back. Bucket b holds the stream positions [o_b, o_{b+1}); sequences are the
stream cut at multiples of seq_len, and a sequence belongs to the bucket it starts in. So bucket b
skips the first `skip` tokens of its part of the stream (they end the previous bucket's last
sequence) and borrows the first tokens of the next bucket(s) to finish its own last sequence: the
heads the scatter step wrote. Every token lands in exactly one sequence, and all sequences but the
very last of the run are exactly seq_len long.

The sequences of a bucket are then permuted with `seed` (a bucket is 1/B of the run), which breaks
up the consecutive windows of one long document. The shuffle seed changes only this permutation, so
two seeds give the same shards holding the same sequences in different orders.

In `documents` mode a row is one document copy (its tokens, BOS/EOS included): no cutting, and the
rows of a bucket are permuted with `seed` the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .writer import list_lengths, list_values, np_array


@dataclass
class BucketPlan:
    """What the driver tells a packing task about its bucket."""

    bucket: int
    skip: int = 0  # leading tokens of this bucket that the previous bucket's last sequence holds
    follow: list[tuple[int, int]] = field(default_factory=list)  # (later bucket, tokens borrowed)
    total: int = 0  # tokens this bucket's sequences hold
    last: bool = False  # holds the end of the run (its last sequence may be short)


@dataclass
class Packed:
    table: pa.Table
    tokens: int
    pool_tokens: np.ndarray  # tokens per pool index
    partial: int  # rows shorter than seq_len (0, or 1 in the last bucket)
    segment_lengths: np.ndarray | None = None  # document pieces of the rows, row by row (in row order)
    segments_per_row: np.ndarray | None = None


def ragged_take(values: np.ndarray, counts: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of `values` (`counts` long each, back to back) taken in `order`."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
    new = counts[order]
    n = int(new.sum())
    first = np.cumsum(new) - new
    idx = np.repeat(starts[order] - first, new) + np.arange(n, dtype=np.int64)
    return values[idx], new


def row_segments(starts: np.ndarray, total: int, seq_len: int, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths of the document pieces of each packed row (pieces cut where a document starts or a row
    does), rows taken in `order`: what a trainer needs to mask attention across documents."""
    cuts = np.union1d(starts, np.arange(0, total, seq_len, dtype=np.int64))
    seg = np.diff(np.append(cuts, total))
    keep = seg > 0
    cuts, seg = cuts[keep], seg[keep]
    per_row = np.bincount(cuts // seq_len, minlength=-(-total // seq_len)).astype(np.int64)
    return ragged_take(seg, per_row, order)


def sort_rows(tables: list[pa.Table]) -> pa.Table:
    """Concatenate scatter tables and sort by (key, pool, doc_hash, doc_ref, epoch)."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        from .writer import SCATTER_SCHEMA

        return SCATTER_SCHEMA.empty_table()
    t = pa.concat_tables(tables).combine_chunks()
    cols = [t[c].to_numpy() for c in ("epoch", "doc_ref", "doc_hash", "pool", "key")]
    order = np.lexsort(cols)
    if np.any(order[1:] != order[:-1] + 1):
        t = t.take(np_array(order))
    return t


def _rows(t: pa.Table) -> dict[str, np.ndarray]:
    return {"pool": t["pool"].to_numpy(), "doc_hash": t["doc_hash"].to_numpy(), "epoch": t["epoch"].to_numpy(),
            "len": list_lengths(t["tokens"])}


def _clip_rows(info: dict[str, np.ndarray], lo: int, hi: int, shift: int) -> dict[str, np.ndarray]:
    """Rows restricted to stream positions [lo, hi) and moved by `shift`; adds start/doc_off."""
    ends = np.cumsum(info["len"])
    starts = ends - info["len"]
    s = np.clip(starts, lo, hi)
    e = np.clip(ends, lo, hi)
    keep = e > s
    return {"pool": info["pool"][keep], "doc_hash": info["doc_hash"][keep], "epoch": info["epoch"][keep],
            "start": (s - lo + shift)[keep], "len": (e - s)[keep], "doc_off": (s - starts)[keep]}


def _segments(rows: dict[str, np.ndarray], total: int, seq_len: int, pool_names: list[str]) -> pa.ListArray:
    """Per sequence, the pieces of document copies it holds (pool, doc, epoch, offset, length)."""
    cuts = np.union1d(rows["start"], np.arange(0, total, seq_len, dtype=np.int64))
    seg_len = np.diff(np.append(cuts, total))
    r = np.searchsorted(rows["start"], cuts, side="right") - 1
    n_seq = -(-total // seq_len)
    offsets = np.searchsorted(cuts, np.arange(n_seq + 1, dtype=np.int64) * seq_len).astype(np.int32)
    offsets[-1] = len(cuts)
    segs = pa.StructArray.from_arrays(
        [pa.DictionaryArray.from_arrays(np_array(rows["pool"][r], pa.int32()), pa.array(pool_names)),
         np_array(rows["doc_hash"][r], pa.uint64()), np_array(rows["epoch"][r], pa.uint16()),
         np_array(rows["doc_off"][r] + cuts - rows["start"][r], pa.int32()),
         np_array(seg_len, pa.int32())],
        names=["pool", "doc", "epoch", "offset", "length"])
    return pa.ListArray.from_arrays(np_array(offsets), segs)


def shuffle_rng(seed: int, bucket: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, bucket, 0x5EED])


def pack_bucket(own: pa.Table, follows: list[tuple[int, pa.Table]], plan: BucketPlan, seq_len: int,
                seed: int, pool_names: list[str], provenance: bool = False) -> Packed:
    """Sequences starting in this bucket; `own` and each follow table are sorted (sort_rows)."""
    own_info = _rows(own)
    own_len = int(own_info["len"].sum())
    pieces = [list_values(own["tokens"])[plan.skip:]]
    rows = [_clip_rows(own_info, plan.skip, own_len, 0)]
    at = own_len - plan.skip
    for take, head in follows:
        vals = list_values(head["tokens"])
        if len(vals) < take:
            raise ValueError(f"bucket {plan.bucket}: a following bucket's heads hold {len(vals)} tokens, "
                             f"{take} needed (scatter files incomplete?)")
        pieces.append(vals[:take])
        rows.append(_clip_rows(_rows(head), 0, take, at))
        at += take
    if at != plan.total:
        raise ValueError(f"bucket {plan.bucket}: {at} tokens gathered, the plan says {plan.total} "
                         "(scatter files and their index disagree)")
    stream = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    info = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    pool_tokens = np.bincount(info["pool"].astype(np.int64), weights=info["len"],
                              minlength=len(pool_names)).astype(np.int64)
    n_full, rest = divmod(plan.total, seq_len)
    if rest and not plan.last:
        raise ValueError(f"bucket {plan.bucket}: {plan.total} tokens is not a whole number of sequences")
    perm = shuffle_rng(seed, plan.bucket).permutation(n_full)
    values = stream[: n_full * seq_len].reshape(n_full, seq_len)[perm].reshape(-1)
    lengths = np.full(n_full, seq_len, dtype=np.int64)
    order = perm
    if rest:
        values = np.concatenate([values, stream[n_full * seq_len:]])
        lengths = np.append(lengths, rest)
        order = np.append(perm, n_full)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    cols = {"input_ids": pa.ListArray.from_arrays(np_array(offsets), np_array(values, pa.int32()))}
    if provenance:
        cols["segments"] = _segments(info, plan.total, seq_len, pool_names).take(np_array(order))
    seg, per_row = row_segments(info["start"], plan.total, seq_len, order)
    return Packed(pa.table(cols), plan.total, pool_tokens, int(rest > 0), seg, per_row)


def documents_bucket(own: pa.Table, bucket: int, seed: int, pool_names: list[str],
                     provenance: bool = False) -> Packed:
    """One row per document copy, rows permuted with `seed`."""
    perm = shuffle_rng(seed, bucket).permutation(own.num_rows)
    t = own.take(np_array(perm))
    info = _rows(t)
    pool_tokens = np.bincount(info["pool"].astype(np.int64), weights=info["len"],
                              minlength=len(pool_names)).astype(np.int64)
    cols = {"input_ids": t["tokens"].combine_chunks() if isinstance(t["tokens"], pa.ChunkedArray) else t["tokens"]}
    if provenance:
        cols["pool"] = pa.DictionaryArray.from_arrays(np_array(info["pool"], pa.int32()), pa.array(pool_names))
        cols["doc"] = t["doc_hash"]
        cols["epoch"] = t["epoch"]
    lens = info["len"].astype(np.int64)
    return Packed(pa.table(cols), int(lens.sum()), pool_tokens, 0, lens, np.ones(len(lens), dtype=np.int64))
