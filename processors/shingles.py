"""Text normalisation and word n-gram shingles, vectorised over Arrow string arrays.

Normalisation (one definition, used by every dedup stage and by the benchmarks' ground truth):

1. Unicode NFKC (full-width forms, ligatures, no-break spaces folded to their plain forms);
2. lowercase (Python's `str.lower`, full case mapping);
3. every *separator* character -- Unicode general category P* (punctuation) or Z* (spaces,
   line/paragraph separators), plus the ASCII control whitespace ``\\t \\n \\v \\f \\r``, the
   information separators ``\\x1c``-``\\x1f`` and NEL ``\\x85`` -- becomes a word boundary;
4. words are the non-empty runs between boundaries.

A shingle is ``" ".join(words[i:i + n])`` encoded as UTF-8, for every start ``i``; a document with
fewer than ``n`` (but at least one) words has exactly one shingle, all its words; a document
without words has no shingles.

The fast path never materialises the shingles as Python strings: after normalisation every
document is held in one UTF-8 buffer as its words joined by single spaces, so each shingle is a
contiguous byte span ``buffer[start:end]`` of that buffer. Hashing then slices the buffer.

`normalize_py` / `shingles_py` are the plain-Python definition, kept for tests and small tools;
`normalize_array` / `shingle_spans` must give the same bytes (a test checks it on real pages).
"""
from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_EXTRA_SEPARATORS = frozenset("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85")
_SPACE = 0x20


def is_separator(ch: str) -> bool:
    """Whether one character is folded to a word boundary."""
    return ch in _EXTRA_SEPARATORS or unicodedata.category(ch)[0] in "PZ"


# ---------------------------------------------------------------------------------------------
# Plain-Python definition
# ---------------------------------------------------------------------------------------------


