"""The `extract` source on real WARC/WET data and on synthetic bad inputs. No Ray here.

Timing: extraction runs in a child process; the module-scoped sources keep one child each.
"""
from __future__ import annotations

import functools
import gzip
import http.server
import os
import re
import shutil
import sys
import threading
import time
from collections import Counter

import pyarrow as pa
import pytest
from pydantic import ValidationError

from processors.base import BatchResult, ProcessorError, merge_counters
from processors.extract import OUTPUT_SCHEMA, Extract, ExtractParams, domain_of
from processors.html_text import (
    ExtractionWorker,
    ExtractSettings,
    check_extractor,
    declared_language,
    decode_html,
    normalize_charset,
    process_html,
)
from processors.schema import DOCUMENT_FIELDS, WARC_FIELDS
from processors.warc import expand_inputs
from warc_samples import ARTICLE, html_page, http_response, page_record, warc_record, write_warc

# ---------------------------------------------------------------------------- helpers


def slow_target(payload, http_charset, http_language, url, settings):
    """Stands in for a pathological page: runs in the child (imported there by module name)."""
    if payload.startswith(b"SLEEP"):
        time.sleep(60)
    if payload.startswith(b"RAISE"):
        raise ValueError("extractor blew up")
    if payload.startswith(b"EXIT"):
        os._exit(3)  # a segfault in lxml looks like this to the parent
    return process_html(payload, http_charset, http_language, url, settings)


def read(source: Extract, uri) -> tuple[pa.Table, dict, dict]:
    results = list(source.read(str(uri)))
    assert all(isinstance(r, BatchResult) for r in results)
    table = pa.concat_tables([r.table for r in results])
    assert table.schema == OUTPUT_SCHEMA
    merged = merge_counters(results)
    return table, merged["drops"], merged["counters"]


@pytest.fixture(scope="module")
def traf() -> Extract:
    source = Extract(ExtractParams())
    source.check()
    source.setup()
    yield source
    source.close()


@pytest.fixture(scope="module")
def resil() -> Extract:
    source = Extract(ExtractParams(extractor="resiliparse"))
    source.check()
    source.setup()
    yield source
    source.close()


# ---------------------------------------------------------------------------- real data


def test_web_warcs_every_html_page_reaches_extraction(shared_data, resil):
    """1,153 HTML 200 responses in web/: every one reaches the extractor. resiliparse keeps this
    test fast; with trafilatura (default) 1,147 give text (benchmarks/bench_extract_quality.py)."""
    tables, drops, counters = [], Counter(), Counter()
    for path in sorted((shared_data / "web").glob("*.warc.gz")):
        t, d, c = read(resil, path)
        tables.append(t)
        drops.update(d)
        counters.update(c)
        offsets = t["warc_offset"].to_pylist()
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    table = pa.concat_tables(tables)
    assert counters["html_pages"] == 1153
    assert counters["records_skipped_non_response"] == 4  # one warcinfo per file
    assert table.num_rows == counters["documents"] == 1138
    assert drops == {"empty_text": 1153 - 1138}
    ids = table["id"].to_pylist()
    assert len(set(ids)) == len(ids) and all(i.startswith("<urn:uuid:") for i in ids)
    assert table["source"].unique().to_pylist() == ["cc"]
    assert table["date"].null_count == 0
    # some pages of the trafilatura eval set carry a file label ("hard::zeit.de.zugverkehr.html")
    # instead of a URL: no host, so no domain
    for url, domain in zip(table["url"].to_pylist(), table["domain"].to_pylist()):
        assert (domain is None) == ("://" not in url), url
    assert table["domain"].null_count == 34
    assert all(len(t.strip()) > 0 for t in table["text"].to_pylist())
    # the gold article is in there, with its own words
    row = table.filter(pa.compute.equal(table["url"], "https://www.space.com/jupiter-moon-europa-water-vapor-confirmed.html"))
    assert row.num_rows == 1 and "Europa" in row["text"][0].as_py() and row["domain"][0].as_py() == "space.com"


