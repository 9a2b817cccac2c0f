"""`curate check OUTPUT`: verify a finished run -- committed, complete, counted once, no duplicates.

Per step folder:

- committed, and the parts on disk are exactly the parts its task records name;
- each part's row count (from its Parquet footer, read by Ray tasks) equals its task record's, and
  their sum equals the commit's and the step's last stage's `docs_out`;
- every stage balances: `docs_in = docs_out + dropped` (drops that count input files, not
  documents, aside), and a stage's `docs_in` is the `docs_out` of the stage before it (the reading
  stages' sum for the first fused stage, the upstream step's rows for a step's first stage);
- no document id twice: the ids are hash-partitioned by Ray and counted per partition, so no
  process holds every id (the driver receives one small row per partition);
- a shard step's shards are re-verified against their manifest (`curate shard verify`).

A double-counted retry shows up as a stage whose counts no longer balance, or whose `docs_out`
disagrees with the rows its parts hold.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.io import COMMIT_MARKER, STATS_FILE, TASKS_DIR, read_json

# Drop reasons that count input files, not documents (a listed input gone at read time).
FILE_DROPS = frozenset({"input_missing"})
FOOTERS_PER_TASK = 64  # Parquet footers one Ray task reads
ROWS_PER_ID_PARTITION = 1_000_000  # ids per hash partition of the duplicate count


@dataclass
class CheckReport:
    stages: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------- Ray tasks
def _footer_rows(paths: list[str]) -> list[tuple[str, int | None, str | None]]:
    """(path, rows, error) from each part's footer; an unreadable part is a finding, not a crash."""
    import pyarrow.parquet as pq

    out = []
    for p in paths:
        try:
            md = pq.read_metadata(p)
            names = md.schema.to_arrow_schema().names
            out.append((p, md.num_rows, None if "id" in names else "no 'id' column"))
        except Exception as e:  # noqa: BLE001 - reported per part
            out.append((p, None, f"unreadable Parquet ({e})"))
    return out


def part_rows(paths: list[str]) -> dict[str, tuple[int | None, str | None]]:
    """Rows of every part, read from the footers by Ray tasks of `FOOTERS_PER_TASK` parts each."""
    import ray

    remote = ray.remote(num_cpus=0.25)(_footer_rows)
    refs = [remote.remote(paths[i:i + FOOTERS_PER_TASK]) for i in range(0, len(paths), FOOTERS_PER_TASK)]
    return {p: (rows, err) for chunk in ray.get(refs) for p, rows, err in chunk}


def _duplicates_in_partition(part: pa.Table) -> pa.Table:
    ids = part.column("id")
    nulls = ids.null_count
    vc = pc.value_counts(ids.drop_null()) if part.num_rows else pa.StructArray.from_arrays(
        [pa.array([], pa.string()), pa.array([], pa.int64())], ["values", "counts"])
    counts = vc.field("counts")
    repeated = pc.greater(counts, 1)
    extra = int(pc.sum(pc.subtract(pc.filter(counts, repeated), 1)).as_py() or 0)
    examples = pc.filter(vc.field("values"), repeated).slice(0, 3).to_pylist()
    return pa.table({"duplicates": [extra], "nulls": [nulls], "examples": [json.dumps(examples)]})


