"""Fitting the mixture law to proxy runs: base constants plus each pool's q_i and R*_i.

As in Hoffmann et al. (approach 3) and Muennighoff et al.'s datablations fits: minimise the Huber
loss (delta = 1e-3) between log predicted and log measured loss, with L-BFGS from a grid of
starting points, keeping the best. The prediction is written in log-sum-exp form,

    log L = LSE(e, a - alpha log N, b - beta log D_eff),   E, A, B = exp(e), exp(a), exp(b),

which keeps the optimiser in a well-scaled space. q of a reference pool is fixed to 1 (only
ratios of q are identifiable from loss). Intervals come from a bootstrap over runs.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy.special import logsumexp
from scipy.stats import spearmanr

from .laws import LawConstants
from .mixture import MixtureLaw

HUBER_DELTA = 1e-3


@dataclass
class Observation:
    """One proxy run as the fitter sees it: N, tokens and unique tokens per pool, measured loss."""

    N: float
    tokens: np.ndarray  # per pool
    unique: np.ndarray  # per pool (sample size the run drew from)
    loss: float
    name: str = ""


def _deff(tokens: np.ndarray, unique: np.ndarray, q: np.ndarray, rstar: np.ndarray) -> np.ndarray:
    """Vectorised D_eff over runs: tokens, unique are [runs, pools]."""
    u = np.where(unique > 0, unique, 1.0)
    r = np.maximum(tokens / u - 1.0, 0.0)
    rep = u + u * rstar[None, :] * (-np.expm1(-r / rstar[None, :]))
    dprime = np.where(tokens <= unique, tokens, rep)
    return dprime @ q


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


@dataclass
class FitResult:
    names: list[str]
    ref: str
    theta: np.ndarray
    objective: float
    n_obs: int
    n_starts: int
    bootstrap: dict = field(default_factory=dict)  # name -> [samples]
    at_bound: list = field(default_factory=list)  # bound_flags(): parameters on an edge of the box

    # theta layout: e, a, b, alpha, beta, log q (non-ref pools, in order), log R* (all pools)
    def _unpack(self) -> tuple[float, float, float, float, float, np.ndarray, np.ndarray]:
        return unpack(self.theta, len(self.names), self.names.index(self.ref))

    @property
    def base(self) -> LawConstants:
        e, a, b, al, be, _, _ = self._unpack()
        return LawConstants("fitted", E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=al, beta=be,
                            rstar_d=math.nan, rstar_n=math.inf)

    @property
    def quality(self) -> np.ndarray:
        return self._unpack()[5]

    @property
    def rstar(self) -> np.ndarray:
        return self._unpack()[6]

    def law(self, unique_tokens: np.ndarray, base: LawConstants | None = None) -> MixtureLaw:
        """The mixture law for pools of the given sizes, with fitted or preset base constants, and
        each pool's q_i, R*_i as a plan uses them (`planning_value`: a parameter at a bound is
        planned at the conservative end of its interval)."""
        fitted = base is None
        d = self.to_dict()["pools"]
        q = np.array([planning_value(p["quality"], p["quality_ci95"], p["quality_at_bound"])[0] for p in d])
        r = np.array([planning_value(p["rstar"], p["rstar_ci95"], p["rstar_at_bound"])[0] for p in d])
        return MixtureLaw(base or self.base, list(self.names), np.asarray(unique_tokens, float), q, r,
                          param_excess=not fitted)

    def predict(self, obs: list[Observation]) -> np.ndarray:
        return np.exp(_log_pred(self.theta, obs, self.names.index(self.ref)))

    def estimates(self) -> dict[str, float]:
        """The point estimate of every parameter, by label (E, A, B, alpha, beta, q:<pool>, rstar:<pool>)."""
        b = self.base
        out = {"E": b.E, "A": b.A, "B": b.B, "alpha": b.alpha, "beta": b.beta}
        out |= {f"q:{n}": float(q) for n, q in zip(self.names, self.quality)}
        return out | {f"rstar:{n}": float(r) for n, r in zip(self.names, self.rstar)}

    def intervals(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Bootstrap percentile intervals; a parameter at a bound gets its profile interval instead.

        Resamples are warm-started from the estimate, so the estimate lies inside its interval
        unless the resamples disagree with it systematically; where one still falls outside, the
        interval is extended to it (interval_method says "bootstrap, extended to the estimate"):
        an interval that excludes its own estimate is not one a plan can be read against."""
        lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
        est = self.estimates()
        out = {}
        for k, v in self.bootstrap.items():
            if len(v):
                a, b = float(np.percentile(v, lo)), float(np.percentile(v, hi))
                out[k] = (min(a, est[k]), max(b, est[k])) if k in est else (a, b)
        for f in self.at_bound:
            if f.get("profile_ci95"):
                out[f["param"]] = tuple(f["profile_ci95"])
        return out

    def interval_method(self, label: str) -> str:
        if any(f["param"] == label and f.get("profile_ci95") for f in self.at_bound):
            return "profile"
        v = self.bootstrap.get(label)
        if v is not None and len(v):
            x = self.estimates().get(label)
            if x is not None and not np.percentile(v, 2.5) <= x <= np.percentile(v, 97.5):
                return "bootstrap, extended to the estimate"
        return "bootstrap"

    def to_dict(self) -> dict:
        b = self.base
        iv = self.intervals()
        pools = []
        for i, n in enumerate(self.names):
            bounds = {f["param"]: f["bound"] for f in self.at_bound}
            pools.append({"name": n, "quality": float(self.quality[i]), "rstar": float(self.rstar[i]),
                          "quality_ci95": iv.get(f"q:{n}") if n != self.ref else None, "rstar_ci95": iv.get(f"rstar:{n}"),
                          "quality_ci_method": self.interval_method(f"q:{n}") if n != self.ref else "reference (q = 1)",
                          "rstar_ci_method": self.interval_method(f"rstar:{n}"),
                          "quality_at_bound": bounds.get(f"q:{n}"), "rstar_at_bound": bounds.get(f"rstar:{n}")})
        return {"ref_pool": self.ref, "base": {"E": b.E, "A": b.A, "B": b.B, "alpha": b.alpha, "beta": b.beta},
                "base_ci95": {k: iv.get(k) for k in ("E", "A", "B", "alpha", "beta")},
                "at_bound": self.at_bound,
                "pools": pools, "objective": self.objective, "n_obs": self.n_obs, "n_starts": self.n_starts,
                "n_bootstrap": len(next(iter(self.bootstrap.values()), []))}


