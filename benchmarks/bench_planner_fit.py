"""Benchmark: `curate plan fit` on real pools built from the shared data, then a plan and report.

    .venv/bin/python benchmarks/bench_planner_fit.py [--out benchmarks/results/planner] [--shared ../shared/data]

Builds wiki / web_high / web_low pools (see curate/planner/demo_pools.py) as pools.json + Parquet,
runs the default proxy design (30 runs: 24 to fit, 6 held-out mixtures), fits q_i and R*_i with
bootstrap intervals, validates on the held-out mixtures, then plans a budget with the fitted law
and writes plan.json + report.html. Prints wall time, run count and every fitted figure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curate.planner import demo_pools, experiment
from curate.planner.pools import load_pools


def tiktoken_counter(shared: Path):
    """Count unique tokens with cl100k_base from the shared tokenizer cache (offline)."""
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared / "tokenizers"))
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base")
    return lambda texts: sum(len(x) for x in enc.encode_ordinary_batch(texts))


def report_fit(d: dict) -> None:
    runs = d["runs"]
    n_fit = sum(r["spec"]["kind"] != "holdout" for r in runs)
    print(f"\nproxy runs: {len(runs)} ({n_fit} fit + {len(runs) - n_fit} held-out), fit wall time {d['seconds']:.1f}s "
          f"({d['seconds'] / 60:.1f} min; training {sum(r['seconds'] for r in runs):.1f}s; process CPU {d.get('cpu_seconds', 0):.0f}s), "
          f"device {runs[0]['device']}")
    f = d["fit"]
    b, ci = f["base"], f["base_ci95"]
    print("base: " + "  ".join(f"{k}={b[k]:.4g} [{ci[k][0]:.3g}, {ci[k][1]:.3g}]" for k in b))
    for p in f["pools"]:
        q, r = p["quality_ci95"], p["rstar_ci95"]
        qi = f"[{q[0]:.3f}, {q[1]:.3f}]" if q else "(reference)"
        print(f"  {p['name']:9s} q={p['quality']:.3f} {qi}  R*={p['rstar']:.2f} [{r[0]:.2f}, {r[1]:.2f}]")
    print("fit runs (measured val loss):")
    for r in runs:
        if r["spec"]["kind"] != "holdout":
            print(f"  {r['spec']['name']:26s} {r['val_loss']:.4f}  {r['seconds']:.1f}s")
    v = d["validation"]
    print("held-out mixtures (measured -> predicted):")
    for run, vr in zip([r for r in runs if r["spec"]["kind"] == "holdout"], v["runs"]):
        w = ", ".join(f"{k}={x:.2f}" for k, x in run["spec"]["weights"].items())
        print(f"  {vr['name']}: {w}: {vr['measured']:.4f} -> {vr['predicted']:.4f}")
    print(f"Spearman(predicted, measured) = {v['spearman']:.3f}, MAE = {v['mae']:.4f}")
    for flag in f.get("at_bound", []):
        print(f"note: {flag['param']} = {flag['value']:.4g} at its {flag['bound']} bound; profile 95% interval "
              f"{flag.get('profile_ci95')}")
    for k, e in d.get("estimators", {}).items():
        print(f"estimator {k}: held-out Spearman {e['spearman']:.3f}, MAE {e['mae']:.4f} ({e['n_heldout']} mixtures)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "planner"))
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--tokens", type=int, default=None, help="override D0 (tokens per proxy run)")
    ap.add_argument("--reuse-fit", action="store_true", help="print and plan from an existing OUT/fit.json")
    args = ap.parse_args()
    out, shared = Path(args.out), Path(args.shared)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pj = demo_pools.build_demo_pools(shared, out / "pools", tiktoken_counter(shared))
    pf = load_pools(pj)
    t_pools = time.perf_counter() - t0
    print(f"pools built in {t_pools:.1f}s:")
    for p in pf.pools:
        print(f"  {p.name:9s} docs {p.documents:5d}  chars {p.characters:9d}  cl100k tokens {p.unique_tokens:8d}")
    if not (args.reuse_fit and (out / "fit.json").exists()):
        design = experiment.FitDesign()
        if args.tokens:
            design.tokens = args.tokens
        from curate.planner.target import TargetSpec

        # The target: held-out WikiText articles (no pool trains on them), not a mix of the candidates.
        rep = experiment.fit_pools(pf, design, TargetSpec(sources={"wikitext-2": 1.0}))
        experiment.save_fit(rep, out / "fit.json")
    report_fit(experiment.load_fit(out / "fit.json"))
    from curate.planner.plan import plan_command

    # A plan with the fitted q, R* on the real pool sizes, Chinchilla base constants.
    plan_command(pools=pj, fit=out / "fit.json", budget_flops=1e13, out=out / "plan", base="chinchilla")
    plan = json.loads((out / "plan" / "plan.json").read_text())
    print(f"\nplan at C=1e13 (chinchilla base): N={plan['model']['params']:.3g} D={plan['model']['tokens']:.3g} "
          f"loss={plan['predicted_loss']:.4f}")
    for p in plan["pools"]:
        print(f"  {p['name']:9s} weight {p['weight']:.4f} epochs {p['epochs']:.2f} kept {p['kept']}")
    print(f"report: {out / 'plan' / 'report.html'}; total {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
