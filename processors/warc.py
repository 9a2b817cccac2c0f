"""WARC/WET record reading and the filesystem layer under it.

Reader choice: FastWARC (C++) reads the shared WARCs 2.3x faster than warcio in CPU time (see
`benchmarks/bench_warc_readers.py`), reads WARC/0.18, and, in `quirks_mode`, also reads files that
warcio refuses: a CC WARC compressed as one gzip member, and records whose Content-Length is wrong
(it resynchronises on the next `WARC/` line). warcio is therefore not used here at all.

FastWARC's own HTTP parser is not used either: it needs CRLF line ends and silently mis-parses
ClueWeb09's LF-only HTTP headers (the HTML body becomes "headers"). `parse_http_response` below
accepts both, and leaves payload decoding (chunked, gzip) to `decode_http_body`, which never lets a
bad Content-Encoding header destroy a payload that was stored decoded (as CC stores it).

Corruption handling (never lose the rest of a file):
- a physically truncated record (file or gzip member ends early) is yielded with `complete=False`;
- a corrupt gzip member stops FastWARC with an OSError; we rescan the compressed bytes after the last
  record that started, find the next gzip member that decompresses to `WARC/`, and go on from there;
- an I/O error of the underlying stream (network, file removed) ends the file: what was read so
  far is kept and the caller counts one `input_read_error`.
"""
from __future__ import annotations

import glob as globlib
import gzip
import io
import os
import re
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit

from fastwarc.warc import ArchiveIterator, WarcRecordType

from processors.base import ProcessorError
from processors.uris import is_remote

DEFAULT_LISTING_PREFIX = "https://data.commoncrawl.org/"

# Names this source reads. WAT is matched so that it gets a clear refusal instead of "no source".
_WARC_NAME = re.compile(r"\.(warc|wet|wat)(\.(gz|zst|lz4))?$", re.IGNORECASE)
_WAT_NAME = re.compile(r"\.wat(\.(gz|zst|lz4))?$", re.IGNORECASE)
_LISTING_NAME = re.compile(r"\.paths(\.gz)?$", re.IGNORECASE)
_GLOB_CHARS = re.compile(r"[*?\[]")

WAT_REFUSAL = (
    "is a WAT file: WAT holds crawl metadata only (links, headers as JSON), no page content; "
    "use the matching WARC (HTML, extracted here) or WET (Common Crawl's plain text) instead"
)

# Record types that can carry a document; everything else (request, metadata, warcinfo, revisit)
# is counted, not read.
_DOCUMENT_TYPES = frozenset({"response", "resource", "conversion"})
_HEAD_PROBE_BYTES = 64 * 1024  # compressed bytes inspected to learn the gzip layout
_RESYNC_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------
# URIs and filesystems


def is_wat(uri: str) -> bool:
    return bool(_WAT_NAME.search(_path_part(uri)))


def is_listing(uri: str) -> bool:
    return bool(_LISTING_NAME.search(_path_part(uri)))


def looks_like_warc(uri: str) -> bool:
    """Whether the name is a WARC/WET/WAT file (compressed or not)."""
    return bool(_WARC_NAME.search(_path_part(uri)))


def _path_part(uri: str) -> str:
    return urlsplit(uri).path if is_remote(uri) else uri


def _local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


_AWS_CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def storage_options_for(uri: str, overrides: dict | None = None) -> dict:
    """fsspec options for a URI. s3 is anonymous unless AWS credentials are configured (env or
    ~/.aws), so that public buckets work without an account. An EC2 instance role is not probed
    (that costs a metadata-service timeout off EC2): pass storage_options {"anon": false}."""
    opts: dict = {}
    if uri.startswith(("s3://", "s3a://")):
        has_creds = any(k in os.environ for k in _AWS_CREDENTIAL_ENV) or os.path.exists(
            os.path.expanduser("~/.aws/credentials")
        )
        opts["anon"] = not has_creds
    opts.update(overrides or {})
    return opts