def test_cc_2020_warc(shared_data, traf):
    table, drops, counters = read(traf, shared_data / "cc" / "CC-MAIN-2020-34-sample.warc.gz")
    assert counters["records"] == 50
    assert counters["records_skipped_non_response"] == 34  # warcinfo + 17 requests + 16 metadata
    assert counters["html_pages"] == 16
    assert table.num_rows == 15 and drops == {"empty_text": 1}
    assert set(table["warc_file"].to_pylist()) == {str(shared_data / "cc" / "CC-MAIN-2020-34-sample.warc.gz")}
    assert all(d and not d.startswith("www.") and d == d.lower() for d in table["domain"].to_pylist())
    assert all(re.fullmatch(r"2020-08-\d\dT\d\d:\d\d:\d\dZ", d) for d in table["date"].to_pylist())
    rows = {r["url"]: r for r in table.to_pylist()}
    # declared legacy charsets decode to real text, not mojibake
    ru = rows["http://01spb.ru/company/"]
    assert ru["charset"] == "cp1251" and "О компании" in ru["text"]
    zh = rows["http://041696.com/15477/list_6_4.html"]
    assert zh["charset"] == "gb18030" and "发布时间" in zh["text"]
    assert rows["http://0900-hovenier.nl/gelderland/oosterbeek/"]["content_language"] == "nl"
    assert all("\ufffd" not in r["text"] for r in rows.values())


def test_ids_stable_across_reads(shared_data, traf):
    path = shared_data / "cc" / "CC-MAIN-2020-34-sample.warc.gz"
    a, _, _ = read(traf, path)
    b, _, _ = read(traf, path)
    assert a.equals(b)
    assert len(set(a["id"].to_pylist())) == a.num_rows


def test_cc_2014_warc_and_its_wet(shared_data, traf):
    warc, drops, counters = read(traf, shared_data / "cc" / "CC-MAIN-2014-35-sample.warc")
    assert counters["html_pages"] == 3 and drops == {"not_html": 1}
    assert warc.num_rows == 3
    wet, wdrops, wcounters = read(traf, shared_data / "cc" / "CC-MAIN-2014-35-sample.warc.wet")
    assert wdrops == {} and wcounters["wet_records"] == 3 and wcounters.get("html_pages", 0) == 0
    assert wet.num_rows == 3
    # the WET holds CC's text of the same three pages
    assert sorted(wet["url"].to_pylist()) == sorted(warc["url"].to_pylist())
    first = wet.to_pylist()[0]
    assert first["text"].startswith("Photos\n[ style: dark classic gorilla ]\nPhoto Gallery")
    assert first["id"] == "<urn:uuid:293f96dd-4bea-42b2-b3fd-7bff8bf10dc9>"
    assert first["charset"] == "utf-8" and first["warc_offset"] == 567 and first["domain"] == "0pointer.de"


def test_wat_is_refused(shared_data, traf, tmp_path):
    wat = shared_data / "cc" / "CC-MAIN-2014-35-sample.warc.wat"
    with pytest.raises(ProcessorError, match="WAT holds crawl metadata only.*WARC.*WET"):
        list(traf.read(str(wat)))
    disguised = tmp_path / "renamed.warc"  # recognised by content too
    shutil.copy(wat, disguised)
    with pytest.raises(ProcessorError, match="WAT holds crawl metadata only"):
        list(traf.read(str(disguised)))


def test_edge_clipped_response(shared_data, traf):
    table, drops, counters = read(traf, shared_data / "edge" / "clipped-response.warc.gz")
    assert table.num_rows == 0 and drops == {"truncated_record": 1} and counters["inputs"] == 1


