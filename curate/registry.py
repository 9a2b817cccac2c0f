"""YAML stage names → processor classes, discovered from the `processors` package.

Discovery (rather than a hand-kept table) means a new processor module is usable from YAML and the
CLI as soon as it defines a `Processor` subclass with a `kind`; two classes claiming one kind is an
error at start-up, not a silent override.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

import processors
from processors.base import Processor, Source


@lru_cache(maxsize=1)
def registry() -> dict[str, type[Processor]]:
    found: dict[str, type[Processor]] = {}
    for mod in pkgutil.iter_modules(processors.__path__):
        module = importlib.import_module(f"processors.{mod.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Processor)
                and obj.kind
                and obj.__module__ == module.__name__
            ):
                other = found.get(obj.kind)
                if other is not None and other is not obj:
                    raise RuntimeError(
                        f"stage kind {obj.kind!r} is claimed by {other.__module__}.{other.__name__} "
                        f"and {obj.__module__}.{obj.__name__}"
                    )
                found[obj.kind] = obj
    # Jobs (whole-output steps: pools, plan, shard) live in the engine layer: they may use Ray.
    from curate import jobs

    for obj in vars(jobs).values():
        if isinstance(obj, type) and issubclass(obj, jobs.Job) and obj.kind:
            if obj.kind in found:
                raise RuntimeError(f"stage kind {obj.kind!r} is both a processor and a job")
            found[obj.kind] = obj
    return dict(sorted(found.items()))


def processor_class(kind: str) -> type[Processor]:
    return registry()[kind]


def is_source(kind: str) -> bool:
    return issubclass(processor_class(kind), Source)

