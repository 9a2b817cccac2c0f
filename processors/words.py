"""What a word is, for every filter (see `processors.textstats` for the full rationale).

Kept apart from textstats, with no import beyond `re`, so the extraction child process (which
imports this for the pre-pass of `processors.prefilter`) does not load numpy and pyarrow.
"""
from __future__ import annotations

import re

# Scripts written without spaces between words: CJK Unified Ideographs (+ Extension A, Compatibility),
# Hiragana, Katakana (+ phonetic extensions, half-width forms), CJK symbols are not included (they are
# punctuation, trimmed like any other).
_CJK = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
# A word character that is not CJK, and a non-space character that is not CJK.
_W = rf"[^\W{_CJK}]"
_S = rf"[^\s{_CJK}]"
WORD_RE = re.compile(rf"{_W}(?:{_S}*{_W})?|[{_CJK}]")


def split_words(text: str) -> list[str]:
    """Words of `text`: punctuation-trimmed whitespace tokens, CJK per char."""
    return WORD_RE.findall(text)
