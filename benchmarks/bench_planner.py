"""Benchmark: the planner's published-law figures, QQT on the T-MARS parameters, RegMix CV on the
shared 1M-proxy CSVs, and water-filling against scipy's general solvers (accuracy and speed).

    .venv/bin/python benchmarks/bench_planner.py [--shared ../shared/data]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curate.planner import laws, qqt, regmix, solver
from curate.planner.mixture import MixtureLaw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    shared = Path(ap.parse_args().shared)

    print("== published laws ==")
    for c in (laws.CHINCHILLA, laws.EPOCH, laws.MUENNIGHOFF_C4):
        for C in (1e21, 5.76e23):
            N, D = laws.compute_optimal(C, c)
            print(f"{c.name:15s} C={C:.3g}: N_opt={N:.4g} D_opt={D:.4g} D/N={D / N:.1f} L={laws.chinchilla_loss(N, D, c):.4f}")
    r = laws.MUENNIGHOFF_C4.rstar_d
    for ep in (2, 4, 8, 16, 64):
        print(f"D'/U after {ep:2d} epochs (R*_D={r}): {laws.effective_data(ep * 1.0, 1.0, r):.4f}  ({laws.effective_data(ep * 1.0, 1.0, r) / ep:.1%} of fresh)")

    print("\n== QQT (Goyal et al.) on T-MARS utility parameters, bucket = 12.8M samples ==")
    prm = qqt.load_params(shared / "planner" / "qqt-tmars-parameter-values.jsonl")
    budgets = [32e6, 64e6, 128e6, 640e6, 2e9, 5e9]
    res = qqt.best_pool(prm, budgets, 12.8e6)
    print("samples  " + "  ".join(f"top{10 * (k + 1)}%" for k in range(len(res.unions))) + "   best")
    for i, b in enumerate(budgets):
        print(f"{b:8.3g} " + "  ".join(f"{100 * (1 - e):6.2f}" for e in res.error[i]) + f"   top{10 * (res.best[i] + 1)}%")

    print("\n== RegMix on the shared 1M-proxy runs (512 mixtures) ==")
    d = regmix.load(shared / "planner" / "regmix" / "train_mixture_1m.csv", shared / "planner" / "regmix" / "train_pile_loss_1m.csv")
    t = time.perf_counter()
    cv = regmix.cross_validate(d.X, d.targets["pile_cc"], k=5)
    print(f"5-fold CV Spearman, Pile-CC loss: pooled {cv.spearman_pooled:.4f}, folds {np.round(cv.spearman_folds, 4).tolist()} ({time.perf_counter() - t:.1f}s)")
    model = regmix.fit_regressor(d.X, d.targets["pile_cc"])
    w, pred = regmix.optimise(model, d.X.mean(axis=0), 100_000, 100)
    top = sorted(zip(d.domains, w), key=lambda x: -x[1])[:5]
    print(f"top-100 mean mixture: predicted Pile-CC loss {pred:.4f} (best observed {d.targets['pile_cc'].min():.4f}); "
          + ", ".join(f"{n}={x:.3f}" for n, x in top))

    print("\n== water-filling vs general solvers (4 pools, 200 random (N, D, caps) cases) ==")
    rng = np.random.default_rng(0)
    worst = {"SLSQP": 0.0, "trust-constr": 0.0}
    t_wf = t_gen = 0.0
    n = 0
    for _ in range(200):
        k = 4
        law = MixtureLaw(laws.CHINCHILLA, [f"p{i}" for i in range(k)], 10 ** rng.uniform(8, 11, k), rng.uniform(0.2, 1.0, k),
                         rng.uniform(1.0, 30.0, k))
        N = 10 ** rng.uniform(7, 10)
        D = law.unique_tokens.sum() * 10 ** rng.uniform(-1.5, 1.0)
        caps = solver.Caps(default_max_epochs=float(rng.uniform(2, 40))) if rng.random() < 0.3 else None
        try:
            t = time.perf_counter()
            a = solver.waterfill(law, N, D, caps)
            t_wf += time.perf_counter() - t
        except solver.Infeasible:
            continue
        n += 1
        for m in worst:
            t = time.perf_counter()
            b = solver.general_solve(law, N, D, caps, method=m)
            t_gen += time.perf_counter() - t
            worst[m] = max(worst[m], b.loss - a.loss, a.loss - b.loss)
    print(f"{n} feasible cases: max |loss(waterfill) - loss(SLSQP)| = {worst['SLSQP']:.2e}, vs trust-constr {worst['trust-constr']:.2e}")
    print(f"time per solve: waterfill {1e3 * t_wf / n:.2f} ms, general solvers {1e3 * t_gen / (2 * n):.1f} ms (noisy: shared cores)")


if __name__ == "__main__":
    main()
