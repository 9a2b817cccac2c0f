"""The hygiene stages (pii, decontaminate, paragraph_dedup) on real shared text.

- PII: personal data planted in WikiText paragraphs and real web pages (several formats, four
  languages) is redacted exactly -- the output equals the host text with each planted item
  replaced by its placeholder -- and untouched WikiText yields no detection at all.
- decontaminate: WikiText-2 test passages planted in WikiText-2 valid paragraphs, verbatim and
  lightly edited, are found; the documents flagged equal those an independent, plain-Python
  n-gram check flags; cut mode removes the passage and keeps the rest.
- the three stages in one pipeline run (Ray, the runner): paragraph_dedup's output equals an
  independent count of normalised lines across documents; decontaminate's index is built on the
  driver and shipped; side outputs and per-source stats are written.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from processors.decontaminate import Decontaminate, DecontaminateParams
from processors.pii import PLACEHOLDERS, Pii, PiiParams, detect, kind_of
from processors.shingles import normalize_py, shingles_py

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def data():
    return _load("hygiene_data")


@pytest.fixture(scope="module")
def wiki_valid(shared_data, data) -> list[str]:
    return data.wikitext_paragraphs(str(shared_data / "reference" / "wikitext-2-valid.txt"))


@pytest.fixture(scope="module")
def web_pages(shared_data, data):
    return data.resiliparse_pages(str(shared_data / "web" / "pages-0000.warc.gz"), limit=150)


# ------------------------------------------------------------------------------------------ pii
def test_planted_pii_is_redacted_exactly(data, wiki_valid, web_pages):
    hosts = [("en", t) for t in wiki_valid[:60]] + [(lang, t) for (_, _, t), lang in
                                                     zip(web_pages[:60], ["de", "en", "fr", "es"] * 15)]
    # hosts with their own PII would make the expected text ambiguous: use clean ones only
    hosts = [(lang, t) for lang, t in hosts if not detect(t, PiiParams(), Counter())]
    assert len(hosts) >= 100
    planted = data.plant_pii(hosts, seed=3, per_doc=3)
    table = pa.table({"id": [str(i) for i in range(len(planted))], "text": [p.text for p in planted]})
    res = Pii().process(table)
    expected, truth_counts = [], Counter()
    for p in planted:
        text, pos = [], 0
        for s, e, sub in p.truth:
            text += [p.text[pos:s], PLACEHOLDERS[kind_of(sub)]]
            pos = e
            truth_counts[sub] += 1
        expected.append("".join(text) + p.text[pos:])
    got = res.table.column("text").to_pylist()
    # Some planted formats are unsupported by design (internationalised e-mail local parts; bare
    # digit runs and national numbers without a trunk 0 -- Spain's 6xx xxx xxx -- unless after a
    # phone word): a document comes out exactly as expected, or has only such misses -- never
    # an extra redaction, never a wrong placeholder.
    assert set(truth_counts) == {"email", "phone", "ipv4", "ipv6"}
    exact = 0
    for p, g, x in zip(planted, got, expected):
        if g == x:
            exact += 1
            continue
        found = detect(p.text, PiiParams(), Counter())
        assert all(any(s < te and ts < e and k == tk for ts, te, tk in p.truth) for s, e, k in found), found
        missed = [p.text[s:e] for s, e, _ in p.truth if not any(s < fe and fs < e for fs, fe, _ in found)]
        assert missed and all(not m.isascii() or not m.startswith(("+", "0", "(")) for m in missed), missed
    assert exact >= 0.8 * len(planted)
    for sub in ("ipv4", "ipv6"):
        assert res.counters[f"pii_{sub}"] == truth_counts[sub]


def test_no_detection_on_untouched_wikitext(wiki_valid):
    counts = Counter()
    found = [(t[max(0, s - 20):e + 20], k) for t in wiki_valid for s, e, k in detect(t, PiiParams(), counts)]
    assert found == []
    assert counts["skip_phone_date"] + counts["skip_phone_decimal"] + counts["skip_phone_context"] > 0  # guards did work


def test_pii_actions_and_guards():
    docs = ["Mail anna.schmidt@web.de today.", "Release 2.0.0.1 on 192.168.1.1, see logo@2x.png, user@example.com",
            "ISBN 978-3-16-148410-0 costs € 1 250 000; born 14.08.2020", "Tel. +49 30 12345678"]
    table = pa.table({"id": ["a", "b", "c", "d"], "text": docs})
    dropped = Pii(PiiParams(email="drop", phone="count")).process(table)
    assert dropped.drops == Counter({"pii:email": 1})
    assert dropped.table.column("text").to_pylist() == docs[1:]  # counted phone left in place
    assert dropped.counters["pii_phone"] == 1 and dropped.counters["pii_email"] == 1
    c = dropped.counters
    assert c["skip_ip_version"] == 1 and c["skip_ip_nonpublic"] == 1
    assert c["skip_email_filename"] == 1 and c["skip_email_reserved"] == 1
    assert c["skip_phone_isbn"] == 1 and c["skip_phone_amount"] == 1
    assert sum(v for k, v in c.items() if k.startswith("pii_")) == 2


# -------------------------------------------------------------------------------- decontaminate
def _naive_flags(texts: list[str], eval_texts: list[str], n: int) -> set[int]:
    grams = {g for t in eval_texts if len(normalize_py(t).split()) >= n for g in shingles_py(t, n)}
    return {i for i, t in enumerate(texts) if any(g in grams for g in shingles_py(t, n))}


def test_decontaminate_finds_planted_passages(shared_data, data, wiki_valid, tmp_path):
    test_paras = data.wikitext_paragraphs(str(shared_data / "reference" / "wikitext-2-test.txt"))
    eval_file = tmp_path / "eval.jsonl"
    with eval_file.open("w") as f:
        for p in test_paras[:150]:  # question = first half, answer = second half
            words = p.split(" ")
            f.write(json.dumps({"q": " ".join(words[: len(words) // 2]), "a": {"text": " ".join(words[len(words) // 2:])}}) + "\n")
    docs = ["\n".join(wiki_valid[i : i + 3]) for i in range(0, 600, 3)]
    planted, truth = data.plant_passages(docs, test_paras[:150], seed=5, n_exact=15, n_edited=15)
    params = dict(eval_sets=[{"name": "wt2test", "paths": [str(eval_file)], "fields": ["q", "a.text"]}])
    proc = Decontaminate(DecontaminateParams(**params))
    table = pa.table({"id": [str(i) for i in range(len(planted))], "text": planted})
    res = proc.process(table)
    flagged = {int(r["id"]) for r in res.side.to_pylist()}
    assert flagged == set(truth)  # every planted passage, exact or edited, and nothing else
    assert flagged == _naive_flags(planted, [json.loads(l)["q"] + " " + json.loads(l)["a"]["text"]
                                             for l in eval_file.read_text().splitlines()], 13)
    assert res.drops == Counter({"decontaminate:wt2test": len(truth)})
    assert res.counters["docs_matched:wt2test"] == len(truth)

    cut = Decontaminate(DecontaminateParams(**params, action="cut", context_chars=0, min_piece_chars=0)).process(table)
    out = dict(zip(cut.table.column("id").to_pylist(), cut.table.column("text").to_pylist()))
    for d, (p, mode) in truth.items():
        if mode == "exact" and str(d) in out:
            # the passage's words are cut, and only them: the host text is what is left
            assert normalize_py(out[str(d)]) == normalize_py(docs[d])
    assert all(out[str(i)] == planted[i] for i in range(len(planted)) if i not in truth)


# ----------------------------------------------------------------- all three in one pipeline run
def test_hygiene_pipeline_on_real_pages(ray_session, shared_data, data, web_pages, tmp_path):
    from curate.config import pipeline_from_dict
    from curate.runner import RunOptions, run_pipeline

    rows = [{"id": rid, "source": "cc", "url": url, "domain": None, "date": None, "text": text}
            for rid, url, text in web_pages]
    wiki = data.wikitext_paragraphs(str(shared_data / "reference" / "wikitext-2-test.txt"))[:20]
    rows += [{"id": f"wiki-{i}", "source": "wiki", "url": None, "domain": None, "date": None,
              "text": t + "\nContact the editor at editor.desk@gmail.com"} for i, t in enumerate(wiki)]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(3):  # three parts: the paragraph counts must cross part boundaries
        pq.write_table(pa.Table.from_pylist(rows[k::3]), inputs / f"part-{k}.parquet")
    eval_file = tmp_path / "eval.txt"
    eval_file.write_text("\n\n".join(wiki[:10]))
    cfg = pipeline_from_dict({
        "name": "hygiene", "inputs": [str(inputs)], "output": str(tmp_path / "out"),
        "stages": [
            {"paragraph_dedup": {"sources": ["cc"], "side_output": True, "min_doc_words": 20}},
            {"decontaminate": {"eval_sets": [{"name": "wt2", "paths": [str(eval_file)]}]}},
            {"pii": {"checkpoint": True}},
        ]})
    result = run_pipeline(cfg, RunOptions(progress=False))
    stats = {s.stage: s for s in result.stats}

    # paragraph_dedup == an independent count of normalised lines (of 2+ letter words) over the
    # cc documents
    def key(line: str) -> str | None:
        return normalize_py(line) if len(re.findall(r"[^\W\d_]+", line)) >= 2 else None

    docs_per_line = Counter()
    for r in rows:
        if r["source"] == "cc":
            docs_per_line.update({key(ln) for ln in r["text"].split("\n") if key(ln)})
    expected, removed = {}, 0
    for r in rows:
        if r["source"] != "cc":
            continue
        lines = r["text"].split("\n")
        keep = [ln for ln in lines if not key(ln) or docs_per_line[key(ln)] <= 1]
        removed += len(lines) - len(keep)
        if len(keep) < len(lines):
            new = "\n".join(keep).strip("\n")
            if len(new.split()) >= 20:
                expected[r["id"]] = new
        else:
            expected[r["id"]] = r["text"]
    pd = stats["paragraph_dedup"]
    assert pd.counters["paragraphs_removed"] == removed > 50
    assert pd.docs_out == len(expected) + len(wiki)
    assert pd.by_source["wiki"]["applied"] is False
    out = pads.dataset(str(result.final_dir)).to_table().to_pylist()
    got = {r["id"]: r["text"] for r in out}
    ids = sorted(expected)  # the pii stage after it redacts some: apply it to the expectation
    redacted = Pii().process(pa.table({"id": ids, "text": [expected[i] for i in ids]})).table
    assert {i: got[i] for i in ids} == dict(zip(ids, redacted.column("text").to_pylist()))
    side = pads.dataset(str(tmp_path / "out" / "paragraph_dedup" / "_removed" / "paragraph_dedup")).to_table()
    assert side.num_rows == removed and min(side.column("documents").to_pylist()) >= 2

    # decontaminate: the ten WikiText passages of the eval file, dropped under the set's name
    assert stats["decontaminate"].drops == Counter({"decontaminate:wt2": 10})
    dropped = pads.dataset(str(result.final_dir / "_removed" / "decontaminate")).to_table()
    assert sorted(dropped.column("id").to_pylist()) == sorted(f"wiki-{i}" for i in range(10))

    # pii: the planted address in the 10 remaining wiki docs, and nothing of it left
    assert stats["pii"].counters["pii_email"] >= 10
    assert not any("editor.desk@gmail.com" in r["text"] for r in out)
    assert sum(r["text"].count(PLACEHOLDERS["email"]) for r in out if r["source"] == "wiki") == 10


def test_unit_counts_keep_first_and_repeats_within_a_document(tmp_path):
    """The count step of paragraph dedup: documents are counted once per key (a line repeated
    inside one page is not boilerplate), and `keep_first` spares the smallest document hash."""
    from curate import unit_runner as u

    rows = pa.table({u.KEY: pa.array([5, 5, 5, 7, 7, 9], pa.uint64()), u.UID: pa.array([30, 10, 20, 1, 1, 2], pa.int64()),
                     u.PART: pa.array([0, 1, 2, 0, 0, 1], pa.int64()), u.ROW: pa.array([0, 1, 2, 3, 3, 4], pa.int64()),
                     u.UNIT: pa.array([0, 1, 2, 3, 4, 5], pa.int32())})
    out = str(tmp_path)
    removed = {(r[u.PART], r[u.ROW], r[u.UNIT], r[u.DOCS]) for r in u._count(rows, 1, False, out).to_pylist()}
    assert removed == {(0, 0, 0, 3), (1, 1, 1, 3), (2, 2, 2, 3)}
    kept_first = {(r[u.PART], r[u.ROW]) for r in u._count(rows, 1, True, out).to_pylist()}
    assert kept_first == {(0, 0), (2, 2)}  # uid 10 (part 1, row 1) is the first document
    assert u._count(rows, 3, False, out).num_rows == 0
    # the partition's counters travel in one file named by its content: the three calls above (a
    # retried partition) overwrite one file, so the driver sums the partition once
    counts = [json.loads(f.read_text()) for f in (tmp_path / u.COUNTS_DIR).glob("*.json")]
    assert counts == [{"units": 6, "distinct_keys": 3, "repeated_keys": 0}]  # the last call's: max 3
