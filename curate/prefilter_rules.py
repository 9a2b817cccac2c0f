"""Hands a source the rules of the filters after it, so it can skip work on documents they drop.

A source whose params have `prefilter` (on) and `prefilter_rules` (the extract stage) gets the
`superset_rules()` of the filters that will see its documents, in pipeline order, up to the first
step that is not a filter for them: a mapper may add text, a whole-dataset step (dedup) chooses
among documents, so a rule after one of those is not a rule on the source's text any more.
Filters only keep or drop rows, or remove text from them (C4's line removal), so a rule that the
source's superset text fails is failed by whatever text such a filter is handed.

The rules become part of the source's params, hence of its step's fingerprint: changing a later
filter's threshold re-runs the source on resume instead of reusing a checkpoint cut by old rules.
"""
from __future__ import annotations

from dataclasses import asdict

from curate.config import PipelineConfig, StageSpec
from curate.registry import registry
from processors.base import Filter, Source


def _takes_rules(cls: type) -> bool:
    fields = getattr(getattr(cls, "Params", None), "model_fields", {})
    return issubclass(cls, Source) and "prefilter_rules" in fields and "prefilter" in fields


def rules_for(stages: list[StageSpec], index: int) -> list[dict]:
    """The rules of the filters after `stages[index]` that apply to its documents."""
    source = stages[index].build().params
    source_name = getattr(source, "source_name", None)
    kinds = registry()
    rules: list[dict] = []
    for later in stages[index + 1:]:
        cls = kinds[later.kind]
        if issubclass(cls, Source):
            continue  # another reader: adds its own documents, does not touch these
        if later.sources is not None and source_name not in later.sources:
            continue  # a step for other sources never sees these documents
        if not issubclass(cls, Filter):
            break
        if cls.superset_rules is not Filter.superset_rules:
            rules.extend(asdict(r) for r in later.build().superset_rules())
    return rules


def with_prefilter_rules(cfg: PipelineConfig) -> PipelineConfig:
    """`cfg` with `prefilter_rules` filled in for every source that takes them (and has none
    given by hand); unchanged when there is nothing to hand over."""
    kinds = registry()
    stages = list(cfg.stages)
    changed = False
    for i, spec in enumerate(stages):
        cls = kinds[spec.kind]
        if not _takes_rules(cls) or spec.params.get("prefilter_rules") or spec.params.get("prefilter") is False:
            continue
        rules = rules_for(stages, i)
        if rules:
            stages[i] = spec.model_copy(update={"params": {**spec.params, "prefilter_rules": rules}})
            changed = True
    return cfg.model_copy(update={"stages": stages}) if changed else cfg
