"""Pipeline YAML: loading and validation.

A pipeline file names its inputs, output directory, seed, Ray settings and an ordered list of stages.
Each stage is a one-key mapping `{kind: {params}}`; the params are validated by the processor's own
pydantic model, so a misspelled key or a wrong type is reported with the file, the key path
(`stages[2].gopher_quality.max_words`) and what is allowed there.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from curate.registry import registry
from curate.units import parse_size  # noqa: F401 - part of this module's interface

# Keys every stage accepts besides its processor's own params: they steer the engine, not the work.
ENGINE_KEYS = {
    "name": "a unique name for this stage (default: its kind); also its output folder",
    "checkpoint": "write this stage's output as Parquet with a commit marker (default: per kind)",
    "concurrency": "number of parallel workers for this stage (default: all CPUs)",
    "num_cpus": "CPUs each worker of this stage reserves (default 1)",
    "memory": "memory each worker reserves, e.g. '2GB' (default: none reserved)",
    "inputs": "reading stages only: this source's own globs/URIs (default: the pipeline's inputs)",
    "sources": "row-wise stages and paragraph_dedup: apply to documents of these sources; others pass untouched",
}


class ConfigError(ValueError):
    """A pipeline file that cannot run; the message names the file and the key path."""


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="Ray cluster address; none starts an embedded local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for the embedded Ray (default: all)")
    object_store_memory: int | None = Field(None, description="object store size for the embedded Ray")
    workers: int | None = Field(None, ge=1, description="default parallel workers per stage")

    @field_validator("object_store_memory", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int | None:
        return parse_size(v)


class StageSpec(BaseModel):
    """One validated stage: its kind, name, engine settings and processor params (as a dict)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str
    checkpoint: bool | None = None
    concurrency: int | None = None
    num_cpus: float = 1.0
    memory: int | None = None
    inputs: list[str] | None = None
    sources: list[str] | None = None
    params: dict[str, Any] = {}
    # The processor's driver-built state (`Processor.prepare`), as a Ray object reference once
    # the runner has put it in the object store; travels with the spec to every worker.
    _state: Any = PrivateAttr(default=None)

    def build(self):
        """The processor instance this stage runs (with its driver-built state, if any)."""
        cls = registry()[self.kind]
        proc = cls(cls.Params(**self.params))
        if self._state is not None:
            state = self._state
            if type(state).__name__ == "ObjectRef":
                import ray

                state = ray.get(state)
            proc.receive(state)
        return proc


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "pipeline"
    inputs: list[str] = Field(default_factory=list, description="globs or URIs read by the first stage")
    output: str = Field(..., description="output directory; one folder per checkpointed stage")
    seed: int = 0
    ray: RayConfig = Field(default_factory=RayConfig)
    stages: list[StageSpec]

    @field_validator("stages", mode="before")
    @classmethod
    def _stages(cls, v: Any) -> list[StageSpec]:
        # Parsing lives in parse_stages so errors carry full key paths; here we only accept
        # already-parsed specs (the loader calls parse_stages first).
        return v


