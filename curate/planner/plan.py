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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import laws
from .mixture import MixtureLaw
from .errors import PlanInputError
from .fit import planning_value
from .pools import PoolsFile, load_pools
from .solver import (
    Allocation,
    Caps,
    Infeasible,
    frontier,
    general_solve,
    plan_for_budget,
    waterfill,
)

SCHEMA = "curate.plan/v1"


NO_FIT_WARNING = ("no fit: every pool has q = 1 and the base law's R* (defaults, not measurements), so the weights "
                  "are the pools' token shares (repetition aside), not a judgement of their value. Run `curate plan "
                  "fit` (or give the YAML plan step `fit: quick`) to measure the pools against a target.")


def pool_params(pf: PoolsFile, fit: dict | None, rstar_default: float) -> list[dict]:
    """Per pool: q, R*, where each came from (fit | prior | default) and its interval.

    A pool the fit measured gets its group's fitted values ("fit"; "fit, merged into X" for a small
    pool measured together with its sibling X). A pool the fit could not measure, or any pool
    without a fit, takes the pools.json prior when it has one ("prior (pools.json)"); a pool the fit
    left out without such a prior gets an explicit conservative prior: the lowest fitted q and the
    median fitted R* ("prior (lowest fitted q)"). Without fit or prior: q = 1, the base's R*_D
    ("default")."""
    f = (fit or {}).get("fit", {})
    fitted = {p["name"]: p for p in f.get("pools", [])}
    group_of = {m: g["name"] for g in (fit or {}).get("groups", []) for m in g["members"]}
    if fit and not group_of:  # a fit.json from before groups: one group per pool
        group_of = {n: n for n in fitted}
    qs = [p["quality"] for p in fitted.values()]
    rs = [p["rstar"] for p in fitted.values()]
    out = []
    for p in pf.pools:
        g = group_of.get(p.name)
        fp = fitted.get(g) if g else None
        row: dict = {"name": p.name}
        if fp:
            how = "fit" if g == p.name else f"fit, merged into {g}"
            row.update(quality_ci95=fp.get("quality_ci95"), rstar_ci95=fp.get("rstar_ci95"), fit_group=g,
                       quality_at_bound=fp.get("quality_at_bound"), rstar_at_bound=fp.get("rstar_at_bound"))
            for key, short in (("quality", "quality"), ("rstar", "rstar")):
                # At a bound the point estimate is not a measurement: plan with the conservative end.
                v, why = planning_value(fp[key], fp.get(f"{short}_ci95"), fp.get(f"{short}_at_bound"))
                row[key], row[f"{key}_source"] = v, (f"{how} at bound; planned at conservative end of interval"
                                                     if why else how)
                if why:
                    row[f"{key}_fitted"] = fp[key]
                    row[f"{key}_planning_note"] = why
        else:
            if p.quality is not None:
                row.update(quality=p.quality, quality_source="prior (pools.json)")
            elif fit and qs:
                row.update(quality=min(qs), quality_source="prior (lowest fitted q: not measured)")
            else:
                row.update(quality=1.0, quality_source="default (q = 1)")
            if p.rstar is not None:
                row.update(rstar=p.rstar, rstar_source="prior (pools.json)")
            elif fit and rs:
                row.update(rstar=float(np.median(rs)), rstar_source="prior (median fitted R*: not measured)")
            else:
                row.update(rstar=rstar_default, rstar_source="default (base law R*_D)")
            row.update(quality_ci95=None, rstar_ci95=None, fit_group=None)
        out.append(row)
    return out