def open_uri(uri: str, storage_options: dict | None = None) -> BinaryIO:
    """Open a local path or fsspec URI for sequential binary reading.

    Raises FileNotFoundError when the input does not exist (the caller turns it into
    `input_missing`). https is opened as one streaming GET (block_size=0): it works against any
    server, range support or not, and reads a 1 GB WARC without a request per block.
    """
    if not is_remote(uri):
        return open(_local_path(uri), "rb")
    import fsspec

    protocol = uri.split("://", 1)[0]
    fs = fsspec.filesystem(protocol, **storage_options_for(uri, storage_options))
    if protocol in ("http", "https"):
        return fs.open(uri, "rb", block_size=0)
    return fs.open(uri, "rb", block_size=16 << 20, cache_type="readahead")


def expand_inputs(
    patterns: list[str],
    *,
    listing_prefix: str = DEFAULT_LISTING_PREFIX,
    storage_options: dict | None = None,
) -> list[str]:
    """Turn input patterns into the list of URIs to read, in a stable order.

    - local paths must exist (a clear ProcessorError names the missing one); a directory stands
      for the WARC/WET files under it (recursively);
    - globs (`*`, `?`, `[`) expand locally or through fsspec (s3://, gcs://, ...); no match is an error;
    - a Common Crawl listing (`*.paths`, `*.paths.gz`, local or remote) expands to one URI per line;
      relative lines get `listing_prefix` (https://data.commoncrawl.org/ by default);
    - WAT files are refused up front: they hold no page content.
    Remote plain URIs are not probed (that would cost a request each); a missing one is counted as
    `input_missing` when read.
    """
    out: list[str] = []
    for pattern in patterns:
        if is_listing(pattern) and not _GLOB_CHARS.search(pattern):
            out.extend(_read_listing(pattern, listing_prefix, storage_options))
        elif _GLOB_CHARS.search(_path_part(pattern)):
            matches = _glob(pattern, storage_options)
            if not matches:
                raise ProcessorError(f"input pattern {pattern!r} matches no file")
            for m in matches:
                out.extend(_read_listing(m, listing_prefix, storage_options) if is_listing(m) else [m])
        elif is_remote(pattern):
            out.append(pattern)
        else:
            path = _local_path(pattern)
            if os.path.isdir(path):
                found = sorted(
                    os.path.join(root, name)
                    for root, _, names in os.walk(path)
                    for name in names
                    if looks_like_warc(name) and not is_wat(name)  # WAT beside WARCs: not ours
                )
                if not found:
                    raise ProcessorError(f"input directory {pattern!r} holds no WARC/WET file")
                out.extend(found)
            elif os.path.exists(path):
                out.append(pattern)
            else:
                raise ProcessorError(f"input not found: {pattern!r}")
    wat = [u for u in out if is_wat(u)]
    if wat:
        raise ProcessorError(f"{wat[0]!r} {WAT_REFUSAL}")
    return list(dict.fromkeys(out))  # drop repeats, keep order


def _glob(pattern: str, storage_options: dict | None) -> list[str]:
    if not is_remote(pattern):
        return sorted(p for p in globlib.glob(_local_path(pattern), recursive=True) if os.path.isfile(p))
    import fsspec

    protocol = pattern.split("://", 1)[0]
    fs = fsspec.filesystem(protocol, **storage_options_for(pattern, storage_options))
    return sorted(fs.unstrip_protocol(p) for p in fs.glob(pattern))


