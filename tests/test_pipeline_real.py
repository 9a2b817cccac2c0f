"""The whole spine on the real shared data: counts, pyarrow.dataset, resume after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest
from warcio.archiveiterator import ArchiveIterator

from curate.config import pipeline_from_dict
from curate.runner import RunOptions, run_pipeline

REPO = Path(__file__).resolve().parents[1]
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
    cfg = pipeline_from_dict({
        "inputs": inputs, "output": str(out), "seed": 1,
        "stages": [{"extract": {}}, {"language_id": {"languages": ["en", "de"]}},
                   {"gopher_repetition": {}}, {"fineweb": {"checkpoint": True}},
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
    # Every HTML response and WET record is a document or a counted drop; nothing vanishes.
    assert extract.docs_in == html + other + wet
    assert extract.docs_out + sum(extract.drops.values()) == extract.docs_in
    assert extract.drops.get("not_html", 0) == other
    # Stage chaining: each stage's input is the previous stage's output.
    for prev, nxt in zip(result.stats, result.stats[1:]):
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
    assert set(table["lang"].to_pylist()) <= {"en", "de"}
    assert all(t and t.strip() for t in table["text"].to_pylist())
    summary = json.loads((result.output / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == [
        "extract", "language_id", "gopher_repetition", "fineweb", "exact_dedup"]


def _run_cli(yaml_path: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([CURATE, "run", str(yaml_path), "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, **kw)


def _ids_texts(folder: Path) -> list[tuple[str, str]]:
    t = pads.dataset(str(folder), format="parquet").to_table(columns=["id", "text"])
    return sorted(zip(t["id"].to_pylist(), t["text"].to_pylist()))


@pytest.mark.slow
def test_sigkill_after_extract_then_resume_equals_uninterrupted(shared_data, tmp_path):
    yaml_text = """
name: resume
inputs: ["{web}/pages-0001.warc.gz", "{web}/pages-0002.warc.gz"]
output: {out}
ray: {{num_cpus: 2}}
stages:
  - extract: {{}}
  - language_id: {{languages: [en, de]}}
  - gopher_repetition: {{checkpoint: true}}
  - exact_dedup: {{}}
"""
    web = shared_data / "web"
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

    again = _run_cli(killed_yaml)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out.decode()
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    extract = next(s for s in summary["stages"] if s["stage"] == "extract")
    assert extract["counters"].get("skipped_resumed") == 1  # not re-extracted
    assert {p: p.stat().st_mtime_ns for p in extract_parts} == extract_parts

    clean = _run_cli(clean_yaml)
    out, _ = clean.communicate(timeout=600)
    assert clean.returncode == 0, out.decode()
    assert _ids_texts(tmp_path / "killed" / "exact_dedup") == _ids_texts(tmp_path / "clean" / "exact_dedup")
