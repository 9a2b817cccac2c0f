"""The mixture law: a data-constrained scaling law over several pools of unequal quality.

    L(N, D, w) = E + A / N'^alpha + B / D_eff^beta,
    D_eff(w, D) = sum_i q_i * D'_i(w_i D),   D'_i(x) = U_i + U_i R*_i (1 - exp(-(x/U_i - 1)/R*_i)) past U_i

q_i is the worth of one fresh token of pool i relative to the reference data of the base law
(q = 1: as good as what the base law was fitted on), R*_i is the pool's own repetition constant,
U_i its unique tokens. D'_i is Muennighoff et al.'s effective data for that pool alone: repeats
decay pool by pool, which is what lets a small clean pool be repeated while a big noisy one is not.

N' is Muennighoff's effective parameter count with U_D = sum_i q_i U_i (the quality-weighted unique
data *available*): it does not depend on w, which keeps the problem over w convex (see solver.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .laws import (
    LawConstants,
    effective_data,
    effective_data_derivative,
    effective_params,
)


@dataclass
class MixtureLaw:
    base: LawConstants
    names: list[str]
    unique_tokens: np.ndarray
    quality: np.ndarray
    rstar: np.ndarray
    # Muennighoff's excess-parameter discount. Off for laws fitted on proxy runs, where the
    # epoch sweep uses one model size and cannot identify R*_N (documented in docs/planner.md).
    param_excess: bool = True
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.unique_tokens = np.asarray(self.unique_tokens, dtype=float)
        self.quality = np.asarray(self.quality, dtype=float)
        self.rstar = np.asarray(self.rstar, dtype=float)
        k = len(self.names)
        if not (self.unique_tokens.shape == self.quality.shape == self.rstar.shape == (k,)):
            raise ValueError("names, unique_tokens, quality and rstar must have one entry per pool")
        if np.any(self.unique_tokens <= 0) or np.any(self.quality <= 0) or np.any(self.rstar <= 0):
            raise ValueError("unique_tokens, quality and rstar must be positive")

    @property
    def k(self) -> int:
        return len(self.names)

    def effective_data(self, tokens: np.ndarray) -> float:
        """D_eff for tokens[i] tokens drawn from pool i (repeating it past U_i)."""
        tokens = np.asarray(tokens, dtype=float)
        parts = [self.quality[i] * effective_data(tokens[i], self.unique_tokens[i], self.rstar[i]) for i in range(self.k)]
        return float(np.sum(parts))

    def marginal(self, tokens: np.ndarray) -> np.ndarray:
        """dD_eff/dx_i = q_i * exp(-R_i / R*_i): the effective value of one more token of pool i."""
        tokens = np.asarray(tokens, dtype=float)
        return self.quality * effective_data_derivative(tokens, self.unique_tokens, self.rstar)

    def effective_params(self, N: float) -> float:
        if not self.param_excess or not math.isfinite(self.base.rstar_n):
            return float(N)
        u = float(np.sum(self.quality * self.unique_tokens))
        return float(effective_params(N, u, self.base))

    def loss_from_deff(self, N: float, d_eff: float) -> float:
        b = self.base
        return b.E + b.A / self.effective_params(N) ** b.alpha + b.B / d_eff**b.beta

    def loss(self, N: float, tokens: np.ndarray) -> float:
        return self.loss_from_deff(N, self.effective_data(tokens))

    def loss_grad_tokens(self, N: float, tokens: np.ndarray) -> np.ndarray:
        """dL/dx_i = -beta B D_eff^(-beta-1) * marginal_i."""
        d = self.effective_data(tokens)
        return -self.base.beta * self.base.B * d ** (-self.base.beta - 1.0) * self.marginal(tokens)
