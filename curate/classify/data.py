"""Training data for the classifiers: reading corpora, chunking, language filtering, splitting.

Every choice here is deterministic given the seed: files are read in sorted order, random draws come
from one `numpy.random.Generator(seed)`, and the held-out split hashes a document's *group* (a
WikiText article, a web page's host, a JSONL record id), so chunks of one article or pages of one
site never sit on both sides of the split (which would flatter the held-out figures).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from processors.process_status import exit_status
from processors.uris import DATASET_IGNORE, expand_all


class ClassifyError(RuntimeError):
    """A user-facing training error (bad input, too little data, a model that did not train)."""


@dataclass
class Doc:
    """A training document: its text as paragraphs, the group it is split by, its labels."""

    group: str
    paragraphs: list[str]
    labels: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "\n".join(self.paragraphs)

    def words(self) -> int:
        return sum(len(p.split()) for p in self.paragraphs)


def expand(patterns: Sequence[str], suffixes: tuple[str, ...] = (), ignore_prefixes: tuple[str, ...] = (".",)) -> list[str]:
    try:
        return expand_all(list(patterns), suffixes=suffixes, ignore_prefixes=ignore_prefixes)
    except FileNotFoundError as e:
        raise ClassifyError(str(e)) from e


def check_parquet_inputs(patterns: Sequence[str], what: str) -> list[str]:
    """The Parquet files of `patterns`, each footer read: a missing, empty, cut or non-Parquet input
    is refused by name before any work (and before Ray) starts."""
    from curate.io import check_inputs

    files = expand(patterns, suffixes=(".parquet",), ignore_prefixes=DATASET_IGNORE)
    if not files:
        raise ClassifyError(f"{what}: no Parquet files in {list(patterns)}")
    check_inputs(files, parquet=True, what=what)
    return files


def _open_text(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def dotted(record: dict, path: str):
    """`record["a"]["b"]` for path `a.b`; None when any step is missing."""
    cur = record
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def iter_jsonl(path: str) -> Iterator[dict]:
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ClassifyError(f"{path}:{n}: not JSON: {e}") from e


def iter_parquet_rows(path: str, columns: Sequence[str], batch_rows: int = 2048) -> Iterator[dict]:
    """Rows of a Parquet file (only `columns` that exist; `text` must), batch by batch."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = set(pf.schema_arrow.names)
    if "text" not in names:
        raise ClassifyError(f"{path}: no `text` column (columns: {sorted(names)})")
    for batch in pf.iter_batches(batch_size=batch_rows, columns=[c for c in columns if c in names]):
        yield from batch.to_pylist()


def paragraphs_of(text: str) -> list[str]:
    return [p.strip() for p in text.splitlines() if p.strip()]


def read_reference(patterns: Sequence[str], fmt: str = "auto", unk: str = "remove") -> list[Doc]:
    """The reference (positive) corpus as documents.

    Formats: `wikitext` (WikiText .txt: de-tokenised, one document per article), `text` (a plain
    .txt file is one document), `jsonl` (.jsonl/.jsonl.gz with a `text` field, one per line),
    `parquet` (a `text` column). `auto` picks by file name: *.parquet, *.jsonl[.gz], a .txt whose
    name contains "wikitext", else plain text.
    """
    from processors.detok import wikitext_articles

    docs: list[Doc] = []
    for path in expand(patterns):
        name = os.path.basename(path).lower()
        kind = fmt
        if kind == "auto":
            if name.endswith(".parquet"):
                kind = "parquet"
            elif name.endswith((".jsonl", ".jsonl.gz", ".json.gz")):
                kind = "jsonl"
            elif "wikitext" in name:
                kind = "wikitext"
            else:
                kind = "text"
        if kind == "wikitext":
            for title, paras in wikitext_articles([path], unk=unk):  # type: ignore[arg-type]
                docs.append(Doc(f"{name}:{title}", paras))
        elif kind == "text":
            with _open_text(path) as f:
                docs.append(Doc(name, paragraphs_of(f.read())))
        elif kind == "jsonl":
            for i, rec in enumerate(iter_jsonl(path)):
                text = rec.get("text")
                if isinstance(text, str) and text.strip():
                    docs.append(Doc(str(rec.get("id", f"{name}:{i}")), paragraphs_of(text)))
        elif kind == "parquet":
            for i, rec in enumerate(iter_parquet_rows(path, ["id", "text"])):
                if rec.get("text"):
                    docs.append(Doc(str(rec.get("id") or f"{name}:{i}"), paragraphs_of(rec["text"])))
        else:
            raise ClassifyError(f"unknown reference format {fmt!r}")
    if not docs:
        raise ClassifyError(f"the reference corpus {list(patterns)} holds no text")
    return docs


