"""Pipeline YAML validation: errors name the file, the key path and what is allowed."""
from __future__ import annotations

from pathlib import Path

import pytest

from curate.config import ConfigError, load_pipeline, parse_size, pipeline_from_dict
from curate.plan_graph import build_segments


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def test_valid_pipeline_segments(tmp_path):
    p = _write(tmp_path, """
name: t
inputs: [a.parquet]
output: out
ray: {num_cpus: 2, object_store_memory: 512MB}
stages:
  - language_id: {languages: [en], threshold: 0.5}
  - gopher_quality: {}
  - exact_dedup: {}
  - fineweb: {checkpoint: true, name: final}
""")
    cfg = load_pipeline(p)
    assert cfg.ray.object_store_memory == 512_000_000
    segs = build_segments(cfg)
    # row-wise filters fuse into the dedup's reads (no segment of their own); the dedup commits;
    # the last stage commits.
    assert [[s.name for s in seg.stages] for seg in segs] == [
        ["language_id", "gopher_quality", "exact_dedup"], ["final"]]
    assert [seg.mode for seg in segs] == ["cluster", "parquet"]  # exact dedup: identify, then remove
    assert [s.name for s in segs[0].pre] == ["language_id", "gopher_quality"]


def test_step_resources_apply_to_every_step():
    """num_cpus and memory: the most any stage of the step asks; concurrency: the smallest asked,
    else the run's workers, else the cluster's CPUs / num_cpus."""
    from curate.resources import step_resources

    cfg = pipeline_from_dict({"inputs": ["a.parquet"], "output": "o", "stages": [
        {"fineweb": {"num_cpus": 2, "memory": "2GB"}}, {"exact_dedup": {"concurrency": 3}},
        {"minhash_dedup": {"memory": "1GB", "num_cpus": 0.5}}]})
    segs = build_segments(cfg)
    assert [seg.mode for seg in segs] == ["cluster", "cluster"]
    assert step_resources(segs[0].stages, None, 8).map_args() == {
        "num_cpus": 2, "memory": 2_000_000_000, "concurrency": 3}
    dedup = step_resources(segs[1].stages, None, 8)
    assert dedup.map_args() == {"num_cpus": 0.5, "memory": 1_000_000_000, "concurrency": 16}
    assert dedup.asked is None and step_resources(segs[1].stages, 5, 8).concurrency == 5


def test_unknown_stage_suggests(tmp_path):
    p = _write(tmp_path, "output: o\nstages:\n  - gopher_qualty: {}\n")
    with pytest.raises(ConfigError) as e:
        load_pipeline(p)
    msg = str(e.value)
    assert str(p) in msg and "stages[0]" in msg and "gopher_quality" in msg and "allowed:" in msg


def test_misspelled_key_names_path_and_allowed(tmp_path):
    p = _write(tmp_path, "output: o\nstages:\n  - exact_dedup: {normalise: true}\n")
    with pytest.raises(ConfigError) as e:
        load_pipeline(p)
    msg = str(e.value)
    assert "stages[0].exact_dedup.normalise" in msg
    assert "did you mean 'normalize'" in msg and "allowed: keep, normalize" in msg


def test_wrong_type(tmp_path):
    p = _write(tmp_path, "output: o\nstages:\n  - language_id: {threshold: high}\n")
    with pytest.raises(ConfigError, match=r"stages\[0\]\.language_id\.threshold"):
        load_pipeline(p)


def test_top_level_errors_all_reported(tmp_path):
    p = _write(tmp_path, "outptu: o\nseed: x\nstages:\n  - exact_dedup: {}\n")
    with pytest.raises(ConfigError) as e:
        load_pipeline(p)
    msg = str(e.value)
    assert "outptu" in msg and "seed" in msg and "output" in msg


def test_invalid_yaml_and_missing_file(tmp_path):
    p = _write(tmp_path, "stages: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline(p)
    with pytest.raises(ConfigError, match="not found"):
        load_pipeline(tmp_path / "nope.yaml")


def test_duplicate_stage_names():
    with pytest.raises(ConfigError, match="used twice"):
        pipeline_from_dict({"output": "o", "stages": [{"fineweb": {}}, {"fineweb": {}}]})


def test_sizes():
    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size(1000) == 1000
    with pytest.raises(ValueError):
        parse_size("lots")


def test_validate_cli_on_sample_pipeline():
    from typer.testing import CliRunner

    from curate.cli import app

    repo = Path(__file__).resolve().parents[1]
    res = CliRunner().invoke(app, ["validate", str(repo / "pipelines" / "sample.yaml")])
    assert res.exit_code == 0, res.output
    assert "valid" in res.output
    bad = CliRunner().invoke(app, ["validate", str(repo / "nonexistent.yaml")])
    assert bad.exit_code == 2
