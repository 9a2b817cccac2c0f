"""RegMix mode (Liu et al. 2024, "RegMix: Data Mixture as Regression for Language Model
Pre-training"): regress a proxy model's loss on its mixture weights with LightGBM, then search the
simplex with the regressor.

As in their code: LightGBM gbdt regression, learning rate 1e-2, up to 1000 rounds with early
stopping after 3 rounds without improvement on a validation split, seed 42. Mixtures are sampled
from Dirichlet priors around the token shares (temperature 0.5, concentration log-uniform in
[0.1, 5], domains capped at 15x their natural share), and the final mixture is the mean of the
top-k predicted ones (they simulate many and average the top 100).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from curate.errors import UserError

LGBM_PARAMS = {
    "boosting_type": "gbdt",
    "objective": "regression",
    "n_estimators": 1000,
    "learning_rate": 1e-2,
    "random_state": 42,
    "verbosity": -1,
    "n_jobs": 1,  # two shared cores: threads only fight
}


@dataclass
class RegMixData:
    domains: list[str]
    X: np.ndarray  # [runs, domains] mixture weights
    targets: dict[str, np.ndarray]  # metric name -> [runs]
    index: np.ndarray


def _read_csv(path: Path) -> tuple[list[str], dict[int, list[float]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or len(rows[0]) < 2:
        raise UserError(f"{path}: expected a CSV header `index,<column>,...` and one row per run")
    head, data = rows[0], {}
    for n, r in enumerate(rows[1:], 2):
        if not r:
            continue
        if len(r) != len(head):
            raise UserError(f"{path}:{n}: {len(r)} fields, the header has {len(head)} (truncated file?)")
        try:
            data[int(r[0])] = [float(x) for x in r[1:]]
        except ValueError as e:
            raise UserError(f"{path}:{n}: not a number ({e})") from None
    if not data:
        raise UserError(f"{path}: no rows after the header")
    return head[1:], data


def load(mixtures_csv: str | Path, losses_csv: str | Path) -> RegMixData:
    """Their layout: `index` + one column per domain (weights); `index` + one loss column per
    validation set. Rows are joined on index."""
    dom, mx = _read_csv(Path(mixtures_csv))
    met, ls = _read_csv(Path(losses_csv))
    idx = np.array(sorted(set(mx) & set(ls)))
    X = np.array([mx[i] for i in idx])
    Y = np.array([ls[i] for i in idx])
    domains = [d.removeprefix("train_the_pile_") for d in dom]
    metrics = [m.removeprefix("metric/the_pile_").removesuffix("_val_loss") for m in met]
    return RegMixData(domains, X, {m: Y[:, j] for j, m in enumerate(metrics)}, idx)


def fit_regressor(X: np.ndarray, y: np.ndarray, seed: int = 42, early_stop_frac: float = 0.1, params: dict | None = None):
    """LightGBM with RegMix's settings; a slice of the training rows is the early-stopping set."""
    import lightgbm as lgb

    p = dict(LGBM_PARAMS, random_state=seed, **(params or {}))
    if len(y) < 60:  # tiny proxy-run sets (our own fits): leaves need fewer rows than LightGBM's 20
        p.setdefault("min_child_samples", max(2, len(y) // 5))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    n_es = max(1, int(round(early_stop_frac * len(y))))
    es, tr = perm[:n_es], perm[n_es:]
    model = lgb.LGBMRegressor(**p)
    model.fit(X[tr], y[tr], eval_X=(X[es],), eval_y=(y[es],), eval_metric="l2",
              callbacks=[lgb.early_stopping(stopping_rounds=3, verbose=False)])
    return model


@dataclass
class CVResult:
    spearman_pooled: float  # out-of-fold predictions against truth, all rows
    spearman_folds: list[float]
    predictions: np.ndarray
    truth: np.ndarray


def cross_validate(X: np.ndarray, y: np.ndarray, k: int = 5, seed: int = 42) -> CVResult:
    """k-fold CV: each row is predicted by a regressor that never saw it."""
    rng = np.random.default_rng(seed)
    folds = np.array_split(rng.permutation(len(y)), k)
    pred = np.zeros(len(y))
    per = []
    for i, te in enumerate(folds):
        tr = np.concatenate([f for j, f in enumerate(folds) if j != i])
        m = fit_regressor(X[tr], y[tr], seed=seed + i)
        pred[te] = m.predict(X[te])
        per.append(float(spearmanr(pred[te], y[te]).statistic))
    return CVResult(float(spearmanr(pred, y).statistic), per, pred, y)


def sample_mixtures(prior: np.ndarray, n: int, seed: int = 42, temperature: float = 0.5,
                    strengths: tuple[float, float] = (0.1, 5.0), max_usage: float | None = 15.0,
                    minimum: float = 2e-4) -> np.ndarray:
    """Dirichlet samples around `prior` (token shares), vectorised. Rejects samples that would use
    a domain more than max_usage times its share, zeroes weights below `minimum`, renormalises."""
    rng = np.random.default_rng(seed)
    prior = np.asarray(prior, float) / np.sum(prior)
    bound = np.minimum(prior * max_usage, 1.0) if max_usage else np.ones_like(prior)
    alpha_prior = prior**temperature
    alpha_prior /= alpha_prior.sum()
    out, have = [], 0
    while have < n:
        m = 4 * (n - have) + 64
        strength = np.exp(rng.uniform(np.log(strengths[0]), np.log(strengths[1]), size=m))
        g = rng.gamma(np.maximum(alpha_prior[None, :] * strength[:, None], 1e-6))
        w = g / g.sum(axis=1, keepdims=True)
        w = w[np.all(w <= bound[None, :], axis=1)]
        w = np.where(w < minimum, 0.0, w)
        w = w[w.sum(axis=1) > 0]
        w = w / w.sum(axis=1, keepdims=True)
        out.append(w)
        have += len(w)
    return np.concatenate(out)[:n]


def optimise(model, prior: np.ndarray, n_samples: int = 100_000, top_k: int = 100, seed: int = 42,
             max_usage: float | None = 15.0) -> tuple[np.ndarray, float]:
    """Average of the top-k mixtures by predicted loss, and the regressor's prediction for it."""
    cand = sample_mixtures(prior, n_samples, seed, max_usage=max_usage)
    pred = model.predict(cand)
    top = cand[np.argsort(pred)[:top_k]]
    w = top.mean(axis=0)
    return w, float(model.predict(w[None, :])[0])