def test_edge_clueweb_warc_018_euc_jp(shared_data, traf):
    table, drops, counters = read(traf, shared_data / "edge" / "clueweb09-ja-warc0.18.warc.gz")
    assert counters["html_pages"] == 29 and table.num_rows == 29 and drops == {}
    assert set(table["charset"].to_pylist()) == {"euc_jp"}
    for text in table["text"].to_pylist():
        assert re.search(r"[\u3040-\u30ff]", text) and "\ufffd" not in text
    assert set(table["domain"].to_pylist()) == {"uraharajuku.st"}


def test_edge_single_gzip_member(shared_data, traf):
    table, drops, counters = read(traf, shared_data / "edge" / "single-gzip-member.warc.gz")
    assert counters["html_pages"] == 3 and table.num_rows == 3
    assert drops == {"truncated_record": 1}  # the excerpt ends inside the fourth response
    assert counters["inputs_single_gzip_member"] == 1
    assert table["warc_offset"].null_count == 3  # one member: no per-record offset exists
    assert {d for d in table["domain"].to_pylist()} == {"0pointer.de", "0x20.be"}


# ---------------------------------------------------------------------------- synthetic inputs


def _page(i: int, **kw) -> bytes:
    return page_record(f"http://www.example.com/story/{i}", html_page(f"Story number {i}", ARTICLE).encode(), **kw)


def test_reasons_for_every_kind_of_record(tmp_path, traf):
    big = b"<html><body>" + b"<p>a paragraph of filler text</p>" * 700_000 + b"</body></html>"  # ~22 MB
    assert len(big) > 20_000_000
    records = [
        warc_record("warcinfo", b"software: test\r\n", uri=None),
        warc_record("request", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        _page(0),
        page_record("http://example.com/404", b"<html>gone</html>", status="404 Not Found"),
        page_record("http://example.com/301", b"", status="301 Moved Permanently", headers={"Location": "/x"}),
        page_record("http://example.com/logo.png", b"\x89PNG\r\n\x1a\n" + os.urandom(500), content_type="image/png"),
        page_record("http://example.com/big", big),
        page_record("http://example.com/empty", b"<html><head><title>T</title></head><body><script>var x=1;</script><img src=a.png></body></html>"),
        warc_record("metadata", b"fetchTimeMs: 12\r\n"),
        warc_record("response", b"not http at all, no header end"),
        _page(1, headers={"Content-Encoding": "gzip"}),  # declared but stored decoded (as CC does)
        page_record("http://example.com/gz", gzip.compress(html_page("Zipped", ARTICLE).encode()), headers={"Content-Encoding": "gzip"}),
        warc_record("resource", html_page("Resource", ARTICLE).encode(), uri="http://example.com/res", content_type="text/html"),
        page_record("http://example.com/untyped", html_page("Untyped", ARTICLE).encode(), content_type=None),
        warc_record("response", http_response(html_page("No id", ARTICLE).encode()), uri="http://example.com/noid", record_id=None),
        _page(2),
    ]
    path = tmp_path / "mixed.warc.gz"
    offsets = write_warc(path, records)
    table, drops, counters = read(traf, path)
    assert drops == {
        "http_status_404": 1,
        "http_status_301": 1,
        "not_html": 1,
        "page_too_large": 1,
        "empty_text": 1,
        "http_malformed": 1,
    }
    assert table["url"].to_pylist() == [
        "http://www.example.com/story/0",
        "http://www.example.com/story/1",
        "http://example.com/gz",
        "http://example.com/res",
        "http://example.com/untyped",
        "http://example.com/noid",
        "http://www.example.com/story/2",
    ]
    assert counters["records_skipped_non_response"] == 3
    for text in table["text"].to_pylist():
        assert "The river had risen overnight" in text and "Copyright 2024" not in text
    rows = {r["url"]: r for r in table.to_pylist()}
    assert rows["http://www.example.com/story/0"]["domain"] == "example.com"
    assert rows["http://www.example.com/story/0"]["warc_offset"] == offsets[2]
    assert rows["http://example.com/noid"]["id"] == f"mixed.warc.gz@{offsets[14]}"


def test_truncated_random_and_corrupt_files_lose_only_what_is_broken(tmp_path, traf):
    good = tmp_path / "good.warc.gz"
    offsets = write_warc(good, [_page(i) for i in range(8)])
    full, _, _ = read(traf, good)
    assert full.num_rows == 8
    data = good.read_bytes()

    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[: offsets[5] + 300])
    table, drops, _ = read(traf, cut)
    assert table["url"].to_pylist() == full["url"].to_pylist()[:5]
    assert drops == {"truncated_record": 1}

    corrupt = tmp_path / "corrupt.warc.gz"
    bad = bytearray(data)
    bad[offsets[3] + 50: offsets[3] + 90] = os.urandom(40)
    corrupt.write_bytes(bytes(bad))
    table, drops, counters = read(traf, corrupt)
    assert table["id"].to_pylist() == [i for k, i in enumerate(full["id"].to_pylist()) if k != 3]
    assert drops == {"corrupt_record": 1} and counters["bytes_skipped_corrupt"] > 0

    junk = tmp_path / "junk.warc.gz"
    junk.write_bytes(os.urandom(100_000))
    table, drops, _ = read(traf, junk)
    assert table.num_rows == 0 and drops == {"input_not_warc": 1}