def duplicate_ids(paths: list[str], rows: int) -> tuple[int, int, list[str]]:
    """(extra copies of ids, null ids, a few repeated ids) over the parts, counted per hash
    partition of the id on Ray: the driver gets one row per partition, never the ids."""
    from curate.ray_io import read_parquet_parts

    n = max(1, -(-rows // ROWS_PER_ID_PARTITION))
    ds = read_parquet_parts(paths, columns=["id"])
    if n > 1:
        ds = ds.repartition(n, keys=["id"])  # all copies of an id land in one partition
    else:
        ds = ds.repartition(1)
    dups = nulls = 0
    examples: list[str] = []
    for row in ds.map_batches(_duplicates_in_partition, batch_size=None, batch_format="pyarrow").iter_rows():
        dups += row["duplicates"]
        nulls += row["nulls"]
        examples += json.loads(row["examples"])
    return dups, nulls, examples[:3]


# ---------------------------------------------------------------- per step
def _stage_stats(output: Path, name: str) -> dict[str, Any] | None:
    path = output / name / STATS_FILE
    return read_json(path) if path.is_file() else None


def _balance(stage: str, st: dict[str, Any]) -> list[str]:
    dropped = sum(n for reason, n in st.get("drops", {}).items() if reason.split(":")[-1] not in FILE_DROPS)
    if st["docs_in"] != st["docs_out"] + dropped:
        return [f"stage {stage!r}: {st['docs_in']:,} documents in, but {st['docs_out']:,} out + {dropped:,} "
                f"dropped = {st['docs_out'] + dropped:,} (counted twice or lost)"]
    return []


def _chain(output: Path, commit: dict[str, Any]) -> tuple[list[str], int | None]:
    """Each stage of the step balances and takes in what the stage before it let out. Returns the
    problems and the documents the step let out (the reading stages' sum when only they ran)."""
    from curate.registry import is_source, registry

    problems: list[str] = []
    stats = [(name, _stage_stats(output, name)) for name in commit.get("stages", [])]
    prev_out: int | None = None
    upstream = commit.get("upstream_dir")
    if upstream and (output / upstream / COMMIT_MARKER).is_file():
        prev_out = read_json(output / upstream / COMMIT_MARKER).get("rows")
    readers_out = 0
    for i, (name, st) in enumerate(stats):
        if st is None:
            problems.append(f"stage {name!r}: no {STATS_FILE}")
            prev_out = None
            continue
        problems += _balance(name, st)
        source = st["kind"] in registry() and is_source(st["kind"])
        if source:
            readers_out += st["docs_out"]
            prev_out = readers_out
            continue
        job_without_docs = commit.get("mode") == "job" and st["docs_in"] == 0
        if prev_out is not None and not job_without_docs and st["docs_in"] != prev_out:
            before = stats[i - 1][0] if i else f"step {upstream!r}"
            problems.append(f"stage {name!r}: {st['docs_in']:,} documents in, but {before} let "
                            f"{prev_out:,} out")
        prev_out = st["docs_out"]
    return problems, prev_out


def check_stage(folder: Path) -> tuple[dict, list[str]]:
    """Check one step folder (starts or joins Ray for its per-part and id counts)."""
    from curate.ray_session import ensure_ray, quiet_ray_data

    started = ensure_ray(None)
    quiet_ray_data()
    try:
        return _check_stage(Path(folder))
    finally:
        if started:
            import ray

            ray.shutdown()


def _check_stage(folder: Path) -> tuple[dict, list[str]]:
    problems: list[str] = []
    info: dict[str, Any] = {"stage": folder.name, "committed": (folder / COMMIT_MARKER).is_file()}
    if not info["committed"]:
        return info, [f"{folder}: not committed (run interrupted or still running)"]
    commit = read_json(folder / COMMIT_MARKER)
    chain_problems, step_out = _chain(folder.parent, commit)
    problems += chain_problems
    if commit.get("mode") == "job":  # pools/plan/shard: their own artefacts
        info.update(rows=0, parts=0)
        if (folder / "manifest.json").is_file():
            from curate.shard.verify import verify_shards

            rep = verify_shards(folder)
            problems += [f"{folder}: {p}" for p in rep.problems]
            info.update(shards=rep.shards_checked, tokens=rep.tokens)
        return info, problems
    parts = sorted(folder.glob("part-*.parquet"))
    records = [json.loads(p.read_text()) for p in (folder / TASKS_DIR).glob("*.json")]
    listed = {r["part"]: r.get("rows") for r in records if r.get("part")}
    names = {p.name for p in parts}
    if names != set(listed):
        problems.append(f"{folder}: parts on disk and task records differ: "
                        f"extra {sorted(names - set(listed))}, missing {sorted(set(listed) - names)}")
    rows = 0
    readable = []
    for path, (n, err) in sorted(part_rows([str(p) for p in parts]).items()):
        if n is None or err:
            problems.append(f"{path}: {err}")
        if n is None:
            continue
        readable.append(path)
        rows += n
        name = Path(path).name
        if name in listed and listed[name] is not None and listed[name] != n:
            problems.append(f"{path}: holds {n:,} rows, its task record says {listed[name]:,}")
    if readable and not any("no 'id' column" in p for p in problems):
        dups, nulls, examples = duplicate_ids(readable, rows)
        if dups:
            problems.append(f"{folder}: {dups} duplicate document ids (e.g. {', '.join(map(repr, examples))})")
        if nulls:
            problems.append(f"{folder}: {nulls} documents without an id")
    if commit.get("rows") != rows:
        problems.append(f"{folder}: commit says {commit.get('rows')} rows, parts hold {rows}")
    if step_out is not None and step_out != rows:
        problems.append(f"{folder}: stats of its stages say {step_out} documents out, parts hold {rows}")
    info.update(rows=rows, parts=len(parts))
    return info, problems


def check_output(output: Path, address: str | None = None) -> CheckReport:
    """Check every step folder of a run's output (on the Ray cluster at `address`, or an embedded one)."""
    from curate.ray_session import ensure_ray, quiet_ray_data

    output = Path(output)
    report = CheckReport()
    if not output.is_dir():
        report.problems.append(f"{output}: no such output directory")
        return report
    folders = sorted(p for p in output.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")) and (
        (p / COMMIT_MARKER).exists() or (p / TASKS_DIR).exists() or any(p.glob("part-*.parquet"))))
    if not folders:
        report.problems.append(f"{output}: holds no stage output")
        return report
    started = ensure_ray(address)
    quiet_ray_data()
    try:
        for folder in folders:
            info, problems = _check_stage(folder)
            report.stages.append(info)
            report.problems.extend(problems)
    finally:
        if started:
            import ray

            ray.shutdown()
    return report
