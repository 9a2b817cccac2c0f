"""Classifier tooling without trained models: de-tokenisation, URL rules, buckets, token counts."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from curate.classify.data import Doc, binary_metrics, chunk_documents, held_out, split
from curate.classify.pools import HIST_BINS, PoolsConfig, pool_name, quantile_edges
from curate.classify.tokens import TokenCounter
from processors.base import ProcessorError
from processors.detok import WikiTextDetok, detokenize, detokenize_line, heading, wikitext_articles
from processors.domain import DomainLabel, DomainLabelParams, load_rules
from processors.quality import Quality, QualityParams, fasttext_text


# ------------------------------------------------------------------ WikiText de-tokenisation

def test_detokenize_line_undoes_wikitext_conventions():
    line = ('The state @-@ of @-@ the @-@ art ship , built in 1 @,@ 000 days for $ 2 @.@ 5 million '
            '( about £ 1m ) , was " very fast " ; it isn \'t Linnaeus \' design and it \'s 50 % larger .')
    assert detokenize_line(line) == (
        'The state-of-the-art ship, built in 1,000 days for $2.5 million (about £1m), was "very fast"; '
        "it isn't Linnaeus' design and it's 50% larger.")


def test_unk_modes():
    line = "The <unk> lobster lives here . It is blue ( <unk> ) . Nothing else ."
    assert detokenize_line(line, "remove") == "The lobster lives here. It is blue. Nothing else."
    assert detokenize_line(line, "drop_sentence") == "Nothing else."
    assert "<unk>" in detokenize_line(line, "keep")


def test_headings_and_articles(tmp_path):
    assert heading(" = = Early life = = ") == (2, "Early life")
    assert heading(" = Title = ") == (1, "Title")
    assert heading(" x = y ") is None
    f = tmp_path / "wikitext-mini.txt"
    f.write_text(" \n = First Article = \n \n Some words , here . " + "More text . " * 20 + "\n"
                 " = = Section = = \n Section body @-@ text . " + "Body words . " * 5 + "\n"
                 " = Second = \n Too short . \n")
    arts = wikitext_articles([f])
    assert [t for t, _ in arts] == ["First Article"]  # "Second" has fewer than 20 words
    title, paras = arts[0]
    assert paras[0].startswith("Some words, here. More text.")
    assert "Section" in paras and paras[-1].startswith("Section body-text.")
    assert detokenize(" = = Section = = \n a , b . \n") == "Section\na, b."


def test_real_wikitext_loses_its_artifacts(shared_data):
    arts = wikitext_articles(sorted((shared_data / "reference").glob("wikitext-2-*.txt")))
    text = "\n".join(p for _, ps in arts for p in ps)
    assert len(arts) > 100 and len(text.split()) > 300_000
    for artifact in (" @-@ ", " @,@ ", " @.@ ", "<unk>", " , ", " . ", " 's ", " n't "):
        assert text.count(artifact) < 0.0005 * len(text.split()), artifact
    assert text.count(", ") > 10_000  # punctuation is still there, attached to its word


def test_detok_stage_rewrites_text():
    stage = WikiTextDetok(WikiTextDetok.Params(unk="remove"))
    out = stage.process(pa.table({"id": ["a"], "text": ["Hello , world @-@ wide <unk> ."]})).table
    assert out.column("text").to_pylist() == ["Hello, world-wide."]


# ------------------------------------------------------------------ training data plumbing

def test_chunks_keep_paragraphs_and_lengths():
    rng = np.random.default_rng(0)
    paras = [" ".join(f"w{i}_{j}" for j in range(40)) for i in range(100)]  # 4,000 words
    chunks = chunk_documents([Doc("g", paras)], rng, 50, 600)
    assert sum(c.words() for c in chunks) >= 4000 - 600
    assert all(50 <= c.words() <= 600 + 40 for c in chunks)
    assert len({c.words() for c in chunks}) > 3  # lengths vary
    again = chunk_documents([Doc("g", paras)], np.random.default_rng(0), 50, 600)
    assert [c.paragraphs for c in again] == [c.paragraphs for c in chunks]


def test_split_is_by_group_and_stable():
    docs = [Doc(f"site{i % 40}", ["x"]) for i in range(400)]
    train, test = split(docs, seed=3, fraction=0.25)
    assert {d.group for d in train}.isdisjoint({d.group for d in test})
    assert 0.1 < len(test) / len(docs) < 0.4
    assert held_out("site7", 3, 0.25) == held_out("site7", 3, 0.25)


def test_binary_metrics():
    y = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    m = binary_metrics(y, np.array([0.9, 0.8, 0.4, 0.6, 0.2, 0.1]), 0.5)
    assert m["roc_auc"] == pytest.approx(8 / 9)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["best_f1"]["f1"] >= m["f1"]


def test_fasttext_text_normalises_spacing():
    assert fasttext_text("Hello , World!\nNew line") == fasttext_text("Hello, world !  new   line")
    assert "\n" not in fasttext_text("a\nb\r\nc")


# ------------------------------------------------------------------ URL rules

RULES_YAML = """
rules:
  - label: Reference Works
    hosts: [wikipedia.org]
  - label: news
    url_regex: ['^https?://[^/]+/news/']
  - label: government
    hosts: [gov, gov.uk]
  - label: news
    hosts: [bbc.co.uk]
