"""Text normalisation shared by exact and near-duplicate detection."""
from __future__ import annotations

import re
import unicodedata

_PUNCT_OR_SPACE = re.compile(r"[\W_]+", re.UNICODE)


def normalize_for_dedup(text: str) -> str:
    """NFKC, lowercase, every run of punctuation/whitespace folded to one space, trimmed.

    Two pages that differ only in case, spacing or punctuation count as the same text.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return _PUNCT_OR_SPACE.sub(" ", text).strip()
