"""Decontamination: remove documents (or spans) that share word n-grams with evaluation sets.

The evaluation sets are files -- JSONL (`.jsonl`, `.jsonl.gz`, ...), Parquet, or plain text (a
file, a glob or a folder; a text file gives one sample per paragraph, line or file). From each
sample the configured fields are joined (e.g. `question` + `answer`; a list value such as the
answer choices is joined by spaces), normalised exactly as the dedup stages normalise
(`processors.shingles`: NFKC, lowercase, punctuation and spaces folded), and cut into word
n-grams (13 by default, as GPT-3). Samples shorter than n words are skipped and counted
(`short_samples` in the index info): lower `ngram` for sets of short answers.

The index is built once, on the driver (`prepare`), and shipped to the workers through the
object store: workers never open the evaluation files, so the paths need only be readable where
the pipeline is launched. It is an exact set of 64-bit keys (the first 8 bytes of each n-gram's
SHA-1, little-endian) with, per key, a bit mask of the evaluation sets it came from (up to 64
sets). A clean document n-gram is taken for a contaminated one only when its key collides with
one of the M evaluation keys: probability M / 2^64 per n-gram, 5e-14 for a million evaluation
n-grams -- no Bloom filter is needed at these sizes (8-16 bytes per evaluation n-gram).

Actions:
- `drop` (datatrove's way): a document with any matching n-gram is dropped, counted under
  `decontaminate:<eval set>` (the set with the most matching n-grams).
- `cut` (GPT-3's way): every matching n-gram's span, widened by `context_chars` on each side, is
  cut out of the original text; pieces shorter than `min_piece_chars` are discarded, the rest
  joined by a newline. A document split into more than `max_pieces` pieces is "too dirty" and
  dropped (`decontaminate:too_dirty`); one with nothing left is dropped under its eval set.

Counters: `docs_matched:<set>`, `ngrams_matched:<set>` (per evaluation set), `docs_cut`,
`spans_cut`, `chars_cut`. With `side_output` every removal is recorded (id, url, eval set,
action, matched n-grams, the first matched n-gram, the removed text) in
`<stage folder>/_removed/<stage>/`.
"""
from __future__ import annotations

import json
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Any, ClassVar, Iterator, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from processors.base import BatchResult, Params, Processor, ProcessorError
from processors.shingles import is_separator, normalize_array, shingle_spans
from processors.span_hash import require_duckdb, sha1_first8

_JSONL = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".ndjson", ".jsonl.bz2", ".jsonl.xz")
MAX_SETS = 64
SIDE_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("url", pa.string()), ("eval_set", pa.string()),
    ("action", pa.string()), ("ngrams_matched", pa.int64()), ("first_ngram", pa.string()),
    ("removed_text", pa.string()),
])


class EvalSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., description="name used in counters and drop reasons")
    paths: list[str] = Field(..., min_length=1, description="files, globs, folders or URIs")
    fields: list[str] = Field(["text"], min_length=1, description="JSONL/Parquet fields joined per sample "
                              "(dotted paths reach nested fields)")
    format: Literal["auto", "jsonl", "parquet", "text"] = "auto"
    text_split: Literal["paragraph", "line", "file"] = Field(
        "paragraph", description="text files: one sample per blank-line paragraph, line or file")


class DecontaminateParams(Params):
    eval_sets: list[EvalSet] = Field(..., min_length=1, description="the evaluation sets to remove")
    ngram: int = Field(13, ge=1, le=64, description="words per n-gram (GPT-3: 13)")
    action: Literal["drop", "cut"] = Field("drop", description="drop the document, or cut the spans")
    context_chars: int = Field(200, ge=0, description="cut: characters removed on each side of a match")
    min_piece_chars: int = Field(200, ge=0, description="cut: pieces shorter than this are discarded")
    max_pieces: int = Field(10, ge=1, description="cut: a document cut into more pieces is dropped")
    side_output: bool = Field(True, description="record what was removed and why in _removed/<stage>/")

    @field_validator("eval_sets")
    @classmethod
    def _names(cls, v: list[EvalSet]) -> list[EvalSet]:
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError(f"eval set names must be unique, got {names}")
        if len(v) > MAX_SETS:
            raise ValueError(f"at most {MAX_SETS} eval sets per stage")
        return v


# ---------------------------------------------------------------- reading evaluation sets