"""


def test_rules_first_match_wins(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML)
    rules = load_rules(path)
    assert rules.match("en.wikipedia.org", "https://en.wikipedia.org/news/x") == "reference_works"
    assert rules.match("notwikipedia.org", "https://notwikipedia.org/a") is None  # label boundary
    assert rules.match("cdc.gov", "https://cdc.gov/news/today") == "news"  # regex rule comes first
    assert rules.match("cdc.gov", "https://cdc.gov/about") == "government"
    assert rules.match("bbc.co.uk", "https://bbc.co.uk/sport") == "news"
    assert rules.match("gov.uk", "https://www.gov.uk/x") == "government"


def test_rules_tsv_and_errors(tmp_path):
    tsv = tmp_path / "rules.tsv"
    tsv.write_text("# kind\tpattern\tlabel\nhost\texample.org\tdemo\nurl_regex\t/blog/#?\tblogs\n")
    rules = load_rules(tsv)
    assert rules.match("a.example.org", None) == "demo"
    assert rules.match("x.com", "https://x.com/blog/1") == "blogs"
    bad = tmp_path / "bad.tsv"
    bad.write_text("host example.org demo\n")
    with pytest.raises(ProcessorError, match="KIND<TAB>PATTERN<TAB>LABEL"):
        load_rules(bad)
    regex = tmp_path / "regex.yaml"
    regex.write_text("rules:\n  - label: x\n    url_regex: ['(unclosed']\n")
    with pytest.raises(ProcessorError, match="bad regex"):
        load_rules(regex)


def test_domain_stage_rules_only(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML)
    stage = DomainLabel(DomainLabelParams(rules_path=str(path), default_label="General Web",
                                          label_map={"reference_works": "reference"}))
    stage.check()
    table = pa.table({"id": ["1", "2", "3"], "url": ["https://de.wikipedia.org/wiki/X", None, "https://x.com/"],
                      "domain": ["de.wikipedia.org", "cdc.gov", "x.com"], "text": ["a", "b", "c"]})
    out = stage.process(table).table
    assert out.column("domain_label").to_pylist() == ["reference", "government", "general_web"]
    assert out.column("domain_label_source").to_pylist() == ["rule", "rule", "default"]
    assert out.column("domain_label_score").to_pylist() == [1.0, 1.0, None]
    closed = DomainLabel(DomainLabelParams(rules_path=str(path), labels=["news"]))
    with pytest.raises(ProcessorError, match="outside `labels`"):
        closed.check()


def test_stage_params_fail_loudly(tmp_path):
    with pytest.raises(ValidationError):
        DomainLabelParams()  # neither rules nor model
    with pytest.raises(ValidationError):
        QualityParams(model_path="x.bin", unknown_key=1)
    with pytest.raises(ProcessorError, match="does not exist.*train-quality"):
        Quality(QualityParams(model_path=str(tmp_path / "missing.bin"))).check()
    with pytest.raises(ProcessorError, match="does not exist"):
        Quality(QualityParams(model_type="embedding", model_path=str(tmp_path / "missing.safetensors"))).check()
    not_a_model = tmp_path / "junk.bin"
    not_a_model.write_bytes(b"not a model")
    with pytest.raises(ProcessorError, match="could not load"):
        Quality(QualityParams(model_path=str(not_a_model))).check()
    with pytest.raises(ProcessorError, match="not an embedding-head file"):
        Quality(QualityParams(model_type="embedding", model_path=str(not_a_model))).check()
    with pytest.raises(ProcessorError, match="train-domain"):
        DomainLabel(DomainLabelParams(model_path=str(tmp_path / "none.bin"))).check()


# ------------------------------------------------------------------ pools pieces

def test_pool_config_and_names():
    cfg = PoolsConfig(inputs=["x"], output="o")
    assert cfg.quantiles == [0.5, 0.9] and cfg.bucket_names == ["low", "mid", "high"]
    assert PoolsConfig(inputs=["x"], output="o", edges=[0.5]).bucket_names == ["low", "high"]
    with pytest.raises(ValidationError):
        PoolsConfig(inputs=["x"], output="o", edges=[0.6, 0.2])
    with pytest.raises(ValidationError):
        PoolsConfig(inputs=["x"], output="o", edges=[0.5], quantiles=[0.5])
    with pytest.raises(ValidationError):
        PoolsConfig(inputs=["x"], output="o", edges=[0.5], bucket_names=["a", "b", "c"])
    assert pool_name("cc", "Food and Drink", "high") == "cc_food-and-drink_high"
    assert pool_name(None, "all", "q1") == "all_q1"


def test_quantile_edges_match_numpy():
    scores = np.random.default_rng(1).beta(2, 5, size=20_000)
    counts = np.bincount(np.minimum((scores * HIST_BINS).astype(int), HIST_BINS - 1), minlength=HIST_BINS)
    edges = quantile_edges(counts, [0.5, 0.9])
    assert edges == pytest.approx(np.quantile(scores, [0.5, 0.9]), abs=2 / HIST_BINS)
    assert (scores < edges[0]).mean() == pytest.approx(0.5, abs=0.002)


def test_token_counter_both_kinds(shared_data):
    sentence = "Tokenizers count the text itself, not special tokens. "
    tik = TokenCounter("cl100k_base", str(shared_data / "tokenizers"))
    bert = TokenCounter(str(shared_data / "tokenizers" / "bert-wordpiece-tokenizer.json"))
    n_tik, n_bert = tik.count([sentence * 100, ""]), bert.count([sentence * 100, ""])
    assert n_tik[1] == 0 and n_bert[1] == 0
    # the BERT tokenizer.json truncates at 128 tokens and adds [CLS]/[SEP]: both are switched off,
    # so 100 copies of a sentence count 100 times its tokens
    one = bert.count([sentence])[0]
    assert 10 <= one <= 15 and n_bert[0] == 100 * one
    assert 900 < n_tik[0] < 1300
    assert bert.name == "bert-wordpiece-tokenizer.json" and tik.name == "cl100k_base"
    from processors.tokenizer import TokenizerError

    with pytest.raises(TokenizerError, match="tiktoken"):
        TokenCounter("no_such_encoding").count(["x"])
