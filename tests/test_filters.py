"""Unit tests of the filter stages: each rule just inside and just outside its threshold.

Expectations are computed by hand in the comments. Rules are isolated by disabling the others
(null thresholds), which also checks that every rule can be switched off.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from processors.base import Filter, ProcessorError
from processors.c4 import C4
from processors.fineweb import FineWebQuality
from processors.gopher import GopherQuality, GopherRepetition
from processors.language_id import LanguageId
from processors.schema import DOCUMENT_SCHEMA
from processors.textstats import NgramIndex, duplicate_stats, split_lines, split_paragraphs, split_words
from processors.url_blocklist import UrlBlocklist, normalize_domain


def docs(texts, urls=None, domains=None) -> pa.Table:
    n = len(texts)
    urls = urls or [f"https://example.org/{i}" for i in range(n)]
    return pa.Table.from_pydict(
        {
            "id": [f"d{i}" for i in range(n)],
            "source": ["test"] * n,
            "url": urls,
            "domain": domains or [None] * n,
            "date": [None] * n,
            "text": texts,
        },
        schema=DOCUMENT_SCHEMA,
    )


def verdicts(stage: Filter, texts) -> list[str | None]:
    """The drop reason of each text (None where kept), through the real `process` path."""
    out = []
    for t in texts:
        res = stage.process(docs([t]))
        assert sum(res.drops.values()) == 1 - res.table.num_rows
        out.append(None if res.table.num_rows else next(iter(res.drops)))
    return out


# Ordinary English words of 3..7 letters, none of them a Gopher stop word.
VOCAB = ("house garden river market window letter summer winter yellow silver orange basket "
         "candle forest island valley bridge castle rocket planet").split()


def prose(n: int, stop: str = "the") -> str:
    """n words: `stop` twice, then vocabulary words (mean length ~5.6), as one line with a period."""
    words = [stop, stop] + [VOCAB[i % len(VOCAB)] for i in range(n - 2)]
    return " ".join(words) + "."


# ---------------------------------------------------------------------------------------------
# textstats


def test_split_words_trims_punctuation_and_splits_cjk():
    assert split_words("Hello, (world)! $100 don't - © ... foo...bar") == [
        "Hello", "world", "100", "don't", "foo...bar"]
    assert split_words("日本語のテキスト abc中文") == ["日", "本", "語", "の", "テ", "キ", "ス", "ト", "abc", "中", "文"]
    assert split_words("") == [] and split_words(" \n\t ") == []
    # Thai has no spaces and is kept as one run (documented): no crash, one word
    assert split_words("ภาษาไทย") == ["ภาษาไทย"]


def test_split_lines_and_paragraphs():
    assert split_lines("a  \n\n b\r\nc\n") == ["a", " b", "c"]
    assert split_lines("a\n\nb", keep_blank=True) == ["a", "", "b"]
    assert split_paragraphs("p1 l1\np1 l2\n\n \n\np2\n") == ["p1 l1\np1 l2", "p2"]


def test_duplicate_stats_counts_later_copies_only():
    # "x" thrice: two duplicates of 1 char each; total 5 items, 7 chars ("x","x","yy","x","zz")
    assert duplicate_stats(["x", "x", "yy", "x", "zz"]) == (5, 2, 7, 2)


def test_ngram_index_fractions():
    # 13 one-letter words; "a b c d e" occurs twice → 10/13 of the characters
    ix = NgramIndex("a b c d e f g a b c d e x".split())
    assert ix.dup_char_fraction(5) == pytest.approx(10 / 13)
    assert ix.dup_char_fraction(6) == 0.0
    # top 2-gram: four 2-grams tie at 2 occurrences, each covers 4 of 13 characters
    assert ix.top_char_fraction(2) == pytest.approx(4 / 13)
    # overlapping occurrences are counted once: "la la la la" is all "la la"
    ix = NgramIndex("la la la la".split())
    assert ix.top_char_fraction(2) == 1.0 and ix.dup_char_fraction(2) == 1.0
    # ties go to the longest n-gram in characters: "ccc d" (4) over "aa b" (3)
    assert NgramIndex("aa b ccc d".split()).top_char_fraction(2) == pytest.approx(4 / 7)
    assert NgramIndex([]).top_char_fraction(2) == 0.0 and NgramIndex(["a"]).dup_char_fraction(5) == 0.0


# ---------------------------------------------------------------------------------------------
# gopher_quality


def gq(**only) -> GopherQuality:
    """A GopherQuality with every rule off except those given."""
    off = {k: None for k in GopherQuality.Params.model_fields if k != "stop_words"}
    return GopherQuality(GopherQuality.Params(**{**off, **only}))


def test_gopher_quality_defaults_are_the_published_ones():
    p = GopherQuality.Params()
    assert (p.min_words, p.max_words) == (50, 100_000)
    assert (p.min_mean_word_length, p.max_mean_word_length) == (3, 10)
    assert (p.max_symbol_word_ratio, p.max_bullet_lines_ratio, p.max_ellipsis_lines_ratio) == (0.1, 0.9, 0.3)
    assert (p.min_alpha_words_ratio, p.min_stop_words) == (0.8, 2)
    assert p.stop_words == ["the", "be", "to", "of", "and", "that", "have", "with"]


def test_gopher_quality_word_count():
    stage = GopherQuality()
    assert verdicts(stage, [prose(50), prose(49)]) == [None, "gopher_quality:word_count"]
    assert verdicts(stage, [prose(100_000), prose(100_001)]) == [None, "gopher_quality:word_count"]
    assert verdicts(stage, ["", "   \n  "]) == ["gopher_quality:word_count"] * 2


def test_gopher_quality_mean_word_length():
    stage = gq(min_mean_word_length=3, max_mean_word_length=10)
    # 60 words of 3 letters: mean 3.0 (kept); one of them "a": (59*3 + 1)/60 = 2.97 (dropped)
    assert verdicts(stage, [" ".join(["the"] * 60), " ".join(["the"] * 59 + ["a"])]) == [
        None, "gopher_quality:mean_word_length"]
    # 2*3 + 14*11 + 44*10 = 600 characters over 60 words: mean 10.0 (kept); one more letter: 10.02
    long_words = ["the", "the"] + ["abcdefghijk"] * 14 + ["abcdefghij"] * 44
    longer = ["the", "the"] + ["abcdefghijkl"] + ["abcdefghijk"] * 13 + ["abcdefghij"] * 44
    assert verdicts(stage, [" ".join(long_words), " ".join(longer)]) == [None, "gopher_quality:mean_word_length"]


def test_gopher_quality_symbol_word_ratio():
    stage = gq(max_symbol_word_ratio=0.1)
    words = prose(100).split()
    ten_hashes = " ".join(f"#{w}" if i < 10 else w for i, w in enumerate(words))  # 10 '#' / 100 words
    eleven = " ".join(f"#{w}" if i < 11 else w for i, w in enumerate(words))
    assert verdicts(stage, [ten_hashes, eleven]) == [None, "gopher_quality:symbol_word_ratio"]
    # ellipses count as symbols too, '...' and '…' alike: 5 + 5 = 10 per 100 words kept, 11 dropped
    ten_ell = " ".join(w + ("..." if i < 5 else "…" if i < 10 else "") for i, w in enumerate(words))
    eleven_ell = " ".join(w + ("..." if i < 6 else "…" if i < 11 else "") for i, w in enumerate(words))
    assert verdicts(stage, [ten_ell, eleven_ell]) == [None, "gopher_quality:symbol_word_ratio"]


def test_gopher_quality_bullet_and_ellipsis_lines():
    line = "the river and the garden of the house"  # 8 words
    stage = gq(max_bullet_lines_ratio=0.9)
    nine = "\n".join(["• " + line] * 9 + [line])  # 9 of 10 lines start with a bullet: 0.9 kept
    ten = "\n".join(["• " + line] * 10)
    dashes = "\n".join(["  - " + line] * 10)  # indented dashes are bullets too
    assert verdicts(stage, [nine, ten, dashes]) == [None] + ["gopher_quality:bullet_lines_ratio"] * 2
    stage = gq(max_ellipsis_lines_ratio=0.3)
    three = "\n".join([line + " ..."] * 3 + [line] * 7)  # 3 of 10 lines end with an ellipsis: kept
    four = "\n".join([line + "…"] * 4 + [line] * 6)
    # blank lines do not dilute the ratio: 4 of 10 non-blank lines
    four_spaced = "\n\n".join([line + "..."] * 4 + [line] * 6)
    assert verdicts(stage, [three, four, four_spaced]) == [None] + ["gopher_quality:ellipsis_lines_ratio"] * 2


def test_gopher_quality_alpha_words():
    stage = gq(min_alpha_words_ratio=0.8)
    words = prose(100).split()
    twenty = " ".join("123" if i % 5 == 0 else w for i, w in enumerate(words))  # 80/100 with a letter
    twenty_one = " ".join("123" if i % 5 == 0 or i == 1 else w for i, w in enumerate(words))  # 79/100
    assert verdicts(stage, [twenty, twenty_one]) == [None, "gopher_quality:alpha_words_ratio"]
    # "4th" and "COVID-19" contain letters; "2021" and "3.5" do not
    assert verdicts(gq(min_alpha_words_ratio=1.0), ["4th COVID-19", "4th 2021"]) == [
        None, "gopher_quality:alpha_words_ratio"]


def test_gopher_quality_stop_words():
    stage = GopherQuality()
    no_stop = " ".join(VOCAB[i % len(VOCAB)] for i in range(60))
    one = "the " + no_stop
    two = "The " + no_stop + " of."  # case-insensitive; occurrences counted
    assert verdicts(stage, [no_stop, one, two]) == ["gopher_quality:stop_words"] * 2 + [None]
    # a custom list (e.g. German) and disabling the rule
    german = GopherQuality(GopherQuality.Params(stop_words=["der", "die", "und"]))
    assert verdicts(german, ["der " + no_stop + " und"]) == [None]
    assert verdicts(GopherQuality(GopherQuality.Params(min_stop_words=None)), [no_stop]) == [None]


def test_gopher_quality_counts_first_failing_rule_per_doc():
    res = GopherQuality().process(docs([prose(60), prose(10), " ".join(["the"] * 59 + ["a"]), None]))
    assert res.table.column("id").to_pylist() == ["d0"]
    assert dict(res.drops) == {"gopher_quality:word_count": 2, "gopher_quality:mean_word_length": 1}


# ---------------------------------------------------------------------------------------------
# gopher_repetition


def gr(**only) -> GopherRepetition:
    off = {k: None for k in GopherRepetition.Params.model_fields}
    return GopherRepetition(GopherRepetition.Params(**{**off, **only}))


def unique_lines(n: int) -> list[str]:
    return [f"line number {i:03d} of this text" for i in range(n)]


def test_gopher_repetition_defaults_are_the_published_ones():
    p = GopherRepetition.Params()
    assert (p.max_dup_line_frac, p.max_dup_para_frac, p.max_dup_line_char_frac, p.max_dup_para_char_frac) == (
        0.3, 0.3, 0.2, 0.2)
    assert p.max_top_ngram_char_frac == {2: 0.2, 3: 0.18, 4: 0.16}
    assert p.max_dup_ngram_char_frac == {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    with pytest.raises(ValidationError):
        GopherRepetition.Params(max_top_ngram_char_frac={0: 0.2})
    with pytest.raises(ValidationError):
        GopherRepetition.Params(max_dup_ngram_char_frac={5: 1.5})


def test_gopher_repetition_dup_lines_and_paragraphs():
    u = unique_lines(13)
    three_of_ten = u[:7] + u[:3]  # 3 later copies among 10 lines: 0.3 kept
    four_of_thirteen = u[:9] + u[:4]  # 4/13 = 0.31 dropped
    stage = gr(max_dup_line_frac=0.3)
    assert verdicts(stage, ["\n".join(three_of_ten), "\n".join(four_of_thirteen)]) == [
        None, "gopher_repetition:dup_line_frac"]
    # blank lines are not lines: 20 blank lines between 10 unique lines change nothing
    assert verdicts(stage, ["\n\n\n".join(u[:10])]) == [None]
    stage = gr(max_dup_para_frac=0.3)
    assert verdicts(stage, ["\n\n".join(three_of_ten), "\n\n".join(four_of_thirteen)]) == [
        None, "gopher_repetition:dup_para_frac"]


def test_gopher_repetition_dup_char_fractions():
    # five 10-character lines, one a copy: 10/50 = 0.2 kept; shorten one original line: 10/49 dropped
    kept = ["aaaa bbbbb", "cccc ddddd", "eeee fffff", "gggg hhhhh", "aaaa bbbbb"]
    dropped = ["aaaa bbbbb", "cccc ddddd", "eeee fffff", "gggg hhhh", "aaaa bbbbb"]
    assert verdicts(gr(max_dup_line_char_frac=0.2), ["\n".join(kept), "\n".join(dropped)]) == [
        None, "gopher_repetition:dup_line_char_frac"]
    assert verdicts(gr(max_dup_para_char_frac=0.2), ["\n\n".join(kept), "\n\n".join(dropped)]) == [
        None, "gopher_repetition:dup_para_char_frac"]


def fillers(n: int, width: int = 4) -> list[str]:
    """n distinct words of `width` characters that never repeat an n-gram."""
    return [f"w{i:0{width - 1}d}" for i in range(n)]


def test_gopher_repetition_top_ngram():
    stage = gr(max_top_ngram_char_frac={2: 0.2})
    # "aa bb" 5 times = 20 word characters, plus 20 fillers of 4 = 100 characters: 0.2 kept
    f = fillers(20)
    kept = sum((["aa", "bb", f[2 * i], f[2 * i + 1]] for i in range(5)), []) + f[10:]
    dropped = list(kept)
    dropped[-1] = "w99"  # one filler a character shorter: 20/99 = 0.202
    assert verdicts(stage, [" ".join(kept), " ".join(dropped)]) == [None, "gopher_repetition:top_2gram_char_frac"]


def test_gopher_repetition_duplicated_ngrams():
    stage = gr(max_dup_ngram_char_frac={5: 0.15})
    # "a b c d e" twice = 10 characters (every occurrence counts); 14 fillers of 4 = 56: 10/66 = 0.1515
    f = fillers(14)
    dropped = ["a", "b", "c", "d", "e"] + f[:7] + ["a", "b", "c", "d", "e"] + f[7:]
    kept = list(dropped)
    kept[-1] = "w0130"  # one character more: 10/67 = 0.149
    assert verdicts(stage, [" ".join(kept), " ".join(dropped)]) == [None, "gopher_repetition:dup_5gram_char_frac"]


def test_gopher_repetition_reason_order_and_clean_text():
    text = "\n".join(unique_lines(5) * 3)  # every check fires; paragraphs come first, then lines
    assert verdicts(GopherRepetition(), [text]) == ["gopher_repetition:dup_line_frac"]
    assert verdicts(GopherRepetition(), ["\n\n".join(unique_lines(5) * 3)]) == ["gopher_repetition:dup_para_frac"]
    varied = " ".join(f"{VOCAB[i % len(VOCAB)]}{i}" for i in range(300))
    assert verdicts(GopherRepetition(), [varied, "", None]) == [None, None, None]
    assert verdicts(GopherRepetition(), [prose(300)]) == ["gopher_repetition:top_4gram_char_frac"]


# ---------------------------------------------------------------------------------------------
# c4

SENT = "The river runs past the old mill."


def test_c4_removes_lines_and_counts_them():
    text = "\n".join([
        "Home",  # no terminal punctuation
        SENT,
        "Two words.",  # too few words
        "Please enable JavaScript in your browser.",  # javascript
        SENT.replace("river", "water"),
        "This site uses cookies to improve things.",  # policy
        "Read more...",  # ellipsis is not terminal punctuation
        "A citation follows here.[12]",  # citation cut, then kept
        SENT.replace("river", "road"),
        "x" * 1001 + " is a very long word.",  # word over 1000 characters
        SENT.replace("river", "path"),
    ])
    res = C4().process(docs([text]))
    assert res.table.num_rows == 1 and not res.drops
    assert res.table.column("text")[0].as_py() == "\n".join([
        SENT, SENT.replace("river", "water"), "A citation follows here.", SENT.replace("river", "road"),
        SENT.replace("river", "path")])
    assert res.counters["c4:lines"] == 11
    assert res.counters["c4:lines_removed"] == 6
    assert {k: v for k, v in res.counters.items() if k.startswith("c4:lines_removed:")} == {
        "c4:lines_removed:no_terminal_punct": 2, "c4:lines_removed:too_few_words": 1,
        "c4:lines_removed:javascript": 1, "c4:lines_removed:policy": 1, "c4:lines_removed:too_long_word": 1}


def test_c4_min_sentences():
    five = " ".join([SENT] * 3) + "\n" + "Is it? Yes it is!"  # 3 + 2 = 5 sentences
    four = " ".join([SENT] * 2) + "\n" + "Is it? Yes it is!"
    assert verdicts(C4(), [five, four]) == [None, "c4:too_few_sentences"]
    assert verdicts(C4(C4.Params(min_sentences=None)), [four, "Home\nMenu"]) == [None, "c4:empty"]


def test_c4_document_rules():
    base = "\n".join([SENT] * 5)
    lorem = base + "\nLorem ipsum dolor sit amet, consectetur."
    curly = base + "\nThe function body is { return 1; }."
    # a '{' or 'lorem ipsum' on a line already removed (no terminal punctuation) does not count, as in C4
    removed_first = base + "\nfunction f() { lorem ipsum }"
    assert verdicts(C4(), [lorem, curly, removed_first]) == ["c4:lorem_ipsum", "c4:curly_bracket", None]
    off = C4(C4.Params(filter_lorem_ipsum=False, filter_curly_bracket=False))
    assert verdicts(off, [lorem, curly]) == [None, None]


def test_c4_filter_mode_keeps_text():
    text = "Menu\n" + "\n".join([SENT] * 5)
    res = C4(C4.Params(mode="filter")).process(docs([text, "Menu"]))
    assert res.table.column("text").to_pylist() == [text]
    assert dict(res.drops) == {"c4:too_few_sentences": 1}
    assert res.counters["c4:lines_flagged"] == 1 and "c4:lines_removed" not in res.counters


def test_c4_terminal_punctuation_switch():
    text = "\n".join(["Heading without a stop"] + [SENT] * 5)
    res = C4(C4.Params(terminal_punctuation=None)).process(docs([text]))
    assert res.table.column("text")[0].as_py() == text


def test_c4_badwords(tmp_path):
    words = tmp_path / "bad.txt"
    words.write_text("# comment\nbadword\nnasty thing\n")
    stage = C4(C4.Params(badwords_file=str(words)))
    stage.check()
    base = "\n".join([SENT] * 5)
    texts = [base + "\nThis has a BadWord in it.", base + "\nThis has a nasty thing in it.",
             base + "\nThis has badwords in it.", base]  # 'badwords' is not the whole word 'badword'
    assert verdicts(stage, texts) == ["c4:badwords", "c4:badwords", None, None]
    missing = C4(C4.Params(badwords_file=str(tmp_path / "nope.txt")))
    with pytest.raises(ProcessorError, match="nope.txt"):
        missing.check()


# ---------------------------------------------------------------------------------------------
# fineweb


def fw(**only) -> FineWebQuality:
    off = {k: None for k in ("line_punct_thr", "short_line_thr", "char_duplicates_ratio", "new_line_ratio")}
    return FineWebQuality(FineWebQuality.Params(**{**off, **only}))


def test_fineweb_defaults_are_the_published_ones():
    p = FineWebQuality.Params()
    assert (p.line_punct_thr, p.short_line_thr, p.short_line_length, p.char_duplicates_ratio, p.new_line_ratio) == (
        0.12, 0.67, 30, 0.01, 0.3)


def test_fineweb_line_punct_ratio():
    stage = fw(line_punct_thr=0.12)
    lines = [f"item {i}" for i in range(100)]
    twelve = [line + "." if i < 12 else line for i, line in enumerate(lines)]  # 0.12: dropped (<=)
    thirteen = [line + "!" if i < 13 else line for i, line in enumerate(lines)]
    assert verdicts(stage, ["\n".join(twelve), "\n".join(thirteen)]) == ["fineweb:line_punct_ratio", None]
    # blank lines between paragraphs are not lines: 13 of 100 still
    assert verdicts(stage, ["\n\n".join(thirteen)]) == [None]
    exempt = FineWebQuality(FineWebQuality.Params(line_punct_exclude_zero=True, short_line_thr=None,
                                                  char_duplicates_ratio=None, new_line_ratio=None))
    assert verdicts(exempt, ["\n".join(lines)]) == [None]


def test_fineweb_short_line_ratio():
    stage = fw(short_line_thr=0.67)
    short = "s" * 30  # exactly 30 characters is short
    long = "l" * 31
    assert verdicts(stage, ["\n".join([short] * 67 + [long] * 33), "\n".join([short] * 66 + [long] * 34)]) == [
        "fineweb:short_line_ratio", None]


def test_fineweb_char_dup_ratio():
    stage = fw(char_duplicates_ratio=0.01)
    body = [f"{i:02d}" + "x" * 97 + "." for i in range(9)]  # nine distinct 100-character lines
    dup10 = body + ["repeated!!", "repeated!!"]  # 10 of 920 characters repeated: 0.0109 dropped
    dup9 = body + ["repeated!", "repeated!", "y" * 2]  # 9 of 920: 0.0098 kept
    assert verdicts(stage, ["\n".join(dup10), "\n".join(dup9)]) == ["fineweb:char_dup_ratio", None]


def test_fineweb_new_line_ratio():
    stage = fw(new_line_ratio=0.3)
    # 10 lines hold 30 words: 9 breaks / 30 words = 0.3 kept; 29 words: 0.31 dropped
    thirty = [" ".join(["word"] * 3)] * 10
    twenty_nine = thirty[:-1] + ["word word"]
    assert verdicts(stage, ["\n".join(thirty), "\n".join(twenty_nine)]) == [None, "fineweb:list_ratio"]
    assert verdicts(stage, ["\n\n".join(thirty)]) == [None]
    assert verdicts(FineWebQuality(), ["", None]) == ["fineweb:empty"] * 2


# ---------------------------------------------------------------------------------------------
# url_blocklist


def test_normalize_domain():
    assert normalize_domain("https://WWW.Example.com:8080/x?y") == "example.com"
    assert normalize_domain("www.example.com.") == "example.com"
    assert normalize_domain("Sub.Example.COM") == "sub.example.com"


def test_url_blocklist_domains(tmp_path):
    listed = tmp_path / "domains.txt"
    listed.write_text("# a comment\nexample.com\n0.0.0.0 tracker.net  # hosts-file line\nhttps://www.Spam.org/path\n")
    stage = UrlBlocklist(UrlBlocklist.Params(domains_file=str(listed)))
    stage.check()
    urls = ["https://example.com/a", "https://news.example.com/b", "https://badexample.com/c",
            "http://WWW.EXAMPLE.COM:80/", "https://a.b.tracker.net/", "https://spam.org/", "https://ok.org/"]
    res = stage.process(docs(["t"] * len(urls), urls=urls))
    assert res.table.column("url").to_pylist() == ["https://badexample.com/c", "https://ok.org/"]
    assert dict(res.drops) == {"url_blocklist:domain": 5}
    # the schema's domain column is used when present
    res = stage.process(docs(["t", "t"], urls=["https://x.org/", None], domains=["example.com", "sub.tracker.net"]))
    assert res.table.num_rows == 0


def test_url_blocklist_substrings_and_words():
    stage = UrlBlocklist(UrlBlocklist.Params(url_substrings=["/ads/"], banned_words=["casino", "xxx"]))
    urls = ["https://a.org/ads/1", "https://a.org/casino-games", "https://CASINO.a.org/", "https://a.org/casinos",
            "https://a.org/x_xxx_y", "https://a.org/good", None]
    assert verdicts_urls(stage, urls) == ["url_blocklist:url", "url_blocklist:word", "url_blocklist:word", None,
                                          "url_blocklist:word", None, None]


def verdicts_urls(stage, urls):
    out = []
    for u in urls:
        res = stage.process(docs(["t"], urls=[u]))
        out.append(None if res.table.num_rows else next(iter(res.drops)))
    return out


def test_url_blocklist_errors(tmp_path):
    missing = tmp_path / "no-such-list.txt"
    with pytest.raises(ProcessorError, match="no-such-list.txt"):
        UrlBlocklist(UrlBlocklist.Params(domains_file=str(missing))).check()
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ProcessorError, match="nothing to block"):
        UrlBlocklist(UrlBlocklist.Params(domains_file=str(empty))).check()
    with pytest.raises(ValidationError):
        UrlBlocklist.Params(domain_file="x")  # misspelled key


# ---------------------------------------------------------------------------------------------
# language_id

EN = "The quick brown fox jumps over the lazy dog while the farmer watches from his window."
DE = "Der schnelle braune Fuchs springt über den faulen Hund, während der Bauer aus dem Fenster schaut."
FR = "Le renard brun rapide saute par-dessus le chien paresseux pendant que le fermier regarde."


@pytest.fixture(scope="module")
def lid() -> LanguageId:
    stage = LanguageId()
    stage.check()
    return stage


def test_language_id_annotates_and_filters(lid):
    res = lid.process(docs([EN, DE, FR, "", None, EN.replace(" ", "\n")]))
    t = res.table
    assert t.schema.field("lang").type == pa.string() and t.schema.field("lang_score").type == pa.float32()
    assert t.column("lang").to_pylist() == ["en", "de", "fr", "en"]
    scores = t.column("lang_score").to_numpy()
    assert np.all((scores >= 0.65) & (scores <= 1.0))
    assert dict(res.drops) == {"language_id:no_text": 2}


def test_language_id_languages_threshold_label_only(lid):
    only_en = LanguageId(LanguageId.Params(languages=["en"]))
    only_en._model = lid._model  # share the loaded model
    res = only_en.process(docs([EN, DE, FR]))
    assert res.table.column("lang").to_pylist() == ["en"]
    assert dict(res.drops) == {"language_id:language": 2}
    strict = LanguageId(LanguageId.Params(threshold=1.0))
    strict._model = lid._model
    assert dict(strict.process(docs(["hello there"])).drops) == {"language_id:below_threshold": 1}
    label = LanguageId(LanguageId.Params(label_only=True))
    label._model = lid._model
    res = label.process(docs([EN, DE, ""]))
    assert res.table.num_rows == 3 and res.table.column("lang").to_pylist() == ["en", "de", None]
    # running it again replaces the columns instead of adding a second pair
    again = label.process(res.table)
    assert again.table.column_names.count("lang") == 1


def test_language_id_text_chars_cap(lid):
    capped = LanguageId(LanguageId.Params(text_chars=len(EN), label_only=True))
    capped._model = lid._model
    res = capped.process(docs([EN + " " + DE * 5]))
    assert res.table.column("lang").to_pylist() == ["en"]


def test_language_id_missing_model(tmp_path):
    with pytest.raises(ProcessorError, match="missing.ftz"):
        LanguageId(LanguageId.Params(model_path=str(tmp_path / "missing.ftz"))).check()
    bad = tmp_path / "bad.ftz"
    bad.write_bytes(b"not a model")
    with pytest.raises(ProcessorError, match="could not load"):
        LanguageId(LanguageId.Params(model_path=str(bad))).check()


# ---------------------------------------------------------------------------------------------
# contract


@pytest.mark.parametrize("cls", [LanguageId, GopherQuality, GopherRepetition, C4, FineWebQuality, UrlBlocklist])
def test_stage_contract(cls):
    assert cls.kind and issubclass(cls, Filter)
    with pytest.raises(ValidationError):
        cls.Params(not_a_param=1)
    # an empty batch passes through untouched
    stage = cls(cls.Params(domains=["x.org"])) if cls is UrlBlocklist else cls()
    res = stage.process(docs([]))
    assert res.table.num_rows == 0 and not res.drops


def test_stages_pickle_after_check(tmp_path):
    """The engine checks on the driver and ships stages to workers: loaded state must not block that."""
    import pickle

    listed = tmp_path / "d.txt"
    listed.write_text("example.com\n")
    stages = [LanguageId(), UrlBlocklist(UrlBlocklist.Params(domains_file=str(listed))), C4(), GopherQuality(),
              GopherRepetition(), FineWebQuality()]
    batch = docs([EN, DE], urls=["https://example.com/", "https://ok.org/"])
    for stage in stages:
        stage.check()
        copy = pickle.loads(pickle.dumps(stage))
        copy.setup()
        a, b = stage.process(batch), copy.process(batch)
        assert a.table.equals(b.table) and a.drops == b.drops