def build_law(pf: PoolsFile, fit: dict | None = None, base: str = "chinchilla") -> MixtureLaw:
    """The mixture law with per-pool q_i and R*_i from `pool_params`; base constants a preset, or
    `fitted` (needs a fit). Provenance rides in law.meta["pools"]."""
    if base == "fitted":
        if not fit:
            raise PlanInputError("base 'fitted' needs --fit FIT.json from `curate plan fit`")
        b = fit["fit"]["base"]
        consts = laws.LawConstants("fitted", E=b["E"], A=b["A"], B=b["B"], alpha=b["alpha"], beta=b["beta"],
                                   rstar_d=math.nan, rstar_n=math.inf)
        rstar_default = 15.387756
    else:
        try:
            consts = laws.preset(base)
        except ValueError as e:
            raise PlanInputError(str(e)) from None
        rstar_default = consts.rstar_d
    rows = pool_params(pf, fit, rstar_default)
    for r in rows:
        if not math.isfinite(r["rstar"]):
            raise PlanInputError(f"pool {r['name']!r} has no R* (not in the fit, no prior in pools.json)")
    q_arr = np.array([r["quality"] for r in rows], float)
    if base != "fitted" and fit:
        # Fitted q are relative to the fit's reference pool; under a published base law the best
        # pool is taken to be worth the data that law was fitted on (q = 1). Only ratios of q
        # decide the mixture; this sets the loss level and the N/D balance.
        scale = q_arr.max()
        q_arr = q_arr / scale
        for r in rows:  # intervals in the same units as the q the plan uses
            if r.get("quality_ci95"):
                r["quality_ci95"] = [x / scale for x in r["quality_ci95"]]
    return MixtureLaw(consts, [p.name for p in pf.pools], np.array([p.unique_tokens for p in pf.pools], float),
                      q_arr, np.array([r["rstar"] for r in rows]), param_excess=base != "fitted", meta={"pools": rows})


def measured_epochs(fit: dict | None) -> dict[str, float]:
    """Per fit group: the most epochs (passes over its sample) any proxy run of the fit trained on it."""
    out: dict[str, float] = {}
    for r in (fit or {}).get("runs", []):
        s = r["spec"]
        for g, w in s.get("weights", {}).items():
            u = s.get("unique", {}).get(g, 0)
            if w > 0 and u > 0 and s.get("tokens", 0) > 0:
                out[g] = max(out.get(g, 0.0), w * s["tokens"] / u)
    return out


def repetition_caps(names: list[str], fit: dict | None, caps: Caps | None = None) -> tuple[Caps, dict[str, dict]]:
    """The epoch caps a plan from `fit` obeys, and where each came from.

    A fit only measures repetition up to the most epochs its proxy runs trained on a pool; beyond
    that q and R* are extrapolated (a loosely pinned R* reads as "repeat freely"). So no pool is
    planned past the largest repetition measured for it (its fit group's runs; the design's largest
    repeated epochs where the fit records no per-pool runs). The user's caps win: a per-pool cap
    (--pool-max-epochs) for that pool, a global cap (--max-epochs) for every pool. Without a fit
    nothing is measured and nothing is added."""
    caps = caps or Caps()
    prov: dict[str, dict] = {}
    for n in names:
        if n in caps.max_epochs:
            prov[n] = {"max_epochs": caps.max_epochs[n], "source": "explicit (--pool-max-epochs)"}
        elif caps.default_max_epochs is not None:
            prov[n] = {"max_epochs": caps.default_max_epochs, "source": "explicit (--max-epochs)"}
    if not fit or caps.default_max_epochs is not None:
        return caps, prov
    seen = measured_epochs(fit)
    group_of = {m: g["name"] for g in fit.get("groups", []) for m in g["members"]}
    design_max = max((fit.get("design") or {}).get("epochs") or [1], default=1)
    added = {}
    for n in names:
        if n in prov:
            continue
        ep = seen.get(group_of.get(n, n))
        if ep is not None:
            src = f"largest repetition measured in the proxy runs ({ep:.3g} epochs)"
        else:
            ep = float(design_max)
            src = f"largest repetition in the fit's design ({ep:.3g} epochs; no proxy run of this pool recorded)"
        added[n] = ep
        prov[n] = {"max_epochs": ep, "source": src}
    return replace(caps, max_epochs={**added, **caps.max_epochs}), prov