def test_input_missing_is_a_drop_not_a_crash(tmp_path, traf):
    results = list(traf.read(str(tmp_path / "vanished.warc.gz")))
    assert len(results) == 1 and results[0].table.num_rows == 0
    assert results[0].drops == {"input_missing": 1}


def test_transport_failure_keeps_finished_documents(tmp_path, traf, monkeypatch):
    import processors.warc as warc

    path = tmp_path / "net.warc.gz"
    offsets = write_warc(path, [_page(i) for i in range(30)])
    real_open = warc.open_uri

    class Dropping:
        def __init__(self, raw):
            self.raw, self.left = raw, offsets[20]

        def read(self, n=-1):
            if self.left <= 0:
                raise ConnectionResetError("connection reset by peer")
            data = self.raw.read(min(n if n >= 0 else self.left, self.left))
            self.left -= len(data)
            return data

        def close(self):
            self.raw.close()

    monkeypatch.setattr(warc, "open_uri", lambda uri, so=None: Dropping(real_open(uri, so)))
    table, drops, _ = read(traf, path)
    assert drops == {"input_read_error": 1}
    assert table["url"].to_pylist() == [f"http://www.example.com/story/{i}" for i in range(20)]
    monkeypatch.setattr(warc, "open_uri", lambda uri, so=None: (_ for _ in ()).throw(ConnectionRefusedError(111, "refused")))
    table, drops, _ = read(traf, path)
    assert table.num_rows == 0 and drops == {"input_read_error": 1}


def test_batches_are_bounded_and_counts_add_up(shared_data):
    source = Extract(ExtractParams(extractor="resiliparse", batch_size=4))
    try:
        results = list(source.read(str(shared_data / "cc" / "CC-MAIN-2020-34-sample.warc.gz")))
    finally:
        source.close()
    assert all(r.table.num_rows <= 4 for r in results)
    assert sum(r.table.num_rows for r in results) == merge_counters(results)["counters"]["documents"]
    assert len(results) >= 4
    assert merge_counters(results)["counters"]["html_pages"] == 16


# ---------------------------------------------------------------------------- charsets


DE = "Größere Übungen für Straßenbahnfahrer: außerordentlich schöne Grüße aus München und Köln. "
RU = "Привет! Это тестовый текст на русском языке, чтобы проверить определение кодировки страницы. "
JA = "日本語のテキストです。文字コードの判定をテストしています。東京都渋谷区の天気は晴れです。"


def _charset_page(text: str, title: str = "Charset") -> str:
    return html_page(title, [text * 3] + ARTICLE[:3])


