"""The runner on Ray: exact dedup against an independent computation, commits, resume, force."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from curate.config import ConfigError, pipeline_from_dict
from curate.io import COMMIT_MARKER, STATS_FILE, TASKS_DIR
from curate.runner import RunOptions, run_pipeline
from processors.normalize import normalize_for_dedup


def _docs(n: int, seed: int = 0) -> pa.Table:
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        base = f"Paragraph {rng.randrange(n // 3)} tells the reader about things of note."
        text = base if rng.random() < 0.5 else base.upper().replace(" ", "  ")
        rows.append({"id": f"doc-{i:06d}", "source": "cc", "url": f"https://e.org/{i}",
                     "domain": "e.org", "date": None, "text": text})
    return pa.Table.from_pylist(rows)


@pytest.fixture()
def parquet_inputs(tmp_path: Path) -> tuple[list[str], pa.Table]:
    table = _docs(3000)
    paths = []
    for k in range(3):
        p = tmp_path / "in" / f"in-{k}.parquet"
        p.parent.mkdir(exist_ok=True)
        pq.write_table(table.slice(k * 1000, 1000), p)
        paths.append(str(p))
    return paths, table


def _cfg(inputs, output, stages, **kw):
    return pipeline_from_dict({"inputs": inputs, "output": str(output), "stages": stages, **kw})


def _read(folder: Path) -> pa.Table:
    return pads.dataset(str(folder), format="parquet").to_table()


def test_exact_dedup_matches_independent_computation(ray_session, parquet_inputs, tmp_path):
    paths, table = parquet_inputs
    result = run_pipeline(_cfg(paths, tmp_path / "out", [{"exact_dedup": {}}]),
                          RunOptions(progress=False))
    out = _read(result.final_dir)
    # Independent: for each normalised text, the smallest id survives.
    expected: dict[str, str] = {}
    for row in table.to_pylist():
        key = normalize_for_dedup(row["text"])
        expected[key] = min(expected.get(key, row["id"]), row["id"])
    assert sorted(out["id"].to_pylist()) == sorted(expected.values())
    stats = json.loads((tmp_path / "out" / "exact_dedup" / STATS_FILE).read_text())
    assert stats["docs_in"] == 3000
    assert stats["docs_out"] == len(expected)
    assert stats["drops"] == {"exact_duplicate": 3000 - len(expected)}
    assert (tmp_path / "out" / "exact_dedup" / COMMIT_MARKER).is_file()


def test_resume_skips_committed_and_force_redoes(ray_session, parquet_inputs, tmp_path):
    paths, _ = parquet_inputs
    cfg = _cfg(paths, tmp_path / "out", [{"fineweb": {}}, {"exact_dedup": {}}])
    first = run_pipeline(cfg, RunOptions(progress=False))
    part_times = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("part-*.parquet")}
    second = run_pipeline(cfg, RunOptions(progress=False))
    assert all(s.counters.get("skipped_resumed") == 1 for s in second.stats)
    assert {p: p.stat().st_mtime_ns for p in part_times} == part_times  # nothing rewritten
    assert [s.docs_out for s in second.stats] == [s.docs_out for s in first.stats]
    third = run_pipeline(cfg, RunOptions(progress=False, force=True))
    assert not any(s.counters.get("skipped_resumed") for s in third.stats)
    assert sorted(_read(third.final_dir)["id"].to_pylist()) == sorted(
        _read(first.final_dir)["id"].to_pylist())


def test_interrupted_segment_reruns_only_unfinished_tasks(ray_session, parquet_inputs, tmp_path):
    paths, table = parquet_inputs
    cfg = _cfg(paths, tmp_path / "out", [{"wikitext_detok": {"checkpoint": True}}])
    full = run_pipeline(cfg, RunOptions(progress=False))
    folder = full.final_dir
    ids_full = sorted(_read(folder)["id"].to_pylist())
    assert len(ids_full) == table.num_rows
    # Simulate a crash after two of three tasks: no commit, one task's marker and part missing.
    fingerprint = json.loads((folder / COMMIT_MARKER).read_text())["fingerprint"]
    (folder / COMMIT_MARKER).unlink()
    markers = sorted((folder / TASKS_DIR).glob("*.json"))
    victim = json.loads(markers[0].read_text())
    markers[0].unlink()
    (folder / victim["part"]).unlink()
    kept_mtimes = {m.name: m.stat().st_mtime_ns for m in markers[1:]}
    (folder / "_RUNNING").write_text(json.dumps({"fingerprint": fingerprint}))
    again = run_pipeline(cfg, RunOptions(progress=False))
    assert sorted(_read(again.final_dir)["id"].to_pylist()) == ids_full
    assert {m.name: m.stat().st_mtime_ns for m in markers[1:]} == kept_mtimes  # not redone
    assert again.stats[0].docs_in == table.num_rows  # stats still cover every task


def test_changed_settings_refuse_stale_commit(ray_session, parquet_inputs, tmp_path):
    paths, _ = parquet_inputs
    run_pipeline(_cfg(paths, tmp_path / "out", [{"exact_dedup": {}}]), RunOptions(progress=False))
    other = _cfg(paths, tmp_path / "out", [{"exact_dedup": {"normalize": False}}])
    with pytest.raises(ConfigError, match="--force"):
        run_pipeline(other, RunOptions(progress=False))


def test_same_output_with_one_and_two_workers(ray_session, parquet_inputs, tmp_path):
    paths, _ = parquet_inputs
    stages = [{"fineweb": {}}, {"exact_dedup": {}}]
    a = run_pipeline(_cfg(paths, tmp_path / "a", stages), RunOptions(progress=False, workers=1))
    b = run_pipeline(_cfg(paths, tmp_path / "b", stages), RunOptions(progress=False, workers=2))
    ta = _read(a.final_dir).sort_by("id")
    tb = _read(b.final_dir).sort_by("id")
    assert ta.equals(tb)
    names_a = sorted(p.name for p in a.final_dir.glob("part-*.parquet"))
    names_b = sorted(p.name for p in b.final_dir.glob("part-*.parquet"))
    assert names_a == names_b


def test_output_root_reads_as_a_dataset_and_row_wise_stages_fuse(ray_session, parquet_inputs, tmp_path):
    """(1) The run summary is `_summary.json`: `pyarrow.dataset(OUTPUT)` reads every step's
    documents and nothing else (an older run's `summary.json` at the root is removed).
    (2) A row-wise stage before a dedup step runs in that step's reads: no folder of parts of its
    own (no extra write and read of the corpus), the same documents and stats as committing it."""
    from curate.check import check_output

    paths, _ = parquet_inputs
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    separate = run_pipeline(_cfg(paths, out, [{"fineweb": {"checkpoint": True}}, {"exact_dedup": {}}]),
                            RunOptions(progress=False))
    assert json.loads((out / "_summary.json").read_text())["stages"][-1]["stage"] == "exact_dedup"
    assert not (out / "summary.json").exists()
    ds = pads.dataset(str(out))
    assert ds.files and all(Path(f).name.startswith("part-") for f in ds.files)
    table = ds.to_table(columns=["id", "text"])
    assert table.num_rows == sum(s.docs_out for s in separate.stats)  # fineweb's parts + dedup's parts
    assert table["id"].null_count == 0

    fused = run_pipeline(_cfg(paths, tmp_path / "fused", [{"fineweb": {}}, {"exact_dedup": {}}]),
                         RunOptions(progress=False))
    assert not list((tmp_path / "fused" / "fineweb").glob("part-*")), "fineweb wrote parts of its own"
    assert not (tmp_path / "fused" / "fineweb" / COMMIT_MARKER).exists()
    commit = json.loads((tmp_path / "fused" / "exact_dedup" / COMMIT_MARKER).read_text())
    assert commit["stages"] == ["fineweb", "exact_dedup"]
    assert sorted(_read(fused.final_dir)["id"].to_pylist()) == sorted(_read(separate.final_dir)["id"].to_pylist())
    for f, s in zip(fused.stats, separate.stats):
        assert (f.stage, f.docs_in, f.docs_out, dict(f.drops)) == (s.stage, s.docs_in, s.docs_out, dict(s.drops))
    report = check_output(tmp_path / "fused")
    assert report.ok, report.problems


def test_changed_input_file_reruns_and_unchanged_reuses(ray_session, parquet_inputs, tmp_path):
    paths, table = parquet_inputs
    cfg = _cfg(paths, tmp_path / "out", [{"exact_dedup": {}}])
    run_pipeline(cfg, RunOptions(progress=False))
    same = run_pipeline(cfg, RunOptions(progress=False))
    assert same.stats[0].counters.get("skipped_resumed") == 1
    # Rewrite one input in place: same name, other content.
    pq.write_table(_docs(1000, seed=7).slice(0, 400), paths[0])
    again = run_pipeline(cfg, RunOptions(progress=False))
    assert not again.stats[0].counters.get("skipped_resumed")
    assert again.stats[0].docs_in == 2400
    assert _read(again.final_dir).num_rows == again.stats[0].docs_out


def test_changed_stage_code_reruns_that_step_only(ray_session, parquet_inputs, tmp_path, monkeypatch):
    from curate import fingerprint

    paths, _ = parquet_inputs
    cfg = _cfg(paths, tmp_path / "out", [{"fineweb": {"checkpoint": True}}, {"exact_dedup": {}}])
    run_pipeline(cfg, RunOptions(progress=False))
    real = fingerprint.stage_code_version
    monkeypatch.setattr(fingerprint, "stage_code_version",
                        lambda kind: real(kind) + ("+edited" if kind == "exact_dedup" else ""))
    again = run_pipeline(cfg, RunOptions(progress=False))
    assert again.stats[0].counters.get("skipped_resumed") == 1  # fineweb: its code is unchanged
    assert not again.stats[1].counters.get("skipped_resumed")  # exact_dedup: new code, run again
    assert again.stats[1].docs_in == 3000


def test_exact_dedup_resumes_its_finished_parts(ray_session, parquet_inputs, tmp_path):
    """Exact dedup removes duplicates part by part, each part a task with its own record: after a
    crash, the parts written before it are kept, not rewritten, and the stats still cover all."""
    paths, _ = parquet_inputs
    cfg = _cfg(paths, tmp_path / "out", [{"exact_dedup": {}}])
    full = run_pipeline(cfg, RunOptions(progress=False))
    folder = full.final_dir
    ids_full = sorted(_read(folder)["id"].to_pylist())
    stats_full = json.loads((folder / STATS_FILE).read_text())
    # A crash after all but one part: no commit, that part's record and part gone.
    fingerprint = json.loads((folder / COMMIT_MARKER).read_text())["fingerprint"]
    (folder / COMMIT_MARKER).unlink()
    markers = [m for m in sorted((folder / TASKS_DIR).glob("*.json")) if json.loads(m.read_text())["part"]]
    assert len(markers) == len(paths)  # one per input part
    victim = json.loads(markers[0].read_text())
    markers[0].unlink()
    (folder / victim["part"]).unlink()
    kept = {m.name: m.stat().st_mtime_ns for m in markers[1:]}
    kept_parts = {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*.parquet")}
    (folder / "_RUNNING").write_text(json.dumps({"fingerprint": fingerprint}))
    again = run_pipeline(cfg, RunOptions(progress=False))
    assert {m.name: m.stat().st_mtime_ns for m in markers[1:]} == kept  # not redone
    assert {n: (folder / n).stat().st_mtime_ns for n in kept_parts} == kept_parts
    assert markers[0].is_file()
    assert sorted(_read(folder)["id"].to_pylist()) == ids_full
    stats = json.loads((folder / STATS_FILE).read_text())
    for key in ("docs_in", "docs_out", "drops", "by_source"):
        assert stats[key] == stats_full[key], key
    assert again.stats[0].docs_in == 3000


def test_worker_killed_in_exact_dedup_removal_counts_once(ray_session, parquet_inputs, tmp_path):
    """A removal task's process dies after writing some rows: Ray retries it; the retried part
    overwrites its part and record, so the stats equal a clean run's."""
    from curate.check import check_output

    paths, _ = parquet_inputs
    marker = tmp_path / "killed"
    faulty = run_pipeline(_cfg(paths, tmp_path / "f", [
        {"exact_dedup": {}}, {"fault_inject": {"marker": str(marker), "after_rows": 300}}]),
        RunOptions(progress=False))
    assert marker.exists()  # the kill happened
    clean = run_pipeline(_cfg(paths, tmp_path / "c", [{"exact_dedup": {}}]), RunOptions(progress=False))
    assert sorted(_read(faulty.final_dir)["id"].to_pylist()) == sorted(_read(clean.final_dir)["id"].to_pylist())
    f, c = faulty.stats[0].to_dict(), clean.stats[0].to_dict()
    for key in ("docs_in", "docs_out", "drops", "by_source"):
        assert f[key] == c[key], key
    assert faulty.stats[1].docs_in == faulty.stats[1].docs_out == clean.stats[0].docs_out
    report = check_output(tmp_path / "f")
    assert report.ok, report.problems


def test_check_finds_double_counts_and_duplicate_ids(ray_session, parquet_inputs, tmp_path):
    """`curate check` on Ray: a stage whose counts do not balance (a task counted twice) and a
    part copied under another name (ids twice, a part no record names) are each reported."""
    import shutil

    from curate.check import check_output

    paths, _ = parquet_inputs
    out = tmp_path / "out"
    run_pipeline(_cfg(paths, out, [{"fineweb": {"checkpoint": True}}, {"exact_dedup": {}}]), RunOptions(progress=False))
    assert check_output(out).ok
    stats_path = out / "fineweb" / STATS_FILE
    good = stats_path.read_text()
    st = json.loads(good)
    st["docs_in"] += 1000  # one input part's task counted twice
    stats_path.write_text(json.dumps(st))
    problems = check_output(out).problems
    assert any("'fineweb'" in p and "counted twice or lost" in p for p in problems), problems
    assert not any("stage 'exact_dedup'" in p for p in problems), problems
    stats_path.write_text(good)
    part = sorted((out / "exact_dedup").glob("part-*.parquet"))[0]
    shutil.copy(part, part.with_name("part-copy.parquet"))
    rows = pq.read_metadata(part).num_rows
    problems = check_output(out).problems
    assert any(f"{rows} duplicate document ids" in p for p in problems), problems
    assert any("extra ['part-copy.parquet']" in p for p in problems), problems
