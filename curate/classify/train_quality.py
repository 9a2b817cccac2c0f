"""Train a quality classifier: reference text (positive) against extracted web documents (negative).

The recipe, shared by both model types so their figures compare:

1. Positives: the reference corpus (default WikiText-2 valid + test, de-tokenised by
   processors/detok.py, one document per article). Negatives: extracted web documents (Parquet
   with a `text` column, e.g. the extract stage's output folder).
2. Both sides are restricted to the reference's language (`lang`, default `en`, fastText lid.176),
   otherwise the model mostly learns "English vs not".
3. Both sides are cut into chunks of whole paragraphs with lengths drawn from one log-uniform
   distribution (default 50..600 words), so length is not a feature.
4. Held-out split by group (WikiText article, web host), `test_fraction` of the groups.
5. The training split is balanced (the larger class downsampled to `balance` x the smaller), so the
   0.5 threshold means something; the held-out split keeps its natural mix.
6. Train, write the model, score the held-out chunks through the `quality` stage itself (the exact
   code path a pipeline runs) and write `<model stem>.eval.json` beside the model: ROC AUC,
   precision/recall/F1 at `threshold`, the best-F1 threshold, counts, the full configuration.

fastText: word unigrams + bigrams (as DCLM's classifier), `thread=1`, a fixed seed, and a fresh
process per training (curate/classify/fasttext_child.py), so the same inputs and seed give the same
model, byte for byte (a test checks it). Embedding: all-MiniLM-L6-v2 embeddings
(frozen) and a `linear` (logistic regression) or `mlp` head trained with AdamW on one thread with
a fixed seed; `torch.use_deterministic_algorithms` is on while it trains.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curate.classify.data import (
    ClassifyError, Doc, binary_metrics, check_parquet_inputs, chunk_documents, expand, filter_language,
    read_reference, read_web, sample, split, train_fasttext,
)

DEFAULT_REFERENCE = ["../shared/data/reference/wikitext-2-*.txt"]
POSITIVE, NEGATIVE = "ref", "web"


class FastTextOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lr: float = Field(0.5, gt=0)
    epoch: int = Field(20, ge=1)
    dim: int = Field(64, ge=2)
    word_ngrams: int = Field(2, ge=1)
    min_count: int = Field(2, ge=1)
    bucket: int = Field(200_000, ge=1000)
    thread: int = Field(1, ge=1, description="1 = deterministic; more is faster but not reproducible")


class EmbeddingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    head: Literal["linear", "mlp"] = "linear"
    hidden: int = Field(256, ge=1)
    epochs: int = Field(60, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    max_tokens: int = Field(256, ge=8, le=512)
    threads: int | None = Field(None, ge=1, description="torch threads for embedding (default: torch's)")
    encoder_path: str | None = None
    cache: str | None = Field(None, description="an .npz file keeping the chunks' embeddings: a later run "
                              "on the same chunks (any head settings) reuses them instead of re-embedding")


class QualityTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    reference: list[str] = Field(default_factory=lambda: list(DEFAULT_REFERENCE))
    reference_format: Literal["auto", "wikitext", "text", "jsonl", "parquet"] = "auto"
    unk: Literal["remove", "drop_sentence", "keep"] = "remove"
    web: list[str]
    web_sources: list[str] | None = None  # keep only these `source` values of the web Parquet
    output: str
    model_type: Literal["fasttext", "embedding"] = "fasttext"
    lang: list[str] = Field(default_factory=lambda: ["en"])
    chunk_min_words: int = Field(50, ge=1)
    chunk_max_words: int = Field(600, ge=1)
    max_chunks_per_class: int | None = Field(None, ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    balance: float | None = Field(1.0, ge=1)
    threshold: float = Field(0.5, ge=0, le=1)
    seed: int = 0
    fasttext: FastTextOptions = Field(default_factory=FastTextOptions)
    embedding: EmbeddingOptions = Field(default_factory=EmbeddingOptions)


def eval_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".eval.json")


def build_dataset(cfg: QualityTrainConfig, log: Callable[[str], None] = print) -> dict:
    """Chunks for each class and split: {"train": [(Doc, label)], "test": [...], "stats": {...}}."""
    if cfg.chunk_min_words > cfg.chunk_max_words:
        raise ClassifyError("chunk_min_words must not exceed chunk_max_words")
    # Every input found and readable before the slow reading starts: one clear error, no half run.
    check_parquet_inputs(cfg.web, "--web")
    expand(cfg.reference)
    stats: dict = {}
    sides = {}
    for label, docs_fn, stream in ((POSITIVE, lambda: read_reference(cfg.reference, cfg.reference_format, cfg.unk), 1),
                                   (NEGATIVE, lambda: read_web(cfg.web, cfg.web_sources), 2)):
        docs = docs_fn()
        n_read = len(docs)
        docs = filter_language(docs, cfg.lang)
        # one random stream per class: adding web data does not change the reference chunks
        rng = np.random.default_rng([cfg.seed, stream])
        chunks = chunk_documents(docs, rng, cfg.chunk_min_words, cfg.chunk_max_words)
        chunks = sample(chunks, cfg.max_chunks_per_class, rng)
        train, test = split(chunks, cfg.seed, cfg.test_fraction)
        stats[label] = {"documents_read": n_read, "documents_in_language": len(docs),
                        "groups": len({d.group for d in docs}), "chunks": len(chunks),
                        "train_chunks": len(train), "test_chunks": len(test),
                        "words": int(sum(c.words() for c in chunks))}
        log(f"{label}: {n_read} documents read, {len(docs)} in {cfg.lang or 'any language'}, "
            f"{len(chunks)} chunks ({len(train)} train / {len(test)} held out)")
        if not train or not test:
            raise ClassifyError(
                f"{label}: {len(train)} training and {len(test)} held-out chunks; both sides need some "
                f"(more documents, more groups, or another test_fraction)")
        sides[label] = (train, test)
    (ptrain, ptest), (ntrain, ntest) = sides[POSITIVE], sides[NEGATIVE]
    if cfg.balance is not None:
        rng = np.random.default_rng([cfg.seed, 3])
        cap = int(cfg.balance * min(len(ptrain), len(ntrain)))
        ptrain, ntrain = sample(ptrain, cap, rng), sample(ntrain, cap, rng)
    stats["train_balanced"] = {POSITIVE: len(ptrain), NEGATIVE: len(ntrain)}
    # interleave deterministically (fastText is sensitive to order: not all positives first)
    train = [(d, POSITIVE) for d in ptrain] + [(d, NEGATIVE) for d in ntrain]
    order = np.random.default_rng([cfg.seed, 4]).permutation(len(train))
    train = [train[i] for i in order]
    test = [(d, POSITIVE) for d in ptest] + [(d, NEGATIVE) for d in ntest]
    return {"train": train, "test": test, "stats": stats}


def _train_fasttext_model(cfg: QualityTrainConfig, train: list[tuple[Doc, str]], out: Path,
                          log: Callable[[str], None]) -> dict:
    from processors.quality import fasttext_text

    o = cfg.fasttext
    lines = [f"__label__{label} {fasttext_text(d.text)}" for d, label in train]
    params = {"lr": o.lr, "epoch": o.epoch, "dim": o.dim, "wordNgrams": o.word_ngrams,
              "minCount": o.min_count, "bucket": o.bucket, "thread": o.thread, "seed": cfg.seed,
              "loss": "softmax"}
    used, info = train_fasttext(lines, params, out, log=log)
    return {"fasttext_params": used, "vocabulary": info["words"]}


def _embed(cfg: QualityTrainConfig, docs: list[Doc], log: Callable[[str], None]) -> np.ndarray:
    import hashlib

    from processors.quality_embed import MiniLMEncoder

    o = cfg.embedding
    enc = MiniLMEncoder(o.encoder_path, max_tokens=o.max_tokens, threads=o.threads)
    texts = [d.text for d in docs]
    h = hashlib.sha256(f"{enc.path.name}\x00{o.max_tokens}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
    key = h.hexdigest()
    cache = Path(o.cache) if o.cache else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                log(f"embeddings of {len(texts)} chunks read from {cache}")
                return z["emb"]
    t0 = time.perf_counter()
    emb = enc.embed(texts)
    log(f"embedded {len(docs)} chunks in {time.perf_counter() - t0:.1f} s")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, key=np.array(key), emb=emb)
    return emb


def train_head(emb: np.ndarray, y: np.ndarray, o: EmbeddingOptions, seed: int):
    """A linear or MLP head on fixed embeddings: AdamW, binary cross-entropy, deterministic."""
    import torch

    from processors.quality_embed import build_head

    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        head = build_head(o.head, emb.shape[1], o.hidden)
        opt = torch.optim.AdamW(head.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        x = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        t = torch.from_numpy(y.astype(np.float32))
        gen = torch.Generator().manual_seed(seed)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        head.train()
        last = float("nan")
        for _ in range(o.epochs):
            perm = torch.randperm(len(x), generator=gen)
            total = 0.0
            for i in range(0, len(x), o.batch_size):
                idx = perm[i:i + o.batch_size]
                opt.zero_grad()
                loss = loss_fn(head(x[idx]).squeeze(-1), t[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            last = total / len(x)
        if not np.isfinite(last):
            raise ClassifyError(f"the embedding head diverged (loss {last}); lower --head-lr")
        head.eval()
        return head, last
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)


def train_quality(cfg: QualityTrainConfig, log: Callable[[str], None] = print) -> dict:
    """Build the dataset, train, write the model and its evaluation JSON; returns the evaluation."""
    from processors.quality import Quality, QualityParams

    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = build_dataset(cfg, log)
    t_data = time.perf_counter() - t0
    train, test = data["train"], data["test"]
    y_test = np.array([label == POSITIVE for _, label in test])
    t1 = time.perf_counter()
    info: dict
    if cfg.model_type == "fasttext":
        info = _train_fasttext_model(cfg, train, out, log)
        t_train = time.perf_counter() - t1
        stage = Quality(QualityParams(model_type="fasttext", model_path=str(out), positive_label=POSITIVE))
        stage.setup()
        t2 = time.perf_counter()
        scores = stage.score([d.text for d, _ in test])
        t_score = time.perf_counter() - t2
    else:
        from processors.quality_embed import DEFAULT_MAX_TOKENS, EMBED_DIM, EmbeddingQualityModel, save_head

        o = cfg.embedding
        emb = _embed(cfg, [d for d, _ in train] + [d for d, _ in test], log)
        train_emb, test_emb = emb[:len(train)], emb[len(train):]
        y_train = np.array([label == POSITIVE for _, label in train])
        head, loss = train_head(train_emb, y_train, o, cfg.seed)
        save_head(head, out, {"head": o.head, "dim": EMBED_DIM, "hidden": o.hidden,
                              "max_tokens": o.max_tokens or DEFAULT_MAX_TOKENS,
                              "encoder": "sentence-transformers/all-MiniLM-L6-v2",
                              "positive_label": POSITIVE, "seed": cfg.seed})
        t_train = time.perf_counter() - t1
        info = {"final_train_loss": loss}
        # score the held-out embeddings through the saved file (the stage's own model class)
        model = EmbeddingQualityModel(out, o.encoder_path)
        t2 = time.perf_counter()
        scores = model.score_embeddings(test_emb)
        t_score = time.perf_counter() - t2
    metrics = binary_metrics(y_test, scores, cfg.threshold)
    report = {
        "model": str(out),
        "model_type": cfg.model_type,
        "model_bytes": out.stat().st_size,
        "task": "reference-like (positive, label 'ref') vs web (negative, label 'web'); score = P(ref)",
        "held_out": metrics,
        "data": data["stats"],
        "seconds": {"data": round(t_data, 2), "train": round(t_train, 2), "score_held_out": round(t_score, 3)},
        "config": cfg.model_dump(mode="json"),
        "training": info,
        "python": platform.python_version(),
    }
    eval_path(out).write_text(json.dumps(report, indent=2) + "\n")
    log(f"{cfg.model_type}: held-out ROC AUC {metrics['roc_auc']:.4f}, at threshold {cfg.threshold}: "
        f"precision {metrics['precision']:.3f}, recall {metrics['recall']:.3f} -> {out}, {eval_path(out)}")
    return report
