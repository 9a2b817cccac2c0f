"""Text statistics shared by the heuristic filters (Gopher, C4, FineWeb).

Tokenisation choices, stated once so every filter counts the same way:

- **Words** are runs of non-space characters with leading and trailing non-word characters trimmed
  (`"(hello),"` → `hello`, `"$100"` → `100`, `"don't"` stays whole, a lone `"-"` or `"©"` is no word).
  This is the whitespace notion of "word" the Gopher paper uses, minus punctuation-only tokens, which
  is close to what an NLTK word tokenizer yields on English without its cost. It is one compiled
  regular expression run in C.
- **CJK** ideographs and kana are one word each: Chinese and Japanese have no spaces, so a run of them
  is not one giant word (which would make a mean word length of hundreds). Thai, Lao, Khmer and
  Burmese runs stay whole; the English-tuned thresholds are not meant for them anyway (filter by
  language first).
- **Lines** are `str.splitlines()` with trailing whitespace removed; *blank lines are skipped* by the
  ratio statistics so that the same text scores the same whether paragraphs are separated by one
  newline (trafilatura) or a blank line (WET, Markdown).
- **Paragraphs** are the blocks between blank lines.
- **N-grams** are over words, identified exactly (no hashing): word ids are dense integers and the id
  of an n-gram is built from the id of its (n-1)-gram prefix and its last word with `numpy.unique`,
  so all n-gram statistics of a document cost a few vectorised passes rather than Python loops.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from processors.words import WORD_RE, split_words  # noqa: F401 - re-exported: one notion of word

PARAGRAPH_RE = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def split_lines(text: str, keep_blank: bool = False) -> list[str]:
    """Lines with trailing whitespace removed; blank lines dropped unless `keep_blank`."""
    lines = [line.rstrip() for line in text.splitlines()]
    return lines if keep_blank else [line for line in lines if line]


def split_paragraphs(text: str) -> list[str]:
    """Blocks of text separated by at least one blank line; empty blocks dropped."""
    return [p for p in (p.strip() for p in PARAGRAPH_RE.split(text)) if p]


def texts_of(batch: pa.Table, column: str = "text") -> list[str]:
    """The text column as Python strings, null as the empty string."""
    return ["" if t is None else t for t in batch.column(column).to_pylist()]


def duplicate_stats(items: Iterable[str]) -> tuple[int, int, int, int]:
    """(items, duplicate items, characters, duplicate characters) of a sequence of strings.

    A duplicate is an item equal to an *earlier* item: the first occurrence is the original, each
    later copy counts once (three equal lines → two duplicates).
    """
    seen: set[str] = set()
    n = dup = chars = dup_chars = 0
    for item in items:
        n += 1
        chars += len(item)
        if item in seen:
            dup += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return n, dup, chars, dup_chars


def _cover(starts: np.ndarray, n: int, length: int) -> np.ndarray:
    """Boolean mask of the word positions covered by n-grams starting at `starts` (overlaps once)."""
    diff = np.zeros(length + 1, dtype=np.int32)
    np.add.at(diff, starts, 1)
    np.add.at(diff, starts + n, -1)
    return np.cumsum(diff[:-1]) > 0


class NgramIndex:
    """Exact n-gram statistics over one document's words, computed lazily for growing n.

    `top_char_fraction(n)`: the share of word characters covered by the occurrences of the most
    frequent n-gram (ties: the one covering the most characters).
    `dup_char_fraction(n)`: the share of word characters covered by any n-gram that occurs more than
    once, all its occurrences included, overlapping occurrences counted once (Gopher: "the fraction
    of characters contained within all duplicate n-grams, not counting characters of overlapping
    n-grams twice").
    Characters are those of the words themselves (spaces and trimmed punctuation excluded), in both
    numerator and denominator, so each fraction lies in [0, 1].
    """

    def __init__(self, words: Sequence[str]):
        vocab: dict[str, int] = {}
        self.n_words = len(words)
        self.word_ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int64,
                                    count=self.n_words)
        self.word_len = np.fromiter((len(w) for w in words), dtype=np.int64, count=self.n_words)
        self.total_chars = int(self.word_len.sum())
        self._ids: dict[int, np.ndarray] = {1: self.word_ids}
        self._n_distinct: dict[int, int] = {1: len(vocab)}

    def ids(self, n: int) -> np.ndarray:
        """Dense ids of the n-grams starting at positions 0 .. n_words - n (exact, collision-free)."""
        if n in self._ids:
            return self._ids[n]
        if n > self.n_words:
            return np.empty(0, dtype=np.int64)
        prev = self.ids(n - 1)[:-1]
        last = self.word_ids[n - 1:]
        # prev < n_words and last < vocabulary size <= n_words, so the key is below n_words**2
        key = prev * np.int64(self._n_distinct[1]) + last
        uniq, inverse = np.unique(key, return_inverse=True)
        self._ids[n] = inverse.reshape(-1).astype(np.int64, copy=False)
        self._n_distinct[n] = len(uniq)
        return self._ids[n]

    def top_char_fraction(self, n: int) -> float:
        """Coverage of the most frequent n-gram; among equally frequent ones, the longest in characters."""
        ids = self.ids(n)
        if ids.size == 0 or self.total_chars == 0:
            return 0.0
        counts = np.bincount(ids)
        candidates = np.flatnonzero(counts == counts.max())
        if candidates.size > 1:
            csum = np.concatenate(([0], np.cumsum(self.word_len)))
            window_chars = csum[n:] - csum[:-n]  # characters of the n-gram starting at each position
            first = np.full(counts.size, -1, dtype=np.int64)
            first[ids[::-1]] = np.arange(ids.size - 1, -1, -1)  # first occurrence of each n-gram id
            best = candidates[np.argmax(window_chars[first[candidates]])]
        else:
            best = candidates[0]
        mask = _cover(np.flatnonzero(ids == best), n, self.n_words)
        return float(self.word_len[mask].sum()) / self.total_chars

    def dup_char_fraction(self, n: int) -> float:
        ids = self.ids(n)
        if ids.size == 0 or self.total_chars == 0:
            return 0.0
        counts = np.bincount(ids)
        starts = np.flatnonzero(counts[ids] > 1)
        if starts.size == 0:
            return 0.0
        mask = _cover(starts, n, self.n_words)
        return float(self.word_len[mask].sum()) / self.total_chars
