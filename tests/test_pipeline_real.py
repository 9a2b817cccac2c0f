"""The whole spine on the real shared data: counts, pyarrow.dataset, resume after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
from warcio.archiveiterator import ArchiveIterator

from curate.config import load_pipeline, pipeline_from_dict
from curate.runner import RunOptions, run_pipeline

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = ["json", "email", "http", "xml"]  # a slice of the stdlib keeps the test quick
CURATE = str(Path(sys.executable).parent / "curate")


def _independent_counts(files: list[Path]) -> tuple[int, int, int]:
    """HTML 200 responses, other responses, WET conversion records — counted with warcio.

    The HTTP head is parsed here by hand (warcio leaves `http_headers` unset on some of the
    shared records), so the count does not depend on either WARC library's HTTP parsing.
    """
    html = other = wet = 0
    for f in files:
        with open(f, "rb") as fh:
            for rec in ArchiveIterator(fh, no_record_parse=True):
                if rec.rec_type == "conversion":
                    wet += 1
                elif rec.rec_type == "response":
                    head = rec.content_stream().read(8192).split(b"\r\n\r\n", 1)[0].lower()
                    lines = head.split(b"\r\n")
                    ok = lines[0].split(b" ")[1:2] == [b"200"]
                    ctype = [l for l in lines if l.startswith(b"content-type:")]
                    if ok and ctype and b"html" in ctype[0]:
                        html += 1
                    else:
                        other += 1
    return html, other, wet


@pytest.fixture(scope="module")
def sample_run(ray_session, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "out"
    inputs = [str(shared_data / "web" / "*.warc.gz"), str(shared_data / "cc" / "*.warc.gz"),
              str(shared_data / "cc" / "CC-MAIN-2014-35-sample.warc"),
              str(shared_data / "cc" / "CC-MAIN-2014-35-sample.warc.wet")]
    stdlib = Path(sysconfig.get_path("stdlib"))
    cfg = pipeline_from_dict({
        "output": str(out), "seed": 1,
        "stages": [
            {"extract": {"inputs": inputs}},
            {"read": {"name": "read_wiki", "source_name": "wiki", "split": "wikitext_articles",
                      "max_file_bytes": 20_000_000,
                      "inputs": [str(shared_data / "reference" / "wikitext-2-valid.txt")]}},
            {"read": {"name": "read_code", "source_name": "code", "format": "code",
                      "suffixes": [".py"], "inputs": [str(stdlib / d) for d in CODE_DIRS]}},
            {"wikitext_detok": {"sources": ["wiki"]}},
            {"language_id": {"languages": ["en", "de"], "sources": ["cc", "wiki"]}},
            {"gopher_repetition": {"sources": ["cc"]}},
            {"fineweb": {"sources": ["cc"]}},
            {"code_quality": {"sources": ["code"], "checkpoint": True}},
            {"exact_dedup": {}}],
    })
    return run_pipeline(cfg, RunOptions(progress=False)), shared_data


def test_every_html_response_and_wet_record_is_processed(sample_run):
    result, data = sample_run
    files = sorted((data / "web").glob("*.warc.gz")) + sorted((data / "cc").glob("*.warc*"))
    files = [f for f in files if not f.name.endswith(".wat")]
    html, other, wet = _independent_counts(files)
    assert html == 1153 + 16 + 3 and wet == 3
    extract = result.stats[0]
    assert extract.stage == "extract"
    assert [s.stage for s in result.stats[:3]] == ["extract", "read_wiki", "read_code"]
    # Every HTML response and WET record is a document or a counted drop; nothing vanishes.
    assert extract.docs_in == html + other + wet
    assert extract.docs_out + sum(extract.drops.values()) == extract.docs_in
    assert extract.drops.get("not_html", 0) == other
    # Stage chaining: each stage's input is the previous stage's output (the three readers
    # feed the first cleaning stage together).
    readers_out = sum(s.docs_out for s in result.stats[:3])
    assert result.stats[3].docs_in == readers_out
    for prev, nxt in zip(result.stats[3:], result.stats[4:]):
        assert nxt.docs_in == prev.docs_out
        assert nxt.docs_out + sum(nxt.drops.values()) == nxt.docs_in
        assert all(v > 0 for v in nxt.drops.values())


def test_output_loads_with_pyarrow_dataset(sample_run):
    result, _ = sample_run
    table = pads.dataset(str(result.final_dir), format="parquet").to_table()
    assert table.num_rows == result.stats[-1].docs_out > 300
    ids = table["id"].to_pylist()
    assert len(set(ids)) == len(ids)
    assert {"id", "url", "domain", "date", "text", "warc_file", "warc_offset", "lang",
            "lang_score"} <= set(table.column_names)
    web = table.filter(pc.equal(table["source"], "cc"))
    assert set(web["lang"].to_pylist()) <= {"en", "de"}
    assert all(t and t.strip() for t in table["text"].to_pylist())
    summary = json.loads((result.output / "_summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == [
        "extract", "read_wiki", "read_code", "wikitext_detok", "language_id", "gopher_repetition",
        "fineweb", "code_quality", "exact_dedup"]


def test_sources_switch_filters_and_stats_per_source(sample_run):
    result, _ = sample_run
    by = {s.stage: s.by_source for s in result.stats}
    # Web heuristics ran on the crawl only; code passed through them untouched.
    for stage in ("gopher_repetition", "fineweb"):
        assert by[stage]["cc"]["applied"] and not by[stage]["code"]["applied"]
        assert by[stage]["code"]["docs_in"] == by[stage]["code"]["docs_out"]
        assert not by[stage]["wiki"]["applied"]
    assert by["code_quality"]["code"]["applied"] and not by["code_quality"]["cc"]["applied"]
    assert by["language_id"]["wiki"]["applied"] and not by["language_id"]["code"]["applied"]
    # Per-source drops add up to the stage's drops.
    for s in result.stats[3:]:
        total = {}
        for e in s.by_source.values():
            for k, v in e["drops"].items():
                total[k] = total.get(k, 0) + v
        assert total == dict(s.drops), s.stage
    table = pads.dataset(str(result.final_dir), format="parquet").to_table()
    counts = dict(zip(*[c.to_pylist() for c in pc.value_counts(table["source"]).flatten()]))
    assert set(counts) == {"cc", "wiki", "code"}
    assert counts["wiki"] == 60  # every WikiText-2 validation article survives
    wiki = table.filter(pc.equal(table["source"], "wiki"))["text"].to_pylist()
    assert not any(" @-@ " in t or " , " in t for t in wiki)  # de-tokenised


def _run_cli(yaml_path: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([CURATE, "run", str(yaml_path), "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, **kw)


def _ids_texts(folder: Path) -> list[tuple[str, str]]:
    t = pads.dataset(str(folder), format="parquet").to_table(columns=["id", "text"])
    return sorted(zip(t["id"].to_pylist(), t["text"].to_pylist()))


@pytest.mark.slow
def test_sigkill_after_extract_then_resume_equals_uninterrupted(ray_session, shared_data, tmp_path):
    yaml_text = """
