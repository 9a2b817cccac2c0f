"""`curate plan ...`: the planner's commands. The root CLI mounts this with
`app.add_typer(plan_app, name="plan")`.

    curate plan --pools pools.json --budget-flops 1e21 --out DIR          # plan.json + report.html
    curate plan --pools pools.json --params 1e9 --tokens 2e10 --out DIR
    curate plan fit --pools pools.json --out DIR                          # proxy runs -> fit.json
    curate plan qqt --params-file qqt.jsonl --pool-size 12.8e6 --out DIR   # Goyal et al.'s QQT
    curate plan regmix --mixtures m.csv --losses l.csv --target pile_cc --out DIR
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

plan_app = typer.Typer(help="Decide how much of each pool to train on under a compute budget.",
                       invoke_without_command=True, no_args_is_help=False)


def _parse_map(items: list[str] | None, what: str) -> dict[str, float]:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise typer.BadParameter(f"{what} takes POOL=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k] = float(v)
    return out


@plan_app.callback()
def plan(
    ctx: typer.Context,
    pools: Optional[Path] = typer.Option(None, help="pools.json (schema in docs/planner.md)"),
    budget_flops: Optional[float] = typer.Option(None, help="compute budget C = 6 N D, in FLOPs"),
    params: Optional[float] = typer.Option(None, help="fixed model size N (with --tokens)"),
    tokens: Optional[float] = typer.Option(None, help="fixed token count D (with --params)"),
    out: Optional[Path] = typer.Option(None, help="output folder for plan.json and report.html"),
    base: str = typer.Option("chinchilla", help="base constants: chinchilla, epoch, muennighoff_c4 or fitted"),
    fit: Optional[Path] = typer.Option(None, help="fit.json from `curate plan fit` (q_i, R*_i, fitted base)"),
    max_epochs: Optional[float] = typer.Option(None, help="cap on epochs for every pool (with --fit the default "
                                               "cap is the largest repetition its proxy runs measured per pool)"),
    pool_max_epochs: Optional[list[str]] = typer.Option(None, help="POOL=EPOCHS cap (repeatable; wins over the "
                                                         "measured cap)"),
    min_weight: Optional[list[str]] = typer.Option(None, help="POOL=W minimum weight (repeatable)"),
    max_weight: Optional[list[str]] = typer.Option(None, help="POOL=W maximum weight (repeatable)"),
    estimator: str = typer.Option("auto", help="with --fit: auto (the fit's best-validated), law, regmix, dml"),
) -> None:
    """Plan a mixture: writes OUT/plan.json and OUT/report.html."""
    if ctx.invoked_subcommand is not None:
        return
    if pools is None or out is None:
        raise typer.BadParameter("curate plan needs --pools and --out (or a subcommand: fit, qqt, regmix)")
    from .plan import plan_command
    from .solver import Caps

    caps = Caps(max_epochs=_parse_map(pool_max_epochs, "--pool-max-epochs"), min_weight=_parse_map(min_weight, "--min-weight"),
                max_weight=_parse_map(max_weight, "--max-weight"), default_max_epochs=max_epochs)
    p = plan_command(pools, out, budget_flops=budget_flops, params=params, tokens=tokens, base=base, fit=fit, caps=caps,
                     estimator=estimator, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"N={p['model']['params']:.4g} D={p['model']['tokens']:.4g} predicted loss {p['predicted_loss']:.4f} "
               f"(estimator: {p['estimator']['name']})")
    for r in p["pools"]:
        typer.echo(f"  {r['name']:20s} weight {r['weight']:.4f}  epochs {r['epochs']:.3g}  q {r['quality']:.3g} "
                   f"({r['quality_source']})  R* {r['rstar']:.3g} ({r['rstar_source']})")
    typer.echo(f"wrote {out / 'plan.json'} and {out / 'report.html'}")


def _target_from_options(target: Optional[str], target_source: Optional[list[str]], target_pool: Optional[list[str]]):
    from .target import TargetSpec

    def weights(items: list[str] | None) -> dict[str, float]:
        out = {}
        for it in items or []:
            k, _, v = it.partition("=")
            out[k] = float(v) if v else 1.0
        return out

    return TargetSpec(sources=weights(target_source), pools=weights(target_pool),
                      path=target)


def _ci(v) -> str:
    return f"[{v[0]:.3g}, {v[1]:.3g}]" if v else ""


def echo_fit(d: dict, echo=typer.echo) -> None:
    """The fit's figures on the terminal: groups, q_i / R*_i with intervals, bounds, estimators."""
    f = d["fit"]
    for p in f.get("pools", []):
        flags = "".join(f"  <- {what} at its {b} bound" for what, b in (("q", p.get("quality_at_bound")), ("R*", p.get("rstar_at_bound"))) if b)
        echo(f"  {p['name']:20s} q={p['quality']:.3f} {_ci(p['quality_ci95']):18s} ({p.get('quality_ci_method', '')})  "
             f"R*={p['rstar']:.3g} {_ci(p['rstar_ci95'])} ({p.get('rstar_ci_method', '')}){flags}")
    for b in f.get("at_bound", []):
        ci = b.get("profile_ci95")
        echo(f"warning: {b['param']} = {b['value']:.4g} sits at the {b['bound']} bound ({b['limit']:.4g}) of the fit box; "
             f"profile-likelihood 95% interval {_ci(ci)}" + ("; a plan uses its conservative end, {:.3g}".format(ci[0])
                                                           if ci and ci[0] < b["value"] else ""))
    for why in d.get("unplaced", {}).values():
        echo(f"warning: {why}")
    echo("estimators on held-out mixtures no fit saw:")
    for k, e in d.get("estimators", {}).items():
        mark = "  <- chosen" if k == d.get("chosen_estimator") else ""
        echo(f"  {k:7s} Spearman {e['spearman']:.3f}  MAE {e['mae']:.4f}  ({e['n_heldout']} held out, trained on "
             f"{e['n_train']} runs){' [' + e['error'] + ']' if e.get('error') else ''}{mark}")


