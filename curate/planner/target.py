"""The target: the documents whose loss the planner minimises.

A plan is only as good as its target. Three kinds, all measured on documents that no candidate
pool trains on:

- `sources`: held-out documents of named sources (e.g. `{wiki: 1.0}`), weighted per source. The
  documents are drawn from the pools of that source and removed from those pools' training
  streams, so no pool is rewarded for holding its own validation set.
- `pools`: the same for named pools (`{cc_stem_high: 0.5, wiki_unknown_high: 0.5}`).
- `path`: an external file or folder of text (.txt, one document per blank-line-separated block),
  JSONL (a `text` field; .gz allowed) or Parquet (a `text` column): documents like the ones the
  model must be good at. Candidate documents whose exact text is also in the target are dropped
  from training (counted and reported), so a pool cannot win by containing the target.

The default (`TargetSpec()` with nothing set) is `auto`: held-out documents of the *reference
source*, i.e. the source whose pools have the highest mean quality-classifier score in
pools.json (`score`; the classifier was trained to recognise that source, e.g. WikiText in the
sample pipeline). Without scores, every source with equal weight. A uniform mix of the candidate
pools themselves is never the default: a pool would then look valuable for being a slice of the
target (a third of the target for one of three pools).
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PlanInputError
from .pools import PoolsFile

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)


@dataclass
class TargetSpec:
    """What the planner optimises for; see the module docstring. At most one of the three."""

    sources: dict[str, float] = field(default_factory=dict)
    pools: dict[str, float] = field(default_factory=dict)
    path: str | None = None
    text_field: str = "text"

    def __post_init__(self) -> None:
        given = sum(bool(x) for x in (self.sources, self.pools, self.path))
        if given > 1:
            raise PlanInputError("target: give sources, pools or path, not several")
        for what, d in (("sources", self.sources), ("pools", self.pools)):
            for k, v in d.items():
                if not v > 0:
                    raise PlanInputError(f"target {what}: weight of {k!r} must be > 0, got {v}")

    @classmethod
    def from_config(cls, cfg: Any) -> "TargetSpec":
        """From YAML / CLI: None, a path string, or {sources|pools: {name: w} | [names], path: ...}."""
        if cfg is None or isinstance(cfg, TargetSpec):
            return cfg or cls()
        if isinstance(cfg, str):
            return cls(path=cfg)
        if not isinstance(cfg, dict):
            raise PlanInputError(f"target: expected a mapping or a path, got {cfg!r}")
        unknown = set(cfg) - {"sources", "pools", "path", "text_field"}
        if unknown:
            raise PlanInputError(f"target: unknown key(s) {sorted(unknown)}; use sources, pools, path, text_field")

        def weights(v: Any) -> dict[str, float]:
            if v is None:
                return {}
            if isinstance(v, (list, tuple)):
                return {str(x): 1.0 for x in v}
            return {str(k): float(x) for k, x in dict(v).items()}

        return cls(sources=weights(cfg.get("sources")), pools=weights(cfg.get("pools")), path=cfg.get("path"),
                   text_field=cfg.get("text_field", "text"))

    @property
    def kind(self) -> str:
        return "path" if self.path else "pools" if self.pools else "sources" if self.sources else "auto"

    def resolve(self, pf: PoolsFile) -> "ResolvedTarget":
        """Which pools give held-out documents, with what weight (or the external path)."""
        if self.path:
            return ResolvedTarget("path", {}, self.path, f"external documents at {self.path}", self.text_field)
        names = {p.name for p in pf.pools}
        if self.pools:
            missing = sorted(set(self.pools) - names)
            if missing:
                raise PlanInputError(f"target pools {missing} are not in pools.json (pools: {sorted(names)})")
            tot = sum(self.pools.values())
            return ResolvedTarget("pools", {k: v / tot for k, v in self.pools.items()}, None,
                                  "held-out documents of pools " + ", ".join(f"{k} ({v / tot:.2f})" for k, v in self.pools.items()))
        sources = dict(self.sources)
        how = "named"
        if not sources:
            sources, how = _reference_sources(pf)
        have = {p.source for p in pf.pools}
        missing = sorted(set(sources) - have)
        if missing:
            raise PlanInputError(f"target sources {missing} are not in pools.json (sources: {sorted(have)})")
        tot = sum(sources.values())
        by_pool: dict[str, float] = {}
        for s, w in sources.items():
            members = [p for p in pf.pools if p.source == s]
            size = sum(p.unique_tokens for p in members)
            for p in members:  # within a source, pools weigh as much as they hold
                by_pool[p.name] = w / tot * p.unique_tokens / size
        desc = "held-out documents of source(s) " + ", ".join(f"{s} ({w / tot:.2f})" for s, w in sources.items())
        return ResolvedTarget("sources", by_pool, None, f"{desc} [{how}]")


@dataclass
class ResolvedTarget:
    kind: str  # sources | pools | path
    pool_weights: dict[str, float]  # pools that give held-out documents -> weight in the target
    path: str | None
    description: str
    text_field: str = "text"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "pool_weights": self.pool_weights, "path": self.path,
                "description": self.description}


def _reference_sources(pf: PoolsFile) -> tuple[dict[str, float], str]:
    """The source whose pools score highest with the quality classifier (token-weighted mean)."""
    scored: dict[str, list[float]] = {}
    for p in pf.pools:
        if p.score is not None:
            acc = scored.setdefault(p.source, [0.0, 0.0])
            acc[0] += p.score * p.unique_tokens
            acc[1] += p.unique_tokens
    if scored:
        means = {s: a / b for s, (a, b) in scored.items() if b > 0}
        best = max(means, key=lambda s: means[s])
        return {best: 1.0}, (f"default: the reference source, highest mean quality score "
                             f"{means[best]:.3f} (" + ", ".join(f"{s} {m:.3f}" for s, m in sorted(means.items())) + ")")
    return {s: 1.0 for s in sorted({p.source for p in pf.pools})}, "default: no quality scores, every source equally"


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith((".", "_"))
                       and f.name.endswith(TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES))
        if not files:
            raise PlanInputError(f"target {path}: no .txt, .jsonl or .parquet files in the folder")
        return files
    if not path.exists():
        raise PlanInputError(f"target {path}: does not exist")
    return [path]


def read_target_texts(path: str | Path, text_field: str = "text") -> list[str]:
    """Documents of an external target: .txt (blank-line-separated), JSONL (`text_field`), Parquet."""
    out: list[str] = []
    for f in _files(Path(path)):
        name = f.name.lower()
        if name.endswith(PARQUET_SUFFIXES):
            import pyarrow.parquet as pq

            schema = pq.read_schema(f)
            if text_field not in schema.names:
                raise PlanInputError(f"target {f}: no column {text_field!r} (columns: {schema.names})")
            out += [t for t in pq.read_table(f, columns=[text_field]).column(text_field).to_pylist() if t]
        elif name.endswith(JSONL_SUFFIXES):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(f, "rt", encoding="utf-8") as fh:
                for i, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise PlanInputError(f"target {f}: line {i} is not JSON ({e.msg})") from None
                    t = rec.get(text_field) if isinstance(rec, dict) else None
                    if t:
                        out.append(str(t))
        else:
            blocks = [b.strip() for b in f.read_text(encoding="utf-8").split("\n\n")]
            out += [b for b in blocks if b]
    if not out:
        raise PlanInputError(f"target {path}: no documents with text")
    return out
