"""The WARC layer of the extract stage: record reading, offsets, corruption, inputs, HTTP parsing.

No extraction child here (see test_extract.py for the Source)."""
from __future__ import annotations

import gzip
import os
import zlib

import pytest

from processors.base import ProcessorError
from processors.warc import (
    ReadStats,
    decode_http_body,
    expand_inputs,
    gzip_members_hold_one_record,
    iter_records,
    parse_http_response,
)
from warc_samples import ARTICLE, html_page, page_record, write_warc


def read_all(path, **kw) -> tuple[list, ReadStats]:
    stats = ReadStats()
    recs = list(iter_records(str(path), max_block_bytes=kw.pop("max_block_bytes", 10 << 20), stats=stats, **kw))
    return recs, stats


# ---------------------------------------------------------------------------- real files


@pytest.mark.parametrize(
    "rel, types",
    [
        ("cc/CC-MAIN-2020-34-sample.warc.gz", {"warcinfo": 1, "request": 17, "response": 16, "metadata": 16}),
        ("cc/CC-MAIN-2014-35-sample.warc", {"warcinfo": 1, "request": 4, "response": 4, "metadata": 4}),
        ("cc/CC-MAIN-2014-35-sample.warc.wet", {"warcinfo": 1, "conversion": 3}),
        ("edge/clueweb09-ja-warc0.18.warc.gz", {"warcinfo": 1, "response": 29}),
        # one gzip member for the whole file, and Content-Lengths that are off (LF became CRLF):
        # the strict readers (warcio, FastWARC without quirks) stop after 3 records.
        ("edge/single-gzip-member.warc.gz", {"warcinfo": 1, "request": 4, "response": 4, "metadata": 3}),
    ],
)
def test_record_types_of_real_files(shared_data, rel, types):
    recs, stats = read_all(shared_data / rel)
    counts: dict[str, int] = {}
    for r in recs:
        counts[r.record_type] = counts.get(r.record_type, 0) + 1
    assert counts == types
    assert stats.corrupt_regions == 0 and stats.read_error is None


def test_gzip_offsets_are_member_offsets(shared_data):
    """warc_offset of a gzip file is where the record's gzip member starts, as in CC's index:
    decompressing one member from there gives exactly that record."""
    path = shared_data / "cc" / "CC-MAIN-2020-34-sample.warc.gz"
    data = path.read_bytes()
    recs, stats = read_all(path)
    assert not stats.single_gzip_member
    offsets = [r.offset for r in recs]
    assert offsets == sorted(set(offsets)) and offsets[0] == 0
    for r in recs:
        d = zlib.decompressobj(31)
        member = d.decompress(data[r.offset:])
        assert d.eof
        assert member.startswith(b"WARC/1.0")
        assert r.record_id.encode() in member[:2000]


def test_plain_offsets_point_at_record_start(shared_data):
    path = shared_data / "cc" / "CC-MAIN-2014-35-sample.warc"
    data = path.read_bytes()
    recs, _ = read_all(path)
    for r in recs:
        assert data[r.offset:].startswith(b"WARC/1.0")
        assert r.record_id.encode() in data[r.offset:r.offset + 2000]


def test_single_member_gzip_has_no_offsets(shared_data):
    recs, stats = read_all(shared_data / "edge" / "single-gzip-member.warc.gz")
    assert stats.single_gzip_member
    assert all(r.offset is None for r in recs)
    assert gzip_members_hold_one_record((shared_data / "cc" / "CC-MAIN-2020-34-sample.warc.gz").read_bytes()[:65536])
    assert gzip_members_hold_one_record(b"WARC/1.0\r\n") is None


def test_clipped_response_is_incomplete(shared_data):
    recs, _ = read_all(shared_data / "edge" / "clipped-response.warc.gz")
    assert len(recs) == 1
    assert recs[0].record_type == "response" and not recs[0].complete
    assert len(recs[0].block) < recs[0].content_length


def test_lf_only_http_headers_of_clueweb(shared_data):
    """FastWARC's HTTP parser mis-reads these; ours must find status, type and charset."""
    recs, _ = read_all(shared_data / "edge" / "clueweb09-ja-warc0.18.warc.gz")
    http = parse_http_response(recs[1].block)
    assert http.status == 200 and http.mime() == "text/html" and http.charset() == "EUC-JP"
    body = recs[1].block[http.body_offset:]
    assert body.lstrip().startswith(b"<html>")
    # `Content-Encoding: gzip` over a body stored plain: the body must survive decoding
    assert http.headers["content-encoding"] == "gzip"
    assert decode_http_body(body, http.headers, 10 << 20) == body


