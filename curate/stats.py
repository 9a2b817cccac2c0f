"""Per-stage statistics: documents in/out, bytes, drops by named reason, time.

Workers produce one `StageStats` per stage per task; the driver sums them. Summing plain counters
(rather than incrementing a shared actor) keeps stats exactly-once: a retried task's first attempt
never reports, so nothing is counted twice.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc


def text_bytes(table: pa.Table) -> int:
    """UTF-8 bytes of the `text` column (0 when there is none)."""
    if "text" not in table.column_names or table.num_rows == 0:
        return 0
    lengths = pc.binary_length(table["text"])
    return int(pc.sum(lengths).as_py() or 0)


def source_counts(table: pa.Table) -> dict[str, int]:
    """Documents per value of the `source` column ({} without one; a null source counts as "")."""
    if "source" not in table.column_names or table.num_rows == 0:
        return {}
    return {("" if d["values"] is None else str(d["values"])): int(d["counts"])
            for d in pc.value_counts(table.column("source")).to_pylist()}


@dataclass
class StageStats:
    stage: str
    kind: str
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    drops: Counter = field(default_factory=Counter)
    counters: Counter = field(default_factory=Counter)
    busy_s: float = 0.0  # summed worker seconds spent in this stage
    wall_s: float = 0.0  # driver wall time of the segment the stage ran in
    tasks: int = 0
    # source name → {"docs_in", "docs_out", "drops": {reason: n}, "applied": bool}
    by_source: dict = field(default_factory=dict)

    def count_source(self, source: str, docs_in: int, docs_out: int, drops: Counter | dict,
                     applied: bool = True, counters: dict | None = None) -> None:
        entry = self.by_source.setdefault(source, {"docs_in": 0, "docs_out": 0, "drops": {},
                                                   "applied": applied})
        entry["docs_in"] += docs_in
        entry["docs_out"] += docs_out
        entry["applied"] = entry["applied"] or applied
        for reason, n in drops.items():
            entry["drops"][reason] = entry["drops"].get(reason, 0) + n
        for name, n in (counters or {}).items():  # the stage's headline counters, per source
            entry.setdefault("counters", {})[name] = entry.get("counters", {}).get(name, 0) + n

    def add(self, other: "StageStats") -> None:
        self.docs_in += other.docs_in
        self.docs_out += other.docs_out
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.drops.update(other.drops)
        self.counters.update(other.counters)
        self.busy_s += other.busy_s
        self.tasks += other.tasks
        for src, e in other.by_source.items():
            self.count_source(src, e["docs_in"], e["docs_out"], e["drops"], e["applied"], e.get("counters"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["drops"] = dict(sorted(self.drops.items()))
        d["counters"] = dict(sorted(self.counters.items()))
        d["dropped"] = sum(self.drops.values())
        d["busy_s"] = round(self.busy_s, 3)
        d["wall_s"] = round(self.wall_s, 3)
        d["by_source"] = {k: dict(v, drops=dict(sorted(v["drops"].items())))
                          for k, v in sorted(self.by_source.items())}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageStats":
        return cls(
            stage=d["stage"], kind=d["kind"], docs_in=d["docs_in"], docs_out=d["docs_out"],
            bytes_in=d["bytes_in"], bytes_out=d["bytes_out"], drops=Counter(d.get("drops", {})),
            counters=Counter(d.get("counters", {})), busy_s=d.get("busy_s", 0.0),
            wall_s=d.get("wall_s", 0.0), tasks=d.get("tasks", 0),
            by_source={k: dict(v, drops=dict(v["drops"])) for k, v in d.get("by_source", {}).items()},
        )


def merge(parts: Iterable[dict[str, Any]]) -> dict[str, StageStats]:
    """Sum per-task stats dicts (stage name → dict) into one StageStats per stage, in order."""
    out: dict[str, StageStats] = {}
    for task in parts:
        for name, d in task.items():
            s = StageStats.from_dict(d)
            if name in out:
                out[name].add(s)
            else:
                out[name] = s
    return out


def summary_table(stats: list[StageStats], title: str = "curate run summary"):
    """A rich Table: one row per stage with in/out, drops by reason and time."""
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col, justify in [("stage", "left"), ("kind", "left"), ("docs in", "right"),
                         ("docs out", "right"), ("dropped", "right"), ("MB out", "right"),
                         ("wall s", "right"), ("drop reasons / notes", "left")]:
        table.add_column(col, justify=justify)
    for s in stats:
        # Reasons carry their stage's kind as a prefix in the stats; the row already names it.
        reasons = ", ".join(f"{k.removeprefix(s.kind + ':')}={v}" for k, v in s.drops.most_common())
        if not reasons and s.counters and not _summary_counters(s.kind):  # pools, plan, shard: their figures
            shown = [(k, v) for k, v in s.counters.items() if k != "skipped_resumed"][:3]
            reasons = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in shown)
        named = [(k, s.counters[k]) for k in _summary_counters(s.kind) if k in s.counters]
        if named:
            reasons = (reasons + "; " if reasons else "") + ", ".join(f"{k}={v:,}" for k, v in named)
        notes = s.counters.get("skipped_resumed")
        if notes:
            reasons = (reasons + "; " if reasons else "") + "resumed from commit"
        table.add_row(s.stage, s.kind, f"{s.docs_in:,}", f"{s.docs_out:,}",
                      f"{sum(s.drops.values()):,}", f"{s.bytes_out / 1e6:,.2f}",
                      f"{s.wall_s:,.1f}", reasons or "-")
    return table


def _summary_counters(kind: str) -> tuple[str, ...]:
    from curate.registry import registry

    cls = registry().get(kind)
    return tuple(getattr(cls, "summary_counters", ()))


def source_table(stats: list[StageStats]):
    """Per-source view: one column per source; a cell shows in → out and the drops by reason, or
    'not run' where the stage let that source pass untouched."""
    from rich.table import Table

    sources = sorted({src for s in stats for src in s.by_source})
    table = Table(title="per source: which stages ran on which source, and what each dropped",
                  show_lines=True)
    table.add_column("stage")
    for src in sources:
        table.add_column(src or "(none)")
    for s in stats:
        cells = []
        for src in sources:
            e = s.by_source.get(src)
            if e is None:
                cells.append("")
            elif not e["applied"]:
                cells.append(f"not run ({e['docs_in']:,})")
            else:
                reasons = ", ".join(f"{k.removeprefix(s.kind + ':')}={v}" for k, v in
                                    sorted(e["drops"].items(), key=lambda kv: -kv[1]))
                named = ", ".join(f"{k}={e['counters'][k]:,}" for k in _summary_counters(s.kind)
                                  if e.get("counters", {}).get(k))
                reasons = "; ".join(x for x in (reasons, named) if x)
                cells.append(f"{e['docs_in']:,} → {e['docs_out']:,}" + (f"\n{reasons}" if reasons else ""))
        table.add_row(s.stage, *cells)
    return table
