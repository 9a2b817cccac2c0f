"""QQT mode: Goyal et al. 2024, "Scaling Laws for Data Filtering -- Data Curation cannot be Compute
Agnostic" (CVPR). Reproduces their published method, as in their code, on their fitted parameters.

Each pool (quality bucket) i has a utility b_i < 0 and a repetition half-life tau_i. A model that
has seen n samples has error y = (a n)^b + d. On the k-th pass over the data (k = 0 first) the
pool's utility has decayed to b_i 0.5^(k/tau_i), and the error is composed pass by pass: each pass
multiplies the error by (n_k / n_{k-1})^(b on that pass). A union of pools is never trained
jointly: its per-pass utility is the average of its members' per-pass utilities.

Details kept exactly as their code has them (they matter for the numbers):
- samples are scaled by `a` and divided by a normaliser of 100,000 before the power law;
- d is added on the first pass and then multiplied by the later passes' ratios with the rest;
- a union of k equal-size buckets is one pool of k x pool_size samples per epoch, and repetitions
  are counted over that union, so each member's half-life becomes k tau_i;
- candidate unions are the top-k buckets by utility (most negative b first), k = 1..K.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.errors import UserError

NORMALIZER = 100_000.0


@dataclass(frozen=True)
class QQTParams:
    names: list[str]
    b: np.ndarray  # utilities (< 0)
    tau: np.ndarray  # repetition half-lives, in epochs of the bucket itself
    a: float
    d: float


def load_params(path: str | Path, key: str = "tmars_imagenet1k_utility", drop: tuple[str, ...] = ("random",)) -> QQTParams:
    """Read one entry of their parameter_values.jsonl (the JSON objects may share a line).

    Buckets whose name contains a `drop` marker are left out, as their best-pool script leaves out
    the random-subset control.
    """
    text = Path(path).read_text()
    dec = json.JSONDecoder()
    i, entries = 0, []
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e.msg}: line {e.lineno} column {e.colno})") from None
        entries.append(obj)
    if not entries:
        raise UserError(f"{path}: empty (expected parameter_values.jsonl entries)")
    fields = ("id", "names", "a_values", "b_values", "c_values")
    for e in entries:
        if not isinstance(e, dict) or any(f not in e for f in fields):
            raise UserError(f"{path}: an entry lacks {[f for f in fields if not isinstance(e, dict) or f not in e]} "
                            "(expected Goyal et al.'s parameter_values.jsonl)")
    for e in entries:
        if e["id"] == key:
            keep = [j for j, n in enumerate(e["names"]) if not any(m in n for m in drop)]
            a_vals = {e["a_values"][j] for j in keep}
            if len(a_vals) != 1:
                raise ValueError("QQT needs one shared `a` across buckets")
            return QQTParams(
                names=[e["names"][j] for j in keep],
                b=np.array([e["b_values"][j] for j in keep], dtype=float),
                tau=np.array([e["c_values"][j] for j in keep], dtype=float),
                a=float(a_vals.pop()),
                d=float(e.get("d_value", 0.1)),
            )
    raise UserError(f"{path}: no entry {key!r} (ids: {[e['id'] for e in entries]})")


def _power(x: float, p: float) -> float:
    return 0.0 if x == 0 else x**p


def union_error(samples_seen: float, b: np.ndarray, tau: np.ndarray, a: float, d: float,
                samples_per_epoch: float, normalizer: float = NORMALIZER) -> float:
    """Error after `samples_seen` samples drawn (with repetition) from a union whose epoch is
    `samples_per_epoch` samples; b and tau are the members' (tau already in union epochs)."""
    b = np.atleast_1d(np.asarray(b, dtype=float))
    tau = np.atleast_1d(np.asarray(tau, dtype=float))
    n_full = samples_seen // samples_per_epoch
    passes = np.arange(n_full + 1)
    # per-pass utility of every member, then the union's: the mean over members
    b_pass = np.mean(b[:, None] * np.power(0.5, passes[None, :] / tau[:, None]), axis=0)
    seen_end = a * np.minimum(samples_per_epoch * (passes + 1), samples_seen) / normalizer
    seen_start = a * samples_per_epoch * passes / normalizer
    err = d + _power(float(seen_end[0]), float(b_pass[0]))
    if len(passes) > 1:
        err *= float(np.prod((seen_end[1:] / seen_start[1:]) ** b_pass[1:]))
    return float(err)


def pool_error(samples_seen: float, b: float, tau: float, a: float, d: float, samples_per_epoch: float,
               normalizer: float = NORMALIZER) -> float:
    """One pool on its own: the union of one."""
    return union_error(samples_seen, np.array([b]), np.array([tau]), a, d, samples_per_epoch, normalizer)


@dataclass
class QQTResult:
    budgets: list[float]
    unions: list[list[str]]  # candidate unions, top-1 .. top-K
    error: np.ndarray  # [budget, union]
    best: list[int]  # index into unions, per budget

    def best_names(self) -> list[list[str]]:
        return [self.unions[j] for j in self.best]


def best_pool(params: QQTParams, budgets: list[float], pool_size: float) -> QQTResult:
    """For each compute budget (samples seen), the union of top-k buckets with the lowest error.

    pool_size is the number of samples in one bucket (their T-MARS setting: 12.8M, a tenth of a
    128M pool).
    """
    order = np.argsort(params.b, kind="stable")  # most negative utility first = best bucket
    b, tau = params.b[order], params.tau[order]
    names = [params.names[i] for i in order]
    unions = [names[:k] for k in range(1, len(names) + 1)]
    err = np.zeros((len(budgets), len(unions)))
    for bi, n in enumerate(budgets):
        for k in range(1, len(names) + 1):
            err[bi, k - 1] = union_error(n, b[:k], tau[:k] * k, params.a, params.d, pool_size * k)
    return QQTResult(list(map(float, budgets)), unions, err, [int(np.argmin(r)) for r in err])
