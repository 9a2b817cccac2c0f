"""QQT mode (Goyal et al. 2024) on their published T-MARS parameters."""
from __future__ import annotations

import numpy as np
import pytest

from curate.planner import qqt


@pytest.fixture(scope="module")
def tmars(shared_data):
    return qqt.load_params(shared_data / "planner" / "qqt-tmars-parameter-values.jsonl", "tmars_imagenet1k_utility")


def test_loads_the_utility_fit_without_the_random_control(tmars):
    assert tmars.names == ["tmars_top0to10p", "tmars_top10to20p", "tmars_top20to30p", "tmars_top30to40p"]
    assert tmars.a == 0.025 and tmars.d == 0.1
    assert list(tmars.b) == [-0.16, -0.125, -0.1, -0.085]


def test_single_pool_error_by_hand():
    # 2.5 epochs of a 10M-sample pool, written out pass by pass (pass k utility b 0.5^(k/tau)).
    a, b, tau, d, S = 0.025, -0.16, 6.7272727272727275, 0.1, 10e6
    y = d + (a * S / 1e5) ** b
    y *= (2 * S / S) ** (b * 0.5 ** (1 / tau))
    y *= (2.5 * S / (2 * S)) ** (b * 0.5 ** (2 / tau))
    assert qqt.pool_error(2.5 * S, b, tau, a, d, S) == pytest.approx(y, rel=1e-13)
    # exactly one epoch: the power law alone
    assert qqt.pool_error(S, b, tau, a, d, S) == pytest.approx(d + (a * S / 1e5) ** b, rel=1e-13)


def test_union_of_identical_buckets_equals_one_bucket_twice_as_large():
    a, b, tau, d = 0.025, -0.12, 4.0, 0.1
    u = qqt.union_error(7e7, np.array([b, b]), np.array([tau, tau]), a, d, 2e7)
    assert u == pytest.approx(qqt.pool_error(7e7, b, tau, a, d, 2e7), rel=1e-13)


def test_union_averages_per_pass_utilities_by_hand():
    a, d, S = 0.025, 0.1, 12.8e6
    b1, b2, t1, t2 = -0.16, -0.125, 6.7272727272727275 * 2, 8.545454545454547 * 2  # half-lives x k = 2
    n = 3 * 2 * S  # three passes over the 2-bucket union
    bk = [0.5 * (b1 * 0.5 ** (k / t1) + b2 * 0.5 ** (k / t2)) for k in range(4)]
    y = d + (a * 2 * S / 1e5) ** bk[0]
    y *= 2.0 ** bk[1] * 1.5 ** bk[2]
    assert qqt.union_error(n, np.array([b1, b2]), np.array([t1, t2]), a, d, 2 * S) == pytest.approx(y, rel=1e-12)


def test_best_pool_shape_matches_goyal_et_al(tmars):
    # Their finding: filtering must be compute-aware. The most aggressive filter (top 10%) wins at
    # small budgets; as the number of samples seen grows, larger, less filtered unions take over.
    budgets = [32e6, 64e6, 128e6, 640e6, 2e9, 5e9]
    res = qqt.best_pool(tmars, budgets, pool_size=12.8e6)
    assert [len(u) for u in res.best_names()] == [1, 1, 2, 2, 3, 3]
    assert res.best_names()[0] == ["tmars_top0to10p"]
    # the winner at 32M loses at 640M: top-10% plateaus as its samples are repeated ~50 times
    acc = 1 - res.error
    assert acc[0, 0] > acc[0, 1] and acc[3, 0] < acc[3, 1]
    # best union size never shrinks as compute grows
    grid = qqt.best_pool(tmars, list(np.logspace(7, 10.5, 30)), 12.8e6)
    sizes = [len(u) for u in grid.best_names()]
    assert sizes == sorted(sizes)