def cap_mixture(law: MixtureLaw, N: float, D: float, weights: np.ndarray, caps: Caps) -> np.ndarray:
    """A fixed mixture (regmix / dml) under epoch caps: each pool keeps its tokens up to its cap, and
    the tokens the caps release go where the law values them most (water-filling over the room
    left, the only estimator that models repetition). Unchanged where no cap binds."""
    tokens = np.asarray(weights, float) * D
    _, hi = caps.bounds(law, D)
    if np.all(tokens <= hi * (1 + 1e-9)):
        return np.asarray(weights, float)
    keep = np.minimum(tokens, hi) * (1 - 1e-12) / D  # a hair under the cap: lo <= hi after round-off
    floor = replace(caps, min_weight={n: max(float(k), caps.min_weight.get(n, 0.0)) for n, k in zip(law.names, keep)})
    return solve_within_caps(law, N, D, floor).weights


def solve_within_caps(law: MixtureLaw, N: float, D: float, caps: Caps) -> Allocation:
    """`waterfill` at a fixed (N, D); where the caps cannot hold D tokens, one plain PlanInputError."""
    try:
        return waterfill(law, N, D, caps)
    except Infeasible as e:
        _, hi = caps.bounds(law, D)
        raise PlanInputError(
            f"the run needs {D:.4g} tokens but the pools hold only {float(np.sum(hi)):.4g} within their epoch caps "
            "(the largest repetition measured in the proxy runs, unless set explicitly): the fit has not measured "
            "what more repetition is worth. Add data, lower the budget (or give --budget-flops, which trades tokens "
            "for a larger model), or set --max-epochs / --pool-max-epochs to plan past the measurements "
            f"({e})") from None


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
            "score": p.score,  # mean quality-classifier score (pools.json), not q
        })
        prov = law.meta.get("pools", [{}] * len(pf.pools))[i]
        rows[-1].update({k: prov.get(k) for k in ("quality_source", "rstar_source", "quality_ci95", "rstar_ci95",
                                                   "fit_group", "quality_at_bound", "rstar_at_bound")})
        # only where a bound changed the planned value: the fitted value and why it was not used
        rows[-1].update({k: prov[k] for k in ("quality_fitted", "rstar_fitted", "quality_planning_note",
                                               "rstar_planning_note") if k in prov})
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
        try:
            bp = plan_for_budget(law, budget_flops, caps)
        except Infeasible as e:
            raise PlanInputError(f"no model size meets budget {budget_flops:.4g} FLOPs within the pools' epoch caps ({e}); "
                                 "set --max-epochs / --pool-max-epochs to plan past the repetition measured") from None
        alloc, outer = bp.alloc, (bp.curve_N, bp.curve_loss)
    else:
        if params is None or tokens is None:
            raise ValueError("--params and --tokens go together")
        alloc, outer = solve_within_caps(law, params, tokens, caps), None
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


