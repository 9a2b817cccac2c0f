"""Published scaling laws: Chinchilla (Hoffmann et al. 2022), Epoch AI's replication (Besiroglu
et al. 2024) and the data-constrained law of Muennighoff et al. (2023).

All laws share the form L(N, D) = E + A / N^alpha + B / D^beta. The data-constrained law replaces
N and D by "effective" counts N', D' that discount repeated data and parameters in excess of what
the unique data can feed. Everything here is plain numpy so it broadcasts over arrays.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

ArrayLike = float | np.ndarray


@dataclass(frozen=True)
class LawConstants:
    """Constants of L = E + A/N'^alpha + B/D'^beta (+ repetition constants R*_D, R*_N)."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    # Muennighoff et al.'s "half-lives" of repeated data / excess parameters. Chinchilla and Epoch
    # were fitted on unique data only, so we borrow the C4 fit's values for them: a documented choice.
    rstar_d: float = 15.387756
    rstar_n: float = 5.309743

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **kw: Any) -> LawConstants:
        return replace(self, **kw)


# Hoffmann et al. 2022, approach 3 (parametric fit), as printed in the paper.
CHINCHILLA = LawConstants("chinchilla", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt"), their re-fit of approach 3.
EPOCH = LawConstants("epoch", E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
# Muennighoff et al. 2023, C4 fit; the paper reports A, B, E in log space.
MUENNIGHOFF_C4 = LawConstants(
    "muennighoff_c4",
    E=math.exp(0.6254804),
    A=math.exp(6.255414),
    B=math.exp(7.3049974),
    alpha=0.3526596,
    beta=0.3526596,
    rstar_d=15.387756,
    rstar_n=5.309743,
)
PRESETS: dict[str, LawConstants] = {c.name: c for c in (CHINCHILLA, EPOCH, MUENNIGHOFF_C4)}


def preset(name: str) -> LawConstants:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown law {name!r}; choose one of {sorted(PRESETS)} or 'fitted'") from None


def chinchilla_loss(N: ArrayLike, D: ArrayLike, c: LawConstants = CHINCHILLA) -> ArrayLike:
    """L(N, D) on unique data: no repetition discount."""
    return c.E + c.A / np.power(N, c.alpha) + c.B / np.power(D, c.beta)


def g_factor(c: LawConstants) -> float:
    """G = (alpha A / (beta B))^(1/(alpha+beta)), the scale of the compute-optimal allocation."""
    return (c.alpha * c.A / (c.beta * c.B)) ** (1.0 / (c.alpha + c.beta))


def compute_optimal(C: ArrayLike, c: LawConstants = CHINCHILLA) -> tuple[ArrayLike, ArrayLike]:
    """Closed-form minimiser of L(N, D) subject to 6 N D = C (Hoffmann et al., eq. 4).

    N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = G^-1 (C/6)^(alpha/(alpha+beta)).
    """
    g = g_factor(c)
    a = c.beta / (c.alpha + c.beta)
    b = c.alpha / (c.alpha + c.beta)
    x = np.asarray(C, dtype=float) / 6.0
    return g * np.power(x, a), np.power(x, b) / g


def n_opt_for_data(D: ArrayLike, c: LawConstants) -> ArrayLike:
    """Compute-optimal parameters for D tokens: N_opt(D) = (D G)^(beta/alpha) G (invert D_opt(C))."""
    g = g_factor(c)
    return np.power(np.asarray(D, dtype=float) * g, c.beta / c.alpha) * g


def effective_data(D: ArrayLike, U: ArrayLike, rstar: float) -> ArrayLike:
    """D' = U + U R* (1 - exp(-R_D / R*)), R_D = max(D/U - 1, 0); D' = D while D <= U.

    Repeated tokens are worth exponentially less: the k-th extra epoch's value decays with
    "half-life" ~R* ln 2. As D/U -> inf, D' -> U (1 + R*).
    """
    D = np.asarray(D, dtype=float)
    U = np.asarray(U, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.maximum(np.where(U > 0, D / np.where(U > 0, U, 1.0), 0.0) - 1.0, 0.0)
        rep = U + U * rstar * (-np.expm1(-r / rstar))
    out = np.where(D <= U, D, rep)
    return out if out.ndim else float(out)


def effective_data_derivative(D: ArrayLike, U: ArrayLike, rstar: float) -> ArrayLike:
    """dD'/dD: 1 on the first epoch, exp(-R_D/R*) after: the value of one more token."""
    D = np.asarray(D, dtype=float)
    U = np.asarray(U, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.maximum(D / np.where(U > 0, U, 1.0) - 1.0, 0.0)
    out = np.where(D <= U, 1.0, np.exp(-r / rstar))
    return out if out.ndim else float(out)


def effective_params(N: ArrayLike, U_data: ArrayLike, c: LawConstants) -> ArrayLike:
    """N' with U_N = min(N, N_opt(U_D)), R_N = max(N/U_N - 1, 0): parameters beyond what the unique
    data would use compute-optimally decay like repeated tokens, with constant R*_N."""
    N = np.asarray(N, dtype=float)
    un = np.minimum(N, n_opt_for_data(U_data, c))
    r = np.maximum(N / un - 1.0, 0.0)
    out = un + un * c.rstar_n * (-np.expm1(-r / c.rstar_n))
    return out if out.ndim else float(out)


def data_constrained_loss(N: ArrayLike, D: ArrayLike, U: ArrayLike, c: LawConstants = MUENNIGHOFF_C4) -> ArrayLike:
    """Muennighoff et al.'s L(N, D, U) = E + A/N'^alpha + B/D'^beta."""
    dp = effective_data(D, U, c.rstar_d)
    npr = effective_params(N, U, c)
    return c.E + c.A / np.power(npr, c.alpha) + c.B / np.power(dp, c.beta)
