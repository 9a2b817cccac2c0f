"""The stand-ins for trafilatura's XPath expressions select exactly what the expressions select
(checked call by call while extracting real pages and crafted ones), so extracted texts are
identical; an expression whose text changed is left to lxml."""
from __future__ import annotations

import re

import pytest
from lxml.etree import XPath

from processors import trafilatura_speedups as speedups
from processors.html_text import ExtractSettings, decode_html, extract_main_text
from processors.warc import ReadStats, iter_records

SETTINGS = ExtractSettings(favour_precision=True, include_tables=True, fallback=True)  # the stage's defaults

# Attribute cases the stand-ins must read as XPath does: both of id/class in either order (`@id|@class`
# is the first in source order), valueless attributes, tokens only one attribute is tested for,
# lists that are comment containers or not, infinite-scroll boxes with and without an <h1>.
CRAFTED = """<html><head><title>t</title></head><body>
<div class="main"><h1>Crafted page</h1>
<p>The river rose overnight and by morning the lower town was under water, the ferry did not run.</p>
<div class="share-bar cookie" id="x1">Share this cookie text</div>
<div id="cookie-note" class="plain">Cookie note with id first</div>
<div class="plain" id="cookie-late">Cookie id after class</div>
<span id="reply-1" class="x">Reply id first</span><span class="reply-2" id="y">Reply class first</span>
<div style="color: red" id="hidden-x">style before id</div><div id="z" style="hidden">id before style</div>
<div data-lp-replacement-content>valueless attribute</div><p role="Navigation">role nav</p>
<section data-component="MostPopularStoriesList">popular</section>
<div aria-hidden="true">aria</div><div aria-hidden="TRUE">aria upper</div>
<div class="comments-title">title</div><div class="x comments-title">title 2</div>
<ul id="comments"><li>comment list</li></ul><ul id="disqus_thread"><li>not a comment list</li></ul>
<ol class="post-comments"><li>post comments</li></ol><div id="Commentary">commentary stays</div>
<div class="infinite-scroll"><h1>scroll with h1</h1></div><div class="infinite-scroll">scroll</div>
<aside id="mvp-post-add-box"><h1>mvp with h1</h1></aside>
<div class="elementor-share-buttons">share</div><p class="link">link class</p><p class="bottom-bar">bottom</p>
<p class="rebottomed">no bottom token</p><div style="border: 1px">border</div>
<div id="Teaser">teaser</div><div class="figcaption">caption</div>
<p>The dam had released more water than planned after three days of rain, officials said.</p>
<div><div class="x">no</div><div class="post-body">first body sibling</div><div class="entry">second</div></div>
<section><article itemprop="articleBody">only child</article></section><div class="FullText">any case</div>
<main id="Main-Content">main content</main><div class="Page-content">page content</div>
</div></body></html>"""


def _pages(shared_data, every: int) -> list[tuple[str, str]]:
    pages = []
    for path in [*sorted((shared_data / "web").glob("*.warc.gz")), shared_data / "cc" / "CC-MAIN-2020-34-sample.warc.gz"]:
        for i, rec in enumerate(iter_records(str(path), max_block_bytes=5 << 20, stats=ReadStats())):
            if rec.record_type != "response" or (path.parent.name == "web" and i % every):
                continue
            body = rec.block.split(b"\r\n\r\n", 1)[-1]
            pages.append((rec.target_uri, decode_html(body)[0]))
    return pages


@pytest.fixture
def installed():
    names = speedups.install()
    yield names
    speedups.install()  # leave the process as the extraction child has it


def test_every_stand_in_is_installed_for_this_trafilatura(installed):
    assert sorted(installed) == sorted(f"{n}[{i}]" for n, i in speedups.STAND_INS)


def test_regular_expressions_are_the_expressions_own():
    """Each re:test pattern of a replaced expression is compiled in the module (or is a plain
    word tested with `in`): a typo in a transcribed pattern fails here."""
    from trafilatura import xpaths

    compiled = {v.pattern for v in vars(speedups).values() if isinstance(v, re.Pattern)}
    for name, index in speedups.STAND_INS:
        expr = getattr(xpaths, name)[index]
        path = getattr(expr, "xpath", expr).path
        for pattern in re.findall(r"re:test\([^,]+,\s*'([^']*)'", path):
            assert pattern in compiled or re.fullmatch(r"\w+", pattern), (name, pattern)


def test_stand_ins_select_what_the_xpaths_select_on_real_pages(installed, shared_data):
    """Every call made while extracting 1 in 16 of the shared pages, the multilingual CC sample and a
    crafted page runs both and compares the selected elements one by one (raises on a difference)."""
    pages = _pages(shared_data, every=16) + [("https://example.org/crafted", CRAFTED)]
    with speedups.checking() as calls:
        texts = [extract_main_text(html, url, SETTINGS) for url, html in pages]
    # every stand-in was exercised (the later BODY_XPATH ones run only where the earlier find nothing)
    assert len(calls) >= len(speedups.STAND_INS) - 2
    assert sum(calls.values()) > 10 * len(pages)
    # `@id|@class` is the first of the two in the source: only the id-first cookie box is pruned
    assert "Cookie note with id first" not in texts[-1] and "Cookie id after class" in texts[-1]
    speedups.uninstall()
    assert texts == [extract_main_text(html, url, SETTINGS) for url, html in pages]  # trafilatura's own


def test_crafted_page_selection_by_expression(installed):
    from lxml.html import fromstring
    from trafilatura import xpaths

    tree = fromstring(CRAFTED)
    for name, index in speedups.STAND_INS:
        stand_in = getattr(xpaths, name)[index]
        assert [e for e in stand_in(tree)] == stand_in.xpath(tree), name
    od0 = getattr(xpaths, "OVERALL_DISCARD_XPATH")[0]
    texts = [e.text for e in od0(tree)]
    assert "Cookie note with id first" in texts and "Cookie id after class" not in texts  # first attribute only
    assert "valueless attribute" in texts and "role nav" in texts
    body0 = getattr(xpaths, "BODY_XPATH")[0]
    assert [e.text for e in body0(tree)] == ["first body sibling", "only child"]  # first matching child per parent
    assert [e.text for e in getattr(xpaths, "BODY_XPATH")[2](tree)] == ["any case"]


def test_a_changed_expression_keeps_its_xpath(installed):
    from trafilatura import xpaths

    speedups.uninstall()
    original = xpaths.TEASER_DISCARD_XPATH[0]
    xpaths.TEASER_DISCARD_XPATH[0] = XPath(".//*[self::div][contains(@id, 'teaser')]")
    try:
        names = speedups.install()
        assert "TEASER_DISCARD_XPATH[0]" not in names
        assert isinstance(xpaths.TEASER_DISCARD_XPATH[0], XPath)
    finally:
        speedups.uninstall()
        xpaths.TEASER_DISCARD_XPATH[0] = original
