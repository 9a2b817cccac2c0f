"""What the sharder reads from its producers: the plan (tokens per pool) and the pools (files).

The one place that knows the producers' schemas, so a schema change is fixed here only.

plan.json (`curate plan`, schema `curate.plan/v1`, docs/planner.md) — read fields:

    {"schema": "curate.plan/v1",
     "model": {"tokens": D, ...},                     # optional: the run's total tokens
     "pools": [{"name": "web_high", "kept": true,     # kept: optional, default true
                "tokens": 1.2e9,                       # planned tokens (float; rounded here)
                "weight": 0.6, "epochs": 1.4,          # optional, reported
                "unique_tokens": 8.6e8,                # optional, a hint for sampling
                "path": "/abs/pools/web_high"},        # optional: files when no pools.json
               ...]}

A pool without `tokens` but with `weight` takes weight x model.tokens. `pools` may also be a mapping
name -> entry. Pools not kept, or planned at 0 tokens, are not read at all.

pools.json (`curate pools`, schema in curate/planner/pools.py): `{"pools": [{"name", "path",
"unique_tokens", ...}]}`; `path` (relative to pools.json) is a Parquet file or a folder of
`*.parquet` with a `text` column (and `id`, used when present to identify documents).

Without a plan, `weights` (pool -> weight, normalised) and `total_tokens` make the same targets.
Planned tokens are made integers by largest-remainder rounding so that they add up to the total.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """A plan, pools file or weight spec that cannot be used; the message says what to fix."""


@dataclass
class PoolTarget:
    name: str
    files: list[str]
    planned_tokens: int
    planned_epochs: float | None = None
    weight: float | None = None
    unique_tokens_hint: int | None = None  # from the producer; may use another tokenizer


@dataclass
class MixTargets:
    pools: list[PoolTarget]
    plan: dict[str, Any] | None = None  # the plan as read, for the manifest
    plan_path: str | None = None
    plan_sha256: str | None = None
    skipped: list[str] = field(default_factory=list)  # pools in the plan that are not taken

    @property
    def total_tokens(self) -> int:
        return sum(p.planned_tokens for p in self.pools)


def _files_at(path: Path, pool: str) -> list[str]:
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        files = [f for f in files if not any(part.startswith(("_", ".")) for part in f.relative_to(path).parts)]
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"pool {pool!r}: {path} does not exist")
    if not files:
        raise InputError(f"pool {pool!r}: no *.parquet files under {path}")
    return [str(f.resolve()) for f in files]


def read_pools(path: str | Path) -> dict[str, tuple[list[str], int | None]]:
    """pools.json → {pool name: (Parquet files, unique_tokens)}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: pools file not found") from None
    except ValueError as e:
        raise InputError(f"{path}: not JSON ({e})") from None
    entries = data.get("pools") if isinstance(data, dict) else None
    if isinstance(entries, dict):
        entries = [{"name": k, **v} for k, v in entries.items()]
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: expected {{'pools': [{{'name': ..., 'path': ...}}, ...]}}")
    out: dict[str, tuple[list[str], int | None]] = {}
    for e in entries:
        name = e.get("name")
        if not name or not e.get("path"):
            raise InputError(f"{path}: every pool needs 'name' and 'path' (got {e})")
        p = Path(e["path"])
        if not p.is_absolute():
            p = path.parent / p
        out[name] = (_files_at(p, name), e.get("unique_tokens"))
    return out


def _round_to_total(values: dict[str, float], total: int) -> dict[str, int]:
    """Largest-remainder rounding of non-negative floats to integers summing to `total`."""
    floors = {k: int(math.floor(v)) for k, v in values.items()}
    rest = total - sum(floors.values())
    order = sorted(values, key=lambda k: (-(values[k] - floors[k]), k))
    for k in order[:max(0, rest)]:
        floors[k] += 1
    return floors


