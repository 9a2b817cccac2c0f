"""Turns the ordered stage list into segments: the units the runner executes and commits.

A segment has a head (reading stages, a whole-dataset step over the previous output -- cluster or
unit dedup, or a job --, or nothing: the previous output read back from Parquet) and a body of row-wise stages fused into the same
tasks. A segment ends at a stage that checkpoints; its output folder is named after that stage.
Column contracts are checked here, before any work: a stage needing a column nothing provides is
an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from curate.config import ConfigError, PipelineConfig, StageSpec
from curate.registry import processor_class
from processors.base import Source, UnitDedup
from processors.schema import DOCUMENT_FIELDS

CLUSTER_KINDS_BASE = "ClusterDedup"  # base-class name of whole-graph dedup processors


def is_job_kind(kind: str) -> bool:
    from curate.jobs import Job

    return issubclass(processor_class(kind), Job)


def is_cluster_kind(kind: str) -> bool:
    return any(c.__name__ == CLUSTER_KINDS_BASE for c in processor_class(kind).__mro__)


# Whole-dataset steps whose runner applies row-wise stages before them (`Segment.pre`) while it
# reads its input, so those stages cost no committed segment of their own (no extra write and
# read of the corpus). A cluster step reads its input more than once (signatures, the exact
# check, removal) and runs `pre` on each read (curate.cluster_runner.FusedReader): only stages
# that do not checkpoint fuse, the cheap ones (an expensive stage checkpoints by default).
PRE_FUSING_MODES = frozenset({"cluster"})


@dataclass
class Segment:
    head: StageSpec | None  # a whole-dataset step; None for reading stages or Parquet input
    body: list[StageSpec] = field(default_factory=list)
    readers: list[StageSpec] = field(default_factory=list)  # Source stages, one task per input
    # Row-wise stages applied to the input before the head, in the head's own read (fused)
    pre: list[StageSpec] = field(default_factory=list)
    # What the step may use (curate.resources.StepResources), set by the runner before it runs
    resources: Any = None

    @property
    def stages(self) -> list[StageSpec]:
        return self.readers + self.pre + ([self.head] if self.head else []) + self.body

    @property
    def name(self) -> str:
        if not self.body and len(self.readers) > 1:
            return "sources"  # several readers commit together into one folder
        return self.stages[-1].name

    @property
    def mode(self) -> str:
        if self.readers:
            return "source"
        if self.head is None:
            return "parquet"
        if is_cluster_kind(self.head.kind):
            return "cluster"
        if is_job_kind(self.head.kind):
            return "job"
        if issubclass(processor_class(self.head.kind), UnitDedup):
            return "units"
        return "parquet"


def _checkpoints(spec: StageSpec) -> bool:
    if spec.checkpoint is not None:
        return spec.checkpoint
    return processor_class(spec.kind).checkpoint_default


def build_segments(cfg: PipelineConfig, source: str = "<pipeline>") -> list[Segment]:
    segments: list[Segment] = []
    current: Segment | None = None
    n_readers = 0
    while n_readers < len(cfg.stages) and issubclass(processor_class(cfg.stages[n_readers].kind), Source):
        n_readers += 1
    if n_readers:
        readers = cfg.stages[:n_readers]
        current = Segment(head=None, readers=list(readers))
        # The readers commit together unless every one of them says checkpoint: false.
        if any(_checkpoints(r) for r in readers) or n_readers == len(cfg.stages):
            segments.append(current)
            current = None
    for i, spec in enumerate(cfg.stages):
        if i < n_readers:
            continue
        cls = processor_class(spec.kind)
        whole_dataset = (issubclass(cls, UnitDedup) or is_cluster_kind(spec.kind)
                         or is_job_kind(spec.kind))
        if segments and segments[-1].mode == "job" and not is_job_kind(spec.kind):
            raise ConfigError(f"{source}: stages[{i}] ({spec.kind}) works on documents, so it must "
                              "come before the pools/plan/shard steps")
        if issubclass(cls, Source):
            raise ConfigError(f"{source}: stages[{i}] ({spec.kind}) reads inputs, so it must come "
                              "first, with any other reading stages")
        if whole_dataset:
            nxt = Segment(head=spec)
            if (current is not None and current.head is None and not current.readers
                    and nxt.mode in PRE_FUSING_MODES):
                nxt.pre = current.body  # row-wise stages that do not checkpoint: fused into the step's read
            elif current is not None:
                segments.append(current)
            current = nxt
        else:
            if current is None:
                current = Segment(head=None)
            current.body.append(spec)
        if _checkpoints(spec):
            segments.append(current)
            current = None
    if current is not None:
        segments.append(current)
    check_columns(cfg, source)
    return segments


def check_columns(cfg: PipelineConfig, source: str = "<pipeline>") -> None:
    """Every stage's required columns must be provided by the input schema or an earlier stage."""
    available = {f.name for f in DOCUMENT_FIELDS}
    first = processor_class(cfg.stages[0].kind)
    if not issubclass(first, Source):
        available |= {"*"}  # Parquet input: its columns are only known at run time
    names = set()
    for i, spec in enumerate(cfg.stages):
        cls = processor_class(spec.kind)
        if issubclass(cls, Source):
            names.add(str(spec.params.get("source_name", cls.Params.model_fields.get(
                "source_name").default if "source_name" in cls.Params.model_fields else spec.name)))
        unknown = sorted(set(spec.sources or []) - names) if names else []
        if unknown:
            raise ConfigError(f"{source}: stages[{i}] ({spec.kind}).sources names {unknown}, but "
                              f"the reading stages provide sources {sorted(names)}")
        missing = [c for c in cls.requires if c not in available and "*" not in available]
        if missing:
            raise ConfigError(
                f"{source}: stages[{i}] ({spec.kind}) needs column(s) {missing} that no earlier "
                f"stage provides; available: {sorted(available)}")
        available |= set(cls.provides)
