"""A plan from a fit repeats no pool past the largest repetition the fit's proxy runs measured for
it, unless the user sets a cap; the cap is recorded (plan.json, warnings, report) and a budget the
capped pools cannot hold is refused with a plain message. Synthetic fit: no proxy runs, seconds."""
from __future__ import annotations

import json

import numpy as np
import pytest

from curate.planner.errors import PlanInputError
from curate.planner.plan import measured_epochs, plan_command, repetition_caps
from curate.planner.pools import Pool, PoolsFile, save_pools
from curate.planner.solver import Caps

U = {"hq": 2 * 10**8, "mq": 2 * 10**9, "lq": 2 * 10**10}


def _run(name: str, weights: dict[str, float], unique: dict[str, int], tokens: int = 2**16) -> dict:
    return {"spec": {"name": name, "tokens": tokens, "weights": weights, "unique": unique, "kind": "fit",
                     "shape": {"d_model": 32}, "non_embedding_params": 20640}, "val_loss": 5.0}


@pytest.fixture
def pools_json(tmp_path):
    pf = PoolsFile(tokenizer="cl100k_base", pools=[
        Pool(name=n, source="cc", domain="web", quality_bucket=b, documents=10, characters=5 * u, unique_tokens=u)
        for (n, u), b in zip(U.items(), ("high", "mid", "low"))])
    p = tmp_path / "pools.json"
    save_pools(pf, p)
    return p