def test_charset_cases_through_the_source(tmp_path, traf):
    cases = [
        # (label, body bytes, HTTP content type, expected charset, expected snippet)
        ("declared latin-1, really UTF-8", _charset_page(DE).encode("utf-8"), "text/html; charset=iso-8859-1", "utf-8", "Straßenbahnfahrer"),
        ("declared UTF-8, really cp1252", _charset_page(DE).encode("cp1252"), "text/html; charset=utf-8", None, "Straßenbahnfahrer"),
        ("declared correctly cp1252", _charset_page(DE + " Preis 5 €").encode("cp1252"), "text/html; charset=windows-1252", "cp1252", "Preis 5 €"),
        ("meta only, Shift_JIS", _charset_page(JA).replace("<head>", '<head><meta charset="Shift_JIS">').encode("cp932"), "text/html", "cp932", "東京都渋谷区"),
        ("http-equiv only, EUC-JP", _charset_page(JA).replace("<head>", '<head><meta http-equiv="Content-Type" content="text/html; charset=euc-jp">').encode("euc_jp"), "text/html", "euc_jp", "東京都渋谷区"),
        ("nothing declared, cp1251", _charset_page(RU).encode("cp1251"), "text/html", "cp1251", "русском языке"),
        ("unknown label, UTF-8", _charset_page(RU).encode("utf-8"), "text/html; charset=utf8mb4", "utf-8", "русском языке"),
    ]
    # uchardet calls this page cp1252 (the stray byte is its only evidence): detection must not win
    stray = _charset_page(JA).encode("utf-8").replace(b"</h1>", b"</h1><p>caf\xe9 au lait</p>")
    cases.append(("UTF-8 with one stray Latin-1 byte", stray, "text/html; charset=utf-8", "utf-8", "東京都渋谷区"))
    records = [page_record(f"http://example.com/{i}", body, content_type=ct) for i, (_, body, ct, _, _) in enumerate(cases)]
    path = tmp_path / "charsets.warc.gz"
    write_warc(path, records)
    table, drops, _ = read(traf, path)
    assert drops == {} and table.num_rows == len(cases)
    for (label, _, _, charset, snippet), row in zip(cases, table.to_pylist()):
        assert snippet in row["text"], label
        assert row["text"].count("\ufffd") == (1 if "stray" in label else 0), label
        if charset:
            assert row["charset"] == charset, label


def test_decode_html_units():
    assert decode_html(b"\xef\xbb\xbf<p>caf\xc3\xa9</p>") == ("<p>café</p>", "utf-8")
    assert decode_html("<p>café</p>".encode("utf-16"))[0] == "<p>café</p>"
    assert decode_html(b"<p>plain</p>", "ISO-8859-1") == ("<p>plain</p>", "cp1252")
    assert decode_html(b"<p>plain</p>") == ("<p>plain</p>", "ascii")
    # an invalid sequence inside otherwise UTF-8 text falls back without raising
    text, _ = decode_html("<p>ok é</p>".encode() + b"\xff\xfe\xfa" + b"<p>more</p>" * 10, "utf-8")
    assert text.startswith("<p>ok") and "more" in text
    assert normalize_charset("latin1") == "cp1252"
    assert normalize_charset("GB2312") == "gb18030"
    assert normalize_charset("x-sjis") == "cp932"
    assert normalize_charset("utf8mb4") is None and normalize_charset(None) is None
    assert normalize_charset("utf-16", from_meta=True) == "utf-8"


def test_declared_language():
    assert declared_language('<html lang="de-DE"><head>', None) == "de-DE"
    assert declared_language('<html><meta http-equiv="Content-Language" content="fr">', None) == "fr"
    assert declared_language('<html><meta content="es" http-equiv="content-language">', None) == "es"
    assert declared_language('<html lang="de">', "en-GB, en") == "en-GB"  # HTTP header first
    assert declared_language("<html><body>", None) is None


# ---------------------------------------------------------------------------- time limit


