"""Fuzzing WARC reading and HTML extraction: malformed input is a counted skip, never a crash.

Targets: (1) the extract source over real WARC records with bytes flipped, cut or inserted, and
over arbitrary bytes; (2) charset decoding and main-text extraction over arbitrary bytes and
HTML-like strings. The only exception allowed out is the project's own ProcessorError.
Every record the reader reads is either a document out or a counted drop, and the records before
the first mutated byte come out exactly as from the intact file (found by an independent parse of
the seed, by construction). CURATE_FUZZ_EXAMPLES raises the case count for a longer run.
"""
from __future__ import annotations

import gzip
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.base import ProcessorError
from processors.extract import Extract, ExtractParams
from processors.html_text import ExtractSettings, decode_html, declared_language, extract_main_text

EXAMPLES = int(os.environ.get("CURATE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def seed_warc(shared_data) -> bytes:
    """The first records of a real Common Crawl WARC, decompressed (mutations hit the records)."""
    raw = gzip.open(shared_data / "cc" / "CC-MAIN-2020-34-sample.warc.gz").read()
    cut = raw.find(b"WARC/1.0\r\nWARC-Type: request", 200_000)
    return _Seed(raw[:cut if cut > 0 else 200_000])


class _Seed(bytes):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing case
        return f"<{len(self)} bytes of CC-MAIN-2020-34>"


@pytest.fixture(scope="module")
def extractor():
    source = Extract(ExtractParams(extractor="resiliparse", timeout_s=5))
    source.setup()
    yield source
    source.close()


# Drops that describe a file or a byte range, not one record the reader returned.
FILE_LEVEL_DROPS = {"input_missing", "input_read_error", "input_not_warc", "corrupt_record"}


@dataclass
class Outcome:
    rows: dict[str, str]  # url -> text of every document out
    drops: Counter
    counters: Counter


def _read_all(source: Extract, path: Path) -> Outcome:
    """Read a file through the source; check that every record read is a row out or a counted drop."""
    rows: dict[str, str] = {}
    drops: Counter = Counter()
    counters: Counter = Counter()
    n_rows = 0
    for result in source.read(str(path)):
        n_rows += result.table.num_rows
        rows.update(zip(result.table["url"].to_pylist(), result.table["text"].to_pylist()))
        drops.update(result.drops)
        counters.update(result.counters)
    record_drops = sum(n for reason, n in drops.items() if reason not in FILE_LEVEL_DROPS)
    assert n_rows + record_drops + counters["records_skipped_non_response"] == counters["records"], (
        n_rows, dict(drops), dict(counters))
    return Outcome(rows, drops, counters)


def _records_by_construction(raw: bytes) -> list[tuple[int, str, str]]:
    """(end offset, WARC-Type, target URI) of each record of an uncompressed WARC, parsed here from
    the headers' Content-Length (independently of the reader under test)."""
    out, pos = [], 0
    while pos < len(raw):
        head_end = raw.index(b"\r\n\r\n", pos)
        head = raw[pos:head_end].decode("utf-8", "replace")
        length = int(re.search(r"(?im)^content-length:\s*(\d+)", head).group(1))
        rtype = re.search(r"(?im)^warc-type:\s*(\S+)", head).group(1)
        uri = re.search(r"(?im)^warc-target-uri:\s*<?([^\s>]+)", head)
        end = head_end + 4 + length + 4  # block, then the CRLF CRLF that ends a record
        assert raw[end - 4:end] == b"\r\n\r\n"
        out.append((end, rtype, uri.group(1) if uri else ""))
        pos = end
    return out


@pytest.fixture(scope="module")
def seed_truth(seed_warc, extractor, tmp_path_factory):
    """The seed's records by construction, and what the source makes of the intact seed."""
    records = _records_by_construction(bytes(seed_warc))
    path = tmp_path_factory.mktemp("seed") / "seed.warc"
    path.write_bytes(bytes(seed_warc))
    intact = _read_all(extractor, path)
    documents = [r for r in records if r[1] in ("response", "resource", "conversion")]
    assert intact.counters["records"] == len(records) and len(documents) >= 5
    assert len(intact.rows) + sum(intact.drops.values()) == len(documents)
    return records, intact


mutations = st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "delete"]),
                               st.floats(0, 1), st.binary(min_size=1, max_size=16)),
                     min_size=1, max_size=4)


@FUZZ
@given(mutations, st.booleans())
def test_mutated_real_warc_never_crashes(seed_warc, seed_truth, extractor, tmp_path_factory, muts, compress):
    data = bytearray(seed_warc)
    first_change = len(data)  # bytes before it are the seed's
    for op, where, blob in muts:
        if not data:
            break
        i = int(where * (len(data) - 1))
        first_change = min(first_change, i)
        if op == "flip":
            data[i] ^= blob[0] or 1
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = blob
        else:
            del data[i:i + len(blob) * 97]
    path = tmp_path_factory.mktemp("warc") / ("f.warc.gz" if compress else "f.warc")
    path.write_bytes(gzip.compress(bytes(data)) if compress else bytes(data))
    try:
        out = _read_all(extractor, path)
    except ProcessorError:
        return  # e.g. a mutation that makes the file read as WAT: refused with a clear message
    records, intact = seed_truth
    whole = [r for r in records if r[0] <= first_change]  # untouched by any mutation
    assert out.counters["records"] >= len(whole)
    urls = {uri for _, rtype, uri in whole if rtype == "response"}
    # the untouched records come out exactly as from the intact file: same documents, same text
    assert {u: t for u, t in out.rows.items() if u in urls} == {u: t for u, t in intact.rows.items() if u in urls}


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(["x.warc", "x.warc.gz", "x.wet"]))
def test_arbitrary_bytes_never_crash(extractor, tmp_path_factory, blob, name):
    path = tmp_path_factory.mktemp("bytes") / name
    path.write_bytes(blob)
    try:
        assert not _read_all(extractor, path).rows or blob.startswith(b"WARC/")
    except ProcessorError:
        pass


charsets = st.one_of(st.none(), st.sampled_from(
    ["utf-8", "latin-1", "windows-1252", "shift_jis", "gb18030", "utf-16", "x-unknown", "", "koi8-r"]),
    st.text(max_size=12))
html_like = st.lists(st.one_of(
    st.sampled_from(["<html>", "<body>", "<p>", "</p>", "<div>", "</div>", "<script>", "</script>",
                     "<meta charset='shift_jis'>", "<!--", "-->", "<table><tr><td>", "&amp;",
                     "&#xD800;", "\x00", "<![CDATA[", "<title>", "</title>", "<br>"]),
    st.text(max_size=40)), max_size=40).map("".join)


@FUZZ
@given(st.binary(max_size=3000), charsets)
def test_charset_decoding_total(blob, charset):
    text, used = decode_html(blob, charset)
    assert isinstance(text, str) and isinstance(used, str)


@FUZZ
@given(html_like, st.sampled_from(["trafilatura", "resiliparse"]))
def test_main_text_extraction_total(html, which):
    text = extract_main_text(html, None, ExtractSettings(extractor=which))
    assert isinstance(text, str)
    declared_language(html, None)
