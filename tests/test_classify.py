"""Quality and domain classifiers and pools, on real data.

Web negatives: the main text of the real pages in web/pages-0000.warc.gz (fastwarc + trafilatura,
extracted once per module). Positives: WikiText-2, de-tokenised. Topics: the (synthetic) labelled
documents in reference/topics. Models are trained small (capped chunks, short embedding inputs)
to keep the module quick; benchmarks/bench_classifiers.py trains them at full size.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from curate.classify.data import ClassifyError, train_fasttext
from curate.classify.pools import PoolsConfig, build_pools
from curate.classify.tokens import TokenCounter
from curate.classify.train_domain import DomainTrainConfig, train_domain
from curate.classify.train_quality import (
    EmbeddingOptions, FastTextOptions, QualityTrainConfig, eval_path, train_quality,
)
from curate.classify.webtext import extract_warc_documents
from processors.domain import DomainLabel, DomainLabelParams
from processors.quality import Quality, QualityParams

QUIET = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("classify")


@pytest.fixture(scope="module")
def web(shared_data, work) -> tuple[pa.Table, list[str]]:
    """Real extracted pages, written as two Parquet parts like an extract stage output."""
    table = extract_warc_documents([shared_data / "web" / "pages-0000.warc.gz"])
    assert table.num_rows > 250
    half = table.num_rows // 2
    paths = []
    for k, part in enumerate((table.slice(0, half), table.slice(half))):
        p = work / "web" / f"part-{k:05d}.parquet"
        p.parent.mkdir(exist_ok=True)
        pq.write_table(part, p)
        paths.append(str(p))
    return table, paths


def _quality_cfg(shared_data, web_paths, output, **kw) -> QualityTrainConfig:
    kw.setdefault("fasttext", FastTextOptions(bucket=50_000))  # a 13 MB model instead of 51 MB
    return QualityTrainConfig(reference=[str(shared_data / "reference" / "wikitext-2-*.txt")],
                              web=web_paths, output=str(output), **kw)


@pytest.fixture(scope="module")
def fasttext_model(shared_data, web, work) -> tuple[Path, dict]:
    out = work / "models" / "quality_ft.bin"
    report = train_quality(_quality_cfg(shared_data, web[1], out, max_chunks_per_class=400), log=QUIET)
    return out, report


@pytest.fixture(scope="module")
def embedding_model(shared_data, web, work) -> tuple[Path, dict]:
    out = work / "models" / "quality_emb.safetensors"
    cfg = _quality_cfg(shared_data, web[1], out, model_type="embedding", max_chunks_per_class=70,
                       embedding=EmbeddingOptions(max_tokens=64, threads=1, epochs=80))
    return out, train_quality(cfg, log=QUIET)


@pytest.fixture(scope="module")
def topics_model(shared_data, work) -> tuple[Path, dict]:
    topics = shared_data / "reference" / "topics"
    out = work / "models" / "topics.bin"
    cfg = DomainTrainConfig(train=[str(topics / "train.jsonl.gz")], test=[str(topics / "test.jsonl.gz")],
                            label_field="metadata.topics", output=str(out), epoch=15, bucket=50_000)
    return out, train_domain(cfg, log=QUIET)


# ------------------------------------------------------------------ quality: training

def test_fasttext_quality_model_separates_reference_from_web(fasttext_model):
    path, report = fasttext_model
    assert path.is_file() and eval_path(path).is_file()
    saved = json.loads(eval_path(path).read_text())
    assert saved["held_out"] == report["held_out"]
    held = report["held_out"]
    assert held["roc_auc"] > 0.93, held
    assert held["precision"] > 0.8 and held["recall"] > 0.8, held
    assert held["mean_score_positive"] - held["mean_score_negative"] > 0.5
    data = report["data"]
    # only English web pages are negatives, split by host; the training split is balanced
    assert data["web"]["documents_in_language"] < data["web"]["documents_read"]
    assert data["train_balanced"]["ref"] == data["train_balanced"]["web"]


def test_fasttext_training_is_deterministic(shared_data, web, work, fasttext_model):
    again = work / "models" / "quality_ft_again.bin"
    train_quality(_quality_cfg(shared_data, web[1], again, max_chunks_per_class=400), log=QUIET)
    assert again.read_bytes() == fasttext_model[0].read_bytes()
    other_seed = work / "models" / "quality_ft_seed1.bin"
    train_quality(_quality_cfg(shared_data, web[1], other_seed, max_chunks_per_class=400, seed=1), log=QUIET)
    assert other_seed.read_bytes() != fasttext_model[0].read_bytes()


def test_embedding_quality_model_separates_reference_from_web(embedding_model):
    path, report = embedding_model
    assert path.suffix == ".safetensors" and eval_path(path).is_file()
    held = report["held_out"]
    assert held["roc_auc"] > 0.85, held
    assert held["n"] == held["positives"] + held["negatives"] and held["negatives"] > 5


def test_training_errors_are_clear(shared_data, web, work):
    with pytest.raises(ClassifyError, match="no web documents|no `text` column"):
        bad = work / "empty.parquet"
        pq.write_table(pa.table({"text": pa.array([], pa.string())}), bad)
        train_quality(_quality_cfg(shared_data, [str(bad)], work / "m.bin"), log=QUIET)
    with pytest.raises(ClassifyError, match="does not exist|matches no file"):
        train_quality(_quality_cfg(shared_data, [str(work / "nope.parquet")], work / "m.bin"), log=QUIET)


def test_fasttext_nan_is_reported_clearly(monkeypatch, tmp_path):
    import subprocess

    calls = []

    def diverge(cmd, **kw):
        calls.append(json.loads(cmd[-1])["params"]["lr"])
        return subprocess.CompletedProcess(cmd, 0, stdout='{"ok": false, "error": "RuntimeError: Encountered NaN."}\n')

    monkeypatch.setattr(subprocess, "run", diverge)
    with pytest.raises(ClassifyError, match="diverged.*lower --lr"):
        train_fasttext(["__label__a x"], {"lr": 0.4}, tmp_path / "m.bin", retries=2, log=QUIET)
    assert calls == [0.4, 0.2, 0.1]


# ------------------------------------------------------------------ quality: the stage

def _score_in_batches(stage: Quality, table: pa.Table, size: int) -> np.ndarray:
    parts = [stage.process(table.slice(i, size)).table for i in range(0, table.num_rows, size)]
    return pa.concat_tables(parts).column("quality_score").to_numpy(zero_copy_only=False)


def test_fasttext_scores_deterministic_across_runs_and_batching(fasttext_model, web):
    table = web[0]
    a = Quality(QualityParams(model_path=str(fasttext_model[0])))
    a.check()
    first = _score_in_batches(a, table, 1000)
    clone = pickle.loads(pickle.dumps(a))  # what a Ray worker receives: no model inside
    assert clone._model is None
    clone.setup()
    second = _score_in_batches(clone, table, 37)
    assert first.dtype == np.float32 and np.array_equal(first, second)
    assert np.all((first >= 0) & (first <= 1)) and first.std() > 0.05


def test_embedding_scores_deterministic_across_runs_and_batching(embedding_model, web):
    table = web[0].slice(0, 24)
    params = QualityParams(model_type="embedding", model_path=str(embedding_model[0]))
    a = Quality(params)
    a.check()
    first = _score_in_batches(a, table, 24)
    b = pickle.loads(pickle.dumps(a))
    assert b._model is None
    second = _score_in_batches(b, table, 5)
    assert np.array_equal(first, second)
    assert np.all((first >= 0) & (first <= 1))


def test_min_score_drops_with_reason(fasttext_model, web):
    texts = web[0].column("text").to_pylist()[:200] + ["   "]
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    stage = Quality(QualityParams(model_path=str(fasttext_model[0]), min_score=0.3))
    result = stage.process(table)
    scores = stage.score(table.column("text").to_pylist())
    expected_kept = int((scores >= 0.3).sum())
    assert result.table.num_rows == expected_kept
    assert result.drops["quality:no_text"] == 1
    assert result.drops["quality:below_min_score"] == table.num_rows - expected_kept - 1
    assert np.isnan(scores[-1])


def test_wikipedia_like_page_outscores_boilerplate(fasttext_model, embedding_model):
    prose = ("The European lobster is a species of clawed lobster from the eastern Atlantic Ocean, the "
             "Mediterranean Sea and parts of the Black Sea. It is closely related to the American lobster. "
             "It may grow to a length of 60 cm and a mass of 6 kilograms, and bears a conspicuous pair of "
             "claws. In life, the lobsters are blue, only becoming lobster red on cooking. Mating occurs in "
             "the summer, producing eggs which are carried by the females for up to a year before hatching.")
    boiler = ("Home | About us | Contact | Imprint | Privacy policy\nLog in to your account\nShopping cart "
              "(0 items)\nFollow us on Facebook, Twitter and Instagram\nSubscribe to our newsletter\n"
              "© 2020 All rights reserved. Terms and conditions. Cookie settings. Accept all cookies")
    ft = Quality(QualityParams(model_path=str(fasttext_model[0]))).score([prose, boiler])
    assert ft[0] > 0.5 > ft[1], ft
    # the test's embedding head is tiny (140 chunks, 64 tokens): only its ranking is asserted
    emb = Quality(QualityParams(model_type="embedding", model_path=str(embedding_model[0]))).score([prose, boiler])
    assert emb[0] - emb[1] > 0.15, emb


# ------------------------------------------------------------------ domain labels

def test_topic_classifier_on_held_out_topics(topics_model):
    path, report = topics_model
    held = report["held_out"]
    assert len(report["labels"]) == 30 and "food_and_drink" in report["labels"]
    assert held["records"] == 550
    assert held["top1_precision"] > 0.8, held  # synthetic text: easy, not a realism benchmark
    assert eval_path(path).is_file()


def test_domain_stage_combines_rules_and_model(topics_model, web, work):
    rules = work / "domain_rules.yaml"
    table = web[0].slice(0, 120)
    hosts = [h for h in table.column("domain").to_pylist() if h]
    rules.write_text(f"rules:\n  - label: news\n    hosts: [{hosts[0]}]\n")
    base = dict(rules_path=str(rules), model_path=str(topics_model[0]))
    stage = DomainLabel(DomainLabelParams(**base, threshold=0.0))
    stage.check()
    out = pickle.loads(pickle.dumps(stage)).process(table).table
    labels = out.column("domain_label").to_pylist()
    source = out.column("domain_label_source").to_pylist()
    is_rule_host = [h == hosts[0] for h in table.column("domain").to_pylist()]
    assert all((s == "rule") == r for s, r in zip(source, is_rule_host))
    assert all(lab == "news" for lab, r in zip(labels, is_rule_host) if r)
    model_labels = {lab for lab, s in zip(labels, source) if s == "model"}
    assert len(model_labels) >= 3 and model_labels <= set(topics_model[1]["labels"])
    # model_first: the model (threshold 0) labels everything with text, rules never win
    first = DomainLabel(DomainLabelParams(**base, order="model_first")).process(table).table
    assert set(first.column("domain_label_source").to_pylist()) == {"model"}
    # a closed label set and a map: topics merged into coarse domains, the rest abstain
    coarse = DomainLabel(DomainLabelParams(
        model_path=str(topics_model[0]), labels=["stem", "society"],
        label_map={"science": "stem", "technology": "stem", "mathematics": "stem", "engineering": "stem",
                   "politics": "society", "government": "society", "law": "society", "economy": "society"},
        threshold=0.2, default_label="other")).process(table).table
    assert set(coarse.column("domain_label").to_pylist()) <= {"stem", "society", "other"}
    scores = coarse.column("domain_label_score").to_pylist()
    for lab, s in zip(coarse.column("domain_label").to_pylist(), scores):
        assert (s is None) == (lab == "other") and (s is None or s >= 0.2)


# ------------------------------------------------------------------ the engine + pools

@pytest.fixture(scope="module")
def classified(ray_session, fasttext_model, topics_model, web, work) -> Path:
    """quality + domain_label run by the engine on Ray (workers unpickle the stages, call setup)."""
    from curate.config import pipeline_from_dict
    from curate.runner import RunOptions, run_pipeline

    cfg = pipeline_from_dict({
        "inputs": web[1], "output": str(work / "pipeline"),
        "stages": [{"quality": {"model_path": str(fasttext_model[0])}},
                   {"domain_label": {"model_path": str(topics_model[0]), "labels": ["stem", "society", "culture"],
                                     "label_map": {"science": "stem", "technology": "stem", "engineering": "stem",
                                                   "mathematics": "stem", "energy": "stem", "politics": "society",
                                                   "government": "society", "law": "society", "economy": "society",
                                                   "business": "society", "entertainment": "culture",
                                                   "sports": "culture", "food_and_drink": "culture"},
                                     "default_label": "other"}}]})
    result = run_pipeline(cfg, RunOptions(progress=False))
    return Path(result.final_dir)


def test_engine_scores_match_direct_scoring(classified, fasttext_model, web):
    out = pads.dataset(str(classified), format="parquet").to_table().sort_by("id")
    direct = Quality(QualityParams(model_path=str(fasttext_model[0]))).process(web[0]).table.sort_by("id")
    assert out.num_rows == web[0].num_rows
    assert np.array_equal(out.column("quality_score").to_numpy(zero_copy_only=False),
                          direct.column("quality_score").to_numpy(zero_copy_only=False))
    assert set(out.column("domain_label").to_pylist()) <= {"stem", "society", "culture", "other"}


def _pools_cfg(classified, out, shared_data, **kw) -> PoolsConfig:
    return PoolsConfig(inputs=[str(classified)], output=str(out), tokenizer="cl100k_base",
                       tiktoken_cache=str(shared_data / "tokenizers"), **kw)


def test_pools_counts_layout_and_schema(classified, work, shared_data, ray_session):
    from curate.planner.pools import iter_texts, load_pools

    out = work / "pools_ray"
    summary = build_pools(_pools_cfg(classified, out, shared_data, executor="ray", samples=2), log=QUIET)
    docs = pads.dataset(str(classified), format="parquet").to_table()
    pf = load_pools(out / "pools.json")  # the planner's own reader and validation
    assert pf.tokenizer == "cl100k_base" and pf.version == 1
    assert sum(p.documents for p in pf.pools) == docs.num_rows
    texts = docs.column("text").to_pylist()
    assert sum(p.characters for p in pf.pools) == sum(len(t) for t in texts)
    counter = TokenCounter("cl100k_base", str(shared_data / "tokenizers"))
    assert sum(p.unique_tokens for p in pf.pools) == sum(counter.count(texts))
    edges = summary["bucket_edges"]
    scores = docs.column("quality_score").to_numpy(zero_copy_only=False)
    for p in pf.pools:
        table = pads.dataset(p.path, format="parquet").to_table()
        assert table.num_rows == p.documents
        assert sum(len(t) for t in table.column("text").to_pylist()) == p.characters
        assert set(table.column("domain_label").to_pylist()) == {p.domain}
        assert p.name == f"{p.source}_{p.domain}_{p.quality_bucket}"
        s = table.column("quality_score").to_numpy(zero_copy_only=False)
        b = ["low", "mid", "high"].index(p.quality_bucket)
        lo, hi = ([-np.inf] + edges)[b], (edges + [np.inf])[b]
        assert np.all((s >= lo) & (s < hi))
        assert sum(1 for _ in iter_texts(p)) == p.documents
    # quantile buckets: about half of the documents below the first edge, 10% above the second
    assert abs((scores < edges[0]).mean() - 0.5) < 0.02 and abs((scores >= edges[1]).mean() - 0.1) < 0.02
    shares = [p["token_share"] for p in summary["pools"]]
    assert abs(sum(shares) - 1) < 1e-9
    assert all(1 <= len(p["samples"]) <= 2 for p in summary["pools"])
    with pytest.raises(ClassifyError, match="--overwrite"):
        build_pools(_pools_cfg(classified, out, shared_data, executor="ray"), log=QUIET)


def test_pools_same_with_processes_and_explicit_edges(classified, work, shared_data):
    a = build_pools(_pools_cfg(classified, work / "pools_proc", shared_data, edges=[0.1, 0.5],
                               workers=2, source_column=None), log=QUIET)
    b = build_pools(_pools_cfg(classified, work / "pools_proc", shared_data, edges=[0.1, 0.5],
                               workers=1, source_column=None, overwrite=True), log=QUIET)
    strip = lambda s: [{k: v for k, v in p.items()} for p in s["pools"]]  # noqa: E731
    assert strip(a) == strip(b) and a["bucket_edges"] == [0.1, 0.5]
    assert all(p["name"] == f"{p['domain']}_{p['quality_bucket']}" for p in a["pools"])
    pools_json = json.loads((work / "pools_proc" / "pools.json").read_text())
    assert {p["source"] for p in pools_json["pools"]} == {"all"}
    on_disk = sorted(d.name for d in (work / "pools_proc").iterdir() if d.is_dir())
    assert on_disk == sorted(p["name"] for p in pools_json["pools"])


def test_command_line(classified, web, work, shared_data):
    from typer.testing import CliRunner

    from curate.cli import app  # the real CLI, with its error path (a user error: one line, exit 2)

    run = CliRunner().invoke
    model = work / "cli" / "q.bin"
    res = run(app, ["classify", "train-quality", "--web", web[1][0], "-o", str(model),
                    "--reference", str(shared_data / "reference" / "wikitext-2-valid.txt"),
                    "--max-chunks-per-class", "150", "--epoch", "5", "--seed", "2"])
    assert res.exit_code == 0, res.output
    report = json.loads(eval_path(model).read_text())
    assert report["config"]["seed"] == 2 and report["config"]["fasttext"]["epoch"] == 5
    assert report["held_out"]["roc_auc"] > 0.85
    topics = shared_data / "reference" / "topics"
    res = run(app, ["classify", "train-domain", "--train", str(topics / "dev.jsonl.gz"),
                    "--label-field", "metadata.topics", "-o", str(work / "cli" / "t.bin"), "--epoch", "5"])
    assert res.exit_code == 0, res.output
    assert json.loads(eval_path(work / "cli" / "t.bin").read_text())["test_records"] > 20
    res = run(app, ["pools", str(classified), "-o", str(work / "cli" / "pools"), "--edges", "0.2",
                    "--bucket-names", "rest,top", "--source-column", "", "--tiktoken-cache",
                    str(shared_data / "tokenizers"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    pools = json.loads((work / "cli" / "pools" / "pools.json").read_text())["pools"]
    assert {p["quality_bucket"] for p in pools} <= {"rest", "top"} and len(pools) >= 2
    res = run(app, ["pools", str(classified), "-o", str(work / "cli" / "pools"), "--edges", "0.2"])
    assert res.exit_code == 2 and "--overwrite" in res.output