def synthetic_fit() -> dict:
    """hq: best and its R* barely pinned (500: 'repeat freely'), measured at 4 epochs at most;
    mq at 2 (a swarm run: 0.5 of 2^16 tokens over a 2^14 sample); lq at one epoch only."""
    pools = [{"name": n, "quality": q, "rstar": r, "quality_ci95": [q * 0.9, q * 1.1], "rstar_ci95": [r * 0.5, r * 2],
              "quality_at_bound": None, "rstar_at_bound": None}
             for n, q, r in (("hq", 1.0, 500.0), ("mq", 0.7, 15.0), ("lq", 0.4, 5.0))]
    runs = [_run("hq/1ep", {"hq": 1.0}, {"hq": 2**16}), _run("hq/4ep", {"hq": 1.0}, {"hq": 2**14}),
            _run("lq/1ep", {"lq": 1.0}, {"lq": 2**16}),
            _run("swarm0", {"hq": 0.1, "mq": 0.5, "lq": 0.4}, {"hq": 2**14, "mq": 2**14, "lq": 2**16})]
    return {"fit": {"ref_pool": "hq", "base": {"E": 1.7, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
                    "pools": pools, "at_bound": [], "n_bootstrap": 10},
            "estimators": {"law": {"spearman": 0.9, "mae": 0.01, "n_heldout": 8, "n_train": 30},
                           "dml": {"spearman": 0.95, "mae": 0.02, "n_heldout": 8, "n_train": 16}},
            "chosen_estimator": "dml", "mixtures": {"dml": {"weights": {"hq": 0.9, "mq": 0.05, "lq": 0.05}}},
            "groups": [{"name": n, "members": [n], "train_tokens": 2**16} for n in U],
            "validation": {"spearman": 0.9, "mae": 0.01, "runs": [{"name": f"holdout{i}", "measured": 5.0 + i / 10,
                                                                           "predicted": 5.0 + i / 9} for i in range(3)]}, "runs": runs, "n_runs": len(runs), "seconds": 1.0,
            "design": {"epochs": [4], "base_size": 32}, "target": {"description": "synthetic"}}


def test_measured_epochs_per_pool_and_merged_members():
    fit = synthetic_fit()
    assert measured_epochs(fit) == {"hq": 4.0, "mq": 2.0, "lq": 1.0}
    fit["groups"] = [{"name": "hq", "members": ["hq", "hq_small"]}, {"name": "mq", "members": ["mq"]}]
    caps, prov = repetition_caps(["hq", "hq_small", "mq", "lq", "unmeasured"], fit)
    assert caps.max_epochs == {"hq": 4.0, "hq_small": 4.0, "mq": 2.0, "lq": 1.0, "unmeasured": 4.0}
    assert prov["mq"]["source"] == "largest repetition measured in the proxy runs (2 epochs)"
    assert prov["unmeasured"]["source"].startswith("largest repetition in the fit's design (4 epochs")
    assert repetition_caps(["hq"], None) == (Caps(), {})  # no fit: nothing measured, nothing added


def test_cap_binds_on_the_law_plan_and_is_recorded(pools_json, tmp_path):
    logged: list[str] = []
    plan = plan_command(pools_json, tmp_path / "p", params=1e9, tokens=2e10, fit=synthetic_fit(), estimator="law",
                        log=logged.append)
    by = {r["name"]: r for r in plan["pools"]}
    # uncapped, R* = 500 would put hq at ~100 epochs; it stops at the 4 measured, mq at its 2
    assert by["hq"]["epochs"] == pytest.approx(4.0) and by["mq"]["epochs"] == pytest.approx(2.0)
    assert by["lq"]["tokens"] == pytest.approx(2e10 - 4 * U["hq"] - 2 * U["mq"], rel=1e-9)
    assert by["hq"]["epoch_cap"] == 4.0 and "epoch_cap" not in by["lq"]
    caps = json.loads((tmp_path / "p" / "plan.json").read_text())["caps"]["epoch_caps"]
    assert caps["hq"] == {"max_epochs": 4.0, "source": "largest repetition measured in the proxy runs (4 epochs)"}
    assert ("warning: epoch cap binds: hq planned at 4 epochs, its cap from the largest repetition measured in the "
            "proxy runs (4 epochs); more repetition is unmeasured") in logged
    assert not any("every pool is at its epoch cap" in w for w in logged)  # lq is not
    html = (tmp_path / "p" / "report.html").read_text()
    assert "<h3>Epoch caps</h3>" in html and "largest repetition measured in the proxy runs (2 epochs)" in html


def test_explicit_caps_win(pools_json, tmp_path):
    fit = synthetic_fit()
    plan = plan_command(pools_json, tmp_path / "a", params=1e9, tokens=2e10, fit=fit, estimator="law",
                        caps=Caps(max_epochs={"hq": 10.0}), log=lambda m: None)
    by = {r["name"]: r for r in plan["pools"]}
    assert by["hq"]["epochs"] == pytest.approx(10.0) and by["mq"]["epochs"] <= 2.0 + 1e-9
    assert plan["caps"]["epoch_caps"]["hq"]["source"] == "explicit (--pool-max-epochs)"
    plan = plan_command(pools_json, tmp_path / "b", params=1e9, tokens=2e10, fit=fit, estimator="law",
                        caps=Caps(default_max_epochs=50.0), log=lambda m: None)
    assert max(r["epochs"] for r in plan["pools"]) > 4.5  # past the measured 4: the user asked for it
    assert {c["source"] for c in plan["caps"]["epoch_caps"].values()} == {"explicit (--max-epochs)"}


def test_an_estimator_mixture_is_capped_too(pools_json, tmp_path):
    plan = plan_command(pools_json, tmp_path / "p", params=1e9, tokens=2e10, fit=synthetic_fit(), estimator="dml",
                        log=lambda m: None)
    w = {r["name"]: r["weight"] for r in plan["pools"]}
    assert plan["estimator"]["name"] == "dml" and sum(w.values()) == pytest.approx(1.0)
    assert w["hq"] == pytest.approx(4 * U["hq"] / 2e10)  # dml asked for 0.9: 90 epochs
    assert w["mq"] >= 0.05 - 1e-12 and w["lq"] >= 0.05 - 1e-12  # what the caps allow of dml's mixture stays
    capped = plan["estimator"]["capped"]
    assert capped["mixture"]["hq"] == pytest.approx(0.9) and capped["reassigned_share"] == pytest.approx(0.9 - w["hq"])


def test_a_budget_past_the_capped_pools_is_refused_plainly(pools_json, tmp_path):
    with pytest.raises(PlanInputError, match=r"needs 3e\+10 tokens but the pools hold only 2\.48e\+10 within their "
                                             r"epoch caps"):
        plan_command(pools_json, tmp_path / "p", params=1e9, tokens=3e10, fit=synthetic_fit(), estimator="law",
                     log=lambda m: None)
    # a FLOP budget instead trades tokens for model size within the caps
    plan = plan_command(pools_json, tmp_path / "q", budget_flops=6 * 1e9 * 3e10, fit=synthetic_fit(), estimator="law",
                        log=lambda m: None)
    assert plan["model"]["tokens"] <= 2.48e10 * (1 + 1e-9)
    assert any(w.startswith("every pool is at its epoch cap") and "larger model" in w for w in plan["warnings"])
    assert all(r["epochs"] <= plan["caps"]["epoch_caps"][r["name"]]["max_epochs"] + 1e-9 for r in plan["pools"])
    assert np.isclose(sum(r["weight"] for r in plan["pools"]), 1.0)