def read_plan(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any], str]:
    """plan.json → ({pool: {tokens (float), epochs, weight, unique_tokens, path}}, raw plan, sha256)."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
        plan = json.loads(raw_bytes)
    except FileNotFoundError:
        raise InputError(f"{path}: plan file not found") from None
    except ValueError as e:
        raise InputError(f"{path}: not JSON ({e})") from None
    entries = plan.get("pools") if isinstance(plan, dict) else None
    if isinstance(entries, dict):
        entries = [{"name": k, **v} for k, v in entries.items()]
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: expected a 'pools' list of {{'name', 'tokens', ...}} (schema curate.plan/v1)")
    total = (plan.get("model") or {}).get("tokens") or plan.get("total_tokens")
    pools: dict[str, dict[str, Any]] = {}
    for e in entries:
        name = e.get("name")
        if not name:
            raise InputError(f"{path}: a pool entry has no 'name': {e}")
        tokens = e.get("tokens")
        if tokens is None and e.get("weight") is not None and total:
            tokens = float(e["weight"]) * float(total)
        if tokens is None:
            raise InputError(f"{path}: pool {name!r} has neither 'tokens' nor 'weight' with model.tokens")
        if not (isinstance(tokens, (int, float)) and math.isfinite(tokens) and tokens >= 0):
            raise InputError(f"{path}: pool {name!r}: tokens must be a finite number >= 0, got {tokens!r}")
        if e.get("kept") is False:
            tokens = 0.0
        path_value = e.get("path")
        if path_value and not Path(path_value).is_absolute():
            path_value = str(path.parent / path_value)
        pools[name] = {"tokens": float(tokens), "epochs": e.get("epochs"), "weight": e.get("weight"),
                       "unique_tokens": e.get("unique_tokens"), "path": path_value}
    return pools, plan, hashlib.sha256(raw_bytes).hexdigest()


def mix_targets(plan: str | Path | None = None, pools: str | Path | None = None,
                weights: dict[str, float] | None = None, total_tokens: int | None = None) -> MixTargets:
    """The pools to take and how many tokens of each, from a plan or from fixed weights."""
    pool_files = read_pools(pools) if pools else {}
    if plan is not None:
        if weights:
            raise InputError("give a plan or weights, not both")
        planned, raw, sha = read_plan(plan)
        want = {n: e["tokens"] for n, e in planned.items()}
        total = int(round(sum(want.values()))) if total_tokens is None else int(total_tokens)
        ints = _round_to_total(want, total) if sum(want.values()) > 0 else {n: 0 for n in want}
        targets, skipped = [], []
        for name, e in planned.items():
            if ints[name] <= 0:
                skipped.append(name)
                continue
            if name in pool_files:
                files, hint = pool_files[name]
            elif e["path"]:
                files, hint = _files_at(Path(e["path"]), name), None
            else:
                raise InputError(f"plan pool {name!r} is not in the pools file"
                                 + (f" ({', '.join(sorted(pool_files))})" if pool_files else
                                    " and has no 'path'; pass --pools pools.json"))
            u = e["unique_tokens"] or hint
            targets.append(PoolTarget(name, files, ints[name], e["epochs"], e["weight"],
                                      int(u) if u else None))
        if not targets:
            raise InputError(f"{plan}: the plan takes no tokens from any pool")
        return MixTargets(targets, raw, str(Path(plan).resolve()), sha, skipped)
    if not weights:
        raise InputError("give --plan plan.json, or --weights POOL=W,... with --total-tokens")
    if not total_tokens or total_tokens <= 0:
        raise InputError("--weights needs --total-tokens > 0")
    if not pool_files:
        raise InputError("--weights needs --pools pools.json (where each pool's files are)")
    bad = [n for n in weights if n not in pool_files]
    if bad:
        raise InputError(f"weights name unknown pool(s) {bad}; pools: {sorted(pool_files)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise InputError(f"weights must be >= 0 with a positive sum, got {weights}")
    s = sum(weights.values())
    ints = _round_to_total({n: w / s * total_tokens for n, w in weights.items()}, int(total_tokens))
    targets = [PoolTarget(n, pool_files[n][0], ints[n], None, weights[n] / s, pool_files[n][1])
               for n in weights if ints[n] > 0]
    plan_obj = {"schema": "curate.shard/weights", "total_tokens": int(total_tokens),
                "pools": [{"name": n, "weight": weights[n] / s, "tokens": ints[n]} for n in weights]}
    return MixTargets(targets, plan_obj, None, None, [n for n in weights if ints[n] <= 0])


def parse_weights(text: str) -> dict[str, float]:
    """'web=0.7,wiki=0.3' → {'web': 0.7, 'wiki': 0.3}."""
    out: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise InputError(f"--weights {text!r}: expected POOL=WEIGHT,...")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise InputError(f"--weights: {v!r} is not a number") from None
    return out
