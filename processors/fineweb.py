"""FineWeb's own quality filter (Penedo et al. 2024, "The FineWeb Datasets", section 3.3.3).

Three rules FineWeb added after Gopher and C4, plus the list-document rule, with the thresholds of
FineWeb's released pipeline (datatrove's `FineWebQualityFilter` defaults, which produced the dataset):

- `line_punct_ratio`: drop when the share of lines ending in punctuation is at most 0.12;
- `short_line_ratio`: drop when the share of lines of at most 30 characters is at least 0.67;
- `char_dup_ratio`: drop when the characters in lines repeating an earlier line are at least 0.01 of
  the characters of all (non-blank) lines;
- `list_ratio`: drop when there are more than 0.3 line breaks per word (list-like pages).

The comparisons (≤ / ≥ / >) are those of FineWeb's reference implementation, so a document exactly
at a threshold is treated as there. Each threshold can be set to null to disable its rule.

One deliberate difference: blank lines are ignored (FineWeb counts them, because its extractor never
emits them). With them counted, a page whose paragraphs are separated by blank lines would look
half made of short unpunctuated lines. Line breaks for `list_ratio` are therefore breaks between
non-blank lines. Words are counted as in `processors.textstats` (punctuation tokens excluded).
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
import pyarrow as pa
from pydantic import Field

from processors.base import Filter, Params
from processors.textstats import duplicate_stats, split_lines, split_words, texts_of


class FineWebParams(Params):
    line_punct_thr: float | None = Field(
        0.12, ge=0, le=1, description="drop if the share of lines ending in punctuation is at most this")
    line_punct_exclude_zero: bool = Field(
        False, description="keep documents where no line ends in punctuation (exempt them from line_punct)")
    line_end_chars: list[str] = Field(
        [".", "'", '"', "!", "?"], description="characters that count as line-ending punctuation")
    short_line_thr: float | None = Field(
        0.67, ge=0, le=1, description="drop if the share of short lines is at least this")
    short_line_length: int = Field(30, ge=0, description="a line of at most this many characters is short")
    char_duplicates_ratio: float | None = Field(
        0.01, ge=0, le=1, description="drop if the share of characters in repeated lines is at least this")
    new_line_ratio: float | None = Field(
        0.3, ge=0, description="drop if there are more line breaks per word than this")


class FineWebQuality(Filter):
    """FineWeb's line-punctuation, short-line, duplicated-line and list-document rules."""

    kind: ClassVar[str] = "fineweb"
    Params: ClassVar[type[Params]] = FineWebParams
    requires: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, params: FineWebParams | None = None) -> None:
        super().__init__(params)
        self._end = tuple(self.params.line_end_chars)

    def reason(self, text: str) -> str | None:
        """The first rule `text` breaks (without the stage prefix), or None if it passes."""
        p: FineWebParams = self.params
        lines = split_lines(text)
        n_lines = len(lines)
        if n_lines == 0:
            return "empty"
        if p.line_punct_thr is not None:
            ratio = sum(1 for line in lines if line.endswith(self._end)) / n_lines
            if ratio <= p.line_punct_thr and not (ratio == 0 and p.line_punct_exclude_zero):
                return "line_punct_ratio"
        if p.short_line_thr is not None:
            limit = p.short_line_length
            ratio = sum(1 for line in lines if len(line) <= limit) / n_lines
            if ratio >= p.short_line_thr:
                return "short_line_ratio"
        if p.char_duplicates_ratio is not None:
            _, _, chars, dup_chars = duplicate_stats(lines)
            if chars and dup_chars / chars >= p.char_duplicates_ratio:
                return "char_dup_ratio"
        if p.new_line_ratio is not None:
            n_words = len(split_words(text))
            if n_words == 0 or (n_lines - 1) / n_words > p.new_line_ratio:
                return "list_ratio"
        return None

    def decide(self, batch: pa.Table) -> tuple[np.ndarray, Sequence[str | None]]:
        reasons = [self.reason(t) for t in texts_of(batch)]
        keep = np.fromiter((r is None for r in reasons), dtype=bool, count=len(reasons))
        return keep, [None if r is None else f"{self.kind}:{r}" for r in reasons]