def test_slow_failing_and_crashing_pages_cost_only_themselves(tmp_path):
    """A page over the time limit gets its child killed (not left running) and the next page is
    extracted by a new child; an exception or a dead child is counted the same way."""
    records = [
        _page(0),
        page_record("http://example.com/slow", b"SLEEP <html><body><p>never</p></body></html>"),
        _page(1),
        page_record("http://example.com/raise", b"RAISE <html></html>"),
        page_record("http://example.com/exit", b"EXIT <html></html>"),
        _page(2),
    ]
    path = tmp_path / "slow.warc.gz"
    write_warc(path, records)
    source = Extract(ExtractParams(timeout_s=1.0))
    source._target = slow_target
    try:
        source.setup()
        first_pid = source._worker.pid
        t0 = time.monotonic()
        table, drops, counters = read(source, path)
        assert time.monotonic() - t0 < 30
        assert source._worker.pid != first_pid and source._worker.restarts == 2
    finally:
        source.close()
    with pytest.raises(ProcessLookupError):  # the stuck child is gone
        os.kill(first_pid, 0)
    assert drops == {"extraction_timeout": 1, "extraction_failed": 1, "extraction_crashed": 1}
    assert counters["extractor_restarts"] == 2 and counters["html_pages"] == 6
    assert table["url"].to_pylist() == [f"http://www.example.com/story/{i}" for i in range(3)]
    assert all("The river had risen overnight" in t for t in table["text"].to_pylist())


def test_worker_reports_the_extractor_exception():
    worker = ExtractionWorker(ExtractSettings(), timeout_s=5.0, target=slow_target)
    try:
        status, value = worker.extract(b"RAISE", None, None, None)
        assert status == "failed" and "ValueError: extractor blew up" in value
        status, value = worker.extract(_charset_page(DE).encode(), "utf-8", None, None)
        assert status == "ok" and "Straßenbahnfahrer" in value[0] and value[1] == "utf-8"
        assert worker.spawns == 1 and worker.restarts == 0  # an exception does not cost the child
    finally:
        worker.close()


def test_missing_dependency_fails_in_check(monkeypatch):
    monkeypatch.setitem(sys.modules, "lxml_html_clean", None)  # import now raises ImportError
    with pytest.raises(ProcessorError, match="lxml_html_clean"):
        Extract(ExtractParams()).check()
    with pytest.raises(ProcessorError, match="lxml_html_clean"):
        check_extractor(ExtractSettings())


def test_child_that_cannot_extract_fails_setup():
    worker = ExtractionWorker(ExtractSettings(extractor="nonsense"), timeout_s=5)
    with pytest.raises(ProcessorError, match="unknown extractor"):
        worker.start()


# ---------------------------------------------------------------------------- resiliparse option


def test_resiliparse_option(shared_data, resil, traf):
    path = shared_data / "cc" / "CC-MAIN-2014-35-sample.warc"
    r, rdrops, _ = read(resil, path)
    t, _, _ = read(traf, path)
    assert r.num_rows == 3 and rdrops == {"not_html": 1}
    assert r["id"].to_pylist() == t["id"].to_pylist()
    assert r["text"].to_pylist() != t["text"].to_pylist()  # really another extractor
    assert all(len(x) > 50 for x in r["text"].to_pylist())


