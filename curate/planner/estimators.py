"""Estimators of a mixture's target loss, compared on held-out proxy runs.

- `law`: the quality x repetition law (mixture.py), fitted by fit.py on every training run
  (single-pool anchors, epoch and size sweeps, and the Dirichlet swarm). Predicts any N, D and
  repetition, so it can plan at the target scale.
- `regmix`: RegMix (Liu et al. 2024): LightGBM regression of the loss on the mixture weights,
  trained on the swarm (runs of one configuration, differing only in the mixture).
- `dml`: Data Mixing Laws (Ye et al. 2024), one target: L(r) = c + k exp(sum_j t_j r_j), fitted
  by least squares on the swarm.

Each is fitted on the training runs only and scored on the held-out mixtures (Spearman, MAE):
`compare` returns the table and the name of the best-validated one (highest Spearman, then lowest
MAE). regmix and dml predict at the swarm's own scale only; their mixture is the plan's mixture
at every budget (RegMix's premise: the ranking transfers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy.stats import spearmanr

ESTIMATORS = ("law", "regmix", "dml")


@dataclass
class Score:
    name: str
    spearman: float
    mae: float
    n_train: int
    n_heldout: int
    predicted: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)
    error: str | None = None  # why it could not be fitted

    def to_dict(self) -> dict:
        return {"name": self.name, "spearman": self.spearman, "mae": self.mae, "n_train": self.n_train,
                "n_heldout": self.n_heldout, "predicted": self.predicted, "measured": self.measured,
                "error": self.error}


def _spearman(pred: np.ndarray, meas: np.ndarray) -> float:
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(meas) == 0:
        return float("nan")
    return float(spearmanr(pred, meas).statistic)


def score(name: str, pred: np.ndarray, meas: np.ndarray, n_train: int) -> Score:
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    return Score(name, _spearman(pred, meas), float(np.mean(np.abs(pred - meas))), n_train, len(meas),
                 pred.tolist(), meas.tolist())


# ----------------------------------------------------------------------------- RegMix
class RegMixEstimator:
    name = "regmix"

    def fit(self, X: np.ndarray, y: np.ndarray, seed: int = 42) -> "RegMixEstimator":
        from .regmix import fit_regressor

        self.model = fit_regressor(np.asarray(X, float), np.asarray(y, float), seed=seed)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(X, float)), float)


# ----------------------------------------------------------------------------- Data Mixing Laws
class DMLEstimator:
    """L(r) = c + k exp(t . r), Ye et al. 2024 (eq. 1, one validation domain). c, log k, t fitted
    by least squares (scipy, several starts); c is kept below the smallest measured loss."""

    name = "dml"

    def fit(self, X: np.ndarray, y: np.ndarray, seed: int = 0) -> "DMLEstimator":
        X, y = np.asarray(X, float), np.asarray(y, float)
        k = X.shape[1]
        lo = float(y.min())

        def resid(th: np.ndarray) -> np.ndarray:
            c, lk, t = th[0], th[1], th[2:]
            return c + np.exp(lk + X @ t) - y

        best = None
        rng = np.random.default_rng(seed)
        for c0 in (0.0, 0.5 * lo, 0.9 * lo):
            for _ in range(3):
                t0 = rng.normal(0, 0.5, k)
                lk0 = math.log(max(float(np.mean(y)) - c0, 1e-3))
                res = optimize.least_squares(resid, np.concatenate([[c0, lk0], t0]), method="trf",
                                             bounds=([-np.inf, -20] + [-20] * k, [lo - 1e-6, 20] + [20] * k))
                if best is None or res.cost < best.cost:
                    best = res
        self.theta = best.x
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        th = self.theta
        return th[0] + np.exp(th[1] + np.asarray(X, float) @ th[2:])


def optimise_mixture(predict, prior: np.ndarray, n: int = 20000, top_k: int = 100, seed: int = 42,
                     max_usage: float | None = None) -> tuple[np.ndarray, float]:
    """RegMix's search: sample the simplex around `prior`, average the top-k predicted mixtures."""
    from .regmix import sample_mixtures

    cand = sample_mixtures(prior, n, seed, max_usage=max_usage)
    pred = predict(cand)
    top = cand[np.argsort(pred)[:top_k]]
    w = top.mean(axis=0)
    return w, float(predict(w[None, :])[0])


def choose(scores: dict[str, Score], prefer: str | None = None) -> str:
    """The best-validated estimator: highest held-out Spearman, ties (within 1e-9) by lower MAE."""
    if prefer and prefer != "auto":
        if prefer not in scores or scores[prefer].error:
            why = scores[prefer].error if prefer in scores else "not fitted"
            raise ValueError(f"estimator {prefer!r} is not available: {why}")
        return prefer
    ok = {k: s for k, s in scores.items() if not s.error and math.isfinite(s.spearman)}
    if not ok:
        return "law"
    return min(ok, key=lambda k: (-round(ok[k].spearman, 9), ok[k].mae))
