"""Main text of the pages in WARC files, for training negatives, tests and benchmarks.

The pipeline's own `extract` stage (processors/extract.py) is what production runs use: it adds
charset handling, per-page time limits and drop reasons. This helper is the small, dependency-light
path the classifier tooling needs when it has WARCs but no extract output yet: fastwarc reads the
`response` records, trafilatura extracts the main text (precision-leaning, no comments), and each
page becomes one row in the document schema (id, source, url, domain, date, text).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pyarrow as pa

from processors.schema import DOCUMENT_SCHEMA
from processors.uris import domain_of


def extract_warc_documents(paths: Iterable[str | Path], limit: int | None = None,
                           min_words: int = 20, source: str = "cc") -> pa.Table:
    """One row per HTML response whose extracted main text has at least `min_words` words.

    `limit` stops after that many kept documents (records are read in file order, so the result is
    the same every time). Pages trafilatura cannot parse are skipped.
    """
    import trafilatura
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    rows: dict[str, list] = {f.name: [] for f in DOCUMENT_SCHEMA}
    for path in paths:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                if limit is not None and len(rows["id"]) >= limit:
                    break
                http = rec.http_headers
                if http is not None and http.status_code not in (None, 200):
                    continue
                ctype = (http.get("Content-Type", "") if http is not None else "") or ""
                if ctype and "html" not in ctype.lower():
                    continue
                body = rec.reader.read()
                try:
                    text = trafilatura.extract(body, favor_precision=True, include_comments=False,
                                               include_tables=True, fast=True)
                except Exception:  # noqa: BLE001 - one malformed page is skipped, not fatal
                    text = None
                if not text or len(text.split()) < min_words:
                    continue
                url = rec.headers.get("WARC-Target-URI")
                rows["id"].append(rec.record_id)
                rows["source"].append(source)
                rows["url"].append(url)
                rows["domain"].append(domain_of(url))
                rows["date"].append(rec.headers.get("WARC-Date"))
                rows["text"].append(text)
        if limit is not None and len(rows["id"]) >= limit:
            break
    return pa.table(rows, schema=DOCUMENT_SCHEMA)
