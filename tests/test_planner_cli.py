"""The typer commands as the root CLI mounts them: `curate plan ...`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from curate.planner.cli import plan_app
from curate.planner.pools import Pool, PoolsFile, save_pools


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(plan_app, name="plan")
    return root


@pytest.fixture
def pools_json(tmp_path):
    pf = PoolsFile(tokenizer="cl100k_base", pools=[
        Pool(name="hq", source="cc", domain="web", quality_bucket="high", documents=10, characters=10**9,
             unique_tokens=2 * 10**8, quality=1.0, rstar=15.0),
        Pool(name="mq", source="cc", domain="web", quality_bucket=1, documents=10, characters=10**10,
             unique_tokens=2 * 10**9, quality=0.7),
        Pool(name="lq", source="cc", domain="web", quality_bucket="low", documents=10, characters=10**11,
             unique_tokens=2 * 10**10, quality=0.4, rstar=5.0),
    ])
    p = tmp_path / "pools.json"
    save_pools(pf, p)
    return p


def test_plan_for_budget_writes_plan_and_report(app, pools_json, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["plan", "--pools", str(pools_json), "--budget-flops", "1e20", "--out", str(out)])
    assert r.exit_code == 0, r.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["schema"] == "curate.plan/v1" and plan["mode"] == "law"
    assert [p["name"] for p in plan["pools"]] == ["hq", "mq", "lq"]
    w = np.array([p["weight"] for p in plan["pools"]])
    assert w.sum() == pytest.approx(1.0)
    for p in plan["pools"]:
        assert p["tokens"] == pytest.approx(p["weight"] * plan["model"]["tokens"])
        assert p["epochs"] == pytest.approx(p["tokens"] / p["unique_tokens"])
    # kept pools share one marginal value (the water level); an unkept pool's is lower
    kept = [p["marginal_value"] for p in plan["pools"] if p["kept"]]
    assert np.allclose(kept, plan["marginal"]["effective_tokens_per_token"], rtol=1e-6)
    assert plan["pools"][1]["quality_bucket"] == "1"  # numeric buckets become strings
    assert "<img" in (out / "report.html").read_text()


def test_plan_for_fixed_model_and_caps(app, pools_json, tmp_path):
    out = tmp_path / "out2"
    r = CliRunner().invoke(app, ["plan", "--pools", str(pools_json), "--params", "1e9", "--tokens", "2e10",
                                 "--max-epochs", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["model"]["params"] == 1e9 and plan["model"]["tokens"] == 2e10
    assert max(p["epochs"] for p in plan["pools"]) <= 4 + 1e-9


def test_plan_needs_pools_and_out(app):
    r = CliRunner().invoke(app, ["plan", "--budget-flops", "1e20"])
    assert r.exit_code != 0


def test_qqt_and_regmix_commands(app, shared_data, tmp_path):
    r = CliRunner().invoke(app, ["plan", "qqt", "--params-file", str(shared_data / "planner" / "qqt-tmars-parameter-values.jsonl"),
                                 "--out", str(tmp_path / "q"), "--samples", "3.2e7", "--samples", "6.4e8"])
    assert r.exit_code == 0, r.output
    q = json.loads((tmp_path / "q" / "plan.json").read_text())
    assert [len(b["best_union"]) for b in q["budgets"]] == [1, 2]