def normalize_py(text: str) -> str:
    """The canonical normalised form: words joined by single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(w for w in "".join(" " if is_separator(c) else c for c in text).split(" ") if w)


def words_py(text: str) -> list[str]:
    norm = normalize_py(text)
    return norm.split(" ") if norm else []


def shingles_py(text: str, n: int = 5) -> list[bytes]:
    """The shingles of one document, in order, duplicates included (a MinHash ignores them)."""
    words = words_py(text)
    if not words:
        return []
    if len(words) < n:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)]


# ---------------------------------------------------------------------------------------------
# Vectorised path
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _separator_tables() -> tuple[np.ndarray, str]:
    """(lookup table of ASCII separator bytes, RE2 class matching every non-ASCII separator).

    Both are derived from Python's `unicodedata`, so the vectorised path and `normalize_py` agree
    by construction rather than by two Unicode tables happening to match.
    """
    lut = np.zeros(256, dtype=bool)
    for b in range(0x80):
        lut[b] = is_separator(chr(b))
    ranges: list[tuple[int, int]] = []
    for cp in range(0x80, sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates never occur in valid UTF-8
            continue
        if is_separator(chr(cp)):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    parts = [f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges]
    return lut, "[" + "".join(parts) + "]+"


@dataclass
class NormalizedText:
    """Normalised documents in one UTF-8 buffer: document i is ``data[offsets[i]:offsets[i+1]]``,
    its words joined by single spaces (no leading or trailing space)."""

    data: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len = num docs + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> str:
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("utf-8")


def _as_string_array(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if pa.types.is_large_string(texts.type) or pa.types.is_string_view(texts.type):
        texts = texts.cast(pa.string()) if texts.nbytes < (1 << 31) - 1 else texts.cast(pa.large_string())
    return texts.fill_null("") if texts.null_count else texts


def _buffer_and_offsets(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    off_dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=off_dtype)[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return data, offsets


def normalize_array(texts: pa.Array | pa.ChunkedArray) -> NormalizedText:
    """Normalise a batch of documents (nulls count as empty) into one buffer."""
    arr = _as_string_array(texts)
    n = len(arr)
    if n == 0:
        return NormalizedText(np.zeros(0, np.uint8), np.zeros(1, np.int64))
    lut, non_ascii_class = _separator_tables()
    # 1+2. NFKC and lowercase. ASCII documents are already NFKC and lowercase byte-wise in Arrow;
    # the others go through Python, where `is_normalized` is a fast C quick-check, so NFKC only
    # runs on documents that need it, and `str.lower` is the full Unicode case mapping.
    non_ascii = pc.invert(pc.string_is_ascii(arr))
    lowered = pc.ascii_lower(arr)
    if pc.any(non_ascii).as_py():
        idx = pc.indices_nonzero(non_ascii)
        is_nfkc, nfkc = unicodedata.is_normalized, unicodedata.normalize
        sub = [(s if is_nfkc("NFKC", s) else nfkc("NFKC", s)).lower() for s in arr.take(idx).to_pylist()]
        sub_arr = pa.array(sub, type=arr.type)
        del sub
        # 3a. non-ASCII separators -> space (RE2; a class generated from `unicodedata`)
        sub_arr = pc.replace_substring_regex(sub_arr, pattern=non_ascii_class, replacement=" ")
        arr = pc.replace_with_mask(lowered, non_ascii, sub_arr)
    else:
        arr = lowered
    data, offsets = _buffer_and_offsets(arr)
    lo, hi = int(offsets[0]), int(offsets[-1])
    data = data[lo:hi]
    offsets = offsets - lo
    if data.size == 0:
        return NormalizedText(np.zeros(0, np.uint8), offsets)
    # 3b+4. ASCII separators (bytes < 0x80 never occur inside a multi-byte UTF-8 sequence) and
    # collapse: keep word bytes, plus one space between consecutive words of the same document.
    is_word = ~np.take(lut, data)
    doc_start = np.zeros(data.size, dtype=bool)
    starts = offsets[:-1][offsets[:-1] < offsets[1:]]
    doc_start[starts] = True
    prev_word = np.empty_like(is_word)
    prev_word[0] = False
    prev_word[1:] = is_word[:-1]
    prev_word &= ~doc_start
    # a boundary byte after a word byte opens a gap; it becomes one space unless it is trailing,
    # i.e. after the last word byte of its document
    gap_open = ~is_word & prev_word
    word_pos = np.flatnonzero(is_word)
    last_word = np.searchsorted(word_pos, offsets[1:], side="left") - 1  # per document
    has_words = offsets[1:] > offsets[:-1]
    if word_pos.size:
        lw = word_pos[np.maximum(last_word, 0)]
        has_words &= (last_word >= 0) & (lw >= offsets[:-1])
    marks = np.zeros(data.size + 1, dtype=np.int32)
    if has_words.any():
        np.add.at(marks, lw[has_words] + 1, 1)
        np.add.at(marks, offsets[1:][has_words], -1)
    trailing = np.cumsum(marks[:-1], dtype=np.int32) > 0
    keep = is_word | (gap_open & ~trailing)
    kept = np.flatnonzero(keep)
    out = data[kept]
    out[~is_word[kept]] = _SPACE
    return NormalizedText(out, np.searchsorted(kept, offsets, side="left").astype(np.int64))


@dataclass
class ShingleSpans:
    """Byte spans of every shingle of a `NormalizedText`, grouped by document in order."""

    counts: np.ndarray  # int64 per document: number of shingles (0 for a document without words)
    starts: np.ndarray  # int64 per shingle
    ends: np.ndarray  # int64 per shingle


def shingle_spans(norm: NormalizedText, n: int) -> ShingleSpans:
    if n < 1:
        raise ValueError("n-gram size must be at least 1")
    data, offsets = norm.data, norm.offsets
    nonempty = offsets[1:] > offsets[:-1]
    # every word starts at a document start or after a space, and ends at a space or a document
    # end (the buffer is canonical: single spaces, nothing leading or trailing)
    is_space = data == _SPACE
    is_start = np.zeros(data.size + 1, dtype=bool)
    is_start[1:] = is_space
    is_start[offsets[:-1][nonempty]] = True
    word_starts = np.flatnonzero(is_start[:-1])
    is_end = np.zeros(data.size + 1, dtype=bool)  # exclusive ends
    is_end[:-1] = is_space
    is_end[offsets[1:][nonempty]] = True
    word_ends = np.flatnonzero(is_end)
    first = np.searchsorted(word_starts, offsets[:-1], side="left")
    nwords = np.searchsorted(word_starts, offsets[1:], side="left") - first
    counts = np.where(nwords >= n, nwords - n + 1, np.minimum(nwords, 1)).astype(np.int64)
    total = int(counts.sum())
    doc = np.repeat(np.arange(len(counts)), counts)
    j = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    si = first[doc] + j
    ei = np.minimum(si + (n - 1), first[doc] + nwords[doc] - 1)
    return ShingleSpans(counts, word_starts[si], word_ends[ei])


def shingles_of_array(texts: pa.Array | pa.ChunkedArray, n: int = 5) -> list[list[bytes]]:
    """The shingles of every document as bytes (slow: for tests and ground truth)."""
    norm = normalize_array(texts)
    spans = shingle_spans(norm, n)
    buf = norm.data.tobytes()
    out: list[list[bytes]] = []
    pos = 0
    for c in spans.counts.tolist():
        out.append([buf[s:e] for s, e in zip(spans.starts[pos : pos + c].tolist(), spans.ends[pos : pos + c].tolist())])
        pos += c
    return out
