"""Published laws against numbers computed independently (30-digit mpmath, by hand, or by a
numerical optimiser that knows nothing of the closed forms)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from curate.planner import laws


def test_muennighoff_c4_constants_are_the_papers_log_space_fit():
    c = laws.MUENNIGHOFF_C4
    assert math.log(c.A) == pytest.approx(6.255414, abs=1e-12)
    assert math.log(c.B) == pytest.approx(7.3049974, abs=1e-12)
    assert math.log(c.E) == pytest.approx(0.6254804, abs=1e-12)
    assert c.alpha == c.beta == 0.3526596
    assert (c.rstar_d, c.rstar_n) == (15.387756, 5.309743)


@pytest.mark.parametrize("epochs, expected", [
    # 1 + R*(1 - exp(-(epochs-1)/R*)), R* = 15.387756, evaluated with mpmath at 30 digits
    (4, 3.72567312306132685447),
    (16, 10.5824569826707526367),
])
def test_effective_data_after_repeated_epochs(epochs, expected):
    U = 1e9
    assert laws.effective_data(epochs * U, U, laws.MUENNIGHOFF_C4.rstar_d) / U == pytest.approx(expected, rel=1e-12)


def test_effective_data_is_identity_on_first_epoch_and_saturates():
    r = laws.MUENNIGHOFF_C4.rstar_d
    assert laws.effective_data(7e8, 1e9, r) == 7e8
    # as epochs -> inf, D'/U -> 1 + R*
    assert laws.effective_data(1e6 * 1e9, 1e9, r) / 1e9 == pytest.approx(1 + r, rel=1e-9)
    # the slope is 1 on the first epoch and exp(-R/R*) after: check against finite differences
    for D in (5e8, 2e9, 1.6e10):
        h = D * 1e-6
        fd = (laws.effective_data(D + h, 1e9, r) - laws.effective_data(D - h, 1e9, r)) / (2 * h)
        assert laws.effective_data_derivative(D, 1e9, r) == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("c, C, N_exp, D_exp", [
    # G = (alpha A / (beta B))^(1/(alpha+beta)); N = G (C/6)^(b/(a+b)), D = (C/6)^(a/(a+b)) / G (mpmath)
    (laws.CHINCHILLA, 5.76e23, 32189859151.3681902489, 2982305686662.80226454),
    (laws.CHINCHILLA, 1e21, 1824217696.895553605408, 91363364663.2741995066),
    (laws.EPOCH, 5.76e23, 72248702500.3822143455, 1328743585388.15468887),
    (laws.EPOCH, 1e21, 2778459463.06762615593, 59985279210.3197558225),
])
def test_compute_optimal_closed_form(c, C, N_exp, D_exp):
    N, D = laws.compute_optimal(C, c)
    assert N == pytest.approx(N_exp, rel=1e-10)
    assert D == pytest.approx(D_exp, rel=1e-10)
    assert 6 * N * D == pytest.approx(C, rel=1e-12)


@pytest.mark.parametrize("c", [laws.CHINCHILLA, laws.EPOCH, laws.MUENNIGHOFF_C4])
def test_compute_optimal_matches_numerical_minimum(c):
    C = 3e22
    res = optimize.minimize_scalar(lambda t: laws.chinchilla_loss(math.exp(t), C / (6 * math.exp(t)), c),
                                   bounds=(math.log(1e6), math.log(1e14)), method="bounded", options={"xatol": 1e-12})
    N, _ = laws.compute_optimal(C, c)
    assert math.exp(res.x) == pytest.approx(N, rel=1e-5)


def test_epoch_replication_recovers_chinchillas_own_allocation():
    # Besiroglu et al.: their refit puts Chinchilla's budget (5.76e23) near the 70B / 1.4T model,
    # ~20 tokens per parameter; the constants as printed by Hoffmann et al. do not (~93 tokens/param).
    N, D = laws.compute_optimal(5.76e23, laws.EPOCH)
    assert N == pytest.approx(70e9, rel=0.05) and D == pytest.approx(1.4e12, rel=0.06)
    assert 15 < D / N < 25
    Nc, Dc = laws.compute_optimal(5.76e23, laws.CHINCHILLA)
    assert Dc / Nc > 80


def test_n_opt_for_data_inverts_compute_optimal():
    for c in (laws.CHINCHILLA, laws.EPOCH, laws.MUENNIGHOFF_C4):
        N, D = laws.compute_optimal(np.array([1e19, 1e22, 1e25]), c)
        assert np.allclose(laws.n_opt_for_data(D, c), N, rtol=1e-10)


def test_data_constrained_loss_reduces_to_chinchilla_form_without_repetition():
    c = laws.MUENNIGHOFF_C4
    N, D = 1e7, 1e10  # N under N_opt(D/16) = 3.2e7, so N' = N in both runs
    assert laws.data_constrained_loss(N, D, D, c) == pytest.approx(c.E + c.A / N**c.alpha + c.B / D**c.beta, rel=1e-14)
    # repeating 16 epochs of 1/16 of the data loses, by exactly B/D'^beta - B/D^beta
    rep = laws.data_constrained_loss(N, D, D / 16, c)
    dprime = (D / 16) * 10.5824569826707526367
    assert rep - laws.data_constrained_loss(N, D, D, c) == pytest.approx(c.B / dprime**c.beta - c.B / D**c.beta, rel=1e-9)


def test_excess_parameters_decay():
    c = laws.MUENNIGHOFF_C4
    U = 1e9
    un = float(laws.n_opt_for_data(U, c))
    # 3x the parameters the unique data supports: N' = U_N (1 + R*_N (1 - exp(-2/R*_N)))
    expected = un * (1 + 5.309743 * (1 - math.exp(-2 / 5.309743)))
    assert laws.effective_params(3 * un, U, c) == pytest.approx(expected, rel=1e-12)
    assert laws.effective_params(0.5 * un, U, c) == pytest.approx(0.5 * un, rel=1e-12)