def apply_estimator(plan: dict, law: MixtureLaw, fit: dict | None, estimator: str = "auto",
                    caps: Caps | None = None) -> dict:
    """Record which estimator decides the weights, and apply a mixture regression's mixture.

    `auto` follows the fit's best-validated estimator. The law plans repetition at the plan's
    scale; regmix / dml give one mixture (found at proxy scale, RegMix's premise being that the
    ranking transfers), applied at the plan's N and D from the law; its loss is the law's
    prediction for that mixture. Groups' weights are split over their member pools by tokens."""
    chosen = "law"
    if fit and estimator == "auto":
        chosen = fit.get("chosen_estimator", "law")
    elif estimator != "auto":
        chosen = estimator
    if not fit:
        plan["estimator"] = {"name": "none", "why": "no fit: defaults and priors only"}
        return plan
    scores = fit.get("estimators", {})
    plan["estimator"] = {"name": chosen, "selection": "best held-out Spearman" if estimator == "auto" else "asked for",
                         "heldout": {k: {"spearman": v.get("spearman"), "mae": v.get("mae"), "n_heldout": v.get("n_heldout"),
                                         "error": v.get("error")} for k, v in scores.items()}}
    if chosen == "law":
        return plan
    mix = fit.get("mixtures", {}).get(chosen)
    if not mix:
        raise PlanInputError(f"estimator {chosen!r}: the fit has no mixture for it (available: {sorted(fit.get('mixtures', {}))})")
    group_of = {m: g["name"] for g in fit.get("groups", []) for m in g["members"]}
    members: dict[str, list[int]] = {}
    for i, n in enumerate(law.names):
        if n in group_of:
            members.setdefault(group_of[n], []).append(i)
    w = np.zeros(law.k)
    for g, idx in members.items():
        gw = mix["weights"].get(g, 0.0)
        u = law.unique_tokens[idx]
        w[idx] = gw * u / u.sum()
    w = w / w.sum()
    D = plan["model"]["tokens"]
    if caps is not None:  # the plan's epoch caps hold for every estimator's mixture
        w0, w = w, cap_mixture(law, plan["model"]["params"], D, w, caps)
        if not np.allclose(w0, w, rtol=0, atol=1e-9):
            plan["estimator"]["capped"] = {"mixture": dict(zip(law.names, map(float, w0))),
                                           "reassigned_share": float(np.abs(w - w0).sum() / 2),
                                           "why": "epoch caps; the released tokens placed by the law"}
    tokens = w * D
    plan["law_weights"] = {r["name"]: r["weight"] for r in plan["pools"]}
    for i, r in enumerate(plan["pools"]):
        r.update(weight=float(w[i]), tokens=float(tokens[i]), epochs=float(tokens[i] / law.unique_tokens[i]),
                 kept=bool(w[i] > 1e-9))
    plan["predicted_loss"] = float(law.loss(plan["model"]["params"], tokens))
    plan["predicted_loss_source"] = f"the law's prediction for the {chosen} mixture"
    plan["effective_tokens"] = float(law.effective_data(tokens))
    plan["estimator"]["note"] = (f"weights from {chosen} (best mixture at proxy scale, held-out validated); model size "
                                 "and tokens from the law; the frontier below is the law's")
    return plan


