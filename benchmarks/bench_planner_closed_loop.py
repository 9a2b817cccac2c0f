"""Closed loop: does the planner's mixture beat naive mixtures when a bigger model trains on it?

    .venv/bin/python benchmarks/bench_planner_closed_loop.py [--pools out/sample-mix/pools/pools.json]
        [--out benchmarks/results/planner_closed_loop] [--scale 16] [--seeds 2] [--design bench]
        [--top-epochs auto|0|E] [--reuse-fit FIT.json] [--only MIXTURE[,..] --reuse-results closed_loop.json]

1. On the sample pipeline's real pools (crawl by topic and quality bucket, WikiText, code; run
   `make demo` first), fit every estimator from proxy runs (curate/planner/experiment.py), measured
   on the default target (held-out WikiText documents no pool trains on).
2. At `--scale` x the compute (6 N D) of the largest proxy, train one model per mixture with
   `--seeds` seeds: the planner's (best-validated estimator), natural token shares, uniform over
   pools, UniMax (epoch cap 1), the top bucket of each scored source/domain, and the top pool.
   The target runs are data-limited (`--top-epochs`): every pool's sample is scaled down by one
   factor (natural shares unchanged) so that the best pool (the one the planner weights most with
   full samples) alone would be
   repeated max(4, 2 (1 + R*)) times (at most 16), past the point where its repeated tokens lose
   most of their value; so the planner must decide how much of the best pool to repeat and
   which others to add, rather than take the best pool alone. `--top-epochs 0` keeps the pools'
   full samples (at 16x the sample's wiki pool needs < 2 epochs and the plan is "wiki alone").
   The planner's mixtures obey the planner's epoch caps (curate/planner/plan.py
   `repetition_caps`): no pool past the largest repetition the proxy runs measured for it; an
   estimator's mixture (regmix / dml) keeps what the caps allow and the law places the rest.
3. Print the target loss per mixture (mean and spread over seeds) and the law's predicted loss
   for each mixture at the target scale against the measurement.

On a GPU the same command sizes proxies for CUDA (design_for) and scales the target with them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from curate.planner import baselines, experiment  # noqa: E402
from curate.planner.plan import cap_mixture, repetition_caps, solve_within_caps  # noqa: E402
from curate.planner.pools import load_pools  # noqa: E402
from curate.planner.prepare import prepare  # noqa: E402
from curate.planner.proxy import ModelShape, RunResult, RunSpec, pick_device  # noqa: E402
from curate.planner.solver import waterfill  # noqa: E402
from curate.planner.experiment import _floor  # noqa: E402
from curate.planner.target import TargetSpec  # noqa: E402

# Between the demo's quick design and the full CPU one: three sizes, 2^16-token runs.
BENCH_DESIGN = replace(experiment.QUICK_DESIGN, name="bench", tokens=2**16, sizes=(32, 48, 64), n_swarm=16,
                       n_holdout=8, target_tokens=32768, min_pool_tokens=16384, n_boot=30,
                       max_chars_per_pool=1_500_000, tokenizer_chars=2_000_000)


def _reused_runs(path: str, specs: list[RunSpec]) -> list[RunResult] | None:
    """The proxy runs of an earlier fit.json, if they are the very runs `specs` describes."""
    d = json.loads(Path(path).read_text())
    runs = []
    for r in d["runs"]:
        sp = dict(r["spec"])
        sp.pop("non_embedding_params", None)
        sp["shape"] = ModelShape(**sp["shape"])
        runs.append(RunResult(RunSpec(**sp), r["val_loss"], r.get("val_loss_by_pool", {}), r["seconds"], r["device"],
                              r["steps"], r.get("train_tokens", 0), cpu_seconds=r.get("cpu_seconds", 0.0)))
    if [r.spec for r in runs] != specs:
        print(f"--reuse-fit {path}: its runs are not this design's; running the proxies")
        return None
    print(f"reusing the {len(runs)} proxy runs of {path}")
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pools", default=str(REPO / "out" / "sample-mix" / "pools" / "pools.json"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "planner_closed_loop"))
    ap.add_argument("--scale", type=float, default=16.0, help="target compute / largest proxy's compute (>= 8)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--design", default="bench", help="bench, quick, ci, cpu (on CUDA: the CUDA design)")
    ap.add_argument("--top-epochs", default="auto",
                    help="scale every pool's sample so the best pool alone would take this many epochs at the "
                         "target budget (auto: max(4, 2 (1 + its planned R*)), at most 16; 0: full samples)")
    ap.add_argument("--reuse-fit", default=None,
                    help="a fit.json an earlier run of this benchmark wrote: reuse its proxy runs when they are "
                         "exactly the runs this design asks for (the runs are deterministic); the law is re-fitted")
    ap.add_argument("--only", default=None,
                    help="comma-separated mixtures (names, or prefixes such as 'planner') to train; the other "
                         "mixtures' rows are taken from --reuse-results")
    ap.add_argument("--reuse-results", default=None,
                    help="closed_loop.json of an earlier run at the same target scale (with --only)")
    args = ap.parse_args()
    if bool(args.only) != bool(args.reuse_results):
        sys.exit("--only and --reuse-results go together")
    if args.scale < 8:
        sys.exit("--scale must be at least 8 (the issue's closed-loop bar)")
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pj = Path(args.pools)
    if not pj.is_file():
        sys.exit(f"{pj} not found: run `make demo` first (or pass --pools)")
    pf = load_pools(pj)
    device = pick_device()
    design = experiment.design_for(device) if device.startswith("cuda") else (
        BENCH_DESIGN if args.design == "bench" else experiment.DESIGNS[args.design])
    print(f"device {device}; design {design.name}; load average {os.getloadavg()}")

    # ---- 1. fit from proxies
    prep = prepare(pf, TargetSpec(), vocab_cap=design.vocab, target_tokens=design.target_tokens,
                   min_pool_tokens=design.min_pool_tokens, max_chars_per_pool=design.max_chars_per_pool,
                   tokenizer_chars=design.tokenizer_chars, seed=design.seed)
    names = [g.name for g in prep.groups]
    sizes = {g.name: g.train_tokens for g in prep.groups}
    ref = max(names, key=lambda p: sizes[p])
    specs = experiment.design_runs(names, sizes, design)
    print(f"target: {prep.resolved.description}; {prep.target.tokens()} tokens; vocab {prep.vocab}; "
          f"{len(specs)} proxy runs on {len(names)} groups")
    t1 = time.perf_counter()
    runs = _reused_runs(args.reuse_fit, specs) if args.reuse_fit else None
    if runs is None:
        runs = experiment.run_all(specs, prep.streams, prep.vocab, prep.target, design.train, print, "ray")
    prior = np.array([sizes[p] for p in names], float)
    fit, scores, mixtures = experiment.fit_estimators(runs, names, design, ref, prior=prior)
    chosen = experiment.est.choose(scores)
    t_fit = time.perf_counter() - t1
    rep = experiment.FitReport(fit, scores, chosen, runs, design, prep.to_dict(), t_fit, 0.0, device, mixtures)
    experiment.save_fit(rep, out / "fit.json")
    print(f"fit: {len(runs)} runs in {t_fit:.0f}s; chosen estimator {chosen}")

    # ---- 2. the target scale
    largest = max(runs, key=lambda r: 6.0 * r.spec.shape.non_embedding_params() * r.spec.tokens)
    c_proxy = 6.0 * largest.spec.shape.non_embedding_params() * largest.spec.tokens
    shape = design.shape(max(design.sizes))
    N = shape.non_embedding_params()
    D = int(args.scale * c_proxy / (6.0 * N))
    D -= D % shape.context
    c_target = 6.0 * N * D
    U_full = np.array([sizes[p] for p in names], float)
    # fitted base constants, q_i, R*_i (a parameter at a bound at the conservative end of its interval)
    law = fit.law(U_full)
    # The pool the planner leans on most with full samples (not the highest q: that can be a tiny
    # pool that is repeated many times whatever the scale, and scaling to it changes nothing).
    top = int(np.argmax(waterfill(law, N, D).weights))
    prev = json.loads(Path(args.reuse_results).read_text()) if args.reuse_results else None
    if prev:  # the earlier run's data-limited setting, whatever this re-fit's R* says (rows must compare)
        top = names.index(prev["target_scale"]["best_pool"])
        top_epochs = float(prev["target_scale"]["best_pool_alone_epochs"])
    elif args.top_epochs == "auto":
        top_epochs = float(np.clip(2.0 * (1.0 + law.rstar[top]), 4.0, 16.0))
    else:
        top_epochs = float(args.top_epochs)
    scale_u = min(1.0, D / (top_epochs * U_full[top])) if top_epochs > 0 else 1.0
    if prev:
        scale_u = float(prev["target_scale"]["pool_sample_scale"])
    # Every pool's sample shrinks by the same factor: a data-limited target with natural shares intact.
    U = np.array([max(2 * shape.context + 1, _floor(scale_u * u, shape.context)) for u in U_full], float)
    law = fit.law(U)
    print(f"best pool (largest planned weight with full samples): {names[top]} (q {law.quality[top]:.3g}, "
          f"planned R* {law.rstar[top]:.3g}); "
          f"pool samples scaled by {scale_u:.3f} so it alone would take {D / U[top]:.2f} epochs of {int(U[top]):,} tokens")
    groups = {g.name: g for g in prep.groups}
    pools_by = {p.name: p for p in pf.pools}

    def group_score(g: str) -> float | None:
        ms = [pools_by[m] for m in groups[g].members if pools_by[m].score is not None]
        if not ms:
            return None
        return sum(m.score * m.unique_tokens for m in ms) / sum(m.unique_tokens for m in ms)

    gscores = [group_score(g) for g in names]
    keys = [(pools_by[g].source, pools_by[g].domain) for g in names]
    mixes: dict[str, np.ndarray] = {}
    # the planner's path: epoch caps from the repetition the proxy runs measured, for every estimator
    caps, cap_prov = repetition_caps(names, rep.to_dict())
    print("epoch caps: " + ", ".join(f"{p} {c['max_epochs']:.3g}" for p, c in cap_prov.items())
          + " (largest repetition measured in the proxy runs)")
    try:
        law_alloc = solve_within_caps(law, N, D, caps)
    except ValueError as e:  # the capped pools cannot hold D tokens: say so, no traceback
        sys.exit(f"planner: {e}")
    if chosen == "law":
        mixes["planner (law)"] = law_alloc.weights
    else:
        raw = np.array([mixtures[chosen]["weights"][p] for p in names])
        mixes[f"planner ({chosen})"] = cap_mixture(law, N, D, raw, caps)
        mixes["planner (law)"] = law_alloc.weights
    mixes["natural"] = baselines.natural(U)
    mixes["uniform"] = baselines.uniform(len(names))
    mixes["unimax (1 epoch cap)"] = baselines.unimax(U, D, max_epochs=1.0)
    mixes["top bucket"] = baselines.top_bucket(keys, gscores, U)
    mixes["top pool"] = baselines.top_pool(gscores)
    print(f"\ntarget scale: d_model {shape.d_model}, N = {N:,} non-embedding params, D = {D:,} tokens, "
          f"C = {c_target:.3g} FLOPs = {c_target / c_proxy:.1f}x the largest proxy ({largest.spec.name}, C = {c_proxy:.3g})")
    for k, w in mixes.items():
        print(f"  {k:24s} " + "  ".join(f"{p}={x:.3f}" for p, x in zip(names, w) if x > 1e-4))

    # ---- 3. train at the target scale (with --only: the named mixtures; the rest from --reuse-results)
    train = list(mixes)
    reused: dict[str, dict] = {}
    if args.only:
        wanted = [o.strip() for o in args.only.split(",") if o.strip()]
        train = [k for k in mixes if any(k == o or k.startswith(o) for o in wanted)]
        if not train:
            sys.exit(f"--only {args.only}: no such mixture (have: {', '.join(mixes)})")
        ts = prev["target_scale"]
        if (ts["N"], ts["D"], ts["unique_tokens"]) != (N, D, dict(zip(names, map(int, U)))):
            sys.exit(f"--reuse-results {args.reuse_results}: another target scale or pool sample (N, D or unique tokens "
                     "differ); rerun every mixture")
        prev_rows = {r["mixture"]: r for r in prev["rows"]}
        for k in mixes:
            if k in train:
                continue
            r = prev_rows.get(k)
            if r is None or not np.allclose([r["weights"][p] for p in names], mixes[k], atol=1e-9):
                sys.exit(f"--reuse-results: mixture {k!r} is missing there or has other weights; add it to --only")
            reused[k] = r
        print(f"training {', '.join(train)}; reusing {', '.join(reused)} from {args.reuse_results}")
    tspecs = []
    for k in train:
        w = mixes[k]
        for s in range(args.seeds):
            wd = {p: float(x) for p, x in zip(names, w) if x > 1e-6}
            uq = {p: int(u) for p, u in zip(names, U)}
            tspecs.append(RunSpec(f"{k}#seed{s}", shape, D, wd, {p: uq[p] for p in wd}, seed=1000 + s, kind="target"))
    t2 = time.perf_counter()
    truns = experiment.run_all(tspecs, prep.streams, prep.vocab, prep.target, design.train, print, "ray")
    t_target = time.perf_counter() - t2
    rows = []
    for k, w in mixes.items():
        ls = (np.array(reused[k]["losses"]) if k in reused else
              np.array([r.val_loss for r in truns if r.spec.name.split("#")[0] == k]))
        tokens = np.asarray(w) * D
        pred = law.loss(N, tokens)
        rows.append({"mixture": k, "weights": dict(zip(names, map(float, w))), "mean": float(ls.mean()),
                     "spread": float(ls.max() - ls.min()), "std": float(ls.std(ddof=1)) if len(ls) > 1 else 0.0,
                     "losses": ls.tolist(), "law_predicted": float(pred),
                     "max_epochs": float(np.max(np.where(U > 0, tokens / U, 0))),
                     "best_pool_epochs": float(tokens[top] / U[top]),
                     **({"reused_from": str(args.reuse_results)} if k in reused else {})})
    best = min(rows, key=lambda r: r["mean"])
    noise = max(r["spread"] for r in rows)
    print(f"\ntarget runs: {len(truns)} ({len(train)} mixtures x {args.seeds} seeds"
          + (f"; {len(reused)} mixtures' rows reused" if reused else "") + "), "
          f"{sum(r.cpu_seconds for r in truns):.0f} CPU s; pool samples x{scale_u:.3f} (best pool alone: {D / U[top]:.2f} epochs)")
    print(f"\n| mixture | target loss mean | spread (max-min over {args.seeds} seeds) | law predicted | max epochs | {names[top]} epochs |")
    print("|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: r["mean"]):
        print(f"| {r['mixture']}{' (reused)' if 'reused_from' in r else ''} | {r['mean']:.4f} | {r['spread']:.4f} | {r['law_predicted']:.4f} | {r['max_epochs']:.2f} | {r['best_pool_epochs']:.2f} |")
    planner = rows[0]
    gap = planner["mean"] - best["mean"]
    verdict = ("best" if planner is best else
               f"within seed noise of the best ({best['mixture']}: +{gap:.4f} <= largest spread {noise:.4f})" if gap <= noise
               else f"NOT within seed noise: {best['mixture']} is better by {gap:.4f} (largest spread {noise:.4f})")
    print(f"\nplanner's mixture ({planner['mixture']}): {verdict}")
    print("estimators (held-out Spearman / MAE): " + ", ".join(
        f"{k} {s.spearman:.3f} / {s.mae:.4f}" for k, s in scores.items()))
    total = time.perf_counter() - t0
    print(f"wall: fit {t_fit:.0f}s, target runs {t_target:.0f}s, total {total:.0f}s ({total / 60:.1f} min)")
    result = {"device": device, "design": design.name, "names": names, "target": prep.resolved.description,
              "target_scale": {"N": N, "D": D, "flops": c_target, "x_largest_proxy": c_target / c_proxy,
                               "pool_sample_scale": scale_u, "unique_tokens": dict(zip(names, map(int, U))),
                               "best_pool": names[top], "best_pool_alone_epochs": D / float(U[top])},
              "proxy_cpu_seconds": sum(r.cpu_seconds for r in runs),
              "target_cpu_seconds": sum(r.cpu_seconds for r in truns),
              "chosen_estimator": chosen, "epoch_caps": cap_prov, "estimators": {k: s.to_dict() for k, s in scores.items()},
              "rows": rows, "verdict": verdict, "seconds": {"fit": t_fit, "target": t_target, "total": total}}
    (out / "closed_loop.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
