"""The extract pre-pass: pages that a later filter is sure to drop are not extracted, and the
pipeline keeps exactly the documents (and texts) it keeps without the pre-pass."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.chain import Chain
from curate.config import pipeline_from_dict
from curate.prefilter_rules import with_prefilter_rules
from processors.extract import Extract, ExtractParams
from processors.gopher import GopherQuality, GopherQualityParams
from processors.html_text import decode_html, extract_main_text
from processors.language_id import LanguageId, LanguageIdParams
from processors.prefilter import MinCountRule, failed_rule, reject_reason, visible_text
from processors.warc import ReadStats, iter_records
from warc_samples import ARTICLE, html_page, page_record, write_warc

GERMAN = [
    "Der Fluss war über Nacht gestiegen, und am Morgen stand die Unterstadt unter Wasser.",
    "Freiwillige stapelten Sandsäcke am Kai, während die Fähre bis Mittag nicht fuhr.",
    "Die Behörden sagten, der Damm habe nach drei Tagen Regen mehr Wasser abgelassen als geplant.",
    "Die Händler brachten ihre Waren in die oberen Stockwerke, die Schule öffnete ihre Halle.",
] * 2


def _pipeline(tmp_path: Path, *stages: dict, prefilter: bool | None = None):
    extract = {} if prefilter is None else {"prefilter": prefilter}
    return pipeline_from_dict({"name": "t", "output": str(tmp_path / "out"), "inputs": ["x.warc.gz"],
                               "stages": [{"extract": extract}, *stages]})


def _rules(cfg) -> list[dict]:
    return with_prefilter_rules(cfg).stages[0].params.get("prefilter_rules", [])


# ---------------------------------------------------------------------------- rules


def test_gopher_rules_are_its_minimum_counts():
    rules = GopherQuality().superset_rules()
    assert rules == [
        MinCountRule("gopher_quality:word_count", 50),
        MinCountRule("gopher_quality:stop_words", 2, ("and", "be", "have", "of", "that", "the", "to", "with")),
    ]
    # no stop-word rule without stop words; a text without words fails even with min_words off
    off = GopherQuality(GopherQualityParams(min_words=None, min_stop_words=0)).superset_rules()
    assert off == [MinCountRule("gopher_quality:word_count", 1)]


@pytest.mark.parametrize("text", [
    "the " * 60,
    "The cat and the dog " * 12,
    "Der Hund und die Katze " * 20,  # 100 words, no English stop word
    "(the), [to] " + "word " * 48,  # punctuation trimmed: both stop words count
    "short text of a few words",
    "",
])
def test_a_failed_rule_means_gopher_drops_the_text(text):
    gopher = GopherQuality()
    rule = failed_rule(text, tuple(gopher.superset_rules()))
    reason = gopher.reason(text)
    if rule is not None:
        assert reason is not None
    if reason in ("word_count", "stop_words"):  # the counting rules agree exactly on the same text
        assert rule is not None


def test_visible_text_holds_boilerplate_and_hidden_parts():
    html = ("<html><head><title>T</title><style>p{}</style><script>var the=1;</script></head><body>"
            "<nav>Home and the news</nav><noscript>enable the scripts</noscript>"
            "<form><textarea>typed with care</textarea></form><article><p>Main text here.</p></article>"
            "</body></html>")
    text = visible_text(html)
    for part in ("Home and the news", "enable the scripts", "typed with care", "Main text here."):
        assert part in text
    assert "var the" not in text and "p{}" not in text


# ---------------------------------------------------------------------------- the engine hands rules over


def test_rules_come_from_the_filters_after_extract(tmp_path):
    cfg = _pipeline(tmp_path, {"language_id": {"languages": ["en"]}}, {"gopher_quality": {"min_words": 80}})
    rules = _rules(cfg)
    assert [r["reason"] for r in rules] == ["gopher_quality:word_count", "gopher_quality:stop_words"]
    assert rules[0]["min_count"] == 80
    # the rules are part of the extract params, hence of the step's fingerprint
    params = with_prefilter_rules(cfg).stages[0].build().params
    assert params.settings().prefilter[0] == MinCountRule("gopher_quality:word_count", 80)


def test_no_rules_past_a_mapper_a_dedup_or_for_other_sources(tmp_path):
    assert _rules(_pipeline(tmp_path, {"exact_dedup": {}}, {"gopher_quality": {}})) == []
    assert _rules(_pipeline(tmp_path, {"wikitext_detok": {}}, {"gopher_quality": {}})) == []
    # a mapper for another source does not stop it; a filter for another source gives nothing
    assert _rules(_pipeline(tmp_path, {"wikitext_detok": {"sources": ["wiki"]}}, {"gopher_quality": {}}))
    assert _rules(_pipeline(tmp_path, {"gopher_quality": {"sources": ["wiki"]}})) == []
    assert _rules(_pipeline(tmp_path, {"gopher_quality": {}}, prefilter=False)) == []
    cfg = _pipeline(tmp_path, {"language_id": {}})
    assert with_prefilter_rules(cfg) is cfg  # nothing to hand over: unchanged


# ---------------------------------------------------------------------------- same result, less work


def _pages() -> list[bytes]:
    boiler = "<nav>" + " ".join(f"<a href='/{i}'>Section {i} of the site and more</a>" for i in range(30)) + "</nav>"
    return [
        page_record("http://example.com/en", html_page("River", ARTICLE * 2).encode()),  # kept
        page_record("http://example.com/short", html_page("Short", ["Just a line."]).encode()),
        page_record("http://example.com/de", html_page("Fluss", GERMAN, lang="de").encode()),
        # German article inside English boilerplate: the pre-pass cannot decide, the filter drops it
        page_record("http://example.com/de-nav",
                    html_page("Fluss", GERMAN, lang="de").replace("<body>", "<body>" + boiler).encode()),
        page_record("http://example.com/empty", b"<html><body></body></html>"),
    ]


def _run_chain(tmp_path: Path, warc: Path, prefilter: bool, name: str) -> tuple[pa.Table, dict]:
    cfg = _pipeline(tmp_path, {"language_id": {"languages": ["en", "de"]}}, {"gopher_quality": {}},
                    prefilter=prefilter)
    cfg = with_prefilter_rules(cfg)
    chain = Chain(cfg.stages[0], list(cfg.stages[1:]))
    chain.setup()
    out = tmp_path / name
    out.mkdir()
    try:
        record = chain.run_file_task([str(warc)], out)
    finally:
        chain.head.close()
    table = pa.concat_tables(pq.read_table(p) for p in sorted(out.glob("part-*.parquet")))
    return table.sort_by("id"), record["stats"]


def test_prefilter_keeps_the_same_documents_as_the_full_path(tmp_path):
    warc = tmp_path / "pages.warc.gz"
    write_warc(warc, _pages())
    full, full_stats = _run_chain(tmp_path, warc, False, "full")
    fast, fast_stats = _run_chain(tmp_path, warc, True, "fast")
    assert full["url"].to_pylist() == ["http://example.com/en"]
    assert fast.select(["id", "text"]).equals(full.select(["id", "text"]))
    drops = fast_stats["extract"]["drops"]
    assert drops == {"prefilter:gopher_quality:word_count": 2, "prefilter:gopher_quality:stop_words": 1}
    assert "prefilter:gopher_quality:word_count" not in full_stats["extract"]["drops"]
    # the German page in English boilerplate went through extraction and was dropped by the filter
    assert fast_stats["gopher_quality"]["drops"] == {"gopher_quality:stop_words": 1}


def test_prefilter_agrees_with_the_full_path_on_real_pages(shared_data):
    """Every page of a real WARC that the pre-pass rejects is dropped by trafilatura + language
    ID + Gopher quality (the pages it lets through take the unchanged path)."""
    warc = sorted((shared_data / "web").glob("*.warc.gz"))[0]
    source = Extract(ExtractParams())
    gopher = GopherQuality()
    lid = LanguageId(LanguageIdParams(languages=["en", "de"]))
    rules = tuple(gopher.superset_rules())
    settings = ExtractParams().settings()
    rejected, pages = [], 0
    for rec in iter_records(str(warc), max_block_bytes=6_000_000, stats=ReadStats()):
        if rec.record_type != "response":
            continue
        page = source._html_payload(rec)
        if isinstance(page, str):
            continue
        pages += 1
        html, _ = decode_html(page[0], page[1])
        if reject_reason(html, rules) is not None:
            rejected.append((rec.target_uri, html))
    assert pages > 250 and len(rejected) > pages // 3  # the pre-pass saves real work here
    texts = [extract_main_text(html, url, settings) for url, html in rejected]
    table = pa.table({"text": texts})
    keep_lid, _ = lid.decide(lid.annotate(table))
    keep_gopher, _ = gopher.decide(table)
    kept = [url for (url, _), text, a, b in zip(rejected, texts, keep_lid, keep_gopher) if text.strip() and a and b]
    assert kept == []
