"""`curate plan`: from pools.json (+ an optional fit) and a budget to plan.json and report.html.

plan.json is read by the sharding mixer; its schema (`curate.plan/v1`) is documented in
docs/planner.md. Three modes:
- law (default): the mixture law (mixture.py) solved exactly (solver.py);
- qqt: Goyal et al.'s best-pool selection on their fitted bucket parameters (qqt.py);
- regmix: RegMix regression on proxy-run mixtures and losses (regmix.py).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import laws
from .mixture import MixtureLaw
from .pools import PoolsFile, load_pools
from .solver import (
    Allocation,
    Caps,
    frontier,
    general_solve,
    plan_for_budget,
    waterfill,
)

SCHEMA = "curate.plan/v1"


def build_law(pf: PoolsFile, fit: dict | None = None, base: str = "chinchilla") -> MixtureLaw:
    """Per-pool q_i and R*_i come from the fit when it has the pool, else from pools.json priors,
    else q = 1 and the base law's R*_D. Base constants: a preset, or `fitted` (needs a fit)."""
    fit_pools = {p["name"]: p for p in (fit or {}).get("fit", {}).get("pools", [])}
    if base == "fitted":
        if not fit:
            raise ValueError("base 'fitted' needs --fit FIT.json from `curate plan fit`")
        b = fit["fit"]["base"]
        consts = laws.LawConstants("fitted", E=b["E"], A=b["A"], B=b["B"], alpha=b["alpha"], beta=b["beta"],
                                   rstar_d=math.nan, rstar_n=math.inf)
    else:
        consts = laws.preset(base)
    q, r = [], []
    for p in pf.pools:
        fp = fit_pools.get(p.name)
        q.append(fp["quality"] if fp else (p.quality or 1.0))
        rr = fp["rstar"] if fp else (p.rstar or consts.rstar_d)
        if not math.isfinite(rr):
            raise ValueError(f"pool {p.name!r} has no R* (not in the fit, no prior in pools.json)")
        r.append(rr)
    q_arr = np.array(q, float)
    if base != "fitted" and fit_pools:
        # Fitted q are relative to the fit's reference pool; under a published base law the best
        # pool is taken to be worth the data that law was fitted on (q = 1). Only ratios of q
        # decide the mixture; this sets the loss level and the N/D balance.
        q_arr = q_arr / q_arr.max()
    return MixtureLaw(consts, [p.name for p in pf.pools], np.array([p.unique_tokens for p in pf.pools], float),
                      q_arr, np.array(r), param_excess=base != "fitted")


def _pool_rows(pf: PoolsFile, law: MixtureLaw, a: Allocation) -> list[dict]:
    m = law.marginal(a.tokens)
    rows = []
    for i, p in enumerate(pf.pools):
        rows.append({
            "name": p.name, "source": p.source, "domain": p.domain, "quality_bucket": p.quality_bucket,
            "path": p.path, "kept": bool(a.weights[i] > 1e-9), "weight": float(a.weights[i]),
            "tokens": float(a.tokens[i]), "epochs": float(a.epochs[i]), "unique_tokens": int(p.unique_tokens),
            "quality": float(law.quality[i]), "rstar": float(law.rstar[i]),
            "marginal_value": float(m[i]),  # effective tokens per extra raw token of this pool
        })
    return rows


def law_plan(pf: PoolsFile, law: MixtureLaw, *, budget_flops: float | None = None, params: float | None = None,
             tokens: float | None = None, caps: Caps | None = None, n_frontier: int = 19,
             frontier_span: float = 1e3) -> dict[str, Any]:
    """Solve one plan and the frontier around it; returns the plan.json dictionary (plus the
    objects the report draws from under the `_objects` key, stripped before writing)."""
    caps = caps or Caps()
    if budget_flops is None and (params is None or tokens is None):
        raise ValueError("give --budget-flops, or both --params and --tokens")
    if budget_flops is not None and params is None:
        bp = plan_for_budget(law, budget_flops, caps)
        alloc, outer = bp.alloc, (bp.curve_N, bp.curve_loss)
    else:
        if params is None or tokens is None:
            raise ValueError("--params and --tokens go together")
        alloc, outer = waterfill(law, params, tokens, caps), None
        budget_flops = 6.0 * params * tokens
    check = general_solve(law, alloc.N, alloc.D, caps)
    budgets = np.logspace(math.log10(budget_flops / frontier_span), math.log10(budget_flops * frontier_span), n_frontier)
    fr = frontier(law, budgets, caps)
    plan = {
        "schema": SCHEMA,
        "mode": "law",
        "base_law": law.base.to_dict(),
        "budget": {"flops": float(budget_flops), "params": params, "tokens": tokens},
        "model": {"params": alloc.N, "tokens": alloc.D, "flops": 6.0 * alloc.N * alloc.D},
        "predicted_loss": alloc.loss,
        "effective_tokens": alloc.d_eff,
        "marginal": {"effective_tokens_per_token": alloc.lam, "loss_per_token": alloc.dloss_dtoken,
                     "loss_per_billion_tokens": alloc.dloss_dtoken * 1e9},
        "solver": {"method": "waterfill", "check": check.method, "check_loss": check.loss,
                   "abs_loss_difference": abs(check.loss - alloc.loss)},
        "pools": _pool_rows(pf, law, alloc),
        "thresholds": fr.transitions,
        "frontier": [{"budget_flops": p.C, "params": p.alloc.N, "tokens": p.alloc.D, "loss": p.alloc.loss,
                      "weights": dict(zip(law.names, map(float, p.alloc.weights)))} for p in fr.plans],
        "caps": {"max_epochs": caps.max_epochs, "default_max_epochs": caps.default_max_epochs,
                 "min_weight": caps.min_weight, "max_weight": caps.max_weight},
        "_objects": {"law": law, "alloc": alloc, "frontier": fr, "outer": outer},
    }
    return plan


def write_plan(plan: dict, out: Path, fit: dict | None = None) -> tuple[Path, Path]:
    from .report import render_report

    out.mkdir(parents=True, exist_ok=True)
    objects = plan.pop("_objects", {})
    if fit:
        plan["fit"] = {"ref_pool": fit["fit"]["ref_pool"], "base": fit["fit"]["base"],
                       "validation_spearman": fit["validation"]["spearman"], "n_runs": fit.get("n_runs")}
    pj = out / "plan.json"
    pj.write_text(json.dumps(plan, indent=2, default=_json_default) + "\n")
    html = out / "report.html"
    html.write_text(render_report(plan, objects, fit))
    return pj, html


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def plan_command(pools: str | Path, out: str | Path, *, budget_flops: float | None = None, params: float | None = None,
                 tokens: float | None = None, base: str = "chinchilla", fit: str | Path | None = None,
                 caps: Caps | None = None) -> dict:
    """What `curate plan --pools ... --out ...` does, callable from Python."""
    pf = load_pools(pools)
    fit_d = json.loads(Path(fit).read_text()) if fit else None
    law = build_law(pf, fit_d, base)
    plan = law_plan(pf, law, budget_flops=budget_flops, params=params, tokens=tokens, caps=caps)
    write_plan(plan, Path(out), fit_d)
    return plan
