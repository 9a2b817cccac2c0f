"""report.html: a self-contained page (matplotlib PNGs embedded as base64) explaining a plan.

Plots: predicted loss against budget (the Pareto frontier) with the budgets where the quality
threshold moves; weights per pool across budgets; weights and epochs per pool in the plan; the
outer search over model size; and, with a fit, the fitted curves over the proxy measurements and
held-out predictions against measurements.
"""
from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or CI
import matplotlib.pyplot as plt
import numpy as np

from .laws import effective_data
from .fit import planning_value


def _png(fig) -> str:
    for ax in fig.axes:  # absolute values on the y axis, never "1e-5 + 3.866"
        if ax.get_yscale() == "linear":
            try:
                ax.ticklabel_format(axis="y", useOffset=False)
            except AttributeError:  # named ticks (pools): no offset to switch off
                pass
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, alt: str) -> str:
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}"/><figcaption>{html.escape(alt)}</figcaption></figure>'


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, (list, tuple)) and v and isinstance(v[0], float):
            return "[" + ", ".join(f"{x:.3g}" for x in v) + "]"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
figure{display:inline-block;margin:.5em}figcaption{font-size:.85em;color:#555}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .4em;font-size:.8em}
.kv{color:#444}.warn{background:#fff4e5;border:1px solid #f0a040;padding:.4em 1em;margin:1em 0}"""


def _frontier_figs(plan: dict) -> list[str]:
    fr = plan["frontier"]
    names = [p["name"] for p in plan["pools"]]
    C = np.array([f["budget_flops"] for f in fr])
    L = np.array([f["loss"] for f in fr])
    out = []
    fig, ax = plt.subplots(figsize=(6.2, 4))
    ax.plot(C, L, "-o", ms=3, label="predicted loss (optimal N, D, w)")
    ax.plot([plan["model"]["flops"]], [plan["predicted_loss"]], "r*", ms=14, label="this plan")
    for t in plan["thresholds"]:
        ax.axvline(t["budget_flops"], color="gray", ls="--", lw=1)
        ax.text(t["budget_flops"], ax.get_ylim()[1], " +" + ",".join(t["entered"]) + (" -" + ",".join(t["left"]) if t["left"] else ""),
                rotation=90, va="top", fontsize=7, color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("compute budget C = 6ND (FLOPs)")
    ax.set_ylabel("predicted loss")
    ax.set_title("Pareto frontier: loss vs budget")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    out.append(_img(fig, "Predicted loss against budget; dashed lines: budgets where the quality threshold moves"))
    W = np.array([[f["weights"][n] for n in names] for f in fr])
    fig, ax = plt.subplots(figsize=(6.2, 4))
    ax.stackplot(C, W.T, labels=names)
    for t in plan["thresholds"]:
        ax.axvline(t["budget_flops"], color="k", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("compute budget (FLOPs)")
    ax.set_ylabel("weight")
    ax.set_title("Mixture weights across budgets")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    out.append(_img(fig, "Optimal weights per pool across budgets"))
    return out


def _plan_figs(plan: dict, objects: dict) -> list[str]:
    pools = plan["pools"]
    names = [p["name"] for p in pools]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    a1.bar(names, [p["weight"] for p in pools], color="tab:blue")
    a1.set_title("weight per pool")
    a2.bar(names, [p["epochs"] for p in pools], color="tab:orange")
    a2.set_title("epochs per pool")
    for a in (a1, a2):
        a.tick_params(axis="x", rotation=30)
    out = [_img(fig, "Weights and epochs per pool in this plan")]
    outer = objects.get("outer")
    if outer is not None:
        Ns, Ls = outer
        ok = np.isfinite(Ls)
        fig, ax = plt.subplots(figsize=(6.2, 3.6))
        ax.plot(Ns[ok], Ls[ok], "-")
        ax.plot([plan["model"]["params"]], [plan["predicted_loss"]], "r*", ms=12)
        ax.set_xscale("log")
        ax.set_xlabel("parameters N (D = C / 6N)")
        ax.set_ylabel("best loss over w")
        ax.set_title("Outer search over model size")
        out.append(_img(fig, "Loss of the best mixture for each model size at this budget"))
    return out


def _fit_figs(fit: dict) -> list[str]:
    """Measured proxy losses against the fitted law's curves."""
    f = fit["fit"]
    b = f["base"]
    names = [p["name"] for p in f["pools"]]
    q = {p["name"]: p["quality"] for p in f["pools"]}
    rs = {p["name"]: p["rstar"] for p in f["pools"]}

    def predict(N: float, tokens: float, unique: float, pool: str) -> float:
        d = q[pool] * effective_data(tokens, unique, rs[pool])
        return b["E"] + b["A"] / N ** b["alpha"] + b["B"] / d ** b["beta"]

    runs = [r for r in fit["runs"] if r["spec"]["kind"] != "holdout"]
    out = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    # (a) epoch sweep: loss against epochs at fixed tokens, per pool
    for i, p in enumerate(names):
        pts = [r for r in runs if list(r["spec"]["weights"]) == [p] and r["spec"]["tokens"] == max(x["spec"]["tokens"] for x in runs)
               and r["spec"]["shape"]["d_model"] == fit["design"]["base_size"]]
        if not pts:
            continue
        D = pts[0]["spec"]["tokens"]
        N = pts[0]["spec"]["non_embedding_params"]
        ep = np.array([D / r["spec"]["unique"][p] for r in pts])
        axes[0].plot(ep, [r["val_loss"] for r in pts], "o", color=f"C{i}", label=f"{p} measured")
        grid = np.geomspace(1, max(ep.max(), 2), 50)
        axes[0].plot(grid, [predict(N, D, D / e, p) for e in grid], "-", color=f"C{i}", lw=1)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("epochs over the pool sample (tokens fixed)")
    axes[0].set_ylabel("target loss")
    axes[0].set_title("Repetition: measured (dots) vs fitted (lines)")
    # (b) size sweep: loss against N at one epoch
    for i, p in enumerate(names):
        pts = [r for r in runs if list(r["spec"]["weights"]) == [p] and r["spec"]["unique"][p] >= r["spec"]["tokens"]
               and r["spec"]["tokens"] == max(x["spec"]["tokens"] for x in runs)]
        if not pts:
            continue
        D = pts[0]["spec"]["tokens"]
        Ns = np.array([r["spec"]["non_embedding_params"] for r in pts], float)
        axes[1].plot(Ns, [r["val_loss"] for r in pts], "o", color=f"C{i}", label=f"{p} measured")
        grid = np.geomspace(Ns.min() / 1.5, Ns.max() * 1.5, 50)
        axes[1].plot(grid, [predict(n, D, D, p) for n in grid], "-", color=f"C{i}", lw=1)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("non-embedding parameters N (one epoch)")
    axes[1].set_title("Model size: measured vs fitted")
    axes[1].set_ylabel("target loss")
    handles, labels = axes[0].get_legend_handles_labels()
    h1, l1 = axes[1].get_legend_handles_labels()
    seen = dict(zip(labels + l1, handles + h1))
    fig.legend(list(seen.values()), list(seen.keys()), fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    out.append(_img(fig, "Fitted law over the proxy measurements"))
    v = fit["validation"]
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    m = np.array([r["measured"] for r in v["runs"]])
    pr = np.array([r["predicted"] for r in v["runs"]])
    ax.plot(m, pr, "o")
    lo, hi = min(m.min(), pr.min()), max(m.max(), pr.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("measured loss")
    ax.set_ylabel("predicted loss")
    ax.set_title(f"Held-out mixtures: Spearman {v['spearman']:.3f}")
    out.append(_img(fig, f"Held-out mixtures no fit saw: Spearman {v['spearman']:.3f}, MAE {v['mae']:.4f}"))
    return out


def _quality_fig(fit: dict) -> str:
    """Fitted q_i with their 95% intervals (bootstrap, or profile at a bound), log scale."""
    pools = fit["fit"]["pools"]
    names = [p["name"] for p in pools]
    q = np.array([p["quality"] for p in pools])
    lo = np.array([(p["quality_ci95"] or [p["quality"]] * 2)[0] for p in pools])
    hi = np.array([(p["quality_ci95"] or [p["quality"]] * 2)[1] for p in pools])
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(names) + 1.4))
    y = np.arange(len(names))
    ax.errorbar(q, y, xerr=[np.maximum(q - lo, 0), np.maximum(hi - q, 0)], fmt="o", capsize=3, color="tab:blue")
    for i, p in enumerate(pools):
        if p.get("quality_at_bound"):
            ax.plot(q[i], y[i], "rx", ms=10)
    ax.axvline(1.0, color="gray", ls=":", lw=1)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"fitted q (value of one token relative to {fit['fit']['ref_pool']}, q = 1)")
    ax.set_title("Fitted pool quality with 95% intervals")
    ax.invert_yaxis()
    return _img(fig, "Fitted q_i per fit group; bars: 95% intervals (bootstrap; profile likelihood at a bound); "
                     "red x: at a bound of the fit box")


def _estimator_fig(fit: dict) -> str:
    est = {k: v for k, v in fit.get("estimators", {}).items() if v.get("predicted")}
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    allv = []
    for i, (k, v) in enumerate(est.items()):
        m, pr = np.array(v["measured"]), np.array(v["predicted"])
        allv += list(m) + list(pr)
        ax.plot(m, pr, "os^"[i % 3], color=f"C{i}", label=f"{k}: Spearman {v['spearman']:.2f}, MAE {v['mae']:.3f}")
    if allv:
        lo, hi = min(allv), max(allv)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="predicted = measured")
    ax.set_xlabel("measured target loss (held-out mixture)")
    ax.set_ylabel("predicted target loss")
    ax.set_title("Estimators on mixtures no fit saw")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _img(fig, "Held-out mixtures: each estimator's prediction against the measurement")


def _warnings_html(plan: dict) -> str:
    w = plan.get("warnings") or []
    if not w:
        return ""
    items = "".join(f"<li>{html.escape(x)}</li>" for x in w)
    return f"<div class='warn'><b>Read this first</b><ul>{items}</ul></div>"


def _provenance_html(plan: dict, fit: dict | None) -> str:
    e = plan.get("estimator", {})
    parts = ["<h2>Where the numbers come from</h2>"]
    if not fit:
        parts.append("<p class='kv'>No fit: q and R* of each pool are defaults or pools.json priors (see the Pools table, "
                     "columns quality_source / rstar_source).</p>")
        return "".join(parts)
    tgt = fit.get("target", {}).get("description", "?")
    parts.append(f"<p class='kv'>Target: <b>{html.escape(tgt)}</b> ({fit.get('target_tokens')} tokens no pool trains on). "
                 f"Weights decided by estimator <b>{html.escape(e.get('name', '?'))}</b> ({html.escape(e.get('selection', ''))})."
                 f" {html.escape(e.get('note', ''))}</p>")
    parts.append(f"<p class='kv'>Proxies: {fit.get('n_runs')} runs on {html.escape(str(fit.get('device')))}, "
                 f"largest {fit.get('max_proxy_params') or 0:,} non-embedding parameters. {html.escape(fit.get('scale_note') or '')}.</p>")
    rows = [{"estimator": k + (" (chosen)" if k == e.get("name") else ""), "held-out Spearman": v.get("spearman"),
             "held-out MAE": v.get("mae"), "held-out mixtures": v.get("n_heldout"), "trained on runs": v.get("n_train"),
             "note": v.get("error") or ""} for k, v in fit.get("estimators", {}).items()]
    parts.append("<h3>Estimator comparison</h3>" + _table(rows, ["estimator", "held-out Spearman", "held-out MAE",
                                                                   "held-out mixtures", "trained on runs", "note"]))
    if any(v.get("predicted") for v in fit.get("estimators", {}).values()):
        parts.append(_estimator_fig(fit))
    if fit["fit"].get("pools"):
        parts.append("<h3>Fitted pool quality</h3>" + _quality_fig(fit))
    groups = [g for g in fit.get("groups", []) if len(g["members"]) > 1]
    if groups or fit.get("unplaced"):
        rows = [{"fit group": g["name"], "members": ", ".join(g["members"]), "proxy training tokens": g["train_tokens"]} for g in groups]
        parts.append("<h3>Merged and unmeasured pools</h3>" + (_table(rows, ["fit group", "members", "proxy training tokens"]) if rows else "")
                     + "".join(f"<p class='kv'>{html.escape(w)}</p>" for w in fit.get("unplaced", {}).values()))
    return "".join(parts)


def render_report(plan: dict, objects: dict | None = None, fit: dict | None = None) -> str:
    objects = objects or {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>curate plan</title><style>{CSS}</style></head><body>",
             "<h1>curate plan</h1>", _warnings_html(plan)]
    bl = plan["base_law"]
    parts.append(
        f"<p class='kv'>base law <b>{html.escape(bl['name'])}</b> (E={bl['E']:.4g}, A={bl['A']:.4g}, B={bl['B']:.4g}, "
        f"&alpha;={bl['alpha']:.4g}, &beta;={bl['beta']:.4g}) &middot; model N={plan['model']['params']:.4g} params, "
        f"D={plan['model']['tokens']:.4g} tokens, C={plan['model']['flops']:.4g} FLOPs &middot; predicted loss "
        f"<b>{plan['predicted_loss']:.4f}</b> &middot; effective tokens {plan['effective_tokens']:.4g} &middot; marginal value "
        f"of a token {plan['marginal']['effective_tokens_per_token']:.4g} effective tokens "
        f"({plan['marginal']['loss_per_billion_tokens']:.3g} loss per 10<sup>9</sup> tokens) &middot; water-filling vs "
        f"{html.escape(plan['solver']['check'])}: |&Delta;loss| = {plan['solver']['abs_loss_difference']:.2e}</p>")
    parts.append("<h2>Pools</h2>" + _table(plan["pools"], ["name", "score", "kept", "weight", "tokens",
                                                          "epochs", "unique_tokens", "quality", "quality_ci95", "quality_source",
                                                          "rstar", "rstar_ci95", "rstar_source", "marginal_value"]))
    caps = (plan.get("caps") or {}).get("epoch_caps") or {}
    if caps:
        by = {r["name"]: r for r in plan["pools"]}
        rows = [{"pool": n, "epoch cap": c["max_epochs"], "planned epochs": by[n]["epochs"] if n in by else None,
                 "binds": "yes" if n in by and "epoch_cap" in by[n] else "", "where the cap comes from": c["source"]}
                for n, c in caps.items()]
        parts.append("<h3>Epoch caps</h3><p class='kv'>A plan from a fit repeats no pool past the largest repetition its "
                     "proxy runs measured (beyond it q and R* are extrapolated), unless a cap is set explicitly.</p>"
                     + _table(rows, ["pool", "epoch cap", "planned epochs", "binds", "where the cap comes from"]))
    parts.append(_provenance_html(plan, fit))
    parts.append("<h2>Budgets where pools enter or leave</h2>")
    parts.append(_table(plan["thresholds"], ["budget_flops", "entered", "left", "kept_after"]) if plan["thresholds"]
                 else "<p>No pool enters or leaves across the budgets shown.</p>")
    parts.append("<h2>Frontier</h2>" + "".join(_frontier_figs(plan)))
    parts.append("<h2>This plan</h2>" + "".join(_plan_figs(plan, objects)))
    if fit and fit["fit"].get("pools"):
        f = fit["fit"]
        rows = [{"pool": p["name"], "q": p["quality"], "q 95% CI": p["quality_ci95"], "q interval": p.get("quality_ci_method"),
                 "R*": p["rstar"], "R* 95% CI": p["rstar_ci95"], "R* interval": p.get("rstar_ci_method"),
                 "at a bound": ", ".join(f"{w} ({b})" for w, b in (("q", p.get("quality_at_bound")), ("R*", p.get("rstar_at_bound"))) if b)}
                for p in f["pools"]]
        parts.append(f"<h2>Fit on proxy runs</h2><p class='kv'>{fit.get('n_runs', len(fit['runs']))} proxy runs in "
                     f"{fit['seconds']:.0f} s; reference pool {html.escape(f['ref_pool'])} (q = 1); "
                     f"{f['n_bootstrap']} bootstrap resamples (each started from the estimate and one grid point; profile likelihood "
                     f"for a parameter at a bound, which the plan uses at the conservative end of that interval). Held-out Spearman "
                     f"<b>{fit['validation']['spearman']:.3f}</b>, MAE {fit['validation']['mae']:.4f}.</p>")
        parts.append(_table(rows, ["pool", "q", "q 95% CI", "q interval", "R*", "R* 95% CI", "R* interval", "at a bound"]))
        if f.get("at_bound"):
            parts.append(_table([{"parameter": b["param"], "value": b["value"], "bound": f"{b['bound']} ({b['limit']:.4g})",
                                  "profile 95% CI": b.get("profile_ci95"),
                                  "planned at": planning_value(b["value"], b.get("profile_ci95"), b["bound"])[0]}
                                 for b in f["at_bound"]],
                                ["parameter", "value", "bound", "profile 95% CI", "planned at"]))
        parts.append(_table(fit["validation"]["runs"], ["name", "measured", "predicted"]))
        parts.append("".join(_fit_figs(fit)))
    parts.append("</body></html>")
    return "\n".join(parts)


def render_qqt_report(res, params, pool_size: float) -> str:
    """QQT mode: error of each top-k union across budgets, and the best union per budget."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    B = np.array(res.budgets)
    for j, u in enumerate(res.unions):
        ax.plot(B, 1 - res.error[:, j], label=f"top {len(u)} bucket(s)")
    ax.set_xscale("log")
    ax.set_xlabel("samples seen")
    ax.set_ylabel("1 - predicted error")
    ax.set_title("QQT (Goyal et al. 2024): union of top-k buckets")
    ax.legend(fontsize=8)
    rows = [{"samples_seen": b, "best_union": "+".join(n)} for b, n in zip(res.budgets, res.best_names())]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>curate plan (qqt)</title><style>{CSS}</style></head><body>"
            f"<h1>curate plan: QQT mode</h1><p>bucket size {pool_size:.4g} samples; a={params.a}, d={params.d}</p>"
            + _img(fig, "Predicted accuracy proxy per union") + _table(rows, ["samples_seen", "best_union"]) + "</body></html>")
