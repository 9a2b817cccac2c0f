"""The document schema every stage sees. Stages add columns; they never rename these."""
from __future__ import annotations

import pyarrow as pa

# Core columns, in this order, for every document whatever its source.
DOCUMENT_FIELDS: list[pa.Field] = [
    pa.field("id", pa.string(), nullable=False),  # stable: WARC-Record-ID, or source name + key
    pa.field("source", pa.string()),  # "cc" for the crawl, else the name the YAML gives a source
    pa.field("url", pa.string()),
    pa.field("domain", pa.string()),  # host of the URL, lowercased, without a leading "www."
    pa.field("date", pa.string()),  # ISO 8601 as given by the record (WARC-Date), or null
    pa.field("text", pa.string()),
]
DOCUMENT_SCHEMA = pa.schema(DOCUMENT_FIELDS)

# Extra columns the WARC/WET source adds.
WARC_FIELDS: list[pa.Field] = [
    pa.field("warc_file", pa.string()),
    pa.field("warc_offset", pa.int64()),
    pa.field("charset", pa.string()),
    pa.field("content_language", pa.string()),  # from HTTP headers/meta when present, else null
]


def empty_documents(extra: list[pa.Field] | None = None) -> pa.Table:
    return pa.schema(DOCUMENT_FIELDS + (extra or [])).empty_table()