name: resume
inputs: ["{web}/pages-0001.warc.gz"]
output: {out}
ray: {{num_cpus: 2}}
stages:
  - extract: {{}}
  - language_id: {{languages: [en, de]}}
  - gopher_repetition: {{checkpoint: true}}
  - exact_dedup: {{}}
"""
    # A third of a real WARC (96 pages): the test runs it three times, and what is under test is
    # the resume, not the extractor's throughput.
    from warc_samples import warc_head

    web = tmp_path / "web"
    web.mkdir()
    warc_head(shared_data / "web" / "pages-0001.warc.gz", 97, web / "pages-0001.warc.gz")
    killed_yaml = tmp_path / "killed.yaml"
    killed_yaml.write_text(yaml_text.format(web=web, out=tmp_path / "killed"))
    clean_yaml = tmp_path / "clean.yaml"
    clean_yaml.write_text(yaml_text.format(web=web, out=tmp_path / "clean"))

    proc = _run_cli(killed_yaml)
    marker = tmp_path / "killed" / "extract" / "_COMMITTED"
    deadline = time.monotonic() + 400
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "extract never committed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
    proc.wait()
    assert not (tmp_path / "killed" / "exact_dedup" / "_COMMITTED").exists()
    extract_parts = {p: p.stat().st_mtime_ns for p in (tmp_path / "killed" / "extract").glob("part-*")}
    assert extract_parts

    # The rerun goes through the same engine in this process (the session's Ray): what is under test
    # is what the killed driver left behind; a second `curate run` would only add a Ray start.
    run_pipeline(load_pipeline(killed_yaml), RunOptions(progress=False))
    summary = json.loads((tmp_path / "killed" / "_summary.json").read_text())
    extract = next(s for s in summary["stages"] if s["stage"] == "extract")
    assert extract["counters"].get("skipped_resumed") == 1  # not re-extracted
    assert {p: p.stat().st_mtime_ns for p in extract_parts} == extract_parts

    # The uninterrupted run goes through the same engine in this process (the session's Ray): what
    # is under test is the killed driver's resume, and a third `curate run` would only add a Ray start.
    clean = run_pipeline(load_pipeline(clean_yaml), RunOptions(progress=False))
    killed_docs = _ids_texts(tmp_path / "killed" / "exact_dedup")
    assert len(killed_docs) > 40, len(killed_docs)
    assert killed_docs == _ids_texts(clean.final_dir)
