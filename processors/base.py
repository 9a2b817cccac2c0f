"""The stage contract: small classes over Arrow batches that know nothing about Ray.

A processor is built from its own typed parameters (a pydantic model), loads anything heavy in
`setup()` (called once per worker), and turns one `pyarrow.Table` into a `BatchResult`: the rows
it keeps plus counters. The engine runs processors on Ray, sums the counters, writes the stats.

Row-wise kinds:
- `Source`   turns one input URI into batches of documents (WARC, JSONL, Parquet, ...).
- `Mapper`   adds or rewrites columns; never drops a row.
- `Filter`   returns a keep mask and a reason for each dropped row; the base class counts reasons.

Whole-dataset kinds never move whole documents between workers: a `ClusterDedup` moves ids and
keys (exact and near dedup), a `UnitDedup` moves unit hashes (paragraph dedup); each then removes
rows part by part from the original parts.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Base of every processor's parameters: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProcessorError(RuntimeError):
    """A clear, user-facing error (missing model, bad parameter) raised before work starts."""


@dataclass
class BatchResult:
    """What one processor call returns.

    `drops` maps a named reason to the number of rows dropped for it. `counters` holds any other
    per-stage figure worth summing (bytes read, records skipped, candidate pairs, ...).
    """

    table: pa.Table
    drops: Counter = field(default_factory=Counter)
    counters: Counter = field(default_factory=Counter)
    # What the stage removed and why (dropped documents, cut spans), when it keeps a record of
    # it: the engine writes these rows to `<stage folder>/_removed/<stage name>/`.
    side: pa.Table | None = None


class Processor:
    """Base of all processors. Subclasses set `kind`, `Params`, `requires` and `provides`."""

    kind: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    requires: ClassVar[tuple[str, ...]] = ()  # columns that must exist in the input
    provides: ClassVar[tuple[str, ...]] = ()  # columns this processor adds
    # Whether the engine writes this stage's output (Parquet + commit marker) unless the YAML says
    # otherwise. Expensive or whole-dataset steps checkpoint; cheap row-wise filters fuse forward.
    checkpoint_default: ClassVar[bool] = False
    # Counters shown beside the drop reasons in the run summary (all of them are in _stats.json).
    summary_counters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def setup(self) -> None:
        """Load models or other heavy state; the engine calls it once per worker before any batch."""

    def prepare(self) -> Any:
        """State built once per run on the driver (e.g. the n-gram index of evaluation sets), or
        None. The engine ships it to every worker through the object store and hands it to
        `receive` before `setup`, so workers need no access to the files it was built from. A
        processor used without the engine builds what it needs in `setup`."""
        return None

    def receive(self, state: Any) -> None:
        """Take the state `prepare` built on the driver (called before `setup` on workers)."""

    def check(self) -> None:
        """Fail loudly before any work starts if a dependency, model or file is missing.

        Called once on the driver. Default: run `setup()`, which loads whatever is needed.
        """
        self.setup()


class Mapper(Processor):
    """Adds or rewrites columns of every row."""

    def map(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    def process(self, batch: pa.Table) -> BatchResult:
        return BatchResult(self.map(batch))


class Filter(Processor):
    """Keeps or drops rows. Implement `decide`; counting per reason is done here."""

    def decide(self, batch: pa.Table) -> tuple[np.ndarray, Sequence[str | None]]:
        """Return (keep mask of bool, reason per row: None where kept)."""
        raise NotImplementedError

    def annotate(self, batch: pa.Table) -> pa.Table:
        """Columns to add before deciding (e.g. `lang`, `lang_score`); default: none."""
        return batch

    def superset_rules(self) -> list:
        """`processors.prefilter.MinCountRule`s this filter drops on: "fewer than N (stop) words"
        rules, which any text that is a part of a failing text fails too. The engine hands them to
        an earlier source that can test them on a superset of the text it will produce (the
        extract stage's pre-pass). Default: none."""
        return []

    def process(self, batch: pa.Table) -> BatchResult:
        batch = self.annotate(batch)
        if batch.num_rows == 0:
            return BatchResult(batch)
        keep, reasons = self.decide(batch)
        keep = np.asarray(keep, dtype=bool)
        drops: Counter = Counter(r for r, k in zip(reasons, keep) if not k)
        if None in drops:  # a dropped row must always carry a reason
            drops[f"{self.kind}"] += drops.pop(None)
        return BatchResult(batch.filter(pa.array(keep)), drops)


class Source(Processor):
    """Turns one input URI into batches of documents.

    `read` yields BatchResults; records it could not use are counted in `drops` under a reason
    (`truncated_record`, `not_html`, ...), never silently skipped.
    """

    checkpoint_default: ClassVar[bool] = True

    def read(self, uri: str) -> Iterator[BatchResult]:
        raise NotImplementedError

    def accepts(self, uri: str) -> bool:
        """Whether this source reads the given URI (used to route inputs)."""
        return True

    def list_inputs(self, patterns: list[str]) -> list[str]:
        """Expand globs, folders and listings into the URIs `read` will be called with.

        Runs once on the driver; a pattern that matches nothing is an error, not an empty run.
        """
        from processors.uris import expand_all

        return expand_all(patterns)


class UnitDedup(Processor):
    """A whole-dataset step over parts of documents (paragraphs, lines): parts seen in too many
    documents are removed from all of them (or from all but the first).

    The engine (`curate.unit_runner`) calls, on workers:

    1. `units(batch)`: for each unit worth counting, (row in `batch`, unit index in its document,
       64-bit key). Only these numbers travel: the engine shuffles (key, document, unit) rows on
       the key, counts the distinct documents per key in each partition, and
    2. `remove(batch, rows, units, documents)` gets every input part back, read where it lies,
       with the units to remove (row, unit index, and in how many documents the unit's key was
       seen). It returns the rewritten rows, drops (documents left too short) and counters.

    A key in more than `max_documents` documents is removed; with `keep_first` its first
    document (smallest `id` hash, a choice independent of partitioning) keeps it.
    """

    checkpoint_default: ClassVar[bool] = True
    drop_reason: ClassVar[str] = "too_short"

    @property
    def max_documents(self) -> int:
        raise NotImplementedError

    @property
    def keep_first(self) -> bool:
        return False

    def units(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row int64, unit index int32, key uint64), equal lengths."""
        raise NotImplementedError

    def remove(self, batch: pa.Table, rows: np.ndarray, units: np.ndarray, documents: np.ndarray) -> BatchResult:
        raise NotImplementedError


def merge_counters(results: Sequence[BatchResult]) -> dict[str, Any]:
    drops: Counter = Counter()
    counters: Counter = Counter()
    for r in results:
        drops.update(r.drops)
        counters.update(r.counters)
    return {"drops": dict(drops), "counters": dict(counters)}


class ClusterDedup(Processor):
    """A whole-dataset dedup step: rows the processor links, directly or through other rows,
    form a cluster, and one survivor per cluster is kept.

    A processor that sets `cluster_key` (exact dedup) needs no linking: rows with equal values of
    that column (made by `annotate`) are a cluster, so the engine skips steps 2-4 below and elects
    survivors per key. Only `annotate`, `survivor_keys` and `internal_columns` are called then.

    The engine (`curate.cluster_dedup.run_cluster_dedup`) calls these hooks on workers, batch by
    batch, and does all the distributed work itself (shuffles, connected components, joins):

    1. `annotate(batch)` adds the columns the later hooks read (signatures, ranks); never drops.
    2. `buckets(batch)` gives, for each row, any number of 64-bit bucket keys. Rows that share a
       key are candidate duplicates; the engine co-locates them by hash partitioning on the key.
    3. `payload(batch)` is an optional per-row value the engine carries with every bucket entry,
       so that `verify` can check a candidate pair inside its bucket, without a join.
    4. `verify(left, right)` takes two aligned payload arrays and says which pairs are real
       duplicates (only called when `payload` is not None). When `exact_verification` is on,
       the pairs that pass get a second check, `exact_verify` on `exact_payload` values (e.g.
       whole shingle sets, too big to copy into every bucket).
    5. `survivor_keys()` orders the rows of a cluster; the first one survives. The engine adds
       `id` ascending as the final tie-break, so the choice is deterministic.

    The engine removes `internal_columns()`, adds `cluster_column` (the survivor's `id`; a row
    linked to nothing is its own cluster) unless it is None, and counts every other row of a
    cluster under `drop_reason`.
    """

    drop_reason: ClassVar[str] = "near_duplicate"
    # The column naming each row's survivor (its `id`); None: the engine adds no column.
    cluster_column: ClassVar[str | None] = "cluster_id"
    provides: ClassVar[tuple[str, ...]] = ("cluster_id",)
    # A column added by `annotate` whose equal values are the clusters (no buckets, no links).
    cluster_key: ClassVar[str | None] = None
    # With verification, a row in a bucket is checked against at most this many other rows of
    # the bucket (the first ones in a deterministic order); smaller buckets are checked in full.
    verify_anchors: ClassVar[int] = 8

    def annotate(self, batch: pa.Table) -> BatchResult:
        raise NotImplementedError

    def buckets(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(row index into `batch` as int64, bucket key as uint64), equal lengths."""
        raise NotImplementedError

    def payload(self, batch: pa.Table) -> pa.Array | None:
        return None

    def verify(self, left: pa.Array, right: pa.Array) -> np.ndarray:
        return np.ones(len(left), dtype=bool)

    @property
    def exact_verification(self) -> bool:
        """Whether pairs that pass `verify` get a second, exact check (`exact_payload`)."""
        return False

    def exact_payload(self, batch: pa.Table) -> pa.Array:
        """Per-row value for `exact_verify`. The engine brings the values of both rows of each
        linked pair together with two hash joins, in which only linked rows travel."""
        raise NotImplementedError

    def exact_verify(self, left: pa.Array, right: pa.Array) -> np.ndarray:
        return np.ones(len(left), dtype=bool)

    def survivor_keys(self) -> list[tuple[str, str]]:
        """[(column, "ascending" | "descending"), ...] over columns present after `annotate`."""
        return []

    def internal_columns(self) -> tuple[str, ...]:
        """Columns added by `annotate` that must not reach the output."""
        return ()

    @property
    def side_output(self) -> bool:
        """Whether the dropped rows should be kept available for inspection."""
        return False
