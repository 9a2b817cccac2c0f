"""Fuzzing the pipeline loader: whatever the file holds, the only exception is ConfigError.

Runs a few hundred cases per target in CI; set CURATE_FUZZ_EXAMPLES for a longer run.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.config import ConfigError, load_pipeline, pipeline_from_dict
from curate.registry import registry

EXAMPLES = int(os.environ.get("CURATE_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
kinds = st.sampled_from(sorted(registry()) + ["nonsense", ""])
param_names = st.sampled_from(["threshold", "languages", "checkpoint", "name", "sources", "inputs",
                               "normalize", "min_words", "concurrency", "memory", "num_cpus", "x"])
stage = st.one_of(
    st.builds(lambda k, p: {k: p}, kinds, st.dictionaries(param_names, values, max_size=4)),
    values)
pipelines = st.fixed_dictionaries(
    {}, optional={"output": values, "inputs": values, "seed": values, "name": values,
                  "ray": st.one_of(values, st.dictionaries(st.sampled_from(
                      ["address", "num_cpus", "object_store_memory", "workers", "bogus"]), values)),
                  "stages": st.one_of(values, st.lists(stage, max_size=5)), "extra": values})


@FUZZ
@given(pipelines)
def test_pipeline_dicts_only_raise_config_error(data):
    try:
        cfg = pipeline_from_dict(data, "<fuzz>")
    except ConfigError as e:
        assert "<fuzz>" in str(e) or "invalid pipeline" in str(e)
    else:
        assert cfg.stages and cfg.output


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(
    lambda b: b.decode("latin-1"))))
def test_pipeline_files_only_raise_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "p.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_pipeline(path)
    except ConfigError:
        pass
