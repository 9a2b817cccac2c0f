"""Choosing the mixture: exact water-filling over pools, a general solver to check it, and an
outer search over model size for a FLOP budget.

For fixed N and D the loss depends on w only through D_eff, and decreases in it, so minimising L is
maximising D_eff(w) = sum_i q_i D'_i(w_i D) over the (capped) simplex. Each D'_i is concave (linear up
to U_i, then concave with a continuous slope), so this is a concave maximisation: KKT conditions are
sufficient. At the optimum every pool strictly inside its bounds has the same marginal value
q_i exp(-R_i/R*_i) = lambda. Given lambda, each pool's tokens are explicit:

    x_i(lambda) = U_i (1 + R*_i ln(q_i / lambda))   if lambda < q_i  (pool repeated R_i times)
                  anything in [0, U_i]              if lambda = q_i  (first epoch, flat marginal)
                  0                                  if lambda > q_i,

clipped to the pool's bounds. Total tokens S(lambda) are non-increasing, continuous between the
q_i and jump at them, so we look for lambda* between consecutive q's by root finding (on log lambda)
and, when D falls inside a jump, fill the tied pools' first epochs in proportion.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from .laws import compute_optimal
from .mixture import MixtureLaw


class Infeasible(ValueError):
    """The token budget cannot be met within the caps (or the minimum weights exceed it)."""


@dataclass(frozen=True)
class Caps:
    """Optional limits. Dicts map pool name -> value; a missing name means no limit."""

    max_epochs: dict[str, float] = field(default_factory=dict)
    min_weight: dict[str, float] = field(default_factory=dict)
    max_weight: dict[str, float] = field(default_factory=dict)
    default_max_epochs: float | None = None

    def bounds(self, law: MixtureLaw, D: float) -> tuple[np.ndarray, np.ndarray]:
        """Token bounds [lo_i, hi_i] for a D-token run."""
        lo = np.array([self.min_weight.get(n, 0.0) * D for n in law.names])
        hi = np.full(law.k, math.inf)
        for i, n in enumerate(law.names):
            if n in self.max_weight:
                hi[i] = min(hi[i], self.max_weight[n] * D)
            ep = self.max_epochs.get(n, self.default_max_epochs)
            if ep is not None:
                hi[i] = min(hi[i], ep * law.unique_tokens[i])
        if np.any(lo > hi):
            bad = [law.names[i] for i in np.where(lo > hi)[0]]
            raise Infeasible(f"min weight exceeds the cap for {bad} at D={D:.3g}")
        return lo, hi


@dataclass
class Allocation:
    """The solution for one (N, D): tokens per pool and what they are worth."""

    names: list[str]
    N: float
    D: float
    tokens: np.ndarray
    weights: np.ndarray
    epochs: np.ndarray
    d_eff: float
    loss: float
    lam: float  # marginal effective tokens per raw token at the optimum (dD_eff/dD)
    dloss_dtoken: float  # marginal loss change of one more raw token (negative)
    method: str

    def kept(self, tol: float = 1e-9) -> list[str]:
        return [n for n, w in zip(self.names, self.weights) if w > tol]


def _x_of_lambda(law: MixtureLaw, lam: float, lo: np.ndarray, hi: np.ndarray, side: str) -> np.ndarray:
    """Tokens per pool at multiplier lam; at lam == q_i the flat first epoch is taken full ('left',
    the limit from below) or empty ('right')."""
    q, u, r = law.quality, law.unique_tokens, law.rstar
    x = np.zeros(law.k)
    above = lam < q
    with np.errstate(divide="ignore", over="ignore"):  # lam -> 0: x -> inf, clipped to hi below
        x[above] = u[above] * (1.0 + r[above] * np.log(q[above] / lam))
    tie = lam == q
    if side == "left":
        x[tie] = u[tie]
    return np.clip(x, lo, hi)


def waterfill(law: MixtureLaw, N: float, D: float, caps: Caps | None = None) -> Allocation:
    """Exact optimum of L(N, D, w) over w by water-filling (see module docstring)."""
    caps = caps or Caps()
    lo, hi = caps.bounds(law, D)
    if lo.sum() > D * (1 + 1e-12):
        raise Infeasible(f"minimum weights add up to more than 1 ({lo.sum() / D:.4f})")
    if hi.sum() < D * (1 - 1e-12):
        raise Infeasible(f"caps allow at most {hi.sum():.4g} tokens, the run needs D={D:.4g}")

    def S(lam: float, side: str = "left") -> float:
        return float(_x_of_lambda(law, lam, lo, hi, side).sum())

    qs = np.unique(law.quality)  # ascending
    x: np.ndarray | None = None
    lam_star = math.nan
    # 1) D inside a jump: lambda* equals some q, the tied pools share the gap in proportion.
    for qb in qs[::-1]:
        xl, xr = _x_of_lambda(law, qb, lo, hi, "left"), _x_of_lambda(law, qb, lo, hi, "right")
        sl, sr = xl.sum(), xr.sum()
        if sr <= D <= sl and sl > sr:
            theta = (D - sr) / (sl - sr)
            x = xr + theta * (xl - xr)
            lam_star = float(qb)
            break
    # 2) Otherwise lambda* lies strictly between consecutive q's (or below the smallest).
    if x is None:
        edges = np.concatenate([[0.0], qs, [math.inf]])
        for a, b in zip(edges[:-1], edges[1:]):
            s_a = S(a, "right") if a > 0 else math.inf  # S just above a
            s_b = S(b, "left") if math.isfinite(b) else float(lo.sum())  # S just below b
            if not (s_b <= D <= s_a):
                continue
            if not math.isfinite(b):  # only the lower bounds are left: D == sum(lo)
                x, lam_star = lo.copy(), float(qs[-1])
                break
            t_hi = math.log(b)
            t_lo = math.log(a) if a > 0 else t_hi - 1.0
            while a == 0 and S(math.exp(t_lo)) < D:  # walk down until S covers D
                t_lo -= 2.0 * (t_hi - t_lo)
                if t_lo < -745:
                    raise Infeasible("token budget out of numeric range")
            f = lambda t: S(math.exp(t)) - D
            eps = 1e-12  # stay off the jumps at the q values themselves
            f_lo, f_hi = f(t_lo + eps), f(t_hi - eps)
            if f_lo == 0:
                t = t_lo + eps
            elif f_hi == 0:
                t = t_hi - eps
            elif f_lo * f_hi > 0:  # flat stretch (every pool at a bound) or a sliver of width eps
                t = t_lo + eps if f_lo < 0 else t_hi - eps
            else:
                t = optimize.brentq(f, t_lo + eps, t_hi - eps, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
            lam_star = math.exp(t)
            x = _x_of_lambda(law, lam_star, lo, hi, "left")
            break
    if x is None:
        raise Infeasible("no multiplier meets the token budget")
    # Round-off: hand the residual to pools strictly inside their bounds (in proportion).
    resid = D - x.sum()
    free = (x > lo) & (x < hi)
    if abs(resid) > 0 and free.any():
        x[free] += resid * x[free] / x[free].sum()
    return _allocation(law, N, D, x, lam_star, "waterfill")


def _allocation(law: MixtureLaw, N: float, D: float, x: np.ndarray, lam: float, method: str) -> Allocation:
    d_eff = law.effective_data(x)
    b = law.base
    return Allocation(
        names=list(law.names),
        N=float(N),
        D=float(D),
        tokens=x,
        weights=x / D,
        epochs=x / law.unique_tokens,
        d_eff=d_eff,
        loss=law.loss_from_deff(N, d_eff),
        lam=float(lam),
        dloss_dtoken=float(-b.beta * b.B * d_eff ** (-b.beta - 1.0) * lam),
        method=method,
    )


def general_solve(law: MixtureLaw, N: float, D: float, caps: Caps | None = None, method: str = "SLSQP") -> Allocation:
    """The same problem handed to scipy's constrained solvers (SLSQP or trust-constr): the
    independent check on water-filling."""
    caps = caps or Caps()
    lo, hi = caps.bounds(law, D)
    lo_w, hi_w = lo / D, np.minimum(hi / D, 1.0)
    # Scale the objective so the solver's tolerances see the differences that matter.
    def f(w: np.ndarray) -> float:
        return law.loss(N, w * D)

    def g(w: np.ndarray) -> np.ndarray:
        return law.loss_grad_tokens(N, w * D) * D

    w0 = np.clip(np.full(law.k, 1.0 / law.k), lo_w, hi_w)
    w0 = w0 / w0.sum()
    cons = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}]
    bounds = list(zip(lo_w, hi_w))
    if method == "SLSQP":
        res = optimize.minimize(f, w0, jac=g, method="SLSQP", bounds=bounds, constraints=cons,
                                options={"ftol": 1e-16, "maxiter": 2000})
    elif method == "trust-constr":
        lin = optimize.LinearConstraint(np.ones((1, law.k)), 1.0, 1.0)
        with warnings.catch_warnings():  # BFGS updates stall on the linear first-epoch stretch: harmless
            warnings.simplefilter("ignore", UserWarning)
            res = optimize.minimize(f, w0, jac=g, method="trust-constr", bounds=optimize.Bounds(lo_w, hi_w),
                                    constraints=[lin], options={"gtol": 1e-14, "xtol": 1e-14, "maxiter": 5000})
    else:
        raise ValueError(f"unknown method {method!r}")
    w = np.clip(res.x, lo_w, hi_w)
    w = w / w.sum()
    x = w * D
    # The multiplier implied by the solution: the marginal value of the pools strictly inside.
    m = law.marginal(x)
    inside = (x > lo + 1e-9 * D) & (x < hi - 1e-9 * D)
    lam = float(np.max(m[inside])) if inside.any() else float(np.max(m))
    return _allocation(law, N, D, x, lam, method)


_INFEASIBLE = 1e6  # a finite penalty keeps Brent's arithmetic clean where caps rule a size out


@dataclass
class BudgetPlan:
    """The best (N, D, w) for a FLOP budget C = 6 N D."""

    C: float
    alloc: Allocation
    curve_N: np.ndarray  # the model sizes looked at, for the report
    curve_loss: np.ndarray


def plan_for_budget(law: MixtureLaw, C: float, caps: Caps | None = None, n_range: tuple[float, float] | None = None,
                    grid: int = 41) -> BudgetPlan:
    """Outer search over N with D = C/(6N): a log grid, then bounded Brent around the best point.

    The inner problem is solved exactly for every N, so L*(N) is a smooth one-dimensional function;
    the grid guards against the (rare) kinks that caps introduce.
    """
    caps = caps or Caps()
    if n_range is None:
        n0, _ = compute_optimal(C, law.base)
        n_range = (float(n0) / 1e3, float(n0) * 1e3)
    lo_t, hi_t = math.log(n_range[0]), math.log(n_range[1])

    def inner(t: float) -> float:
        N = math.exp(t)
        try:
            return waterfill(law, N, C / (6.0 * N), caps).loss
        except Infeasible:
            return _INFEASIBLE

    ts = np.linspace(lo_t, hi_t, grid)
    ls = np.array([inner(t) for t in ts])
    ls[ls >= _INFEASIBLE] = math.inf
    if not np.isfinite(ls).any():
        raise Infeasible(f"no model size in {n_range} makes budget C={C:.3g} feasible under the caps")
    j = int(np.nanargmin(ls))
    a, b = ts[max(j - 1, 0)], ts[min(j + 1, grid - 1)]
    res = optimize.minimize_scalar(inner, bounds=(a, b), method="bounded", options={"xatol": 1e-10})
    t_best = float(res.x) if res.fun <= ls[j] else float(ts[j])
    N = math.exp(t_best)
    alloc = waterfill(law, N, C / (6.0 * N), caps)
    return BudgetPlan(C=C, alloc=alloc, curve_N=np.exp(ts), curve_loss=ls)


@dataclass
class Frontier:
    budgets: np.ndarray
    plans: list[BudgetPlan]
    transitions: list[dict]  # budgets where the set of kept pools changes


def frontier(law: MixtureLaw, budgets: np.ndarray, caps: Caps | None = None, refine: int = 16,
             grid: int = 25) -> Frontier:
    """Plans over a budget grid, and the budgets (refined by bisection on log C, to a factor
    2^-refine of the grid step) where the quality threshold moves: a pool enters or leaves."""
    plans: list[BudgetPlan] = []
    ok_budgets = []
    for C in budgets:
        try:
            plans.append(plan_for_budget(law, float(C), caps, grid=grid))
            ok_budgets.append(float(C))
        except Infeasible:
            continue
    transitions = []
    for p0, p1 in zip(plans[:-1], plans[1:]):
        k0, k1 = set(p0.alloc.kept(1e-7)), set(p1.alloc.kept(1e-7))
        if k0 == k1:
            continue
        a, b = math.log(p0.C), math.log(p1.C)
        for _ in range(refine):
            m = 0.5 * (a + b)
            km = set(plan_for_budget(law, math.exp(m), caps, grid=grid).alloc.kept(1e-7))
            if km == k0:
                a = m
            else:
                b = m
        C_t = math.exp(0.5 * (a + b))
        transitions.append({"budget_flops": C_t, "entered": sorted(k1 - k0), "left": sorted(k0 - k1),
                            "kept_after": sorted(k1, key=law.names.index)})
    return Frontier(np.array(ok_budgets), plans, transitions)


def entry_tokens(law: MixtureLaw) -> dict[str, float]:
    """Closed form (no caps): the token count D at which each pool enters the mixture.

    Pool j enters when lambda* reaches q_j, i.e. once every better pool i is repeated up to
    x_i = U_i (1 + R*_i ln(q_i/q_j)); the best pool enters at D = 0. Used by the report and tests.
    """
    out = {}
    for j in range(law.k):
        better = law.quality > law.quality[j]
        q, u, r = law.quality[better], law.unique_tokens[better], law.rstar[better]
        out[law.names[j]] = float(np.sum(u * (1.0 + r * np.log(q / law.quality[j]))))
    return out