# ---------------------------------------------------------------------------- remote inputs


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_root(shared_data, tmp_path_factory):
    """A local HTTP server (no range support, like the simplest mirrors) over real and corrupt files."""
    root = tmp_path_factory.mktemp("www")
    for rel in ["cc/CC-MAIN-2020-34-sample.warc.gz", "cc/CC-MAIN-2014-35-sample.warc.wet", "edge/clueweb09-ja-warc0.18.warc.gz"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(shared_data / rel)
    offsets = write_warc(root / "corrupt.warc.gz", [_page(i) for i in range(6)])
    data = bytearray((root / "corrupt.warc.gz").read_bytes())
    data[offsets[2] + 50: offsets[2] + 90] = bytes(40)
    (root / "corrupt.warc.gz").write_bytes(bytes(data))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _without_file(table: pa.Table) -> pa.Table:
    return table.drop_columns(["warc_file"])


def test_http_reads_equal_local_reads(http_root, traf):
    root, base = http_root
    for rel in ["cc/CC-MAIN-2020-34-sample.warc.gz", "cc/CC-MAIN-2014-35-sample.warc.wet", "corrupt.warc.gz"]:
        local, ldrops, _ = read(traf, root / rel)
        remote, rdrops, _ = read(traf, base + rel)
        assert remote.num_rows == local.num_rows > 0
        assert _without_file(remote).equals(_without_file(local)), rel
        assert rdrops == ldrops
        assert set(remote["warc_file"].to_pylist()) == {base + rel}
    assert ldrops == {"corrupt_record": 1}  # the last one: resynchronised over HTTP too
    results = list(traf.read(base + "cc/missing.warc.gz"))
    assert [r.drops for r in results] == [{"input_missing": 1}]


def test_listing_pointing_at_the_server(http_root, traf, tmp_path):
    root, base = http_root
    listing = tmp_path / "warc.paths.gz"
    listing.write_bytes(gzip.compress(b"cc/CC-MAIN-2020-34-sample.warc.gz\nedge/clueweb09-ja-warc0.18.warc.gz\n"))
    uris = expand_inputs([str(listing)], listing_prefix=base)
    assert uris == [base + "cc/CC-MAIN-2020-34-sample.warc.gz", base + "edge/clueweb09-ja-warc0.18.warc.gz"]
    assert Extract(ExtractParams(listing_prefix=base)).list_inputs([str(listing)]) == uris
    n = sum(read(traf, u)[0].num_rows for u in uris)
    local = sum(read(traf, root / rel)[0].num_rows for rel in ["cc/CC-MAIN-2020-34-sample.warc.gz", "edge/clueweb09-ja-warc0.18.warc.gz"])
    assert n == local == read(traf, root / "cc/CC-MAIN-2020-34-sample.warc.gz")[0].num_rows + 29
    # the listing itself can be remote as well
    (root / "remote.paths").write_text("cc/CC-MAIN-2020-34-sample.warc.gz\n")
    assert expand_inputs([base + "remote.paths"], listing_prefix=base) == uris[:1]


# ---------------------------------------------------------------------------- small pieces


def test_domain_of():
    assert domain_of("https://WWW.Example.COM:8080/a?b") == "example.com"
    assert domain_of("http://www3.example.org/") == "www3.example.org"
    assert domain_of("http://user:pw@news.example.co.uk./x") == "news.example.co.uk"
    assert domain_of("http://[::1]:80/") == "::1"
    assert domain_of("not a url") is None and domain_of(None) is None and domain_of("") is None


def test_params_and_routing():
    with pytest.raises(ValidationError):
        ExtractParams(favour_precision=True, favour_recall=True)
    with pytest.raises(ValidationError):
        ExtractParams(timeout=3)  # unknown key
    with pytest.raises(ValidationError):
        ExtractParams(extractor="readability")
    source = Extract()
    assert source.kind == "extract"
    assert source.provides == tuple(f.name for f in DOCUMENT_FIELDS + WARC_FIELDS)
    for uri in ["a.warc.gz", "s3://commoncrawl/x/CC-MAIN-1.warc.gz", "b.warc", "c.warc.wet.gz", "https://h/d.wet?x=1"]:
        assert source.accepts(uri), uri
    for uri in ["a.jsonl.gz", "b.parquet", "c.txt", "warc.paths.gz"]:
        assert not source.accepts(uri), uri


def test_source_pickles_for_shipping_to_workers(shared_data, traf):
    import pickle

    clone = pickle.loads(pickle.dumps(traf))  # traf has a live child; the copy must not share it
    try:
        assert clone.params == traf.params and clone._worker is None
        table, _, _ = read(clone, shared_data / "cc" / "CC-MAIN-2014-35-sample.warc")
        assert table.num_rows == 3
    finally:
        clone.close()
