"""C4's cleaning rules (Raffel et al. 2020, section 2.2), as the released C4 code applies them.

C4 works line by line. A line is removed when it
- holds a word longer than `max_word_length` characters,
- does not end in terminal punctuation (or ends in an ellipsis),
- has fewer than `min_words_per_line` words,
- mentions "javascript", or
- holds a cookie/terms-of-use phrase (`policy_substrings`).
Wikipedia-style citation markers ("[3]", "[edit]", "[citation needed]") are cut from lines first.
A whole document is dropped when a surviving line contains "lorem ipsum" or a curly bracket, when
fewer than `min_sentences` sentences survive, or (optionally) when it contains a word of a bad-words
list. The rules run in that order per line, as in C4, so a "{" on a line that was already removed
for other reasons does not condemn the page.

`mode`:
- `remove_lines` (C4): kept documents have their text rewritten to the surviving lines.
- `filter`: the text is left untouched; a document is kept or dropped exactly as in `remove_lines`.

Counters: `c4:lines` (lines examined in kept documents) and `c4:lines_removed` with one
`c4:lines_removed:<rule>` per rule (in `filter` mode, `c4:lines_flagged...`: the same lines, not cut).

Sentences are counted with a regular expression (a run of `.`, `!` or `?`, optionally followed by
closing quotes or brackets, then whitespace or the end of the line) rather than NLTK's Punkt, which
needs a model download; abbreviations like "Dr. Smith" count as a boundary, so the count can be a
little higher than Punkt's.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import ClassVar, Literal, Sequence

import numpy as np
import pyarrow as pa
from pydantic import Field

from processors.base import BatchResult, Filter, Params, ProcessorError
from processors.textstats import texts_of

CITATION_RE = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
SENTENCE_END_RE = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s|$)")
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


class C4Params(Params):
    mode: Literal["remove_lines", "filter"] = Field(
        "remove_lines", description="remove_lines: rewrite kept texts without the bad lines; filter: keep text as is")
    remove_citations: bool = Field(True, description="cut '[1]', '[edit]', '[citation needed]' from lines")
    terminal_punctuation: list[str] | None = Field(
        [".", "?", "!", '"', "'"], description="a kept line must end with one of these (null/[] disables)")
    min_words_per_line: int | None = Field(3, ge=1, description="remove lines with fewer words")
    max_word_length: int | None = Field(1000, ge=1, description="remove lines holding a longer word")
    filter_javascript: bool = Field(True, description="remove lines mentioning 'javascript'")
    filter_policy: bool = Field(True, description="remove lines with cookie / terms-of-use phrases")
    policy_substrings: list[str] = Field(list(POLICY_SUBSTRINGS), description="phrases that mark a policy line")
    filter_lorem_ipsum: bool = Field(True, description="drop documents containing 'lorem ipsum'")
    filter_curly_bracket: bool = Field(True, description="drop documents containing '{'")
    min_sentences: int | None = Field(5, ge=1, description="drop documents with fewer sentences left")
    badwords_file: str | None = Field(
        None, description="a file of bad words, one per line: drop documents containing one (off by default)")
    badwords_match_substrings: bool = Field(
        False, description="match bad words anywhere (for scripts without spaces) instead of as whole words")


class C4(Filter):
    """The C4 line and page rules; removes bad lines (or only flags them) and drops bad pages."""

    kind: ClassVar[str] = "c4"
    Params: ClassVar[type[Params]] = C4Params
    requires: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, params: C4Params | None = None) -> None:
        super().__init__(params)
        p: C4Params = self.params
        self._end = tuple(p.terminal_punctuation or ())
        self._policy = tuple(s.lower() for s in p.policy_substrings)
        self._badwords: re.Pattern | None = None

    def setup(self) -> None:
        p: C4Params = self.params
        if p.badwords_file is None or self._badwords is not None:
            return
        path = Path(p.badwords_file).expanduser()
        if not path.is_file():
            raise ProcessorError(f"c4: badwords_file {str(path)!r} does not exist")
        words = sorted({w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines()
                        if w.strip() and not w.lstrip().startswith("#")}, key=len, reverse=True)
        if not words:
            raise ProcessorError(f"c4: badwords_file {str(path)!r} lists no words")
        alternatives = "|".join(map(re.escape, words))
        self._badwords = re.compile(alternatives if p.badwords_match_substrings
                                    else rf"(?<!\w)(?:{alternatives})(?!\w)")

    # -- the rules ------------------------------------------------------------------------------

    def clean(self, text: str, lines_counter: Counter | None = None) -> tuple[str | None, str | None]:
        """(cleaned text, None) for a kept document, or (None, reason) for a dropped one.

        `lines_counter`, if given, receives the number of lines removed per rule.
        """
        p: C4Params = self.params
        kept: list[str] = []
        sentences = 0
        removed: Counter = Counter()
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue  # blank lines are separators, not content
            if p.max_word_length is not None and len(line) > p.max_word_length and any(
                    len(w) > p.max_word_length for w in line.split()):
                removed["too_long_word"] += 1
                continue
            if p.remove_citations and "[" in line:
                line = CITATION_RE.sub("", line).strip()
            if self._end and (not line.endswith(self._end) or line.endswith("...")):
                removed["no_terminal_punct"] += 1
                continue
            if p.min_words_per_line is not None and len(line.split()) < p.min_words_per_line:
                removed["too_few_words"] += 1
                continue
            lower = line.lower()
            if p.filter_lorem_ipsum and "lorem ipsum" in lower:
                return None, "lorem_ipsum"
            if p.filter_javascript and "javascript" in lower:
                removed["javascript"] += 1
                continue
            if p.filter_curly_bracket and "{" in line:
                return None, "curly_bracket"
            if p.filter_policy and any(s in lower for s in self._policy):
                removed["policy"] += 1
                continue
            if self._badwords is not None and self._badwords.search(lower):
                return None, "badwords"
            sentences += max(1, len(SENTENCE_END_RE.findall(line)))
            kept.append(line)
        if p.min_sentences is not None and sentences < p.min_sentences:
            return None, "too_few_sentences"
        if not kept:
            return None, "empty"
        if lines_counter is not None:
            lines_counter["lines"] += len(kept) + sum(removed.values())
            lines_counter.update(removed)
        return "\n".join(kept), None

    def decide(self, batch: pa.Table) -> tuple[np.ndarray, Sequence[str | None]]:
        reasons = [self.clean(t)[1] for t in texts_of(batch)]
        keep = np.fromiter((r is None for r in reasons), dtype=bool, count=len(reasons))
        return keep, [None if r is None else f"{self.kind}:{r}" for r in reasons]

    def process(self, batch: pa.Table) -> BatchResult:
        """One pass: decide, count, and (in remove_lines mode) rewrite the kept texts."""
        if self._badwords is None and self.params.badwords_file is not None:
            self.setup()
        if batch.num_rows == 0:
            return BatchResult(batch)
        lines: Counter = Counter()
        results = [self.clean(t, lines) for t in texts_of(batch)]
        keep = np.fromiter((r is None for _, r in results), dtype=bool, count=len(results))
        drops: Counter = Counter(f"{self.kind}:{r}" for _, r in results if r is not None)
        out = batch.filter(pa.array(keep))
        verb = "lines_removed" if self.params.mode == "remove_lines" else "lines_flagged"
        counters: Counter = Counter()
        counters[f"{self.kind}:lines"] = lines.pop("lines", 0)
        counters[f"{self.kind}:{verb}"] = sum(lines.values())
        for rule, n in lines.items():
            counters[f"{self.kind}:{verb}:{rule}"] = n
        if self.params.mode == "remove_lines" and out.num_rows:
            texts = pa.array([t for t, _ in results if t is not None], type=pa.string())
            idx = out.schema.get_field_index("text")
            out = out.set_column(idx, out.schema.field(idx), texts.cast(out.schema.field(idx).type))
        return BatchResult(out, drops, counters)
