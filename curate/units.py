"""Sizes in configuration files ('2GB', '512MiB', a number of bytes).

Its own module, importing nothing of curate's, so that every configuration model (the pipeline's,
the shard step's) can parse sizes without importing the others: that import had closed a cycle
config -> registry -> jobs -> shard.config -> config.
"""
from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
          "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


def parse_size(value: int | float | str | None) -> int | None:
    """'2GB', '512MiB', 1e9 → bytes."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"not a size: {value!r} (use e.g. 512MB, 2GiB or a number of bytes)")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")) or value < 0:
            raise ValueError(f"not a size: {value!r}")
        return int(value)
    m = _SIZE.match(value)
    if not m or m.group(2) is not None and m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (use e.g. 512MB, 2GiB or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