def provenance(plan: dict, law: MixtureLaw, fit: dict | None) -> list[str]:
    """Warnings a user must see (terminal, plan.json, top of the report)."""
    warn = []
    if not fit:
        rows = law.meta.get("pools", [])
        priors = [r["name"] for r in rows if r["quality_source"].startswith("prior")]
        if not priors:
            warn.append(NO_FIT_WARNING)
        else:
            rest = [r["name"] for r in rows if r["name"] not in priors]
            warn.append(f"no fit: q of {', '.join(priors)} are priors from pools.json, not measured on proxies"
                        + (f"; {', '.join(rest)} have the default q = 1" if rest else ""))
    else:
        for b in fit["fit"].get("at_bound", []):
            ci = b.get("profile_ci95")
            warn.append(f"fit: {b['param']} = {b['value']:.4g} sits at the {b['bound']} bound of the fit box "
                        f"({b['limit']:.4g}): the proxy runs do not pin it" + (f"; profile 95% interval [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
                        + ("; planned at the conservative end of that interval ({:.3g})".format(ci[0])
                           if planning_value(b["value"], ci, b["bound"])[1] else ""))
        for why in fit.get("unplaced", {}).values():
            warn.append(f"fit: {why}")
        for n in fit.get("notes", []):
            if "merged into" in n:
                warn.append(f"fit: {n}")
        if fit.get("scale_note") and "below" in fit["scale_note"]:
            warn.append("fit: " + fit["scale_note"])
    return warn


def cap_warnings(plan: dict, cap_prov: dict[str, dict]) -> list[str]:
    """One line per cap (value and source) that holds pools at it, and one if every pool is there."""
    out, at_cap = [], []
    by_cap: dict[tuple[float, str], list[str]] = {}
    for r in plan["pools"]:
        c = cap_prov.get(r["name"])
        if c and r["epochs"] >= c["max_epochs"] * (1 - 1e-6):
            at_cap.append(r["name"])
            r["epoch_cap"] = c["max_epochs"]
            by_cap.setdefault((c["max_epochs"], c["source"]), []).append(r["name"])
    for (ep, src), names in by_cap.items():
        unmeasured = "measured" in src or "design" in src
        out.append(f"epoch cap binds: {', '.join(names)} planned at {ep:.3g} epochs, "
                   f"{'its' if len(names) == 1 else 'their'} cap from the {src}"
                   + ("; more repetition is unmeasured" if unmeasured else ""))
    if at_cap and len(at_cap) == len(plan["pools"]):
        out.append(f"every pool is at its epoch cap: the plan's {plan['model']['tokens']:.4g} tokens are all the pools "
                   "hold within their caps" + (", so the budget buys a larger model rather than more repetition"
                                              if plan["budget"].get("params") is None else ""))
    return out


def write_plan(plan: dict, out: Path, fit: dict | None = None) -> tuple[Path, Path]:
    from .report import render_report

    out.mkdir(parents=True, exist_ok=True)
    objects = plan.pop("_objects", {})
    if fit:
        est = fit.get("estimators", {})
        plan["fit"] = {"ref_pool": fit["fit"]["ref_pool"], "base": fit["fit"]["base"],
                       "base_ci95": fit["fit"].get("base_ci95"), "at_bound": fit["fit"].get("at_bound", []),
                       "validation_spearman": fit["validation"]["spearman"], "n_runs": fit.get("n_runs"),
                       "target": fit.get("target", {}).get("description"), "groups": fit.get("groups"),
                       "unplaced": fit.get("unplaced"), "device": fit.get("device"),
                       "max_proxy_params": fit.get("max_proxy_params"), "scale_note": fit.get("scale_note"),
                       "estimators": {k: {"spearman": v.get("spearman"), "mae": v.get("mae")} for k, v in est.items()}}
    pj = out / "plan.json"
    tmp = pj.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(plan, indent=2, default=_json_default) + "\n")
    tmp.replace(pj)
    html = out / "report.html"
    tmp = html.with_suffix(".html.tmp")
    tmp.write_text(render_report(plan, objects, fit))
    tmp.replace(html)
    return pj, html


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def plan_command(pools: str | Path, out: str | Path, *, budget_flops: float | None = None, params: float | None = None,
                 tokens: float | None = None, base: str = "chinchilla", fit: str | Path | dict | None = None,
                 caps: Caps | None = None, estimator: str = "auto", log=None) -> dict:
    """What `curate plan --pools ... --out ...` does, callable from Python. Warnings (no fit,
    parameters at a bound, merged or unmeasured pools) go to `log` (stderr by default), plan.json
    ("warnings") and the top of report.html."""
    import sys

    from .experiment import load_fit

    log = log or (lambda m: print(m, file=sys.stderr))
    pf = load_pools(pools)
    fit_d = fit if isinstance(fit, dict) else (load_fit(fit) if fit else None)
    law = build_law(pf, fit_d, base)
    caps, cap_prov = repetition_caps(law.names, fit_d, caps)
    plan = law_plan(pf, law, budget_flops=budget_flops, params=params, tokens=tokens, caps=caps)
    apply_estimator(plan, law, fit_d, estimator, caps)
    plan["caps"]["epoch_caps"] = cap_prov
    plan["warnings"] = provenance(plan, law, fit_d) + cap_warnings(plan, cap_prov)
    for w in plan["warnings"]:
        log(f"warning: {w}")
    write_plan(plan, Path(out), fit_d)
    return plan
