"""The mixer: which copies of which documents make up each pool's planned tokens, and in what order.

Everything here is a pure function of (mix_seed, pool name, document hash, epoch), vectorised over
numpy arrays, so each worker computes its own documents' fate without talking to the others and a
rerun reproduces it bit for bit.

Order within a pool. Each document d of pool i gets, for every epoch k, a position u_k(d) in [0, 1);
sorting the documents by u_k is epoch k's permutation. u_0 = x_0 and, for k >= 1, with
x_k = U(mix_seed, i, d, k) a 64-bit hash mapped to [0, 1) and a = u_{k-1}:

    u_k = x_k + gap   if x_k < a - 1 + gap                        (R: too close after copy k-1)
          x_k - gap   if gap <= x_k < 2 gap and a < 2 gap - x_k    (S: the mirror triangle)
          x_k         otherwise

Copy k of d sits at k + u_k on the pool's epoch axis, and the rule guarantees
(k + u_k) - (k - 1 + u_{k-1}) >= gap: two copies of a document are never closer than `gap` epochs.
R and S are triangles of equal area gap^2 / 2 with mirrored profiles, so swapping them keeps both
marginals of (u_{k-1}, u_k) exactly uniform: every epoch is a uniformly random permutation (the
pool's share of the run stays flat), and only the 2 * gap^2 / 2 of documents in R or S are moved at
all, so consecutive epochs are otherwise independent (fresh) permutations.

Exact token budget. Pool i has U_i tokens (BOS/EOS included) and a plan of T_i tokens:
k* = T_i // U_i full epochs and R_i = T_i - k* U_i tokens from epoch k*'s permutation, taken as its
shortest prefix holding R_i tokens, the last document of the prefix cut to make the count exact.
Finding the prefix without gathering every document in one place: a histogram of token mass over
u_{k*} (HIST_BINS bins, summed across workers) gives the bin where the budget runs out, and only
the documents of that bin (about 1/HIST_BINS of the pool) are sorted on the driver. Ties in u are
broken by (document hash, document reference), so the cut is total and deterministic.

Global order. Copy k of d gets the key g = (k + u_k) / E_i in [0, 1], E_i = k* + tau_i (tau_i: the
u of the boundary document, or E_i = k* when R_i = 0). Every pool thus spreads evenly over [0, 1]
and keys of all pools interleave: sorting all copies by g is a global shuffle in which every stretch
of the run holds the planned mixture, and copies of a document are at least gap / E_i of the run
apart. The sharder range-partitions g into buckets (bucket b holds g in [b/B, (b+1)/B)).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

HIST_BINS = 1 << 16
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective avalanche on uint64 arrays."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (x ^ (x >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def to_unit(x: np.ndarray) -> np.ndarray:
    """uint64 → float64 in [0, 1) with 53 random bits."""
    return (np.asarray(x, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def string_hash(text: str) -> int:
    return xxhash.xxh64_intdigest(text.encode("utf-8"))


def doc_hashes(pool: str, ids: list | None, file_index: int, first_row: int, n: int) -> np.ndarray:
    """64-bit identity of each document: from its `id` when the pool has ids (so a re-partitioned
    pool keeps its order), else from its position (file index in the pool, row)."""
    if ids is not None:
        prefix = pool + "\x00"
        return np.fromiter((xxhash.xxh64_intdigest((prefix + str(i)).encode("utf-8")) for i in ids),
                           dtype=np.uint64, count=n)
    rows = np.arange(first_row, first_row + n, dtype=np.uint64)
    base = np.uint64(string_hash(f"{pool}\x00#{file_index}"))
    return mix64(rows ^ base)


def doc_refs(file_index: int, first_row: int, n: int) -> np.ndarray:
    """Unique reference of a document inside its pool: file index (24 bits) and row (40 bits)."""
    return (np.uint64(file_index) << np.uint64(40)) | np.arange(first_row, first_row + n, dtype=np.uint64)


def epoch_salt(mix_seed: int, pool: str, epoch: int) -> np.uint64:
    base = np.array([string_hash(f"curate.mix\x00{mix_seed}\x00{pool}")], dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix64(base + np.array([epoch], dtype=np.uint64) * _GOLDEN)[0]


def epoch_positions(h: np.ndarray, upto: int, mix_seed: int, pool: str, gap: float) -> np.ndarray:
    """u_k for k = 0..upto (rows) of each document hash (columns); see the module docstring."""
    h = np.asarray(h, dtype=np.uint64)
    out = np.empty((upto + 1, len(h)), dtype=np.float64)
    out[0] = to_unit(mix64(h ^ epoch_salt(mix_seed, pool, 0)))
    for k in range(1, upto + 1):
        x = to_unit(mix64(h ^ epoch_salt(mix_seed, pool, k)))
        a = out[k - 1]
        if gap > 0:
            r = x < a - 1.0 + gap
            s = (x >= gap) & (x < 2.0 * gap) & (a < 2.0 * gap - x)
            x = x.copy()
            x[r] += gap
            x[s] -= gap
        out[k] = x
    return out


def hist_bins(u: np.ndarray) -> np.ndarray:
    return np.minimum((u * HIST_BINS).astype(np.int64), HIST_BINS - 1)


@dataclass
class Boundary:
    """The last document of a partial epoch: it and everything ordered before it is taken,
    `keep` of its tokens (1..n)."""

    u: float
    doc_hash: int
    doc_ref: int
    keep: int

    def to_dict(self) -> dict:
        return {"u": self.u, "doc_hash": self.doc_hash, "doc_ref": self.doc_ref, "keep": self.keep}

    @classmethod
    def from_dict(cls, d: dict) -> "Boundary":
        return cls(float(d["u"]), int(d["doc_hash"]), int(d["doc_ref"]), int(d["keep"]))


@dataclass
class PoolMix:
    """Resolved take of one pool: k* full epochs, then a prefix of epoch k* up to `boundary`."""

    name: str
    index: int
    planned_tokens: int
    tokenized_tokens: int
    full_epochs: int
    remainder: int
    boundary: Boundary | None = None
    boundary_bin: int | None = None
    mass_before_bin: int = 0

    @property
    def partial_epoch(self) -> int | None:
        return self.full_epochs if self.remainder > 0 else None

    @property
    def key_epochs(self) -> float:
        """E_i: the pool's extent on its epoch axis, which keys are divided by."""
        if self.remainder > 0:
            assert self.boundary is not None, "boundary not resolved"
            return self.full_epochs + self.boundary.u if self.full_epochs + self.boundary.u > 0 else 1.0
        return float(self.full_epochs)

    @property
    def last_epoch(self) -> int:
        return self.full_epochs if self.remainder > 0 else self.full_epochs - 1

    def to_dict(self) -> dict:
        return {"name": self.name, "index": self.index, "planned_tokens": self.planned_tokens,
                "tokenized_tokens": self.tokenized_tokens, "full_epochs": self.full_epochs,
                "remainder": self.remainder,
                "boundary": self.boundary.to_dict() if self.boundary else None}


