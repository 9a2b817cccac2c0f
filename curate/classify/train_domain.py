"""Train the fastText topic/domain classifier the `domain_label` stage uses.

Input: labelled documents the user supplies, JSONL(.gz) or Parquet, with a text field and a label
field (a dotted path into the record, e.g. `metadata.topics`); a label value may be a list or a
string of labels separated by `label_sep`, so multi-label data works. Labels are normalised
(lowercase, spaces to underscores) exactly as the stage normalises them.

Held-out evaluation on `test` files when given, otherwise on a hash split of the records
(`test_fraction`, by record id). The model is trained with one-vs-all loss by default (each label an
independent binary classifier, right for multi-label data; `softmax` for single-label data), word
unigrams + bigrams, `thread=1` and a fixed seed (deterministic). Metrics, computed by running the
`domain_label` stage's own prediction on the held-out texts: top-1 precision (the top label is one
of the document's labels), top-1 accuracy against single-label documents, and per-label precision,
recall and F1 of the top-1 label, with their macro averages. Written to `<model stem>.eval.json`.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curate.classify.data import ClassifyError, dotted, expand, held_out, iter_jsonl, iter_parquet_rows, train_fasttext
from curate.classify.train_quality import eval_path


class DomainTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: list[str]
    test: list[str] = Field(default_factory=list)
    output: str
    text_field: str = "text"
    label_field: str = "label"
    label_sep: str = ","
    test_fraction: float = Field(0.1, gt=0, lt=1)
    loss: Literal["ova", "softmax"] = "ova"
    lr: float = Field(0.5, gt=0)
    epoch: int = Field(25, ge=1)
    dim: int = Field(64, ge=2)
    word_ngrams: int = Field(2, ge=1)
    min_count: int = Field(1, ge=1)
    bucket: int = Field(200_000, ge=1000)
    thread: int = Field(1, ge=1)
    seed: int = 0


def read_labelled(patterns: list[str], text_field: str, label_field: str,
                  label_sep: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """[(id, text, labels)] from JSONL(.gz) or Parquet files; records without text or label are skipped."""
    from processors.domain import normalize_label

    out = []
    for path in expand(patterns):
        if path.endswith(".parquet"):
            top = label_field.split(".")[0]
            rows = iter_parquet_rows(path, ["id", text_field, top])
        else:
            rows = iter_jsonl(path)
        for i, rec in enumerate(rows):
            text = dotted(rec, text_field)
            raw = dotted(rec, label_field)
            if not isinstance(text, str) or not text.strip() or raw is None:
                continue
            values = raw if isinstance(raw, (list, tuple)) else str(raw).split(label_sep)
            labels = tuple(dict.fromkeys(normalize_label(v) for v in values if str(v).strip()))
            if labels:
                out.append((str(rec.get("id", f"{path}:{i}")), text, labels))
    if not out:
        raise ClassifyError(f"no record of {patterns} has both {text_field!r} and {label_field!r}")
    return out


def train_domain(cfg: DomainTrainConfig, log: Callable[[str], None] = print) -> dict:
    from processors.domain import DomainLabel, DomainLabelParams
    from processors.quality import fasttext_text

    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    records = read_labelled(cfg.train, cfg.text_field, cfg.label_field, cfg.label_sep)
    if cfg.test:
        train, test = records, read_labelled(cfg.test, cfg.text_field, cfg.label_field, cfg.label_sep)
    else:
        train = [r for r in records if not held_out(r[0], cfg.seed, cfg.test_fraction)]
        test = [r for r in records if held_out(r[0], cfg.seed, cfg.test_fraction)]
    if not train or not test:
        raise ClassifyError(f"{len(train)} training and {len(test)} held-out records: need both")
    order = np.random.default_rng(cfg.seed).permutation(len(train))
    lines = [" ".join(f"__label__{lab}" for lab in train[i][2]) + " " + fasttext_text(train[i][1])
             for i in order]
    params = {"lr": cfg.lr, "epoch": cfg.epoch, "dim": cfg.dim, "wordNgrams": cfg.word_ngrams,
              "minCount": cfg.min_count, "bucket": cfg.bucket, "thread": cfg.thread, "seed": cfg.seed,
              "loss": cfg.loss}
    t1 = time.perf_counter()
    used, _ = train_fasttext(lines, params, out, log=log)
    t_train = time.perf_counter() - t1
    stage = DomainLabel(DomainLabelParams(model_path=str(out)))
    stage.setup()
    predicted, _ = stage.predict_model([t for _, t, _ in test])
    metrics = topic_metrics([labs for _, _, labs in test], predicted)
    label_counts = Counter(lab for _, _, labs in train for lab in labs)
    report = {
        "model": str(out),
        "model_bytes": out.stat().st_size,
        "labels": sorted(label_counts),
        "train_records": len(train),
        "test_records": len(test),
        "train_label_counts": dict(sorted(label_counts.items())),
        "held_out": metrics,
        "seconds": {"total": round(time.perf_counter() - t0, 2), "train": round(t_train, 2)},
        "fasttext_params": used,
        "config": cfg.model_dump(mode="json"),
    }
    eval_path(out).write_text(json.dumps(report, indent=2) + "\n")
    log(f"domain: {len(label_counts)} labels, {len(train)} train / {len(test)} held-out records; "
        f"top-1 precision {metrics['top1_precision']:.3f}, macro F1 {metrics['macro_f1']:.3f} -> {out}")
    return report


def topic_metrics(gold: list[tuple[str, ...]], predicted: list[str | None]) -> dict:
    """Top-1 metrics of predicted labels against (possibly multi-label) gold label sets."""
    n = len(gold)
    hits = sum(1 for g, p in zip(gold, predicted) if p is not None and p in g)
    single = [(g[0], p) for g, p in zip(gold, predicted) if len(g) == 1]
    labels = sorted({lab for g in gold for lab in g} | {p for p in predicted if p})
    per: dict[str, dict] = {}
    for lab in labels:
        tp = sum(1 for g, p in zip(gold, predicted) if p == lab and lab in g)
        fp = sum(1 for g, p in zip(gold, predicted) if p == lab and lab not in g)
        # recall of a top-1 label over the documents whose labels include it
        support = sum(1 for g in gold if lab in g)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / support if support else 0.0
        per[lab] = {"precision": round(prec, 4), "recall": round(rec, 4),
                    "f1": round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0, "support": support}
    return {
        "records": n,
        "top1_precision": hits / n if n else 0.0,
        "single_label_records": len(single),
        "single_label_accuracy": (sum(1 for g, p in single if g == p) / len(single)) if single else None,
        "abstained": sum(1 for p in predicted if p is None),
        "macro_precision": float(np.mean([v["precision"] for v in per.values()])) if per else 0.0,
        "macro_recall": float(np.mean([v["recall"] for v in per.values()])) if per else 0.0,
        "macro_f1": float(np.mean([v["f1"] for v in per.values()])) if per else 0.0,
        "per_label": per,
    }
