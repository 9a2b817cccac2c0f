"""MinHash LSH near-duplicate detection: signatures, band keys and pair verification.

Signatures are computed for a whole Arrow batch at once: the batch is normalised into one buffer
(`processors.shingles`), every shingle is hashed straight from a byte span of that buffer (SHA-1
for all spans of a batch in one DuckDB call, `processors.span_hash`), and the permutations and
per-document minimum run in numpy over blocks of shingles. The values are the
ones `datasketch.MinHash(num_perm, seed, scheme=...)` gives when updated with the same shingles
(its default hash, SHA-1 truncated to 32 bits little-endian, or xxh32 when
`hashfunc=xxhash.xxh32_intdigest`), for both of its 32-bit schemes:

- ``affine32`` (datasketch >= 2.0 default): ``h = fmix32(hash)``, ``a*h + b mod 2^32``, with
  ``a`` odd and ``a, b`` drawn from ``np.random.RandomState(seed)`` exactly as datasketch draws;
- ``legacy`` (datasketch < 2.0): ``((a*h + b) mod 2^64) mod (2^61 - 1)``, truncated to 32 bits.

LSH: the signature is cut into `bands` of `rows` values; each band hashes to a 64-bit bucket key
(band index included, so keys of different bands never meet). Bands and rows come from the
Jaccard threshold the way `datasketch.MinHashLSH` chooses them (minimising the weighted integral
of false-positive and false-negative probability; `optimal_bands_rows`), or are given. The
weights are datasketch's default (0.5, 0.5) unless verification is exact (the default), where
they are (0.05, 0.95): the exact check removes false positives, so candidates should favour
recall (at 0.8: 16 x 8, a pair at J = 0.8 becomes a candidate with probability 0.95; datasketch's
9 x 13 gives 0.40).

Verification, `verify="signature"`: each bucket entry carries the low 8 bits of every signature
value (b-bit MinHash, one byte per permutation). Two documents agree on a byte with probability
J + (1 - J)/256, so ``(matches/num_perm - 1/256) / (1 - 1/256)`` is an unbiased Jaccard
estimate; candidate pairs below the threshold are not linked. This cuts LSH false positives
(pairs that share one band by chance) at a quarter of the shuffle volume of full signatures.
With `verify="exact"` (the default) that check runs at threshold - verify_margin as a
pre-filter, and the pairs left are then checked on the exact Jaccard of the two documents'
shingle sets (recomputed from the text of the documents in a candidate pair only) (32-bit shingle hashes: a collision between two documents' shingles, probability
~|A||B|/2^32 per pair, moves the Jaccard by ~1/|A u B|), which the engine brings together by
joins. Estimates near the threshold are noisy (sd ~0.035 at 0.8
with 128 permutations); exact verification removes that noise from the decision.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import field_validator, model_validator

from processors.base import BatchResult, ClusterDedup, Params, ProcessorError
from processors.shingles import normalize_array, shingle_spans
from processors.span_hash import require_duckdb, sha1_first4

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH32 = np.uint32(0xFFFFFFFF)
_CHUNK = 8192  # shingles per permutation block (8192 x 128 x 4 B = 4 MiB)

# ---------------------------------------------------------------------------------------------
# LSH parameters
# ---------------------------------------------------------------------------------------------


def _fp_probability(threshold: float, b: int, r: int) -> float:
    from scipy.integrate import quad

    return quad(lambda s: 1 - (1 - s ** float(r)) ** float(b), 0.0, threshold)[0]


def _fn_probability(threshold: float, b: int, r: int) -> float:
    from scipy.integrate import quad

    return quad(lambda s: 1 - (1 - (1 - s ** float(r)) ** float(b)), threshold, 1.0)[0]


@lru_cache(maxsize=64)
def optimal_bands_rows(
    threshold: float, num_perm: int, false_positive_weight: float = 0.5, false_negative_weight: float = 0.5
) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising the weighted false positive and false
    negative probability mass around `threshold`; the same search, integrals and tie-breaking
    as datasketch's `MinHashLSH` (0.8 and 128 give 9 x 13)."""
    best, opt = float("inf"), (0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            err = (
                _fp_probability(threshold, b, r) * false_positive_weight
                + _fn_probability(threshold, b, r) * false_negative_weight
            )
            if err < best:
                best, opt = err, (b, r)
    return opt


def candidate_probability(jaccard: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """Probability that two documents of this Jaccard similarity share at least one band."""
    return 1.0 - (1.0 - np.asarray(jaccard, dtype=float) ** rows) ** bands


# ---------------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------------


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch's pre-mix for the affine32 scheme)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


class MinHasher:
    """Batch MinHash signatures, value-for-value equal to datasketch's on the same shingles."""

    def __init__(
        self,
        num_perm: int = 128,
        seed: int = 1,
        scheme: Literal["affine32", "legacy"] = "affine32",
        hash: Literal["sha1", "xxh32"] = "sha1",
    ) -> None:
        if num_perm < 1:
            raise ValueError("num_perm must be positive")
        self.num_perm, self.seed, self.scheme, self.hash = num_perm, seed, scheme, hash
        gen = np.random.RandomState(seed)
        if scheme == "legacy":
            # datasketch draws a and b alternately, one pair per permutation
            ab = np.array(
                [
                    (gen.randint(1, MERSENNE_PRIME, dtype=np.uint64), gen.randint(0, MERSENNE_PRIME, dtype=np.uint64))
                    for _ in range(num_perm)
                ],
                dtype=np.uint64,
            ).T
            self.a, self.b = np.ascontiguousarray(ab[0]), np.ascontiguousarray(ab[1])
        elif scheme == "affine32":
            self.a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
            self.b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        else:
            raise ValueError(f"unknown MinHash scheme {scheme!r} (affine32 or legacy)")
        if hash not in ("sha1", "xxh32"):
            raise ValueError(f"unknown shingle hash {hash!r} (sha1 or xxh32)")

    # -- hashing ------------------------------------------------------------------------------

    def hash_spans(self, buf: bytes | np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """32-bit hash of every shingle ``buf[starts[i]:ends[i]]`` (uint32)."""
        n = len(starts)
        out = np.empty(n, dtype=np.uint32)
        step = 65_536  # bounded Python temporaries (digests, span lists) whatever the batch
        if self.hash == "sha1":
            # one vectorised call instead of one hashlib call per shingle (processors.span_hash)
            return sha1_first4(np.frombuffer(buf, np.uint8) if isinstance(buf, bytes) else buf, starts, ends)
        import xxhash

        if isinstance(buf, np.ndarray):
            buf = buf.tobytes()
        xxh32 = xxhash.xxh32_intdigest
        for c in range(0, n, step):
            s_, e_ = starts[c : c + step].tolist(), ends[c : c + step].tolist()
            out[c : c + len(s_)] = np.fromiter((xxh32(buf[s:e]) for s, e in zip(s_, e_)), dtype=np.uint32, count=len(s_))
        return out

    def hash_shingles(self, shingles: list[bytes]) -> np.ndarray:
        buf = b"".join(shingles)
        lens = np.fromiter(map(len, shingles), dtype=np.int64, count=len(shingles))
        ends = np.cumsum(lens)
        return self.hash_spans(buf, ends - lens, ends)

    # -- permutations -------------------------------------------------------------------------

    def _permute_into(self, h: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Permuted values of pre-mixed hashes `h` as a (num_perm, len(h)) uint32 block.

        The permutation axis comes first: the per-document minimum then reduces along
        contiguous memory, about five times faster than the (shingles, num_perm) layout."""
        if self.scheme == "affine32":
            np.multiply(self.a[:, None], h[None, :], out=out)
            np.add(out, self.b[:, None], out=out)
            return out
        # datasketch: ((a*h + b) mod 2^64) mod (2^61 - 1). For a Mersenne prime the remainder
        # needs no division: x = hi * 2^61 + lo == hi + lo (mod 2^61 - 1), hi < 8.
        x = self.a[:, None] * h[None, :]
        x += self.b[:, None]
        r = x & MERSENNE_PRIME
        x >>= np.uint64(61)
        r += x
        r -= MERSENNE_PRIME * (r >= MERSENNE_PRIME)
        out[...] = r & np.uint64(0xFFFFFFFF)
        return out

    def signatures_from_hashes(self, hv: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Signatures (num docs, num_perm) uint32 of documents whose shingle hashes are the
        consecutive runs `counts` of `hv`. A document without shingles gets all 2^32 - 1
        (datasketch's empty MinHash)."""
        counts = np.asarray(counts, dtype=np.int64)
        ndocs = len(counts)
        out = np.full((self.num_perm, ndocs), MAX_HASH32, dtype=np.uint32)
        total = int(counts.sum())
        if total == 0:
            return np.ascontiguousarray(out.T)
        h = _fmix32(hv.astype(np.uint32, copy=False)) if self.scheme == "affine32" else hv.astype(np.uint64)
        doc_of = np.repeat(np.arange(ndocs), counts)
        chunk = _CHUNK if self.scheme == "affine32" else _CHUNK // 4
        block = np.empty((self.num_perm, min(chunk, total)), dtype=np.uint32)
        for s0 in range(0, total, chunk):
            s1 = min(s0 + chunk, total)
            blk = self._permute_into(h[s0:s1], block[:, : s1 - s0])
            docs = doc_of[s0:s1]
            seg = np.flatnonzero(np.concatenate(([True], docs[1:] != docs[:-1])))
            seg_docs = docs[seg]
            out[:, seg_docs] = np.minimum(out[:, seg_docs], np.minimum.reduceat(blk, seg, axis=1))
        return np.ascontiguousarray(out.T)

    def signatures(self, texts: pa.Array | pa.ChunkedArray, ngram: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(signatures (num docs, num_perm) uint32, shingles per doc) for a batch of texts."""
        sig, counts, _ = self.signatures_and_hashes(texts, ngram)
        return sig, counts

    def signatures_and_hashes(self, texts: pa.Array | pa.ChunkedArray, ngram: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Also returns the 32-bit hash of every shingle (grouped by document, in order)."""
        norm = normalize_array(texts)
        spans = shingle_spans(norm, ngram)
        hv = self.hash_spans(norm.data, spans.starts, spans.ends)
        return self.signatures_from_hashes(hv, spans.counts), spans.counts, hv

    def signature_of_shingles(self, shingles: list[bytes]) -> np.ndarray:
        return self.signatures_from_hashes(self.hash_shingles(shingles), np.array([len(shingles)]))[0]


def band_keys(signatures: np.ndarray, bands: int, rows: int, seed: int = 0) -> np.ndarray:
    """(num docs, bands) uint64 bucket keys: a 64-bit hash of each band's `rows` values and of the
    band index, so equal keys mean (up to 2^-64 collisions) equal bands of the same index."""
    n, p = signatures.shape
    if bands * rows > p:
        raise ValueError(f"bands x rows = {bands * rows} exceeds num_perm = {p}")
    sig = signatures.astype(np.uint64)
    keys = np.empty((n, bands), dtype=np.uint64)
    mul = np.uint64(0x9E3779B97F4A7C15)
    for i in range(bands):
        h = np.full(n, _fmix64(np.array([seed * 1_000_003 + i + 1], dtype=np.uint64))[0], dtype=np.uint64)
        for j in range(i * rows, (i + 1) * rows):
            h = _fmix64((h ^ sig[:, j]) * mul)
        keys[:, i] = h
    return keys


def hash_sets(hv: np.ndarray, counts: np.ndarray) -> pa.ListArray:
    """Each document's distinct shingle hashes, sorted, as list<uint32>."""
    counts = np.asarray(counts, dtype=np.int64)
    doc = np.repeat(np.arange(len(counts)), counts)
    order = np.lexsort((hv, doc))
    v, d = hv[order], doc[order]
    keep = np.ones(v.size, dtype=bool)
    keep[1:] = (v[1:] != v[:-1]) | (d[1:] != d[:-1])
    v, d = v[keep], d[keep]
    offsets = np.concatenate(([0], np.cumsum(np.bincount(d, minlength=len(counts))))).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(v, pa.uint32()))


def set_jaccard(left: pa.Array, right: pa.Array) -> np.ndarray:
    """Jaccard of aligned pairs of sorted distinct-value lists, all pairs at once: tag every value
    with its pair index, sort, and count the values present on both sides."""
    if isinstance(left, pa.ChunkedArray):
        left = left.combine_chunks()
    if isinstance(right, pa.ChunkedArray):
        right = right.combine_chunks()
    n = len(left)
    if n == 0:
        return np.zeros(0)
    ln = pc.list_value_length(left).to_numpy(zero_copy_only=False).astype(np.int64)
    rn = pc.list_value_length(right).to_numpy(zero_copy_only=False).astype(np.int64)
    lv = pc.list_flatten(left).to_numpy().astype(np.uint64)
    rv = pc.list_flatten(right).to_numpy().astype(np.uint64)
    pair = np.arange(n, dtype=np.uint64)
    keys = np.concatenate((np.repeat(pair, ln) << np.uint64(32) | lv, np.repeat(pair, rn) << np.uint64(32) | rv))
    keys.sort()
    both = keys[1:][keys[1:] == keys[:-1]]
    inter = np.bincount((both >> np.uint64(32)).astype(np.int64), minlength=n)
    union = ln + rn - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def bbit_jaccard(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Jaccard estimates from aligned rows of one-byte-per-permutation fingerprints (uint8)."""
    match = (left == right).mean(axis=1)
    c = 1.0 / 256.0
    return np.clip((match - c) / (1.0 - c), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# The processor
# ---------------------------------------------------------------------------------------------

_SURVIVOR_RULES = ("longest", "shortest", "smallest_id")


class MinHashDedupParams(Params):
    text_column: str = "text"
    threshold: float = 0.8  # Jaccard similarity of shingle sets at which documents are duplicates
    num_perm: int = 128
    bands: int | None = None  # with `rows`: explicit LSH layout; else chosen from the threshold
    rows: int | None = None
    # weights of datasketch's (bands, rows) optimisation. Unset: datasketch's own (0.5, 0.5),
    # except with verify="exact", where the exact check removes the false positives and the
    # candidate stage should favour recall: (0.05, 0.95), 16 x 8 instead of 9 x 13 at 0.8.
    false_positive_weight: float | None = None
    false_negative_weight: float | None = None
    ngram: int = 5  # words per shingle
    seed: int = 1  # of the permutations (datasketch's `seed`)
    scheme: Literal["affine32", "legacy"] = "affine32"  # datasketch's permutation scheme
    hash: Literal["sha1", "xxh32"] = "sha1"  # shingle hash: sha1 is datasketch's default
    # check candidate pairs before linking them: "signature" by the Jaccard estimated from the
    # signatures (b-bit, in the bucket shuffle); "exact" also by the exact Jaccard of the shingle
    # sets (32-bit shingle hashes), after the signature check at threshold - verify_margin;
    # "none" links every candidate pair (datatrove's behaviour). True/False mean signature/none.
    verify: Literal["none", "signature", "exact"] = "exact"
    verify_margin: float = 0.1
    # survivor of each cluster: "longest" (most characters, then smallest id), "shortest",
    # "smallest_id", or "max:<column>" / "min:<column>" for a numeric column of the input
    survivor: str = "longest"
    side_output: bool = False  # keep the dropped documents available for inspection

    @field_validator("verify", mode="before")
    @classmethod
    def _verify(cls, v: object) -> object:
        if isinstance(v, bool):
            return "signature" if v else "none"
        return v

    @field_validator("verify_margin")
    @classmethod
    def _margin(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError("verify_margin must be in [0, 1)")
        return v

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError("threshold must be strictly between 0 and 1")
        return v

    @field_validator("num_perm", "ngram")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be at least 1")
        return v

    @field_validator("survivor")
    @classmethod
    def _survivor(cls, v: str) -> str:
        if v in _SURVIVOR_RULES or (v.startswith(("max:", "min:")) and len(v) > 4):
            return v
        raise ValueError(f"survivor must be one of {_SURVIVOR_RULES} or 'max:<column>' / 'min:<column>'")

    @model_validator(mode="after")
    def _layout(self) -> MinHashDedupParams:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither")
        if self.bands is not None and (self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm):
            raise ValueError(f"bands x rows must be positive and at most num_perm ({self.num_perm})")
        return self


class MinHashDedup(ClusterDedup):
    """Near-duplicate removal by MinHash LSH over word n-gram shingles."""

    kind = "minhash_dedup"
    Params = MinHashDedupParams
    requires = ("id", "text")
    summary_counters = ("candidate_pairs", "edges", "clusters", "rounds")

    BANDS = "_mh_bands"  # fixed_size_list<uint64>[bands], null for a document without shingles
    FP = "_mh_fp"  # fixed_size_binary[num_perm]: low byte of every signature value
    LEN = "_mh_len"  # characters of text (for the "longest"/"shortest" survivor rules)

    def __init__(self, params: MinHashDedupParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        self.requires = ("id", p.text_column)
        self._hasher: MinHasher | None = None
        if p.bands is not None:
            self.bands, self.rows = p.bands, p.rows
        else:
            self.bands, self.rows = optimal_bands_rows(p.threshold, p.num_perm, *self.lsh_weights)

    @property
    def lsh_weights(self) -> tuple[float, float]:
        """(false positive, false negative) weights the LSH layout is optimised with."""
        p = self.params
        fp, fn = (0.05, 0.95) if p.verify == "exact" else (0.5, 0.5)
        return (fp if p.false_positive_weight is None else p.false_positive_weight,
                fn if p.false_negative_weight is None else p.false_negative_weight)

    def setup(self) -> None:
        if self._hasher is None:
            self._hasher = MinHasher(self.params.num_perm, self.params.seed, self.params.scheme, self.params.hash)
        if self.params.hash == "xxh32":
            try:
                import xxhash  # noqa: F401
            except ImportError as e:  # pragma: no cover - xxhash is a dependency
                raise ProcessorError("hash=xxh32 needs the xxhash package") from e
        else:
            require_duckdb()

    @property
    def hasher(self) -> MinHasher:
        self.setup()
        assert self._hasher is not None
        return self._hasher

    @property
    def side_output(self) -> bool:
        return self.params.side_output

    # -- hooks --------------------------------------------------------------------------------

    def annotate(self, batch: pa.Table) -> BatchResult:
        p = self.params
        texts = batch.column(p.text_column)
        sigs, counts, hv = self.hasher.signatures_and_hashes(texts, p.ngram)
        n = batch.num_rows
        has = counts > 0
        keys = band_keys(sigs, self.bands, self.rows, seed=p.seed)
        bands = pa.FixedSizeListArray.from_arrays(pa.array(keys.reshape(-1), type=pa.uint64()), self.bands)
        if not has.all():
            bands = pc.if_else(pa.array(has), bands, pa.nulls(n, bands.type))
        fp = np.ascontiguousarray((sigs & np.uint32(0xFF)).astype(np.uint8))
        fp_arr = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(p.num_perm), n, [None, pa.py_buffer(fp.tobytes())]
        ) if n else pa.array([], type=pa.binary(p.num_perm))
        lengths = pc.fill_null(pc.utf8_length(texts), 0).cast(pa.int64())
        out = batch.drop_columns([c for c in (self.BANDS, self.FP, self.LEN) if c in batch.column_names])
        out = out.append_column(self.BANDS, bands).append_column(self.FP, fp_arr).append_column(self.LEN, lengths)
        counters: Counter = Counter(docs_signed=int(has.sum()), shingles=int(counts.sum()))
        if (~has).any():
            counters["no_shingles"] = int((~has).sum())
        return BatchResult(out, counters=counters)

    def buckets(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        col = batch.column(self.BANDS)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        valid = np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False))
        if valid.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.uint64)
        flat = col.take(pa.array(valid)).flatten().to_numpy()
        rows = np.repeat(valid.astype(np.int64), self.bands)
        return rows, flat.astype(np.uint64, copy=False)

    def payload(self, batch: pa.Table) -> pa.Array | None:
        if self.params.verify == "none":
            return None
        col = batch.column(self.FP)
        return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col

    def verify(self, left: pa.Array, right: pa.Array) -> np.ndarray:
        t = self.params.threshold
        if self.params.verify == "exact":  # a cheap pre-filter: the exact check follows
            t -= self.params.verify_margin
        return self.estimate_jaccard(left, right) >= t

    @property
    def exact_verification(self) -> bool:
        return self.params.verify == "exact"

    def exact_payload(self, batch: pa.Table) -> pa.Array:
        """Each document's distinct shingle hashes (list<uint32>, sorted), computed from its text:
        the engine calls this only for documents in a candidate pair, so no shingle list of the
        others is ever kept or shuffled."""
        if batch.num_rows == 0:
            return pa.array([], pa.list_(pa.uint32()))
        norm = normalize_array(batch.column(self.params.text_column))
        spans = shingle_spans(norm, self.params.ngram)
        hv = self.hasher.hash_spans(norm.data, spans.starts, spans.ends)
        return hash_sets(hv, spans.counts)

    def exact_verify(self, left: pa.Array, right: pa.Array) -> np.ndarray:
        return set_jaccard(left, right) >= self.params.threshold

    def estimate_jaccard(self, left: pa.Array, right: pa.Array) -> np.ndarray:
        k = self.params.num_perm
        lb = _fixed_binary_matrix(left, k)
        rb = _fixed_binary_matrix(right, k)
        return bbit_jaccard(lb, rb)

    def survivor_keys(self) -> list[tuple[str, str]]:
        rule = self.params.survivor
        if rule == "longest":
            return [(self.LEN, "descending")]
        if rule == "shortest":
            return [(self.LEN, "ascending")]
        if rule == "smallest_id":
            return []
        order, column = rule.split(":", 1)
        return [(column, "descending" if order == "max" else "ascending")]

    def internal_columns(self) -> tuple[str, ...]:
        return (self.BANDS, self.FP, self.LEN)


def _fixed_binary_matrix(arr: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    buf = arr.buffers()[1]
    data = np.frombuffer(buf, dtype=np.uint8)[arr.offset * width : (arr.offset + len(arr)) * width]
    return data.reshape(len(arr), width)