def _read_listing(uri: str, prefix: str, storage_options: dict | None) -> list[str]:
    try:
        with open_uri(uri, storage_options) as raw:
            data = raw.read()
    except FileNotFoundError:
        raise ProcessorError(f"input listing not found: {uri!r}") from None
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    uris = []
    for line in data.decode("utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "://" in line or line.startswith("/"):
            uris.append(line)
        else:
            uris.append(prefix.rstrip("/") + "/" + line.lstrip("/"))
    return uris


# --------------------------------------------------------------------------------------------
# Input stream with byte accounting


class InputStream:
    """What FastWARC reads from: counts bytes, remembers I/O errors of the underlying stream (so a
    network error is not mistaken for corruption), and can replay a peeked head."""

    def __init__(self, raw: BinaryIO, start: int = 0, head: bytes = b"") -> None:
        self.raw = raw
        self.pos = start
        self._head = head
        self.io_error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        if self._head:
            # Serve the peeked head alone (a short read is legal): joining it with a raw read
            # would lose it if that read fails.
            if size < 0 or size >= len(self._head):
                data, self._head = self._head, b""
            else:
                data, self._head = self._head[:size], self._head[size:]
        else:
            data = self._raw_read(size)
        self.pos += len(data)
        return data

    def _raw_read(self, size: int) -> bytes:
        try:
            return self.raw.read(size)
        except BaseException as exc:  # noqa: BLE001 - remembered, then re-raised unchanged
            self.io_error = exc
            raise

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        self.raw.close()


def _open_at(uri: str, pos: int, storage_options: dict | None) -> InputStream:
    """Reopen an input positioned at byte `pos` (seek where possible, else read and discard)."""
    raw = open_uri(uri, storage_options)
    try:
        raw.seek(pos)
    except (ValueError, OSError, io.UnsupportedOperation):
        # Streaming HTTP says it is seekable but refuses: read forward instead.
        left = pos
        while left > 0:
            chunk = raw.read(min(left, _RESYNC_CHUNK))
            if not chunk:
                break
            left -= len(chunk)
    return InputStream(raw, start=pos)


# --------------------------------------------------------------------------------------------
# Records


@dataclass
class RawRecord:
    """One WARC record as the extract stage needs it, independent of the reader library.

    `block` holds the record block (HTTP headers + payload for a response) for document-carrying
    types only, and at most `max_block_bytes` of it: `oversized` says the rest was not read.
    `complete` is False when the file ended before the declared Content-Length.
    """

    record_type: str
    record_id: str | None
    target_uri: str | None
    date: str | None
    offset: int | None
    content_length: int
    headers: dict[str, str]
    block: bytes = b""
    oversized: bool = False
    complete: bool = True


@dataclass
class ReadStats:
    """Per-file events the record iterator reports besides records."""

    input_bytes: int = 0
    corrupt_regions: int = 0  # corrupt gzip members skipped by resynchronising
    bytes_skipped: int = 0
    read_error: str | None = None  # I/O error that ended the file early
    single_gzip_member: bool = False
    records: int = 0


def gzip_members_hold_one_record(head: bytes) -> bool | None:
    """From the first compressed bytes: True when gzip members are records (CC layout, member
    offsets are seekable record offsets), False for one member holding many records, None if
    the input is not gzip."""
    if head[:2] != b"\x1f\x8b":
        return None
    d = zlib.decompressobj(31)
    try:
        out = d.decompress(head, 4 << 20)
    except zlib.error:
        return True  # let the reader report the corruption; assume CC layout
    end = out.find(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", out[: end if end >= 0 else 0])
    if end < 0 or not m:
        return True
    record_end = end + 4 + int(m.group(1))
    # Bytes after the first record inside the first member (beyond its CRLFCRLF trailer) mean
    # records share members. The trailer check tolerates a few stray bytes.
    return len(out[record_end:].strip()) == 0


def iter_records(
    uri: str,
    *,
    max_block_bytes: int,
    stats: ReadStats,
    storage_options: dict | None = None,
) -> Iterator[RawRecord]:
    """Yield every record of a WARC/WET (gzip, zstd, lz4 or plain).

    FileNotFoundError propagates before the first record (input missing). Corrupt gzip members
    are skipped (counted in `stats.corrupt_regions`); an I/O error ends the file quietly with
    `stats.read_error` set, keeping everything yielded before it.
    """
    try:
        raw = open_uri(uri, storage_options)
    except FileNotFoundError:
        raise  # the caller's `input_missing`
    except OSError as exc:  # refused connection, permission, ...: this input is lost, not the run
        stats.read_error = f"{type(exc).__name__}: {exc}"
        return
    try:
        head = raw.read(_HEAD_PROBE_BYTES)
    except Exception as exc:  # noqa: BLE001 - transport failure before the first record
        raw.close()
        stats.read_error = f"{type(exc).__name__}: {exc}"
        return
    layout = gzip_members_hold_one_record(head)
    stats.single_gzip_member = layout is False
    is_gzip = layout is not None
    stream = InputStream(raw, head=head)
    last_start = -1
    try:
        while True:
            try:
                for rec in ArchiveIterator(
                    stream,
                    record_types=WarcRecordType.any_type,
                    parse_http=False,
                    quirks_mode=True,  # resync on bad Content-Length; read single-member gzip
                    auto_decode="none",
                ):
                    last_start = rec.stream_pos
                    stats.records += 1
                    yield _to_raw_record(rec, max_block_bytes, offset_valid=layout is not False)
                break
            except Exception as err:  # noqa: BLE001 - sorted below: input I/O, corruption, or ours
                if stream.io_error is not None:
                    # The transport failed (network, file removed): whatever its exception class
                    # (aiohttp's are not OSErrors), keep what was read and end this input.
                    stats.read_error = f"{type(stream.io_error).__name__}: {stream.io_error}"
                    break
                if not isinstance(err, OSError):
                    raise  # a bug, not bad input
                if not is_gzip:
                    # Plain WARC: quirks mode already resyncs on WARC/ lines; an error here means
                    # the rest is unreadable.
                    stats.read_error = f"unreadable WARC data after offset {max(last_start, 0)}: {err}"
                    break
                stream.close()
                stats.corrupt_regions += 1
                try:
                    found = _find_next_member(uri, last_start + 1, storage_options)
                    if found is None:
                        break
                    stream = _open_at(uri, found, storage_options)
                except Exception as exc:  # noqa: BLE001 - the input went away while resyncing
                    stats.read_error = f"{type(exc).__name__} while resynchronising: {exc}"
                    break
                # upper bound: counted from the start of the last good record
                stats.bytes_skipped += found - max(last_start, 0)
                last_start = found
    finally:
        stats.input_bytes = max(stats.input_bytes, stream.pos)
        stream.close()


def _to_raw_record(rec, max_block_bytes: int, offset_valid: bool) -> RawRecord:
    headers: dict[str, str] = {}
    for key, value in rec.headers.items():
        headers.setdefault(key.lower(), value)  # WARC header names are case-insensitive
    rtype = str(rec.record_type)
    if rtype in ("unknown", "no_type"):
        rtype = headers.get("warc-type", "unknown").strip().lower() or "unknown"
    raw = RawRecord(
        record_type=rtype,
        record_id=headers.get("warc-record-id"),
        # WARC/0.17-era writers wrap the URI in <>; WARC/1.0+ does not
        target_uri=_strip_brackets(headers.get("warc-target-uri")),
        date=headers.get("warc-date"),
        offset=rec.stream_pos if offset_valid else None,
        content_length=rec.content_length,
        headers=headers,
    )
    if rtype in _DOCUMENT_TYPES:
        limit = min(rec.content_length, max_block_bytes)
        block = _read_exact(rec.reader, limit)
        raw.block = block
        raw.oversized = rec.content_length > max_block_bytes
        # A header cut before Content-Length parses as an empty record: that is truncation too.
        raw.complete = len(block) == limit and "content-length" in headers
    return raw


def _strip_brackets(uri: str | None) -> str | None:
    if uri is None:
        return None
    uri = uri.strip()
    return uri[1:-1] if uri.startswith("<") and uri.endswith(">") else uri


def _read_exact(reader, n: int) -> bytes:
    parts, left = [], n
    while left > 0:
        chunk = reader.read(min(left, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _find_next_member(uri: str, start: int, storage_options: dict | None) -> int | None:
    """First offset >= start where a gzip member that decompresses to a WARC header begins."""
    stream = _open_at(uri, start, storage_options)
    base, buf = start, b""
    try:
        while True:
            chunk = stream.read(_RESYNC_CHUNK)
            eof = not chunk
            buf += chunk
            # A candidate is tested with the bytes after it; keep a probe's worth for the next round.
            limit = len(buf) if eof else max(0, len(buf) - _HEAD_PROBE_BYTES)
            i = buf.find(b"\x1f\x8b\x08")
            while 0 <= i < limit:
                if _member_starts_warc(buf[i:i + _HEAD_PROBE_BYTES]):
                    return base + i
                i = buf.find(b"\x1f\x8b\x08", i + 1)
            if eof:
                return None
            base, buf = base + limit, buf[limit:]
    finally:
        stream.close()


def _member_starts_warc(data: bytes) -> bool:
    try:
        return zlib.decompressobj(31).decompress(data, 16).startswith(b"WARC/")
    except zlib.error:
        return False


# --------------------------------------------------------------------------------------------
# HTTP


@dataclass
class HttpResponse:
    status: int | None  # None: no parsable status line
    headers: dict[str, str]  # lowercased names; first occurrence wins
    body_offset: int  # where the payload starts in the record block

    def mime(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def charset(self) -> str | None:
        return charset_param(self.headers.get("content-type", ""))


def charset_param(content_type: str) -> str | None:
    """The charset parameter of a Content-Type value, as written."""
    m = re.search(r"charset\s*=\s*[\"']?([^\"';,\s]+)", content_type, re.I)
    return m.group(1) if m else None


_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)?\s+(\d{3})")
_MAX_HTTP_HEADER = 64 * 1024


def parse_http_response(block: bytes) -> HttpResponse:
    """Parse the HTTP status line and headers of a response record block (CRLF or bare LF)."""
    window = block[:_MAX_HTTP_HEADER]
    ends = [(i, 4) for i in [window.find(b"\r\n\r\n")] if i >= 0] + [
        (i, 2) for i in [window.find(b"\n\n")] if i >= 0
    ]
    if not ends:
        return HttpResponse(None, {}, len(block))
    end, sep = min(ends)
    lines = window[:end].decode("latin-1").replace("\r\n", "\n").split("\n")
    m = _STATUS_LINE.match(lines[0].encode("latin-1"))
    headers: dict[str, str] = {}
    name = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and name:  # obsolete line folding
            headers[name] += " " + line.strip()
            continue
        key, colon, value = line.partition(":")
        if not colon:
            continue
        name = key.strip().lower()
        headers.setdefault(name, value.strip())
    return HttpResponse(int(m.group(1)) if m else None, headers, end + sep)


class BodyTooLarge(Exception):
    """The decoded payload would exceed the size limit (decompression bomb or huge page)."""


def decode_http_body(body: bytes, headers: dict[str, str], max_bytes: int) -> bytes:
    """Undo chunked transfer and gzip/deflate content coding when the stored payload really is
    encoded. CC stores payloads decoded (renaming the headers to X-Crawler-*), and older crawls
    such as ClueWeb09 keep `Content-Encoding: gzip` over plain HTML: the header alone is not
    trusted, the bytes are checked."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body) or body
    coding = headers.get("content-encoding", "").strip().lower()
    if coding in ("gzip", "x-gzip") and body[:2] == b"\x1f\x8b":
        body = _inflate(body, 31, max_bytes)
    elif coding == "deflate" and body[:1] in (b"\x78",):
        body = _inflate(body, 15, max_bytes)
    return body


def _inflate(data: bytes, wbits: int, max_bytes: int) -> bytes:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, max_bytes + 1)
    except zlib.error:
        return data  # not really encoded after all
    if len(out) > max_bytes:
        raise BodyTooLarge
    return out


def _dechunk(data: bytes) -> bytes | None:
    """Decode HTTP/1.1 chunked framing; None if the data is not validly chunked."""
    out, pos = io.BytesIO(), 0
    while True:
        eol = data.find(b"\n", pos)
        if eol < 0:
            return None
        size_field = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            return None
        if size == 0:
            return out.getvalue()
        start = eol + 1
        out.write(data[start:start + size])
        pos = start + size
        if pos >= len(data):
            return out.getvalue()  # truncated in the last chunk: keep what is there
        if data[pos:pos + 2] == b"\r\n":
            pos += 2
        elif data[pos:pos + 1] == b"\n":
            pos += 1
        else:
            return None
