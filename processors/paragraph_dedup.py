"""Crawl-wide paragraph deduplication (CCNet's line dedup, Dolma's paragraph dedup).

A paragraph is a line of the document text (extractors write one paragraph per line). Each is
normalised as the dedup stages normalise text (`processors.shingles`: NFKC, lowercase,
punctuation and spaces folded) and keyed by the first 8 bytes of the SHA-1 of its normalised
form. The engine counts, across the whole corpus and with a distributed shuffle of the keys
only, in how many documents each key occurs; paragraphs whose key occurs in more than
`max_documents` documents are removed (with `keep_first`, the first document keeps its copy).

This is what removes the boilerplate that survives document-level dedup: cookie notices,
navigation, share buttons, newsletter calls, copyright lines repeated on every page of a site.
`min_words` leaves very short lines out of the count (they are not keyed, never removed).

A document that loses paragraphs and keeps fewer than `min_doc_words` words is dropped
(`paragraph_dedup:too_short`); documents that lose nothing are never dropped here. Counters:
`paragraphs_removed`, `chars_removed` (characters of removed lines and their newlines),
`docs_modified`, plus the engine's `units` (keyed paragraphs), `distinct_keys` and
`repeated_keys`. `min_words` (default 2) counts runs of letters, so one-word headings
("Summary", "Fazit"), numbers and table rules (`|---|---|`) are never keyed: on the sample crawl
those were the most removed lines at `min_words: 1`, and they are page structure, not
boilerplate. With `side_output`, each removed paragraph is recorded (document id, url,
source, line index, in how many documents it was seen, text) in `_removed/<stage>/`.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from processors.base import BatchResult, Params, UnitDedup
from processors.shingles import normalize_array
from processors.span_hash import require_duckdb, sha1_first8

SIDE_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("source", pa.string()), ("line", pa.int32()),
    ("documents", pa.int64()), ("text", pa.string()),
])


class ParagraphDedupParams(Params):
    max_documents: int = Field(1, ge=1, description="a paragraph seen in more documents than this is removed")
    keep_first: bool = Field(False, description="keep the paragraph in its first document (CCNet: false)")
    min_words: int = Field(2, ge=1, description="lines with fewer words (runs of letters) are not counted "
                           "or removed: headings such as 'Summary' and table cells such as '0' stay")
    min_doc_words: int = Field(50, ge=0, description="a document left with fewer words is dropped")
    side_output: bool = Field(False, description="record every removed paragraph in _removed/<stage>/")


class ParagraphDedup(UnitDedup):
    kind = "paragraph_dedup"
    Params = ParagraphDedupParams
    requires = ("id", "text")
    summary_counters: ClassVar[tuple[str, ...]] = ("paragraphs_removed", "chars_removed")

    def check(self) -> None:
        require_duckdb()

    @property
    def max_documents(self) -> int:
        return self.params.max_documents

    @property
    def keep_first(self) -> bool:
        return self.params.keep_first

    def units(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if batch.num_rows == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint64)
        lines = pc.split_pattern(pc.fill_null(batch.column("text"), ""), "\n")
        if isinstance(lines, pa.ChunkedArray):
            lines = lines.combine_chunks()
        counts = np.asarray(pc.list_value_length(lines).to_numpy(zero_copy_only=False), dtype=np.int64)
        flat = lines.flatten()
        rows = np.repeat(np.arange(batch.num_rows, dtype=np.int64), counts)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        unit = (np.arange(rows.size, dtype=np.int64) - np.repeat(starts, counts)).astype(np.int32)
        norm = normalize_array(flat)
        words = np.asarray(pc.count_substring_regex(flat, r"\pL+").to_numpy(zero_copy_only=False))
        keep = (words >= self.params.min_words) & (np.diff(norm.offsets) > 0)
        keys = sha1_first8(norm.data, norm.offsets[:-1][keep], norm.offsets[1:][keep])
        return rows[keep], unit[keep], keys

    def remove(self, batch: pa.Table, rows: np.ndarray, units: np.ndarray, documents: np.ndarray) -> BatchResult:
        counters: Counter = Counter()
        drops: Counter = Counter()
        if rows.size == 0:
            return BatchResult(batch, drops, counters)
        texts = batch.column("text").to_pylist()
        keep = np.ones(batch.num_rows, dtype=bool)
        order = np.lexsort((units, rows))
        rows, units, documents = rows[order], units[order], documents[order]
        bounds = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1], [True])))
        side: list[dict[str, Any]] = []
        ids = batch.column("id").to_pylist()
        urls = batch.column("url").to_pylist() if "url" in batch.column_names else [None] * batch.num_rows
        srcs = batch.column("source").to_pylist() if "source" in batch.column_names else [None] * batch.num_rows
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            r = int(rows[a])
            lines = (texts[r] or "").split("\n")
            gone = {int(u): int(c) for u, c in zip(units[a:b], documents[a:b])}
            kept_lines = [ln for i, ln in enumerate(lines) if i not in gone]
            removed_chars = sum(len(lines[i]) + 1 for i in gone if i < len(lines))
            counters["paragraphs_removed"] += len(gone)
            counters["chars_removed"] += removed_chars
            counters["docs_modified"] += 1
            if self.params.side_output:
                side += [{"id": ids[r], "url": urls[r], "source": srcs[r], "line": i, "documents": c,
                          "text": lines[i]} for i, c in sorted(gone.items()) if i < len(lines)]
            new = "\n".join(kept_lines).strip("\n")
            if len(new.split()) < self.params.min_doc_words:
                keep[r] = False
                drops[f"{self.kind}:{self.drop_reason}"] += 1
            texts[r] = new
        i = batch.column_names.index("text")
        table = batch.set_column(i, batch.schema.field("text"), pa.array(texts, type=batch.schema.field("text").type))
        if not keep.all():
            table = table.filter(pa.array(keep))
        side_table = pa.Table.from_pylist(side, schema=SIDE_SCHEMA) if side else None
        return BatchResult(table, drops, counters, side_table)
