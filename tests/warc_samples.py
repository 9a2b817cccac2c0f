"""Builders for synthetic WARC files (bad inputs, charset cases) used by the extract tests."""
from __future__ import annotations

import gzip
import uuid
from pathlib import Path

ARTICLE = [
    "The river had risen overnight, and by morning the lower town was under a foot of brown water.",
    "Volunteers stacked sandbags along the quay while the ferry service was suspended until noon.",
    "Officials said the dam upstream had released more water than planned after three days of rain.",
    "Shopkeepers moved their stock to upper floors, and the school opened its gym as a shelter.",
    "By evening the level had dropped, leaving a line of silt on every wall along the main street.",
    "Engineers will inspect the bridge tomorrow before it reopens to heavy traffic next week.",
]


def html_page(title: str, paragraphs: list[str], *, head: str = "", lang: str | None = None) -> str:
    lang_attr = f' lang="{lang}"' if lang else ""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!DOCTYPE html><html{lang_attr}><head>{head}<title>{title}</title></head><body>"
        f"<nav><a href='/'>Home</a> <a href='/news'>News</a></nav>"
        f"<article><h1>{title}</h1>{body}</article>"
        f"<footer>Copyright 2024 Example Media</footer></body></html>"
    )


def http_response(
    body: bytes,
    *,
    status: str = "200 OK",
    content_type: str | None = "text/html; charset=utf-8",
    headers: dict[str, str] | None = None,
    eol: bytes = b"\r\n",
) -> bytes:
    lines = [f"HTTP/1.1 {status}".encode()]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}".encode())
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}".encode())
    lines.append(f"Content-Length: {len(body)}".encode())
    return eol.join(lines) + eol + eol + body


def warc_record(
    rtype: str,
    block: bytes,
    *,
    uri: str | None = "http://example.com/page",
    record_id: str | None = "auto",
    date: str = "2024-06-01T12:00:00Z",
    content_type: str | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    if content_type is None:
        content_type = {
            "response": "application/http; msgtype=response",
            "request": "application/http; msgtype=request",
            "conversion": "text/plain",
            "warcinfo": "application/warc-fields",
            "metadata": "application/warc-fields",
        }.get(rtype, "application/octet-stream")
    headers = [("WARC-Type", rtype), ("WARC-Date", date)]
    if record_id == "auto":
        record_id = f"<urn:uuid:{uuid.uuid4()}>"
    if record_id:
        headers.append(("WARC-Record-ID", record_id))
    if uri:
        headers.append(("WARC-Target-URI", uri))
    headers += list((extra or {}).items())
    headers += [("Content-Type", content_type), ("Content-Length", str(len(block)))]
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode() + block + b"\r\n\r\n"


def page_record(uri: str, html: bytes, **http_kw) -> bytes:
    return warc_record("response", http_response(html, **http_kw), uri=uri)


def write_warc(path: Path, records: list[bytes], *, gzip_members: bool = True) -> list[int]:
    """Write records (one gzip member each, CC style, or plain); returns each record's offset."""
    offsets, pos = [], 0
    with open(path, "wb") as f:
        for rec in records:
            data = gzip.compress(rec, compresslevel=6) if gzip_members else rec
            offsets.append(pos)
            f.write(data)
            pos += len(data)
    return offsets


def warc_head(src: Path, records: int, dest: Path) -> Path:
    """The first `records` records of a real per-record-gzipped WARC (the warcinfo one included),
    copied byte for byte: a smaller real input for tests that run a pipeline several times."""
    import zlib

    data = Path(src).read_bytes()
    pos = 0
    for _ in range(records):
        if pos >= len(data):
            break
        member = zlib.decompressobj(31)
        member.decompress(data[pos:])
        pos = len(data) - len(member.unused_data)
    Path(dest).write_bytes(data[:pos])
    return Path(dest)
