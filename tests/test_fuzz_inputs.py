"""Fuzzing WARC reading and HTML extraction: malformed input is a counted skip, never a crash.

Targets: (1) the extract source over real WARC records with bytes flipped, cut or inserted, and
over arbitrary bytes; (2) charset decoding and main-text extraction over arbitrary bytes and
HTML-like strings. The only exception allowed out is the project's own ProcessorError.
CURATE_FUZZ_EXAMPLES raises the case count for a longer run.
"""
from __future__ import annotations

import gzip
import os
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


def _read_all(source: Extract, path: Path) -> int:
    docs = 0
    for result in source.read(str(path)):
        assert result.table.num_rows + sum(result.drops.values()) >= 0
        docs += result.table.num_rows
    return docs


mutations = st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "delete"]),
                               st.floats(0, 1), st.binary(min_size=1, max_size=16)),
                     min_size=1, max_size=4)


@FUZZ
@given(mutations, st.booleans())
def test_mutated_real_warc_never_crashes(seed_warc, extractor, tmp_path_factory, muts, compress):
    data = bytearray(seed_warc)
    for op, where, blob in muts:
        if not data:
            break
        i = int(where * (len(data) - 1))
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
        _read_all(extractor, path)
    except ProcessorError:
        pass  # e.g. a mutation that makes the file read as WAT: refused with a clear message


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(["x.warc", "x.warc.gz", "x.wet"]))
def test_arbitrary_bytes_never_crash(extractor, tmp_path_factory, blob, name):
    path = tmp_path_factory.mktemp("bytes") / name
    path.write_bytes(blob)
    try:
        assert _read_all(extractor, path) == 0 or blob.startswith(b"WARC/")
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
