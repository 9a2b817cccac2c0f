"""Naive mixtures a plan must beat: what people do without a planner.

- natural: every pool in proportion to its tokens (concatenate everything);
- uniform: the same share for every pool;
- UniMax (Chung et al. 2023): uniform, but no pool repeated more than `max_epochs` times; what a
  small pool cannot take is spread uniformly over the others (smallest pools are served first);
- top bucket: the highest-scoring bucket of every scored source and domain, in proportion to
  their tokens: "keep the top of the classifier";
- top pool: the single pool with the highest mean classifier score.
"""
from __future__ import annotations

import numpy as np


def natural(sizes: np.ndarray) -> np.ndarray:
    s = np.asarray(sizes, float)
    return s / s.sum()


def uniform(k: int) -> np.ndarray:
    return np.full(k, 1.0 / k)


def unimax(sizes: np.ndarray, total_tokens: float, max_epochs: float = 1.0) -> np.ndarray:
    """Chung et al.'s UniMax allocation of `total_tokens` over pools of `sizes` unique tokens.

    If even max_epochs of every pool is less than the budget, the cap is lifted evenly (every pool
    repeated the same extra number of times) so that the weights still sum to one."""
    sizes = np.asarray(sizes, float)
    k = len(sizes)
    alloc = np.zeros(k)
    left = float(total_tokens)
    order = np.argsort(sizes)
    for j, i in enumerate(order):
        share = left / (k - j)
        alloc[i] = min(share, max_epochs * sizes[i])
        left -= alloc[i]
    if left > 1e-9 * total_tokens:  # budget beyond max_epochs of everything: repeat all evenly
        alloc += left * sizes / sizes.sum()
    return alloc / alloc.sum()


def top_bucket(keys: list[tuple[str, str]], scores: list[float | None], sizes: np.ndarray) -> np.ndarray:
    """The best-scoring pool of every scored (source, domain), in proportion to their tokens: the
    top bucket of each. Pools without a score (e.g. code the classifier does not rate) are left out."""
    sizes = np.asarray(sizes, float)
    best: dict[tuple[str, str], int] = {}
    for i, (key, s) in enumerate(zip(keys, scores)):
        if s is not None and (key not in best or s > scores[best[key]]):
            best[key] = i
    w = np.zeros(len(sizes))
    for i in best.values():
        w[i] = sizes[i]
    if not w.sum():
        raise ValueError("no pool has a quality score: there is no top bucket")
    return w / w.sum()


def top_pool(scores: list[float | None]) -> np.ndarray:
    sc = np.array([-np.inf if s is None else s for s in scores], float)
    w = np.zeros(len(sc))
    w[int(np.argmax(sc))] = 1.0
    return w
