"""Water-filling against scipy's general constrained solvers, closed-form thresholds, caps."""
from __future__ import annotations

import math

import numpy as np
import pytest

from curate.planner import laws, solver
from curate.planner.mixture import MixtureLaw


@pytest.fixture
def law() -> MixtureLaw:
    return MixtureLaw(laws.CHINCHILLA, ["clean", "good", "ok", "noisy"], np.array([1e9, 5e9, 2e10, 1e11]),
                      np.array([1.0, 0.8, 0.55, 0.3]), np.array([15.0, 10.0, 5.0, 20.0]))


@pytest.mark.parametrize("N, D", [(1e8, 5e8), (1e8, 5e9), (1e9, 3e10), (1e9, 2e11), (1e10, 1e12), (3e10, 1e13)])
def test_waterfill_equals_general_solvers(law, N, D):
    wf = solver.waterfill(law, N, D)
    assert wf.tokens.sum() == pytest.approx(D, rel=1e-12)
    for method in ("SLSQP", "trust-constr"):
        gen = solver.general_solve(law, N, D, method=method)
        assert abs(wf.loss - gen.loss) < 1e-6, method
        # water-filling is the exact optimum: no general solver beats it beyond round-off
        assert wf.loss <= gen.loss + 1e-12
    assert np.allclose(wf.weights, solver.general_solve(law, N, D).weights, atol=2e-3)


def test_kkt_equal_marginal_value_across_active_pools(law):
    a = solver.waterfill(law, 1e9, 2e11)
    m = law.marginal(a.tokens)
    active = a.weights > 1e-9
    assert active.sum() >= 2
    assert np.allclose(m[active], a.lam, rtol=1e-9)
    assert np.all(m[~active] <= a.lam + 1e-12)  # an idle pool's first token is worth less than lambda


def test_pools_enter_at_closed_form_token_counts(law):
    # Independent of the solver: pool j enters once each better pool i holds U_i (1 + R*_i ln(q_i/q_j)).
    U, q, r = law.unique_tokens, law.quality, law.rstar
    expected_b = U[0] * (1 + r[0] * math.log(q[0] / q[1]))
    assert solver.entry_tokens(law)["good"] == pytest.approx(expected_b, rel=1e-12)
    for name, D_in in solver.entry_tokens(law).items():
        if D_in == 0:
            continue
        j = law.names.index(name)
        assert solver.waterfill(law, 1e9, D_in * 0.999).weights[j] == 0
        assert solver.waterfill(law, 1e9, D_in * 1.001).weights[j] > 0


def test_tied_qualities_fill_first_epochs_in_proportion():
    law = MixtureLaw(laws.CHINCHILLA, ["a", "b", "c"], np.array([1e9, 3e9, 1e9]), np.array([1.0, 1.0, 0.5]),
                     np.array([15.0, 15.0, 15.0]))
    a = solver.waterfill(law, 1e8, 2e9)
    assert a.tokens[0] == pytest.approx(0.5e9) and a.tokens[1] == pytest.approx(1.5e9) and a.tokens[2] == 0
    assert abs(a.loss - solver.general_solve(law, 1e8, 2e9).loss) < 1e-6


def test_caps_are_respected_and_match_general_solver(law):
    caps = solver.Caps(default_max_epochs=4, min_weight={"noisy": 0.1}, max_weight={"ok": 0.5})
    a = solver.waterfill(law, 1e9, 1e11, caps)
    assert np.all(a.epochs <= 4 + 1e-9)
    assert a.weights[3] >= 0.1 - 1e-12 and a.weights[2] <= 0.5 + 1e-12
    assert abs(a.loss - solver.general_solve(law, 1e9, 1e11, caps).loss) < 1e-6
    with pytest.raises(solver.Infeasible):
        solver.waterfill(law, 1e9, 1e13, solver.Caps(default_max_epochs=4))


def test_budget_plan_unconstrained_single_pool_is_chinchilla_optimal():
    # One pool, q = 1, far more unique data than needed: the outer search must land on the closed form.
    big = MixtureLaw(laws.CHINCHILLA, ["all"], np.array([1e15]), np.array([1.0]), np.array([15.0]), param_excess=False)
    bp = solver.plan_for_budget(big, 1e21)
    N, D = laws.compute_optimal(1e21, laws.CHINCHILLA)
    assert bp.alloc.N == pytest.approx(N, rel=1e-4)
    assert bp.alloc.D == pytest.approx(D, rel=1e-4)


def test_threshold_budgets_match_entry_tokens(law):
    fr = solver.frontier(law, np.logspace(18, 23, 11))
    assert [t["entered"] for t in fr.transitions] == [["good"], ["ok"], ["noisy"]]
    entry = solver.entry_tokens(law)
    for t in fr.transitions:
        D_at = solver.plan_for_budget(law, t["budget_flops"]).alloc.D
        assert D_at == pytest.approx(entry[t["entered"][0]], rel=1e-4)