@plan_app.command("fit")
def fit_cmd(
    pools: Optional[Path] = typer.Option(None, help="pools.json whose pools have Parquet `path`s (the `pools` stage's)"),
    out: Path = typer.Option(..., help="output folder: fit.json (+ swarm/ ratios.csv, metrics.csv, runs.csv)"),
    design: str = typer.Option("auto", help="auto (cuda if present, else cpu), cpu, quick, ci, cuda"),
    target: Optional[str] = typer.Option(None, help="target documents: a .txt/.jsonl/.parquet file or folder"),
    target_source: Optional[list[str]] = typer.Option(None, help="SOURCE[=W]: held-out documents of a source (repeatable)"),
    target_pool: Optional[list[str]] = typer.Option(None, help="POOL[=W]: held-out documents of a pool (repeatable)"),
    estimator: str = typer.Option("auto", help="auto (best held-out Spearman), law, regmix or dml"),
    import_swarm: Optional[Path] = typer.Option(None, help="fit on a swarm folder (ratios.csv + metrics.csv [+ runs.csv]) "
                                                "instead of running proxies"),
    swarm_target: str = typer.Option("target", help="with --import-swarm: the metrics.csv column to minimise"),
    tokens: Optional[int] = typer.Option(None, help="tokens per proxy run (D0)"),
    sizes: Optional[str] = typer.Option(None, help="comma-separated d_model values; the first is the base size"),
    holdout: Optional[int] = typer.Option(None, help="held-out validation mixtures (default 8)"),
    swarm: Optional[int] = typer.Option(None, help="Dirichlet swarm runs for regmix / dml"),
    ref: Optional[str] = typer.Option(None, help="reference group (q = 1); default: the largest"),
    bootstrap: Optional[int] = typer.Option(None, help="bootstrap resamples"),
    executor: str = typer.Option("ray", help="ray (parallel tasks) or serial"),
    seed: int = typer.Option(0),
    small: bool = typer.Option(False, help="the tiny CI design (same as --design ci)"),
) -> None:
    """Train proxy LMs on the pools, fit q_i and R*_i (and RegMix, DML), validate on held-out mixtures."""
    from dataclasses import replace as _replace

    from . import experiment
    from .errors import PlanInputError
    from .pools import load_pools
    from .swarm import export_swarm

    if small:
        design = "ci"
    if design == "auto":
        d = experiment.design_for()
    elif design in experiment.DESIGNS:
        d = _replace(experiment.DESIGNS[design])
    else:
        raise PlanInputError(f"--design {design!r}: choose auto, {', '.join(experiment.DESIGNS)}")
    if tokens:
        d.tokens = tokens
    if sizes:
        d.sizes = tuple(int(x) for x in sizes.split(","))
    if holdout is not None:
        d.n_holdout = holdout
    if swarm is not None:
        d.n_swarm = swarm
    if bootstrap is not None:
        d.n_boot = bootstrap
    d.seed = seed
    if import_swarm:
        rep = experiment.fit_imported(import_swarm, d, target=swarm_target, ref=ref, estimator=estimator, log=typer.echo)
    else:
        if pools is None:
            raise PlanInputError("curate plan fit needs --pools (or --import-swarm DIR)")
        rep = experiment.fit_pools(load_pools(pools), d, _target_from_options(target, target_source, target_pool), ref,
                                   estimator=estimator, log=typer.echo, executor=executor)
    out.mkdir(parents=True, exist_ok=True)
    experiment.save_fit(rep, out / "fit.json")
    d_ = rep.to_dict()
    export_swarm(d_, out / "swarm")
    echo_fit(d_)
    typer.echo(f"{len(rep.runs)} proxy runs in {rep.seconds:.1f}s wall ({sum(r.cpu_seconds for r in rep.runs):.1f} CPU s "
               f"in the runs, {rep.cpu_seconds:.1f} CPU s in this process); chosen estimator {rep.chosen}")
    if d_.get("scale_note"):
        typer.echo(f"note: {d_['scale_note']}")
    typer.echo(f"wrote {out / 'fit.json'} and {out / 'swarm'}/ (ratios.csv, metrics.csv, runs.csv)")