# ---------------------------------------------------------------------------- corruption


def _response_records(n: int) -> list[bytes]:
    return [
        page_record(f"http://example.com/{i}", html_page(f"Story {i}", ARTICLE).encode())
        for i in range(n)
    ]


def test_corrupt_member_in_the_middle_is_skipped(tmp_path):
    path = tmp_path / "corrupt.warc.gz"
    offsets = write_warc(path, _response_records(10))
    data = bytearray(path.read_bytes())
    mid = offsets[4] + 40  # inside the compressed data of record 4
    data[mid:mid + 30] = os.urandom(30)
    path.write_bytes(bytes(data))
    recs, stats = read_all(path)
    uris = [r.target_uri for r in recs]
    assert stats.corrupt_regions == 1
    assert "http://example.com/4" not in uris
    assert [u for u in uris if u != "http://example.com/4"] == [f"http://example.com/{i}" for i in range(10) if i != 4]
    assert all(r.complete for r in recs)
    # offsets after the resync are still true member offsets
    assert [r.offset for r in recs][-1] == offsets[9]


def test_garbage_between_members_is_skipped(tmp_path):
    path = tmp_path / "garbage.warc.gz"
    recs_bytes = _response_records(6)
    good = tmp_path / "good.warc.gz"
    offsets = write_warc(good, recs_bytes)
    data = good.read_bytes()
    path.write_bytes(data[:offsets[3]] + os.urandom(5000) + data[offsets[3]:])
    recs, stats = read_all(path)
    assert [r.target_uri for r in recs] == [f"http://example.com/{i}" for i in range(6)]
    assert stats.corrupt_regions == 1 and stats.bytes_skipped >= 5000


def test_truncated_gzip_keeps_earlier_records(tmp_path):
    full = tmp_path / "full.warc.gz"
    offsets = write_warc(full, _response_records(5))
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(full.read_bytes()[:offsets[3] + 200])  # inside record 3's member
    recs, stats = read_all(cut)
    assert [r.target_uri for r in recs[:3]] == [f"http://example.com/{i}" for i in range(3)]
    assert all(r.complete for r in recs[:3])
    assert all(not r.complete for r in recs[3:])  # the cut record, if its header survived
    assert stats.read_error is None


@pytest.mark.parametrize("make", [lambda: os.urandom(50_000), lambda: gzip.compress(os.urandom(50_000)), lambda: b""])
def test_not_a_warc_yields_nothing_and_does_not_raise(tmp_path, make):
    path = tmp_path / "junk.warc.gz"
    path.write_bytes(make())
    recs, stats = read_all(path)
    assert recs == [] and stats.records == 0


def test_oversized_block_is_not_read_in_full(tmp_path):
    path = tmp_path / "big.warc.gz"
    big = b"<html><body>" + b"<p>filler text here</p>" * 1_000_000 + b"</body></html>"  # ~23 MB
    write_warc(path, [page_record("http://example.com/big", big), *_response_records(1)])
    recs, _ = read_all(path, max_block_bytes=1 << 20)
    assert recs[0].oversized and len(recs[0].block) == 1 << 20 and recs[0].complete
    assert not recs[1].oversized and recs[1].target_uri == "http://example.com/0"


def test_missing_input_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_all(tmp_path / "nope.warc.gz")


# ---------------------------------------------------------------------------- HTTP


