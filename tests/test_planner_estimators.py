"""Estimators and naive baselines, against independent computations (no proxy training here)."""
from __future__ import annotations

import numpy as np
import pytest

from curate.planner import baselines
from curate.planner import estimators as est
from curate.planner.prepare import merge_small, scaled_vocab
from curate.planner.pools import Pool, PoolsFile


def test_data_mixing_law_recovers_its_own_form():
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), size=40)
    t = np.array([-1.5, 0.3, 0.8, -0.2])
    y = 2.0 + 1.3 * np.exp(X @ t)
    m = est.DMLEstimator().fit(X, y)
    Xt = rng.dirichlet(np.ones(4), size=10)
    assert np.allclose(m.predict(Xt), 2.0 + 1.3 * np.exp(Xt @ t), atol=1e-4)


def test_score_and_choose_the_best_validated():
    meas = np.array([3.0, 3.1, 3.2, 3.3])
    good = est.score("law", meas + 0.01, meas, 10)
    bad = est.score("regmix", meas[::-1], meas, 10)
    assert good.spearman == pytest.approx(1.0) and bad.spearman == pytest.approx(-1.0)
    assert good.mae == pytest.approx(0.01)
    broken = est.Score("dml", float("nan"), float("nan"), 0, 4, error="could not fit")
    assert est.choose({"law": good, "regmix": bad, "dml": broken}) == "law"
    assert est.choose({"law": good, "regmix": bad}, prefer="regmix") == "regmix"
    with pytest.raises(ValueError, match="could not fit"):
        est.choose({"dml": broken}, prefer="dml")


def test_unimax_caps_epochs_and_spreads_the_rest():
    sizes = np.array([10.0, 100.0, 1000.0])
    w = baselines.unimax(sizes, 300.0, max_epochs=1.0)
    # the 10-token pool takes all it can (1 epoch); the other two split the remaining 290
    assert np.allclose(w * 300.0, [10.0, 100.0, 190.0])
    w = baselines.unimax(sizes, 3000.0, max_epochs=1.0)  # more than one epoch of everything
    assert w.sum() == pytest.approx(1.0) and np.all(w * 3000.0 >= sizes - 1e-9)
    assert np.allclose(baselines.natural(sizes), sizes / sizes.sum())


def test_top_bucket_keeps_the_best_scored_pool_of_each_source_and_domain():
    keys = [("cc", "stem"), ("cc", "stem"), ("cc", "art"), ("wiki", "x"), ("code", "x")]
    scores = [0.1, 0.6, 0.3, 0.9, None]
    w = baselines.top_bucket(keys, scores, np.array([100.0, 50.0, 30.0, 20.0, 500.0]))
    assert np.allclose(w, np.array([0, 50, 30, 20, 0]) / 100.0)
    assert np.allclose(baselines.top_pool(scores), [0, 0, 0, 1, 0])


def _pool(name, source, domain, bucket, score=None):
    return Pool(name=name, source=source, domain=domain, quality_bucket=bucket, documents=1, characters=1,
                unique_tokens=1, score=score)


def test_small_pools_merge_into_the_nearest_sibling_or_get_a_prior():
    pf = PoolsFile(pools=[_pool("a_low", "cc", "stem", "low", 0.1), _pool("a_mid", "cc", "stem", "mid", 0.3),
                          _pool("a_high", "cc", "stem", "high", 0.9), _pool("b", "wiki", "x", "all"),
                          _pool("c", "code", "x", "all")])
    sizes = {"a_low": 5000, "a_mid": 20, "a_high": 9000, "b": 30, "c": 8000}
    groups, unplaced, notes = merge_small(pf, sizes, min_tokens=1000)
    members = {g.name: g.members for g in groups}
    # a_mid (20 tokens, score 0.3) joins a_low (0.1), the nearer-scored sibling; b has no sibling: a prior
    assert members == {"a_low": ["a_low", "a_mid"], "a_high": ["a_high"], "c": ["c"]}
    assert set(unplaced) == {"b"} and "planned with a prior" in unplaced["b"]
    assert any("'a_mid' (20 proxy tokens" in n and "merged into sibling 'a_low'" in n for n in notes)


def test_vocabulary_scales_with_the_text():
    assert scaled_vocab(10_000, 2048) == 256
    assert scaled_vocab(400 * 1024, 2048) == 1024
    assert scaled_vocab(10**9, 2048) == 2048
