"""pools.json: the planner's input, one entry per pool of candidate training data.

A pool is a slice of the corpus that the planner keeps or drops as a unit: one (source, domain,
quality bucket). The producer (the classifier stage) writes the counts; the planner never needs the
text itself except for proxy runs (`curate plan fit`), which read the optional per-pool Parquet
files (a `text` column).

Schema (version 1), documented in docs/planner.md:

    {"version": 1,
     "tokenizer": "cl100k_base",            # what unique_tokens were counted with (free text)
     "pools": [{"name": "web_high", "source": "cc", "domain": "web", "quality_bucket": "high",
                "documents": 281, "characters": 1234567, "unique_tokens": 300000,
                "path": "pools/web_high",      # optional: a Parquet file or a folder of them
                "quality": 1.0, "rstar": 15.4, # optional priors; a fit overrides them
                "score": 0.83                  # optional mean classifier score (not a prior)
               }, ...]}
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Pool(BaseModel):
    """One pool. Counts are of unique (deduplicated) data: the planner decides repetition."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    source: str
    domain: str
    quality_bucket: str
    documents: int = Field(ge=0)
    characters: int = Field(ge=0)
    unique_tokens: int = Field(gt=0)
    path: str | None = None
    # Optional priors: relative value of one token of this pool (q_i) and its repetition constant
    # (R*_i). Without a fit or these, the planner uses q = 1 and the base law's R*_D.
    quality: float | None = Field(default=None, gt=0)
    rstar: float | None = Field(default=None, gt=0)
    # Mean quality-classifier score of the pool's documents (the `pools` stage writes it). Not a
    # q_i: it orders buckets and picks the default target's reference source (target.py).
    score: float | None = None

    @field_validator("quality_bucket", mode="before")
    @classmethod
    def _bucket_as_str(cls, v: object) -> str:
        # Producers may emit numeric buckets (0..9); keep them as strings so names compare stably.
        return str(v)


class PoolsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    tokenizer: str | None = None
    pools: list[Pool]

    @field_validator("pools")
    @classmethod
    def _unique_names(cls, pools: list[Pool]) -> list[Pool]:
        names = [p.name for p in pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pool names must be unique, got {names}")
        if not pools:
            raise ValueError("pools.json lists no pools")
        return pools


def load_pools(path: str | Path) -> PoolsFile:
    """Read and validate pools.json; relative `path`s resolve against the file's folder."""
    path = Path(path)
    pf = PoolsFile.model_validate(json.loads(path.read_text()))
    for p in pf.pools:
        if p.path and not Path(p.path).is_absolute():
            p.path = str((path.parent / p.path).resolve())
    return pf


def save_pools(pf: PoolsFile, path: str | Path) -> None:
    Path(path).write_text(json.dumps(pf.model_dump(exclude_none=True), indent=2) + "\n")


def parquet_files(pool: Pool) -> list[Path]:
    """The Parquet files of a pool: `path` is one file or a folder of *.parquet (sorted)."""
    if not pool.path:
        raise ValueError(f"pool {pool.name!r} has no `path`: proxy runs need its text")
    p = Path(pool.path)
    if p.is_dir():
        files = sorted(p.glob("*.parquet"))
    elif p.exists():
        files = [p]
    else:
        files = []
    if not files:
        raise FileNotFoundError(f"pool {pool.name!r}: no Parquet files at {p}")
    return files


def iter_texts(pool: Pool) -> Iterator[str]:
    """Yield the `text` column of a pool's Parquet files, in file order."""
    import pyarrow.parquet as pq

    for f in parquet_files(pool):
        table = pq.read_table(f, columns=["text"])
        for t in table.column("text").to_pylist():
            if t:
                yield t