def planning_value(value: float, ci95, at_bound: str | None) -> tuple[float, str | None]:
    """The value a plan uses for a fitted q_i or R*_i, and why, when it is not the point estimate.

    A parameter at an edge of the fit box is not measured there: the data only say it is at least
    (or at most) so much. Planning with the edge would trust the least-supported value (an R* of
    1000 says "repeat freely"), so it is planned at the conservative end of its (profile) interval:
    the lower end, for q (the pool is worth less) and for R* (repeated tokens lose value sooner).
    A parameter at its lower bound is already at that end."""
    if at_bound and ci95 and math.isfinite(ci95[0]) and ci95[0] < value:
        return float(ci95[0]), f"fit at {at_bound} bound; planned at conservative end of interval (lower, {ci95[0]:.3g})"
    return float(value), None


def unpack(theta: np.ndarray, k: int, ref: int):
    e, a, b, al, be = theta[:5]
    lq = np.insert(theta[5 : 5 + k - 1], ref, 0.0)
    lr = theta[5 + k - 1 : 5 + 2 * k - 1]
    return float(e), float(a), float(b), float(al), float(be), np.exp(lq), np.exp(lr)


def _arrays(obs: list[Observation]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (np.array([o.N for o in obs], float), np.stack([o.tokens for o in obs]).astype(float),
            np.stack([o.unique for o in obs]).astype(float), np.array([o.loss for o in obs], float))


def _log_pred(theta: np.ndarray, obs, ref: int, arrays=None) -> np.ndarray:
    N, X, U, _ = arrays if arrays is not None else _arrays(obs)
    e, a, b, al, be, q, rs = unpack(theta, X.shape[1], ref)
    d = _deff(X, U, q, rs)
    terms = np.stack([np.full_like(N, e), a - al * np.log(N), b - be * np.log(d)])
    return logsumexp(terms, axis=0)


def _bounds(k: int) -> list[tuple[float, float]]:
    return ([(-5.0, 3.0), (-10.0, 40.0), (-10.0, 40.0), (0.01, 2.5), (0.01, 2.5)]
            + [(math.log(1e-3), math.log(1e3))] * (k - 1) + [(math.log(0.05), math.log(1e3))] * k)


def _grid(k: int, full: bool = False) -> list[np.ndarray]:
    """Starting points: a coarse grid over the scale-free parameters, as the Chinchilla /
    datablations fits do; L-BFGS does the rest. Every fourth of the 32 grid points (8 starts)
    unless `full`: on the sample's proxy runs the 8 reach the same optimum at a quarter of the cost."""
    starts = []
    for e, a, b, al, be, lr in itertools.product([-1.0, 1.0], [0.0, 8.0], [2.0, 10.0], [0.3], [0.2, 0.5],
                                                 [math.log(2.0), math.log(15.0)]):
        starts.append(np.array([e, a, b, al, be] + [0.0] * (k - 1) + [lr] * k))
    return starts if full else starts[::4]


def _value_and_grad(theta: np.ndarray, arrays, ref: int) -> tuple[float, np.ndarray]:
    """Huber objective and its analytic gradient (the fit runs thousands of L-BFGS steps)."""
    N, X, U, L = arrays
    k = X.shape[1]
    e, a, b, al, be, q, rs = unpack(theta, k, ref)
    u = np.where(U > 0, U, 1.0)
    rep_r = np.maximum(X / u - 1.0, 0.0)
    ex = np.exp(-rep_r / rs[None, :])
    repeated = X > U
    dprime = np.where(repeated, u + u * rs[None, :] * (1.0 - ex), X)
    D = dprime @ q
    lnN, lnD = np.log(N), np.log(D)
    t = np.stack([np.full_like(N, e), a - al * lnN, b - be * lnD])
    lse = logsumexp(t, axis=0)
    p = np.exp(t - lse)
    r = lse - np.log(L)
    val = float(np.sum(huber(r)))
    psi = np.clip(r, -HUBER_DELTA, HUBER_DELTA)
    g = np.zeros_like(theta)
    g[0] = np.sum(psi * p[0])
    g[1] = np.sum(psi * p[1])
    g[2] = np.sum(psi * p[2])
    g[3] = np.sum(psi * p[1] * -lnN)
    g[4] = np.sum(psi * p[2] * -lnD)
    dlogD = psi * p[2] * (-be) / D  # d objective / dD per run
    dq = (dlogD[:, None] * dprime * q[None, :]).sum(0)  # wrt log q_i
    dR = u * ((1.0 - ex) - (rep_r / rs[None, :]) * ex)  # d D'_i / d R*_i
    dr = (dlogD[:, None] * np.where(repeated, dR, 0.0) * (q * rs)[None, :]).sum(0)  # wrt log R*_i
    g[5 : 5 + k - 1] = np.delete(dq, ref)
    g[5 + k - 1 :] = dr
    if not math.isfinite(val):
        return 1e10, np.zeros_like(theta)
    return val, g


# The optimiser sees the Huber objective in units of delta^2: raw, it is ~1e-5 and scipy's ftol
# test (relative to max(|f|, 1)) stops L-BFGS long before the optimum (q off by 3% on exact data).
OBJECTIVE_SCALE = 1.0 / HUBER_DELTA**2
LBFGS_OPTIONS = {"maxiter": 3000, "maxfun": 6000, "ftol": 1e-12, "gtol": 1e-8}
# Bootstrap resamples and profile points: each is one of many; looser rules keep 8+ pools cheap.
BOOT_OPTIONS = {"maxiter": 600, "maxfun": 1200, "ftol": 1e-10, "gtol": 1e-6}


def _scaled(theta: np.ndarray, arrays, ref: int) -> tuple[float, np.ndarray]:
    v, g = _value_and_grad(theta, arrays, ref)
    return v * OBJECTIVE_SCALE, g * OBJECTIVE_SCALE


def _parallel_map(fn, items: list) -> list:
    """fn over items, as Ray tasks (one CPU each) when this process already runs Ray (a `curate
    plan fit` has just run its proxies there, so the cores are free); else in this process.
    Results come back in item order, so a fit is the same either way."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a core dependency
        ray = None
    if ray is None or not ray.is_initialized() or len(items) < 2:
        return [fn(x) for x in items]
    remote = ray.remote(num_cpus=1, max_retries=1)(_call_one_blas_thread)
    return ray.get([remote.remote(fn, x) for x in items])


def _call_one_blas_thread(fn, x):
    with _one_blas_thread():
        return fn(x)


def _minimise(obs_arrays, ref: int, starts: list[np.ndarray], k: int, options: dict | None = None) -> tuple[np.ndarray, float]:
    best, best_f = None, math.inf
    bounds = _bounds(k)
    for s in starts:
        res = optimize.minimize(_scaled, s, args=(obs_arrays, ref), jac=True, method="L-BFGS-B",
                                bounds=bounds, options=options or LBFGS_OPTIONS)
        if res.fun < best_f:
            best, best_f = res.x, float(res.fun) / OBJECTIVE_SCALE
    return best, best_f


def _one_blas_thread():
    """Small-array numpy is far slower with a multi-threaded BLAS fighting for busy cores."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with the scientific stack
        import contextlib

        return contextlib.nullcontext()


def param_labels(names: list[str], ref: str) -> list[str]:
    """One label per entry of theta: E, A, B, alpha, beta, q:<pool> (not the reference), rstar:<pool>."""
    return (["E", "A", "B", "alpha", "beta"] + [f"q:{n}" for n in names if n != ref] + [f"rstar:{n}" for n in names])


def _natural(label: str, t: float) -> float:
    return t if label in ("alpha", "beta") else math.exp(t)


def bound_flags(theta: np.ndarray, names: list[str], ref: str, tol: float = 1e-3) -> list[dict]:
    """Parameters the optimiser left on an edge of the box: the data do not pin them inside it."""
    out = []
    for label, t, (lo, hi) in zip(param_labels(names, ref), theta, _bounds(len(names))):
        side = "lower" if t - lo <= tol * (hi - lo) else "upper" if hi - t <= tol * (hi - lo) else None
        if side:
            out.append({"param": label, "bound": side, "value": _natural(label, float(t)),
                        "limit": _natural(label, lo if side == "lower" else hi)})
    return out


def _ssr(theta: np.ndarray, arrays, ref: int) -> float:
    N, X, U, L = arrays
    e, a, b, al, be, q, rs = unpack(theta, X.shape[1], ref)
    d = _deff(X, U, q, rs)
    lp = logsumexp(np.stack([np.full_like(N, e), a - al * np.log(N), b - be * np.log(d)]), axis=0)
    return float(np.sum((lp - np.log(L)) ** 2))


def profile_interval(theta: np.ndarray, arrays, ref: int, j: int, side: str, points: int = 12,
                     level_chi2: float = 3.841) -> tuple[float, float]:
    """Profile-likelihood interval of parameter j when it sits at a bound.

    A bootstrap warm-started there stays there and says nothing. Instead: fix parameter j at values
    stepping away from the bound, re-fit every other parameter, and keep the values whose sum of
    squared log residuals stays within chi2(1, 95%) x sigma^2 of the best (sigma^2 = SSR/(n - p)).
    The interval is one-sided: [bound, last value inside] (or [last inside, bound])."""
    k = arrays[1].shape[1]
    bounds = _bounds(k)
    lo, hi = bounds[j]
    n, p = len(arrays[3]), len(theta)
    s0 = _ssr(theta, arrays, ref)
    sigma2 = max(s0 / max(n - p, 1), 1e-12)
    grid = np.linspace(lo, hi, points + 1)[1:] if side == "lower" else np.linspace(hi, lo, points + 1)[1:]
    last = theta[j]
    for v in grid:
        b = list(bounds)
        b[j] = (float(v), float(v))
        start = theta.copy()
        start[j] = v
        res = optimize.minimize(_scaled, start, args=(arrays, ref), jac=True, method="L-BFGS-B", bounds=b,
                                options=BOOT_OPTIONS)
        if _ssr(res.x, arrays, ref) - s0 > level_chi2 * sigma2:
            break
        last = v
    ends = sorted((theta[j], last))
    return ends[0], ends[1]


def fit_law(obs: list[Observation], names: list[str], ref: str | None = None, n_boot: int = 100, seed: int = 0,
            starts: list[np.ndarray] | None = None) -> FitResult:
    """Fit base constants and per-pool q_i, R*_i; bootstrap over runs for intervals."""
    with _one_blas_thread():
        return _fit_law(obs, names, ref, n_boot, seed, starts)


def _fit_law(obs, names, ref, n_boot, seed, starts) -> FitResult:
    k = len(names)
    ref = ref or names[0]
    ri = names.index(ref)
    arrays = _arrays(obs)
    grid = starts or _grid(k)
    # Every start, resample and profile is an independent L-BFGS problem: spread over the cores.
    fits = _parallel_map(lambda s: _minimise(arrays, ri, [s], k), grid)
    j = min(range(len(fits)), key=lambda i: fits[i][1])  # first best, as a serial loop keeps it
    theta, f = fits[j]
    res = FitResult(list(names), ref, theta, f, len(obs), len(grid))
    rng = np.random.default_rng(seed)
    boot: dict[str, list[float]] = {f"q:{n}": [] for n in names} | {f"rstar:{n}": [] for n in names}
    boot |= {k_: [] for k_ in ("E", "A", "B", "alpha", "beta")}
    n = len(obs)
    problems = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        # Two starts: the full fit's estimate and one grid point, keeping the better. From grid
        # points alone a resample often stops in a worse basin than the full fit found, and the
        # interval then excludes its own estimate (seen: q 1.06, interval [1.11, 117]); the grid
        # point lets a resample that prefers another basin go there. (A parameter at a bound gets
        # a profile interval instead: a warm start there stays there.)
        problems.append((tuple(x[idx] for x in arrays), [theta, grid[int(rng.integers(len(grid)))]]))
    for th, _ in _parallel_map(lambda pr: _minimise(pr[0], ri, pr[1], k, BOOT_OPTIONS), problems):
        e, a, b, al, be, q, rs = unpack(th, k, ri)
        for i, nm in enumerate(names):
            boot[f"q:{nm}"].append(float(q[i]))
            boot[f"rstar:{nm}"].append(float(rs[i]))
        for key, v in zip(("E", "A", "B", "alpha", "beta"), (math.exp(e), math.exp(a), math.exp(b), al, be)):
            boot[key].append(float(v))
    res.bootstrap = boot
    res.at_bound = bound_flags(theta, names, ref)
    labels = param_labels(names, ref)
    ends = _parallel_map(lambda fl: profile_interval(theta, arrays, ri, labels.index(fl["param"]), fl["bound"]),
                         res.at_bound)
    for flag, (a, b) in zip(res.at_bound, ends):
        flag["profile_ci95"] = [_natural(flag["param"], a), _natural(flag["param"], b)]
    return res


@dataclass
class Validation:
    names: list[str]
    measured: np.ndarray
    predicted: np.ndarray

    @property
    def spearman(self) -> float:
        return float(spearmanr(self.predicted, self.measured).statistic)

    @property
    def mae(self) -> float:
        return float(np.mean(np.abs(self.predicted - self.measured)))

    def to_dict(self) -> dict:
        return {"runs": [{"name": n, "measured": float(m), "predicted": float(p)}
                         for n, m, p in zip(self.names, self.measured, self.predicted)],
                "spearman": self.spearman, "mae": self.mae}


def validate(fit: FitResult, held_out: list[Observation]) -> Validation:
    """Predict runs no fit saw; Spearman and mean absolute error against the measurements."""
    return Validation([o.name for o in held_out], np.array([o.loss for o in held_out]), fit.predict(held_out))
