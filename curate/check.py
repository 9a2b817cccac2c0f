"""`curate check OUTPUT`: verify a finished run — committed, complete, no duplicate documents."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io import COMMIT_MARKER, STATS_FILE, TASKS_DIR, read_json


@dataclass
class CheckReport:
    stages: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_stage(folder: Path) -> tuple[dict, list[str]]:
    problems: list[str] = []
    info = {"stage": folder.name, "committed": (folder / COMMIT_MARKER).is_file()}
    if not info["committed"]:
        return info, [f"{folder}: not committed (run interrupted or still running)"]
    commit = read_json(folder / COMMIT_MARKER)
    if commit.get("mode") == "job":  # pools/plan/shard verify their own artefacts
        info.update(rows=0, parts=0)
        return info, problems
    parts = sorted(folder.glob("part-*.parquet"))
    listed = {json.loads(p.read_text()).get("part") for p in (folder / TASKS_DIR).glob("*.json")}
    listed.discard(None)
    names = {p.name for p in parts}
    if names != listed:
        problems.append(f"{folder}: parts on disk and task records differ: "
                        f"extra {sorted(names - listed)}, missing {sorted(listed - names)}")
    rows, ids = 0, []
    for p in parts:
        try:
            table = pq.read_table(p, columns=["id"])
        except Exception as e:  # noqa: BLE001 - any unreadable part is a finding, not a crash
            problems.append(f"{p}: unreadable Parquet ({e})")
            continue
        rows += table.num_rows
        ids.append(table["id"])
    if ids:
        import pyarrow as pa

        all_ids = pa.chunked_array([c for t in ids for c in t.chunks])
        unique = len(pc.unique(all_ids))
        if unique != rows:
            problems.append(f"{folder}: {rows - unique} duplicate document ids")
    if commit.get("rows") != rows:
        problems.append(f"{folder}: commit says {commit.get('rows')} rows, parts hold {rows}")
    stats_path = folder / STATS_FILE
    if stats_path.is_file():
        docs_out = read_json(stats_path)["docs_out"]
        if docs_out != rows:
            problems.append(f"{folder}: stats say {docs_out} documents out, parts hold {rows}")
    info.update(rows=rows, parts=len(parts))
    return info, problems


def check_output(output: Path) -> CheckReport:
    output = Path(output)
    report = CheckReport()
    if not output.is_dir():
        report.problems.append(f"{output}: no such output directory")
        return report
    folders = sorted(p for p in output.iterdir() if p.is_dir() and (
        (p / COMMIT_MARKER).exists() or (p / TASKS_DIR).exists() or any(p.glob("part-*.parquet"))))
    if not folders:
        report.problems.append(f"{output}: holds no stage output")
    for folder in folders:
        info, problems = check_stage(folder)
        report.stages.append(info)
        report.problems.extend(problems)
    return report