@plan_app.command("qqt")
def qqt_cmd(
    params_file: Path = typer.Option(..., help="parameter_values.jsonl in Goyal et al.'s format"),
    out: Path = typer.Option(...),
    key: str = typer.Option("tmars_imagenet1k_utility"),
    pool_size: float = typer.Option(12.8e6, help="samples in one bucket"),
    samples: Optional[list[float]] = typer.Option(None, help="compute budgets in samples seen (repeatable)"),
) -> None:
    """Goyal et al.'s QQT: the best union of top-k quality buckets for each compute budget."""
    import numpy as np

    from .qqt import best_pool, load_params
    from .report import render_qqt_report

    prm = load_params(params_file, key)
    budgets = samples or list(np.logspace(7, 10, 13))
    res = best_pool(prm, budgets, pool_size)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"samples_seen": b, "best_union": n, "error": res.error[i].tolist()} for i, (b, n) in enumerate(zip(res.budgets, res.best_names()))]
    (out / "plan.json").write_text(json.dumps({"schema": "curate.plan/v1", "mode": "qqt", "key": key, "pool_size": pool_size,
                                               "unions": res.unions, "budgets": rows}, indent=2) + "\n")
    (out / "report.html").write_text(render_qqt_report(res, prm, pool_size))
    for r in rows:
        typer.echo(f"{r['samples_seen']:.3g} samples: {'+'.join(r['best_union'])}")


@plan_app.command("regmix")
def regmix_cmd(
    mixtures: Path = typer.Option(..., help="CSV: index + one weight column per domain"),
    losses: Path = typer.Option(..., help="CSV: index + one loss column per validation set"),
    out: Path = typer.Option(...),
    target: str = typer.Option("pile_cc", help="loss column to minimise"),
    samples: int = typer.Option(100_000, help="mixtures to simulate"),
    top_k: int = typer.Option(100),
) -> None:
    """RegMix: LightGBM on (mixture -> loss), cross-validated, then the mean of the top-k mixtures."""
    from . import regmix

    d = regmix.load(mixtures, losses)
    if target not in d.targets:
        from curate.errors import UserError

        raise UserError(f"{losses}: no loss column for --target {target!r} (columns: {sorted(d.targets)})")
    y = d.targets[target]
    cv = regmix.cross_validate(d.X, y)
    model = regmix.fit_regressor(d.X, y)
    prior = d.X.mean(axis=0)  # no token counts in the CSVs: the runs' mean mixture is the prior
    w, pred = regmix.optimise(model, prior, samples, top_k)
    out.mkdir(parents=True, exist_ok=True)
    plan = {"schema": "curate.plan/v1", "mode": "regmix", "target": target, "cv_spearman": cv.spearman_pooled,
            "cv_spearman_folds": cv.spearman_folds, "predicted_loss": pred,
            "pools": [{"name": n, "weight": float(x)} for n, x in zip(d.domains, w)]}
    (out / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    typer.echo(f"5-fold CV Spearman {cv.spearman_pooled:.4f}; predicted {target} loss {pred:.4f}")
    for n, x in sorted(zip(d.domains, w), key=lambda t: -t[1]):
        typer.echo(f"  {n:20s} {x:.4f}")
