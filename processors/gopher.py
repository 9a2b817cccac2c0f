"""Gopher (MassiveText) quality and repetition filters, Rae et al. 2021, appendix A1.

Two stages, as in the paper and in FineWeb's pipeline:

- `gopher_quality`: document length, mean word length, symbol-to-word ratio, bullet and ellipsis
  lines, words with a letter, and a minimum of English stop words.
- `gopher_repetition`: duplicated lines and paragraphs, the most frequent 2/3/4-gram and duplicated
  5..10-grams, all measured as fractions of the document.

Defaults are the published thresholds. Every threshold is a parameter; setting one to null disables
that check. A dropped document is counted under the first check it fails, in the order the
parameters are declared (`gopher_quality:word_count`, `gopher_repetition:dup_line_frac`, ...).

How words, lines and paragraphs are counted is defined once in `processors.textstats`. Where the
paper is ambiguous we chose (and test) this:
- word count and mean word length exclude punctuation-only tokens;
- the stop-word rule counts occurrences, case-insensitively ("The" counts);
- bullet and ellipsis line ratios are over non-blank lines;
- a duplicate line/paragraph is a copy of an earlier one (the first occurrence is not a duplicate);
  blank lines are ignored; character fractions are over the characters of the non-blank lines
  (paragraphs);
- duplicated n-gram fractions count every occurrence of a repeated n-gram, overlapping characters
  once, over the characters of all words.
"""
from __future__ import annotations

import re
from typing import ClassVar, Sequence

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from processors.base import Filter, Params
from processors.prefilter import MinCountRule
from processors.textstats import NgramIndex, duplicate_stats, split_lines, split_paragraphs, split_words, texts_of

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# Characters that mark a bulleted line when they open it (after indentation).
BULLETS = ("•", "‣", "⁃", "◦", "▪", "▫", "●", "○", "■", "□", "◆", "◇", "►", "▶", "➢", "✓", "✔", "-", "*", "·")
ELLIPSES = ("...", "…")
_LETTER = re.compile(r"[^\W\d_]")  # a Unicode letter


class GopherQualityParams(Params):
    min_words: int | None = Field(50, ge=0, description="fewest words a document may have")
    max_words: int | None = Field(100_000, ge=1, description="most words a document may have")
    min_mean_word_length: float | None = Field(3.0, ge=0, description="shortest mean word length (characters)")
    max_mean_word_length: float | None = Field(10.0, ge=0, description="longest mean word length (characters)")
    max_symbol_word_ratio: float | None = Field(
        0.1, ge=0, description="most '#' per word, and most ellipses ('...' or '…') per word")
    max_bullet_lines_ratio: float | None = Field(
        0.9, ge=0, le=1, description="largest share of lines that may start with a bullet")
    max_ellipsis_lines_ratio: float | None = Field(
        0.3, ge=0, le=1, description="largest share of lines that may end with an ellipsis")
    min_alpha_words_ratio: float | None = Field(
        0.8, ge=0, le=1, description="smallest share of words that must contain a letter")
    min_stop_words: int | None = Field(2, ge=0, description="fewest occurrences of the stop words")
    stop_words: list[str] = Field(list(GOPHER_STOP_WORDS), description="the stop words (compared lowercased)")


class GopherQuality(Filter):
    """Gopher quality rules: drops documents that do not look like running prose."""

    kind: ClassVar[str] = "gopher_quality"
    Params: ClassVar[type[Params]] = GopherQualityParams
    requires: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, params: GopherQualityParams | None = None) -> None:
        super().__init__(params)
        self._stop = frozenset(w.lower() for w in self.params.stop_words)
        self._stop_max_len = max((len(w) for w in self._stop), default=0)

    def reason(self, text: str) -> str | None:
        """The first rule `text` breaks (without the stage prefix), or None if it passes."""
        p: GopherQualityParams = self.params
        words = split_words(text)
        n = len(words)
        if p.min_words is not None and n < p.min_words:
            return "word_count"
        if p.max_words is not None and n > p.max_words:
            return "word_count"
        if n == 0:
            return "word_count"  # every ratio below is per word
        if p.min_mean_word_length is not None or p.max_mean_word_length is not None:
            mean = sum(map(len, words)) / n
            if p.min_mean_word_length is not None and mean < p.min_mean_word_length:
                return "mean_word_length"
            if p.max_mean_word_length is not None and mean > p.max_mean_word_length:
                return "mean_word_length"
        if p.max_symbol_word_ratio is not None:
            if text.count("#") / n > p.max_symbol_word_ratio:
                return "symbol_word_ratio"
            if (text.count("...") + text.count("…")) / n > p.max_symbol_word_ratio:
                return "symbol_word_ratio"
        if p.max_bullet_lines_ratio is not None or p.max_ellipsis_lines_ratio is not None:
            lines = split_lines(text)
            n_lines = max(len(lines), 1)
            if p.max_bullet_lines_ratio is not None:
                bullets = sum(1 for line in lines if line.lstrip().startswith(BULLETS))
                if bullets / n_lines > p.max_bullet_lines_ratio:
                    return "bullet_lines_ratio"
            if p.max_ellipsis_lines_ratio is not None:
                ellipses = sum(1 for line in lines if line.endswith(ELLIPSES))
                if ellipses / n_lines > p.max_ellipsis_lines_ratio:
                    return "ellipsis_lines_ratio"
        if p.min_alpha_words_ratio is not None:
            alpha = sum(1 for w in words if w.isalpha() or _LETTER.search(w))
            if alpha / n < p.min_alpha_words_ratio:
                return "alpha_words_ratio"
        if p.min_stop_words is not None and p.min_stop_words > 0:
            stop, max_len = self._stop, self._stop_max_len
            found = 0
            for w in words:
                if len(w) <= max_len and w.lower() in stop:  # stop words are short: skip long words cheaply
                    found += 1
                    if found >= p.min_stop_words:
                        break
            else:
                if found < p.min_stop_words:
                    return "stop_words"
        return None

    def decide(self, batch: pa.Table) -> tuple[np.ndarray, Sequence[str | None]]:
        reasons = [self.reason(t) for t in texts_of(batch)]
        keep = np.fromiter((r is None for r in reasons), dtype=bool, count=len(reasons))
        return keep, [None if r is None else f"{self.kind}:{r}" for r in reasons]

    def superset_rules(self) -> list[MinCountRule]:
        """The word-count minimum (a text without words always fails it) and the stop-word
        minimum: a part of a text has no more words, and no more stop words, than the text."""
        p: GopherQualityParams = self.params
        rules = [MinCountRule(f"{self.kind}:word_count", max(p.min_words or 0, 1))]
        if p.min_stop_words and self._stop:
            rules.append(MinCountRule(f"{self.kind}:stop_words", p.min_stop_words, tuple(sorted(self._stop))))
        return rules