def read_web(patterns: Sequence[str], sources: Sequence[str] | None = None) -> list[Doc]:
    """Extracted web documents (Parquet with `text`; grouped by `domain`, else `url`, else `id`).

    `sources` keeps only rows whose `source` column is listed (a pipeline folder may also hold
    the reference corpus itself, which must not become a negative).
    """
    docs: list[Doc] = []
    keep = set(sources) if sources else None
    for path in expand(patterns, suffixes=(".parquet",), ignore_prefixes=DATASET_IGNORE):
        for i, rec in enumerate(iter_parquet_rows(path, ["id", "url", "domain", "text", "source"])):
            if keep is not None and rec.get("source") not in keep:
                continue
            text = rec.get("text")
            if text and text.strip():
                group = rec.get("domain") or rec.get("url") or rec.get("id") or f"{path}:{i}"
                docs.append(Doc(str(group), paragraphs_of(text)))
    if not docs:
        raise ClassifyError(f"no web documents with text in {list(patterns)}")
    return docs


def filter_language(docs: list[Doc], langs: Sequence[str], threshold: float = 0.5) -> list[Doc]:
    """Keep documents whose top fastText lid.176 language is in `langs` (empty: keep all)."""
    if not langs:
        return docs
    from processors.language_id import LanguageId

    lid = LanguageId(LanguageId.Params(label_only=True))
    lid.setup()
    allowed = {lang.lower() for lang in langs}
    found, scores = lid.predict([d.text for d in docs])
    return [d for d, lang, s in zip(docs, found, scores) if lang in allowed and s >= threshold]


def chunk_documents(docs: Iterable[Doc], rng: np.random.Generator, min_words: int,
                    max_words: int) -> list[Doc]:
    """Cut documents into chunks of whole consecutive paragraphs.

    Each chunk's target length is drawn log-uniformly from [min_words, max_words]: the same
    distribution for both classes, so document length is not a feature the model can learn. A
    paragraph longer than `max_words` is cut at word boundaries. Chunks (and documents) shorter than
    `min_words` are dropped; a chunk keeps its document's group and labels.
    """
    lo, hi = math.log(min_words), math.log(max_words)
    out: list[Doc] = []
    for doc in docs:
        pieces: list[str] = []
        for p in doc.paragraphs:
            words = p.split()
            if len(words) <= max_words:
                pieces.append(p)
            else:
                pieces.extend(" ".join(words[i:i + max_words]) for i in range(0, len(words), max_words))
        cur: list[str] = []
        n = 0
        target = math.exp(rng.uniform(lo, hi))
        for p in pieces:
            cur.append(p)
            n += len(p.split())
            if n >= target:
                out.append(Doc(doc.group, cur, doc.labels))
                cur, n = [], 0
                target = math.exp(rng.uniform(lo, hi))
        if cur and n >= min_words:
            out.append(Doc(doc.group, cur, doc.labels))
    return out


