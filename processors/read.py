"""The `read` source: curated corpora beside the crawl — JSONL, Parquet, plain-text and code folders.

Every input is one task. Records that cannot be used are counted under a reason, never silently
skipped: `malformed_json` (a JSONL line that does not parse), `missing_text` (no text field),
`binary_file` (NUL bytes in the first 8 KiB), `not_utf8`, `file_too_large`, `unreadable_file`,
`input_missing` (listed, then gone). The rest of the source is read.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any, Iterator, Literal

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from processors.base import BatchResult, Params, Source
from processors.schema import DOCUMENT_FIELDS
from processors.uris import expand_all

Format = Literal["auto", "jsonl", "parquet", "text", "code"]
OUTPUT_SCHEMA = pa.schema(DOCUMENT_FIELDS + [pa.field("path", pa.string())])
_JSONL = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".ndjson", ".jsonl.bz2", ".jsonl.xz")
_SNIFF = 8192

# File extension → language, for the `domain` of code documents (pools group code by language).
CODE_LANGUAGES = {".py": "python", ".pyi": "python", ".c": "c", ".h": "c", ".cc": "cpp",
                  ".cpp": "cpp", ".hpp": "cpp", ".rs": "rust", ".go": "go", ".java": "java",
                  ".js": "javascript", ".ts": "typescript", ".rb": "ruby", ".sh": "shell",
                  ".md": "markdown", ".rst": "restructuredtext", ".txt": "text"}


class ReadParams(Params):
    source_name: str = Field(..., description="the value of the `source` column (e.g. wiki, code)")
    format: Format = Field("auto", description="auto picks by extension: JSONL, Parquet, else text")
    text_field: str = Field("text", description="JSONL/Parquet field holding the text")
    id_field: str | None = Field(None, description="JSONL/Parquet field holding a stable id "
                                 "(default: source name + file + record number)")
    url_field: str | None = Field(None, description="JSONL/Parquet field holding a URL, if any")
    split: Literal["file", "blank_lines", "wikitext_articles"] = Field(
        "file", description="text files: one document per file, per blank-line block, or per "
                            "WikiText article (top-level '= Title =' headings)")
    suffixes: list[str] | None = Field(None, description="folders: only files with these endings")
    exclude: list[str] = Field(default_factory=list, description="glob patterns (matched against "
                               "the path) of files to leave out, e.g. '*/site-packages/*'")
    max_file_bytes: int = Field(1_000_000, gt=0, description="text/code files: larger are skipped "
                                "as file_too_large (generated or data files, mostly)")
    min_chars: int = Field(1, ge=0, description="documents with fewer characters are dropped (empty)")
    batch_size: int = Field(1000, gt=0)
    storage_options: dict[str, Any] = Field(default_factory=dict)


def _fmt(uri: str, fmt: Format) -> Format:
    if fmt != "auto":
        return fmt
    low = uri.lower()
    if low.endswith(_JSONL):
        return "jsonl"
    if low.endswith(".parquet"):
        return "parquet"
    return "text"


class Read(Source):
    kind = "read"
    Params = ReadParams
    provides = ("path",)

    def list_inputs(self, patterns: list[str]) -> list[str]:
        from fnmatch import fnmatch

        found = expand_all(patterns, tuple(self.params.suffixes or ()))
        return [u for u in found if not any(fnmatch(u, x) for x in self.params.exclude)]

    def check(self) -> None:
        if _fmt("x.jsonl.zst", "auto") == "jsonl":
            import zstandard  # noqa: F401 - .zst inputs need it; fail before work, not per file

    # ------------------------------------------------------------------ reading
    def read(self, uri: str) -> Iterator[BatchResult]:
        p = self.params
        try:
            fmt = _fmt(uri, p.format)
            if fmt == "jsonl":
                yield from self._jsonl(uri)
            elif fmt == "parquet":
                yield from self._parquet(uri)
            else:
                yield from self._text(uri, code=fmt == "code")
        except FileNotFoundError:
            yield BatchResult(OUTPUT_SCHEMA.empty_table(), drops={"input_missing": 1})
        except (PermissionError, IsADirectoryError, OSError) as e:
            yield BatchResult(OUTPUT_SCHEMA.empty_table(), drops={"unreadable_file": 1},
                              counters={f"unreadable_file:{type(e).__name__}": 1})

    def _open(self, uri: str, compression: str | None = "infer"):
        return fsspec.open(uri, "rb", compression=compression, **self.params.storage_options).open()

    def _doc_id(self, uri: str, n: int | str) -> str:
        return f"{self.params.source_name}:{hashlib.sha1(uri.encode()).hexdigest()[:12]}:{n}"

    def _rows(self, rows: list[dict], drops: dict[str, int]) -> BatchResult:
        table = pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA) if rows else OUTPUT_SCHEMA.empty_table()
        return BatchResult(table, drops={k: v for k, v in drops.items() if v})

    def _row(self, uri: str, doc_id: str, text: str, url: str | None = None,
             domain: str | None = None) -> dict:
        return {"id": doc_id, "source": self.params.source_name, "url": url, "domain": domain,
                "date": None, "text": text, "path": uri}

    def _jsonl(self, uri: str) -> Iterator[BatchResult]:
        p = self.params
        rows: list[dict] = []
        drops = {"malformed_json": 0, "missing_text": 0, "empty": 0}
        with self._open(uri) as f:
            for n, line in enumerate(io.TextIOWrapper(f, encoding="utf-8", errors="replace")):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    drops["malformed_json"] += 1
                    continue
                text = rec.get(p.text_field) if isinstance(rec, dict) else None
                if not isinstance(text, str):
                    drops["missing_text"] += 1
                    continue
                if len(text) < p.min_chars:
                    drops["empty"] += 1
                    continue
                doc_id = str(rec[p.id_field]) if p.id_field and rec.get(p.id_field) is not None \
                    else self._doc_id(uri, n)
                url = rec.get(p.url_field) if p.url_field else None
                rows.append(self._row(uri, doc_id, text, url))
                if len(rows) >= p.batch_size:
                    yield self._rows(rows, drops)
                    rows, drops = [], dict.fromkeys(drops, 0)
        yield self._rows(rows, drops)

    def _parquet(self, uri: str) -> Iterator[BatchResult]:
        p = self.params
        with self._open(uri, compression=None) as f:
            pf = pq.ParquetFile(f)
            if p.text_field not in pf.schema_arrow.names:
                raise OSError(f"{uri}: no column {p.text_field!r}")  # counted as unreadable_file
            n0 = 0
            for batch in pf.iter_batches(batch_size=p.batch_size):
                recs = batch.to_pylist()
                rows, drops = [], {"missing_text": 0, "empty": 0}
                for k, rec in enumerate(recs):
                    text = rec.get(p.text_field)
                    if not isinstance(text, str):
                        drops["missing_text"] += 1
                    elif len(text) < p.min_chars:
                        drops["empty"] += 1
                    else:
                        doc_id = str(rec[p.id_field]) if p.id_field and rec.get(p.id_field) is not None \
                            else self._doc_id(uri, n0 + k)
                        rows.append(self._row(uri, doc_id, text,
                                              rec.get(p.url_field) if p.url_field else None))
                n0 += len(recs)
                yield self._rows(rows, drops)

    def _text(self, uri: str, code: bool) -> Iterator[BatchResult]:
        p = self.params
        fs, path = fsspec.core.url_to_fs(uri, **p.storage_options)
        size = fs.size(path)
        if size is not None and size > p.max_file_bytes:
            yield self._rows([], {"file_too_large": 1})
            return
        with fs.open(path, "rb") as f:
            data = f.read(p.max_file_bytes + 1)
        if len(data) > p.max_file_bytes:
            yield self._rows([], {"file_too_large": 1})
            return
        if b"\x00" in data[:_SNIFF]:
            yield self._rows([], {"binary_file": 1})
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            yield self._rows([], {"not_utf8": 1})
            return
        ext = os.path.splitext(uri)[1].lower()
        domain = CODE_LANGUAGES.get(ext, ext.lstrip(".") or None) if code else None
        if p.split == "file":
            pieces = [(os.path.basename(uri), text)]
        elif p.split == "blank_lines":
            blocks = [b.strip() for b in text.split("\n\n")]
            pieces = [(str(k), b) for k, b in enumerate(blocks) if b]
        else:
            pieces = list(_wikitext_split(text))
        rows, empty = [], 0
        for key, piece in pieces:
            if len(piece.strip()) < p.min_chars:
                empty += 1
                continue
            rows.append(self._row(uri, self._doc_id(uri, key), piece, domain=domain))
        for k in range(0, max(len(rows), 1), p.batch_size):
            yield self._rows(rows[k:k + p.batch_size], {"empty": empty} if k == 0 else {})


def _wikitext_split(text: str) -> Iterator[tuple[str, str]]:
    """WikiText articles: a line ' = Title = ' (one '=' each side) starts a new article."""
    from processors.detok import heading

    title, lines, n = None, [], 0
    for raw in text.splitlines():
        h = heading(raw)
        if h and h[0] == 1:
            if title is not None:
                yield f"{n}", "\n".join(lines)
                n += 1
            title, lines = h[1], [raw]
        elif title is not None:
            lines.append(raw)
    if title is not None:
        yield f"{n}", "\n".join(lines)