def _ngram_thresholds(value: dict[int, float] | None) -> dict[int, float] | None:
    if value is None:
        return None
    for n, frac in value.items():
        if n < 1:
            raise ValueError(f"n-gram size must be at least 1, got {n}")
        if not 0 <= frac <= 1:
            raise ValueError(f"n-gram fraction must lie in [0, 1], got {frac} for n={n}")
    return dict(sorted(value.items()))


class GopherRepetitionParams(Params):
    max_dup_line_frac: float | None = Field(0.30, ge=0, le=1, description="share of lines that repeat an earlier line")
    max_dup_para_frac: float | None = Field(
        0.30, ge=0, le=1, description="share of paragraphs that repeat an earlier paragraph")
    max_dup_line_char_frac: float | None = Field(
        0.20, ge=0, le=1, description="share of characters in lines that repeat an earlier line")
    max_dup_para_char_frac: float | None = Field(
        0.20, ge=0, le=1, description="share of characters in paragraphs that repeat an earlier paragraph")
    max_top_ngram_char_frac: dict[int, float] | None = Field(
        {2: 0.20, 3: 0.18, 4: 0.16},
        description="n → largest share of characters covered by the most frequent n-gram")
    max_dup_ngram_char_frac: dict[int, float] | None = Field(
        {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n → largest share of characters covered by n-grams that occur more than once")

    _check_ngrams = field_validator("max_top_ngram_char_frac", "max_dup_ngram_char_frac")(
        lambda cls, v: _ngram_thresholds(v))


class GopherRepetition(Filter):
    """Gopher repetition rules: drops documents made of repeated lines, paragraphs or phrases."""

    kind: ClassVar[str] = "gopher_repetition"
    Params: ClassVar[type[Params]] = GopherRepetitionParams
    requires: ClassVar[tuple[str, ...]] = ("text",)

    def reason(self, text: str) -> str | None:
        """The first rule `text` breaks (without the stage prefix), or None if it passes."""
        p: GopherRepetitionParams = self.params
        if p.max_dup_para_frac is not None or p.max_dup_para_char_frac is not None:
            n, dup, chars, dup_chars = duplicate_stats(split_paragraphs(text))
            if n and p.max_dup_para_frac is not None and dup / n > p.max_dup_para_frac:
                return "dup_para_frac"
            if chars and p.max_dup_para_char_frac is not None and dup_chars / chars > p.max_dup_para_char_frac:
                return "dup_para_char_frac"
        if p.max_dup_line_frac is not None or p.max_dup_line_char_frac is not None:
            n, dup, chars, dup_chars = duplicate_stats(line.strip() for line in split_lines(text))
            if n and p.max_dup_line_frac is not None and dup / n > p.max_dup_line_frac:
                return "dup_line_frac"
            if chars and p.max_dup_line_char_frac is not None and dup_chars / chars > p.max_dup_line_char_frac:
                return "dup_line_char_frac"
        if p.max_top_ngram_char_frac or p.max_dup_ngram_char_frac:
            index = NgramIndex(split_words(text))
            for n, limit in sorted((p.max_top_ngram_char_frac or {}).items()):
                if index.top_char_fraction(n) > limit:
                    return f"top_{n}gram_char_frac"
            for n, limit in sorted((p.max_dup_ngram_char_frac or {}).items()):
                if index.dup_char_fraction(n) > limit:
                    return f"dup_{n}gram_char_frac"
        return None

    def decide(self, batch: pa.Table) -> tuple[np.ndarray, Sequence[str | None]]:
        reasons = [self.reason(t) for t in texts_of(batch)]
        keep = np.fromiter((r is None for r in reasons), dtype=bool, count=len(reasons))
        return keep, [None if r is None else f"{self.kind}:{r}" for r in reasons]