def held_out(group: str, seed: int, fraction: float) -> bool:
    """Whether a group belongs to the held-out split (a stable hash, independent of order)."""
    h = hashlib.blake2b(f"{seed}\x00{group}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < fraction


def split(docs: list[Doc], seed: int, fraction: float) -> tuple[list[Doc], list[Doc]]:
    train = [d for d in docs if not held_out(d.group, seed, fraction)]
    test = [d for d in docs if held_out(d.group, seed, fraction)]
    return train, test


def sample(docs: list[Doc], n: int | None, rng: np.random.Generator) -> list[Doc]:
    """At most n documents, chosen at random, in their original order."""
    if n is None or len(docs) <= n:
        return docs
    keep = np.sort(rng.choice(len(docs), size=n, replace=False))
    return [docs[i] for i in keep]


def train_fasttext(lines: Sequence[str], params: dict, output: str | Path, retries: int = 2,
                   log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Train a fastText supervised model on `__label__x text` lines and save it to `output`.

    Training runs in a fresh Python process (curate/classify/fasttext_child.py says why: repeated
    trainings in one process are not reproducible with fasttext-numpy2-wheel). If fastText aborts
    with `Encountered NaN`, the learning rate is halved and training retried up to `retries` times;
    if it still fails, a ClassifyError says what to change. Returns (params actually used,
    {"words": vocabulary size, "labels": [...]}).
    """
    import subprocess
    import sys

    if not lines:
        raise ClassifyError("no training lines")
    with tempfile.TemporaryDirectory(prefix="curate-fasttext-") as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        used = dict(params)
        for attempt in range(retries + 1):
            job = {"input": str(path), "output": str(output), "params": used}
            proc = subprocess.run([sys.executable, "-m", "curate.classify.fasttext_child", json.dumps(job)],
                                  capture_output=True, text=True, cwd=str(Path(__file__).resolve().parents[2]))
            result = child_report(proc.stdout)
            if result is None:  # died before reporting: a signal, the OOM killer, an interpreter error
                raise ClassifyError(f"fastText training process died without a report "
                                    f"({exit_status(proc.returncode)}){stderr_tail(proc.stderr)}")
            if result["ok"]:
                if not Path(output).is_file():
                    raise ClassifyError(f"fastText training process ({exit_status(proc.returncode)}) "
                                        f"reported success but wrote no model at {output}")
                return used, {"words": result["words"], "labels": result["labels"]}
            err = result["error"]
            if "NaN" not in err:
                raise ClassifyError(f"fastText training failed ({exit_status(proc.returncode)}): {err}")
            if attempt == retries:
                # Measured on an AMD EPYC host with fasttext-numpy2-wheel 0.9.2: every dim below 32
                # diverged on 600 real topic lines at any lr down to 0.01 (dim 32 and up trained).
                small_dim = (f" dim={used['dim']} is below 32, which this fastText build diverges on "
                             "on some CPUs whatever the lr: use --dim 32 or more."
                             if int(used.get("dim", 100)) < 32 else "")
                raise ClassifyError(
                    f"fastText training diverged ('{err}') {retries + 1} times, the last with lr="
                    f"{used['lr']}. This happens on tiny or repetitive training sets: give it more "
                    f"varied text, or lower --lr / --epoch.{small_dim}")
            log(f"fastText: '{err}' with lr={used['lr']}; retrying with lr={used['lr'] / 2}")
            used["lr"] = used["lr"] / 2
    raise AssertionError("unreachable")


def child_report(stdout: str) -> dict | None:
    """The JSON report on the last line of a child's stdout, or None when there is none."""
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return None
    return report if isinstance(report, dict) and "ok" in report else None


def stderr_tail(stderr: str | None, lines: int = 3) -> str:
    """The last non-empty lines of a child's stderr, as `: a | b` (empty when there are none)."""
    tail = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()][-lines:]
    return (": " + " | ".join(tail))[:1000] if tail else ""


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """ROC AUC, and precision/recall/F1/accuracy of `score >= threshold`, plus the best-F1 threshold."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    out: dict = {"n": int(len(y)), "positives": int(y.sum()), "negatives": int((~y).sum())}
    out["roc_auc"] = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None
    out.update(_at_threshold(y, s, threshold))
    out["best_f1"] = None
    if 0 < y.sum() < len(y):
        from sklearn.metrics import precision_recall_curve

        p, r, th = precision_recall_curve(y, s)
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)[:-1]
        out["best_f1"] = _at_threshold(y, s, float(th[int(np.argmax(f1))]))
    out["mean_score_positive"] = float(s[y].mean()) if y.any() else None
    out["mean_score_negative"] = float(s[~y].mean()) if (~y).any() else None
    return out


def _at_threshold(y: np.ndarray, s: np.ndarray, t: float) -> dict:
    pred = s >= t
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(t), "precision": precision, "recall": recall, "f1": f1,
            "accuracy": float((pred == y).mean()) if len(y) else 0.0}