def split_budget(planned: int, tokenized: int, complete: bool) -> tuple[int, int]:
    """(full epochs, remainder tokens) of a plan of `planned` tokens over a pool of `tokenized`
    tokens. A pool tokenised only in part (sampled) must hold the whole plan in one partial epoch."""
    if tokenized <= 0:
        raise ValueError("pool has no tokens")
    if not complete:
        if tokenized < planned:
            raise ValueError("sampled pool holds fewer tokens than planned")
        return 0, planned
    return planned // tokenized, planned % tokenized


def boundary_bin(hist: np.ndarray, remainder: int) -> tuple[int, int]:
    """(bin where the cumulative token mass reaches `remainder`, mass of the bins before it)."""
    cum = np.cumsum(hist, dtype=np.int64)
    if remainder <= 0 or remainder > int(cum[-1]):
        raise ValueError(f"remainder {remainder} outside (0, {int(cum[-1])}]")
    b = int(np.searchsorted(cum, remainder, side="left"))
    return b, int(cum[b - 1]) if b > 0 else 0


def resolve_boundary(u: np.ndarray, h: np.ndarray, ref: np.ndarray, n: np.ndarray, need: int) -> Boundary:
    """Among the documents of the boundary bin, the one where `need` more tokens are reached."""
    order = np.lexsort((ref, h, u))
    cum = np.cumsum(n[order], dtype=np.int64)
    i = int(np.searchsorted(cum, need, side="left"))
    if i >= len(order):
        raise ValueError("boundary bin holds fewer tokens than needed (inconsistent histogram)")
    j = order[i]
    keep = int(need - (cum[i] - n[j]))
    return Boundary(float(u[j]), int(h[j]), int(ref[j]), keep)


def before_boundary(u: np.ndarray, h: np.ndarray, ref: np.ndarray, b: Boundary) -> tuple[np.ndarray, np.ndarray]:
    """(ordered strictly before the boundary document, is the boundary document)."""
    bh, br = np.uint64(b.doc_hash), np.uint64(b.doc_ref)
    less = (u < b.u) | ((u == b.u) & ((h < bh) | ((h == bh) & (ref < br))))
    equal = (u == b.u) & (h == bh) & (ref == br)
    return less, equal


def bucket_of(g: np.ndarray, buckets: int) -> np.ndarray:
    return np.minimum((g * buckets).astype(np.int64), buckets - 1)


def select_copies(pm: PoolMix, h: np.ndarray, ref: np.ndarray, n: np.ndarray, mix_seed: int,
                  gap: float) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """For each epoch the pool is read in: (epoch, row indices taken, their keys g, kept tokens)."""
    if pm.last_epoch < 0 or len(h) == 0:
        return []
    pos = epoch_positions(h, pm.last_epoch, mix_seed, pm.name, gap)
    E = pm.key_epochs
    out = []
    for k in range(pm.last_epoch + 1):
        u = pos[k]
        if k == pm.partial_epoch:
            less, equal = before_boundary(u, h, ref, pm.boundary)
            take = np.flatnonzero(less | equal)
            kept = n[take].astype(np.int64).copy()
            kept[equal[take]] = pm.boundary.keep
        else:
            take = np.arange(len(h))
            kept = n.astype(np.int64)
        g = (k + u[take]) / E
        out.append((k, take, g, kept))
    return out