def _get(record: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return " ".join(_as_text(v) for v in value.values())
    return str(value)


def _format_of(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    low = path.lower()
    if low.endswith(".parquet"):
        return "parquet"
    if low.endswith(_JSONL):
        return "jsonl"
    return "text"


def eval_files(spec: EvalSet) -> list[str]:
    """The files of an evaluation set; none, or a path that does not exist, is an error."""
    from processors.uris import expand_all

    try:
        files = expand_all(spec.paths)
    except (FileNotFoundError, ValueError) as e:
        raise ProcessorError(f"eval set {spec.name!r}: {e}") from None
    if not files:
        raise ProcessorError(f"eval set {spec.name!r}: no files match {spec.paths}")
    return files


def read_samples(spec: EvalSet) -> Iterator[str]:
    """The samples of one evaluation set, as text (fields joined by a space)."""
    import fsspec

    for path in eval_files(spec):
        fmt = _format_of(path, spec.format)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with fsspec.open(path, "rb") as f:
                table = pq.read_table(f)
            rows = table.to_pylist()
            for row in rows:
                yield " ".join(_as_text(_get(row, fld)) for fld in spec.fields)
        elif fmt == "jsonl":
            with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        raise ProcessorError(f"decontaminate: {path}:{n}: not valid JSON") from None
                    yield " ".join(_as_text(_get(row, fld)) for fld in spec.fields)
        else:
            with fsspec.open(path, "rt", encoding="utf-8", errors="replace", compression="infer") as f:
                text = f.read()
            if spec.text_split == "file":
                yield text
            elif spec.text_split == "line":
                yield from text.splitlines()
            else:
                yield from (p for p in text.replace("\r\n", "\n").split("\n\n"))


def ngram_keys(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit key of every n-gram, its document index) over normalised texts; documents with
    fewer than n words give nothing."""
    if not texts:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    norm = normalize_array(pa.array(texts, pa.string()))
    spans = shingle_spans(norm, n)
    doc = np.repeat(np.arange(len(texts)), spans.counts)
    keys = sha1_first8(norm.data, spans.starts, spans.ends)
    # a document shorter than n words has one shingle of all its words: not an n-gram
    keep = _word_counts(norm)[doc] >= n
    return keys[keep], doc[keep]


def _word_counts(norm) -> np.ndarray:
    """Words per normalised document (single spaces between words, none at the ends)."""
    spaces = np.concatenate(([0], np.cumsum(norm.data == 32)))
    lens = np.diff(norm.offsets)
    return np.where(lens > 0, spaces[norm.offsets[1:]] - spaces[norm.offsets[:-1]] + 1, 0)


def build_index(params: DecontaminateParams, batch: int = 2048) -> dict[str, Any]:
    """Every evaluation n-gram key, sorted and unique, with a bit mask of its evaluation sets."""
    require_duckdb()
    keys, masks, info = [], [], {}
    n = params.ngram
    for j, spec in enumerate(params.eval_sets):
        samples = short = 0
        set_keys = []
        buf: list[str] = []

        def flush() -> None:
            nonlocal short
            if not buf:
                return
            k, d = ngram_keys(buf, n)
            short += len(buf) - len(np.unique(d))
            set_keys.append(k)
            buf.clear()

        for text in read_samples(spec):
            if not text.strip():
                continue
            samples += 1
            buf.append(text)
            if len(buf) >= batch:
                flush()
        flush()
        k = np.unique(np.concatenate(set_keys)) if set_keys else np.zeros(0, np.uint64)
        if k.size == 0:
            raise ProcessorError(f"decontaminate: eval set {spec.name!r} ({', '.join(spec.paths)}) has no "
                                 f"sample of {n}+ words ({samples} samples read): lower `ngram` or check `fields`")
        keys.append(k)
        masks.append(np.full(k.size, np.uint64(1) << np.uint64(j), np.uint64))
        info[spec.name] = {"samples": samples, "short_samples": short, "ngrams": int(k.size)}
    all_keys = np.concatenate(keys)
    all_masks = np.concatenate(masks)
    order = np.argsort(all_keys, kind="stable")
    all_keys, all_masks = all_keys[order], all_masks[order]
    uniq, start = np.unique(all_keys, return_index=True)
    merged = np.bitwise_or.reduceat(all_masks, start) if all_keys.size else all_masks
    return {"keys": uniq, "masks": merged, "names": [s.name for s in params.eval_sets],
            "ngram": n, "info": info}


# ---------------------------------------------------------------- cutting spans


@lru_cache(maxsize=65536)
def _char_is_boundary(c: str) -> bool:
    nf = unicodedata.normalize("NFKC", c).lower()
    return nf == "" or all(is_separator(x) for x in nf)


def word_spans(text: str) -> tuple[list[tuple[int, int]], list[str]]:
    """Character spans of the words of the original text, and each word normalised, following
    the dedup normalisation (so word i here is word i of `normalize_py(text)` in all but exotic
    cases, which the caller detects)."""
    spans, words = [], []
    start = None
    for i, c in enumerate(text):
        if _char_is_boundary(c):
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    for s, e in spans:
        words.append(unicodedata.normalize("NFKC", text[s:e]).lower())
    return spans, words


class Decontaminate(Processor):
    """Drops documents, or cuts spans, that share n-grams with evaluation sets."""

    kind = "decontaminate"
    Params = DecontaminateParams
    requires = ("text",)
    summary_counters: ClassVar[tuple[str, ...]] = ("docs_cut", "spans_cut", "chars_cut")

    def __init__(self, params: DecontaminateParams | None = None) -> None:
        super().__init__(params)
        self.index: dict[str, Any] | None = None

    def check(self) -> None:
        require_duckdb()
        for spec in self.params.eval_sets:
            eval_files(spec)

    def prepare(self) -> dict[str, Any]:
        if self.index is None:
            self.index = build_index(self.params)
        return self.index

    def receive(self, state: dict[str, Any]) -> None:
        self.index = state

    def setup(self) -> None:
        if self.index is None:  # used without the engine: build it here
            self.index = build_index(self.params)

    def process(self, batch: pa.Table) -> BatchResult:
        if batch.num_rows == 0:
            return BatchResult(batch)
        if self.index is None:
            self.setup()
        idx = self.index
        names: list[str] = idx["names"]
        n = self.params.ngram
        texts_col = batch.column("text")
        norm = normalize_array(texts_col)
        spans = shingle_spans(norm, n)
        keys = sha1_first8(norm.data, spans.starts, spans.ends)
        table_keys: np.ndarray = idx["keys"]
        pos = np.minimum(np.searchsorted(table_keys, keys), max(table_keys.size - 1, 0))
        hit = (table_keys[pos] == keys) if table_keys.size else np.zeros(keys.size, bool)
        counters: Counter = Counter()
        drops: Counter = Counter()
        if not hit.any():
            return BatchResult(batch, drops, counters)
        doc_of = np.repeat(np.arange(batch.num_rows), spans.counts)
        first_of_doc = np.concatenate(([0], np.cumsum(spans.counts)[:-1]))
        hit_idx = np.flatnonzero(hit)
        masks = idx["masks"][pos[hit_idx]]
        keep = np.ones(batch.num_rows, dtype=bool)
        texts = texts_col.to_pylist()
        new_texts = list(texts)
        side_rows: list[dict[str, Any]] = []
        ids = batch.column("id").to_pylist() if "id" in batch.column_names else [None] * batch.num_rows
        srcs = batch.column("source").to_pylist() if "source" in batch.column_names else [None] * batch.num_rows
        urls = batch.column("url").to_pylist() if "url" in batch.column_names else [None] * batch.num_rows
        buf = norm.data
        for d in np.unique(doc_of[hit_idx]).tolist():
            sel = doc_of[hit_idx] == d
            doc_hits = hit_idx[sel]
            per_set = [(int(np.count_nonzero(masks[sel] & (np.uint64(1) << np.uint64(j)))), names[j]) for j in range(len(names))]
            for c, name in per_set:
                if c:
                    counters[f"docs_matched:{name}"] += 1
                    counters[f"ngrams_matched:{name}"] += c
            top = max(per_set)[1]
            first = doc_hits[0]
            first_ngram = buf[spans.starts[first] : spans.ends[first]].tobytes().decode("utf-8", "replace")
            row = {"id": ids[d], "source": srcs[d], "url": urls[d], "eval_set": top,
                   "ngrams_matched": int(doc_hits.size), "first_ngram": first_ngram}
            if self.params.action == "drop":
                keep[d] = False
                drops[f"decontaminate:{top}"] += 1
                side_rows.append({**row, "action": "dropped", "removed_text": texts[d]})
                continue
            result = self._cut(texts[d] or "", (doc_hits - first_of_doc[d]).tolist(), norm.doc(d).split(" "), n)
            if result is None or result[0] is None:
                reason = "too_dirty" if result is not None and result[2] == "too_dirty" else top
                keep[d] = False
                drops[f"decontaminate:{reason}"] += 1
                side_rows.append({**row, "action": "dropped" if reason == top else reason,
                                  "removed_text": texts[d]})
                continue
            text, removed, _ = result
            new_texts[d] = text
            counters["docs_cut"] += 1
            counters["spans_cut"] += len(removed)
            counters["chars_cut"] += len(texts[d]) - len(text)
            side_rows.append({**row, "action": "cut", "removed_text": "\n[...]\n".join(removed)})
        table = batch
        if new_texts != texts:
            i = batch.column_names.index("text")
            table = table.set_column(i, batch.schema.field("text"), pa.array(new_texts, type=batch.schema.field("text").type))
        if not keep.all():
            table = table.filter(pa.array(keep))
        side = pa.Table.from_pylist(side_rows, schema=SIDE_SCHEMA) if self.params.side_output and side_rows else None
        return BatchResult(table, drops, counters, side)

    def _cut(self, text: str, shingles: list[int], norm_words: list[str], n: int):
        """(new text, removed spans, None), or (None, [], why) when the document must go."""
        spans, words = word_spans(text)
        if words != norm_words:  # an exotic normalisation the word mapping cannot follow
            return None, [], "fallback"
        cuts = []
        ctx = self.params.context_chars
        for i in sorted(shingles):
            s = spans[i][0]
            e = spans[min(i + n, len(spans)) - 1][1]
            cuts.append((max(0, s - ctx), min(len(text), e + ctx)))
        merged: list[list[int]] = []
        for s, e in cuts:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        pieces, pos = [], 0
        for s, e in merged:
            pieces.append(text[pos:s])
            pos = e
        pieces.append(text[pos:])
        if len([p for p in pieces if p.strip()]) > self.params.max_pieces:
            return None, [], "too_dirty"
        kept = [p.strip() for p in pieces if len(p.strip()) >= self.params.min_piece_chars]
        if not kept:
            return None, [], "empty"
        return "\n".join(kept), [text[s:e] for s, e in merged], None