def _suggest(word: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(word, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_pydantic(err: ValidationError, prefix: str, model: type[BaseModel]) -> list[str]:
    lines = []
    fields = sorted(model.model_fields)
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        path = f"{prefix}.{loc}" if loc else prefix
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            lines.append(f"{path}: unknown key{_suggest(key, fields)}; allowed: {', '.join(fields)}")
        else:
            lines.append(f"{path}: {e['msg']} (got {e.get('input')!r})")
    return lines


def parse_stages(raw: Any, where: str = "stages") -> tuple[list[StageSpec], list[str]]:
    """Validate the `stages` list; returns specs and error lines (empty when valid)."""
    kinds = registry()
    errors: list[str] = []
    specs: list[StageSpec] = []
    if not isinstance(raw, list) or not raw:
        return [], [f"{where}: must be a non-empty list of one-key mappings like '- extract: {{}}'"]
    names: set[str] = set()
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            errors.append(f"{at}: a stage is a one-key mapping '{{kind: {{params}}}}', got {item!r}")
            continue
        kind, params = next(iter(item.items()))
        if params is None:
            params = {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            errors.append(f"{at}.{kind}: parameters must be a mapping of names, got {params!r}")
            continue
        params = dict(params)
        if kind not in kinds:
            errors.append(f"{at}: unknown stage {kind!r}{_suggest(str(kind), list(kinds))}; "
                          f"allowed: {', '.join(kinds)}")
            continue
        engine = {k: params.pop(k) for k in list(params) if k in ENGINE_KEYS}
        cls = kinds[kind]
        try:
            cls.Params(**params)
        except ValidationError as e:
            errors.extend(_format_pydantic(e, f"{at}.{kind}", cls.Params))
            continue
        from processors.base import Source

        if "inputs" in engine and not issubclass(cls, Source):
            errors.append(f"{at}.{kind}.inputs: only reading stages take inputs")
            continue
        if "sources" in engine and issubclass(cls, Source):
            errors.append(f"{at}.{kind}.sources: a reading stage names its own source "
                          "(its 'source_name' parameter); 'sources' selects documents downstream")
            continue
        for key in ("inputs", "sources"):
            if isinstance(engine.get(key), str):
                engine[key] = [engine[key]]
        name = str(engine.pop("name", kind))
        if name in names:
            errors.append(f"{at}.{kind}.name: stage name {name!r} is used twice; give one a 'name'")
            continue
        names.add(name)
        try:
            memory = parse_size(engine.pop("memory", None))
            specs.append(StageSpec(kind=kind, name=name, memory=memory, params=params, **engine))
        except (ValidationError, ValueError) as e:
            errors.append(f"{at}.{kind}: {e}")
    return specs, errors


def pipeline_from_dict(data: Any, source: str = "<pipeline>") -> PipelineConfig:
    """Validate a parsed YAML document; raise ConfigError listing every problem at once."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with 'output' and 'stages'")
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"{source}: top-level keys must be names, got {odd!r}")
    errors: list[str] = []
    specs, stage_errors = parse_stages(data.get("stages"))
    errors.extend(f"{source}: {e}" for e in stage_errors)
    top = {k: v for k, v in data.items() if k != "stages"}
    try:
        cfg = PipelineConfig(**top, stages=specs)
    except ValidationError as e:
        errors.extend(f"{source}: {line}" for line in _format_pydantic(e, "", PipelineConfig))
        cfg = None
    if errors:
        raise ConfigError("invalid pipeline:\n  " + "\n  ".join(s.replace(": .", ": ") for s in errors))
    assert cfg is not None
    return cfg


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def builtin_variables() -> dict[str, str]:
    """Variables a pipeline may use besides the environment, e.g. ${PYTHON_STDLIB}."""
    import sysconfig

    return {"PYTHON_STDLIB": sysconfig.get_path("stdlib")}


def expand_variables(text: str, source: str = "<pipeline>") -> str:
    """`${NAME}` and `${NAME:-default}` from the environment (or built-ins); unknown is an error."""
    import os

    env = {**builtin_variables(), **os.environ}

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{source}: ${{{name}}} is not set (set it, or write ${{{name}:-default}})")

    return _VAR.sub(sub, text)


def _expand_in(value: Any, source: str) -> Any:
    """Expand variables in string values only (never in comments or keys)."""
    if isinstance(value, str):
        return expand_variables(value, source)
    if isinstance(value, list):
        return [_expand_in(v, source) for v in value]
    if isinstance(value, dict):
        return {k: _expand_in(v, source) for k, v in value.items()}
    return value


def load_pipeline(path: str | Path) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: pipeline file not found")
    try:
        data = _expand_in(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    except yaml.YAMLError as e:
        from curate.errors import yaml_problem

        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(e)})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e}") from None
    return pipeline_from_dict(data, str(path))