def test_parse_http_variants():
    r = parse_http_response(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\nbody")
    assert r.status == 404 and r.mime() == "text/html" and r.charset() is None
    r = parse_http_response(b"HTTP/1.0 200 OK\nContent-Type: text/html;\n charset=\"ISO-8859-1\"\n\n<html>")
    assert r.status == 200 and r.charset() == "ISO-8859-1" and r.body_offset == len(b"HTTP/1.0 200 OK\nContent-Type: text/html;\n charset=\"ISO-8859-1\"\n\n")
    r = parse_http_response(b"garbage line\r\nX: y\r\n\r\n<html>")
    assert r.status is None
    r = parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/html")  # header never ends
    assert r.status is None


def test_decode_http_body_chunked_and_gzip():
    html = html_page("Chunked", ARTICLE).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(html[i:i + 100]), html[i:i + 100]) for i in range(0, len(html), 100)) + b"0\r\n\r\n"
    assert decode_http_body(chunked, {"transfer-encoding": "chunked"}, 1 << 20) == html
    assert decode_http_body(gzip.compress(html), {"content-encoding": "gzip"}, 1 << 20) == html
    # deflate (zlib-wrapped, as servers send it)
    assert decode_http_body(zlib.compress(html), {"content-encoding": "deflate"}, 1 << 20) == html
    # a header that lies about chunking leaves the body alone
    assert decode_http_body(html, {"transfer-encoding": "chunked"}, 1 << 20) == html
    from processors.warc import BodyTooLarge

    with pytest.raises(BodyTooLarge):
        decode_http_body(gzip.compress(b"a" * 5_000_000), {"content-encoding": "gzip"}, 1_000_000)


# ---------------------------------------------------------------------------- inputs


def test_expand_local_glob_dir_and_missing(shared_data, tmp_path):
    web = sorted(str(p) for p in (shared_data / "web").glob("*.warc.gz"))
    assert expand_inputs([str(shared_data / "web" / "pages-*.warc.gz")]) == web
    assert expand_inputs([str(shared_data / "web")]) == web
    # repeats are dropped, order kept
    assert expand_inputs([web[1], web[0], web[1]]) == [web[1], web[0]]
    missing = str(tmp_path / "gone.warc.gz")
    with pytest.raises(ProcessorError, match="gone.warc.gz"):
        expand_inputs([web[0], missing])
    with pytest.raises(ProcessorError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.warc.gz")])


def test_expand_listing(tmp_path):
    listing = tmp_path / "warc.paths.gz"
    listing.write_bytes(gzip.compress(
        b"crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz\n\n"
        b"s3://commoncrawl/crawl-data/b.warc.gz\n/abs/local/c.warc.gz\n"
    ))
    assert expand_inputs([str(listing)]) == [
        "https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz",
        "s3://commoncrawl/crawl-data/b.warc.gz",
        "/abs/local/c.warc.gz",
    ]
    assert expand_inputs([str(listing)], listing_prefix="s3://commoncrawl")[0] == (
        "s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz"
    )
    with pytest.raises(ProcessorError, match="listing not found"):
        expand_inputs([str(tmp_path / "wet.paths.gz")])


def test_expand_refuses_wat(shared_data):
    with pytest.raises(ProcessorError, match="WAT holds crawl metadata only"):
        expand_inputs([str(shared_data / "cc" / "CC-MAIN-2014-35-sample.warc.wat")])


def test_remote_uris_pass_through_unprobed():
    uris = ["https://data.commoncrawl.org/x.warc.gz", "s3://commoncrawl/y.warc.gz"]
    assert expand_inputs(uris) == uris


class _FailingStream:
    """A transport that dies after `limit` bytes, the way a dropped connection does."""

    def __init__(self, path, limit, exc):
        self.f, self.left, self.exc = open(path, "rb"), limit, exc

    def read(self, n=-1):
        if self.left <= 0:
            raise self.exc
        data = self.f.read(min(n if n >= 0 else self.left, self.left))
        self.left -= len(data)
        return data

    def seek(self, *args):
        return self.f.seek(*args)

    def close(self):
        self.f.close()


@pytest.mark.parametrize("exc", [ConnectionResetError("peer reset"), RuntimeError("aiohttp payload error")])
def test_io_error_mid_file_keeps_what_was_read(tmp_path, monkeypatch, exc):
    path = tmp_path / "net.warc.gz"
    offsets = write_warc(path, _response_records(20))
    import processors.warc as warc

    monkeypatch.setattr(warc, "open_uri", lambda uri, so=None: _FailingStream(uri, offsets[12] + 100, exc))
    recs, stats = read_all(path)
    assert stats.read_error and type(exc).__name__ in stats.read_error
    complete = [r.target_uri for r in recs if r.complete]
    # FastWARC reads ahead in 64 KiB blocks: every record wholly inside the bytes received is read
    assert complete[:10] == [f"http://example.com/{i}" for i in range(10)]
    assert len(complete) <= 12
