"""Undo WikiText's tokenisation, so that a reference corpus reads like the text it is compared with.

WikiText (Merity et al. 2016) ships Wikipedia articles pre-tokenised: every token is separated by a
space (`word , word .`), hyphens and the separators inside numbers are escaped as ` @-@ `, ` @,@ `
and ` @.@ `, contractions are split (`isn 't`, `Linnaeus 's`), headings are ` = Title = ` and
` = = Section = = `, and rare words are replaced by `<unk>`. A classifier trained on that text
against web pages learns those artifacts (a space before every comma is a perfect "reference"
feature), not quality. This module rebuilds ordinary prose:

- escaped separators are glued back (`1 @,@ 000` -> `1,000`, `state @-@ of` -> `state-of`);
- closing punctuation and contractions attach to the word before, opening brackets and currency
  signs to the word after; double quotes alternate open/close within a paragraph; a lone `'` after
  a word ending in `s` is a possessive (`Linnaeus ' concept` -> `Linnaeus' concept`);
- `<unk>` (about 2.5% of WikiText-2's tokens; two sentences in three hold one): by default the
  placeholder is deleted with any brackets or quotes it leaves empty (`unk: remove`), which keeps
  all the text at the price of a missing rare word here and there; `drop_sentence` drops every
  sentence holding one (only natural sentences, but 73% of WikiText-2's words go); `keep` leaves it;
- headings become plain lines holding the title; `wikitext_articles` splits a file into one document
  per top-level heading.

`wikitext_detok` is also a pipeline stage (a Mapper rewriting `text`), for reference sources read
through the engine.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Iterable, Literal

import pyarrow as pa
from pydantic import Field

from processors.base import Mapper, Params
from processors.textstats import texts_of

UNK = "<unk>"
_ESCAPES = {"@-@": "-", "@,@": ",", "@.@": "."}
_CLOSE = {".", ",", ";", ":", "!", "?", ")", "]", "}", "%", "...", "''"}
_OPEN = {"(", "[", "{", "$", "£", "€", "#", "``"}
_CONTRACTIONS = {"'s", "'S", "'re", "'ve", "'m", "'ll", "'d", "'t", "n't", "N'T"}
_HEADING = re.compile(r"^\s*((?:= )+)(.*?)((?: =)+)\s*$")
# In tokenised text a sentence ends with a space-separated . ! or ? (abbreviations keep their dot).
_SENTENCE_END = re.compile(r"(?<= [.!?]) (?=\S)")
_EMPTY_PAIRS = re.compile(r"\(\s*[,;]?\s*\)|\[\s*\]|\"\s*\"")
_SPACES = re.compile(r"[ \t]{2,}")
_SPACE_BEFORE_PUNCT = re.compile(r" +([.,;:!?)\]])")

UnkMode = Literal["drop_sentence", "remove", "keep"]


def heading(line: str) -> tuple[int, str] | None:
    """(level, title) of a WikiText heading line (` = Title = ` is level 1), else None."""
    m = _HEADING.match(line)
    if not m or not m.group(2).strip():
        return None
    level = m.group(1).count("=")
    return (level, m.group(2).strip()) if m.group(3).count("=") == level else None


def _join(tokens: list[str]) -> str:
    out: list[str] = []
    glue_next = False  # the previous token asked to be glued to the next one
    open_quote = False
    for tok in tokens:
        if tok in _ESCAPES:
            if out:
                out[-1] += _ESCAPES[tok]
            else:
                out.append(_ESCAPES[tok])
            glue_next = True
            continue
        if tok == '"':
            if open_quote and out:
                out[-1] += '"'
                glue_next = False
            else:
                out.append('"')
                glue_next = True
            open_quote = not open_quote
            continue
        attach_left = (
            tok in _CLOSE
            or tok in _CONTRACTIONS
            or (tok == "'" and bool(out) and out[-1].endswith(("s", "S")))
        )
        if out and (glue_next or attach_left):
            out[-1] += tok
        else:
            out.append(tok)
        glue_next = tok in _OPEN
    return " ".join(out)


def detokenize_line(line: str, unk: UnkMode = "remove") -> str:
    """One tokenised paragraph (or heading title) back to plain text; '' if nothing is left."""
    line = line.strip()
    if not line:
        return ""
    if unk == "drop_sentence" and UNK in line:
        line = " ".join(s for s in _SENTENCE_END.split(line) if UNK not in s)
    elif unk == "remove":
        line = line.replace(UNK, " ")
    text = _join(line.split())
    if unk == "remove":
        text = _EMPTY_PAIRS.sub("", text)
        text = _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text))
    return text.strip()


def detokenize(text: str, unk: UnkMode = "remove") -> str:
    """A whole WikiText fragment: headings become their titles, paragraphs are de-tokenised."""
    lines = []
    for raw in text.splitlines():
        h = heading(raw)
        line = detokenize_line(h[1] if h else raw, unk)
        if line:
            lines.append(line)
    return "\n".join(lines)


def wikitext_articles(paths: Iterable[str | Path], unk: UnkMode = "remove",
                      min_words: int = 20) -> list[tuple[str, list[str]]]:
    """Split WikiText files into articles at top-level headings: [(title, paragraphs), ...].

    Paragraphs are de-tokenised; section headings are kept as their own (short) paragraphs so that
    a chunker can start a chunk at a section. Articles with fewer than `min_words` words are dropped.
    """
    articles: list[tuple[str, list[str]]] = []
    title: str | None = None
    paras: list[str] = []

    def flush() -> None:
        if title is not None and sum(len(p.split()) for p in paras) >= min_words:
            articles.append((title, paras))

    for path in paths:
        with open(path, encoding="utf-8") as f:
            for raw in f:
                h = heading(raw)
                if h and h[0] == 1:
                    flush()
                    title, paras = detokenize_line(h[1], "keep"), []
                    continue
                line = detokenize_line(h[1] if h else raw, unk)
                if line:
                    if title is None:  # text before any heading: an untitled article
                        title = ""
                    paras.append(line)
    flush()
    return articles


class WikiTextDetokParams(Params):
    unk: UnkMode = Field(
        "remove", description="what to do with <unk>: remove the token, drop its sentence, or keep it")


class WikiTextDetok(Mapper):
    """Rewrites `text` from WikiText's tokenised form to plain prose (see the module docstring)."""

    kind: ClassVar[str] = "wikitext_detok"
    Params: ClassVar[type[Params]] = WikiTextDetokParams
    requires: ClassVar[tuple[str, ...]] = ("text",)

    def map(self, batch: pa.Table) -> pa.Table:
        texts = [detokenize(t, self.params.unk) for t in texts_of(batch)]
        idx = batch.schema.get_field_index("text")
        return batch.set_column(idx, "text", pa.array(texts, type=pa.string()))
