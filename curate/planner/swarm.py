"""Proxy runs as a swarm in the RegMix / Olmix layout: `ratios.csv` + `metrics.csv`.

    ratios.csv    run,<pool 1>,<pool 2>,...      one row per run: its mixture weights (sum 1)
    metrics.csv   run,target,<stream 1>,...      one row per run: its losses (`target`: the loss
                                                 the planner minimises; then per target stream)
    runs.csv      run,kind,non_embedding_params,tokens,unique_<pool 1>,...   (curate's sidecar)

The first column names the run (`index` in RegMix's CSVs is accepted too); rows join on it.
ratios.csv + metrics.csv alone are enough for the mixture regressions (regmix, dml): every run is
then a swarm run, and `--holdout-frac` of them (seeded) are kept out of every fit for validation.
The quality x repetition law also needs each run's model size, tokens and unique tokens per pool:
curate writes them to runs.csv, and `kind` (fit | swarm | holdout) keeps the held-out split, so
export followed by import refits exactly the same estimators.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .errors import PlanInputError
from .proxy import ModelShape, RunResult, RunSpec

RATIOS, METRICS, RUNS = "ratios.csv", "metrics.csv", "runs.csv"


def _atomic_csv(path: Path, header: list[str], rows: list[list]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    tmp.replace(path)


def export_swarm(fit: dict, out: str | Path) -> Path:
    """Write a fit.json's runs as ratios.csv, metrics.csv and runs.csv under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [g["name"] for g in fit["groups"]]
    runs = fit["runs"]
    streams = sorted({k for r in runs for k in r.get("val_loss_by_pool", {})})
    _atomic_csv(out / RATIOS, ["run"] + names,
                [[r["spec"]["name"]] + [repr(float(r["spec"]["weights"].get(p, 0.0))) for p in names] for r in runs])
    _atomic_csv(out / METRICS, ["run", "target"] + streams,
                [[r["spec"]["name"], repr(float(r["val_loss"]))] + [repr(float(r["val_loss_by_pool"].get(s, "nan"))) for s in streams]
                 for r in runs])
    _atomic_csv(out / RUNS, ["run", "kind", "non_embedding_params", "tokens", "d_model", "n_layers", "context", "seed"]
                + [f"unique_{p}" for p in names],
                [[r["spec"]["name"], r["spec"]["kind"], r["spec"]["non_embedding_params"], r["spec"]["tokens"],
                  r["spec"]["shape"]["d_model"], r["spec"]["shape"]["n_layers"], r["spec"]["shape"]["context"],
                  r["spec"]["seed"]] + [r["spec"]["unique"].get(p, 0) for p in names] for r in runs])
    return out


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise PlanInputError(f"swarm: {path} does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r]
    if len(rows) < 2:
        raise PlanInputError(f"swarm: {path} has no data rows")
    return rows[0], rows[1:]


def _float(v: str, where: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise PlanInputError(f"swarm: {where}: {v!r} is not a number") from None


def import_swarm(folder: str | Path, target: str = "target", holdout_frac: float = 0.25, seed: int = 0) -> tuple[list[str], list[RunResult]]:
    """Read a swarm folder into runs the estimators can fit. Returns (pool names, runs)."""
    folder = Path(folder)
    rhead, rrows = _read(folder / RATIOS)
    mhead, mrows = _read(folder / METRICS)
    names = [h.removeprefix("train_") for h in rhead[1:]]
    if target not in mhead[1:]:
        raise PlanInputError(f"swarm: {folder / METRICS} has no column {target!r} (columns: {mhead[1:]}); "
                             "pick the loss to minimise with --swarm-target")
    ti = mhead.index(target)
    losses = {r[0]: _float(r[ti], f"{METRICS} run {r[0]}") for r in mrows}
    by_stream = {r[0]: {h: _float(v, f"{METRICS} run {r[0]}") for h, v in zip(mhead[1:], r[1:]) if h != target}
                 for r in mrows}
    meta: dict[str, dict] = {}
    if (folder / RUNS).is_file():
        h, rows = _read(folder / RUNS)
        meta = {r[0]: dict(zip(h, r)) for r in rows}
    runs: list[RunResult] = []
    ids = [r[0] for r in rrows if r[0] in losses]
    if not ids:
        raise PlanInputError(f"swarm: no run of {RATIOS} has a row in {METRICS} (join on the first column)")
    held = set()
    if not meta:  # no split recorded: hold out a seeded fraction of the runs
        rng = np.random.default_rng(seed)
        n = max(1, int(round(holdout_frac * len(ids))))
        held = {ids[i] for i in rng.choice(len(ids), size=n, replace=False)}
    for r in rrows:
        rid = r[0]
        if rid not in losses:
            continue
        w = [_float(x, f"{RATIOS} run {rid}") for x in r[1:]]
        if len(w) != len(names):
            raise PlanInputError(f"swarm: {RATIOS} run {rid} has {len(w)} weights for {len(names)} pools")
        s = sum(w)
        if not s > 0:
            raise PlanInputError(f"swarm: {RATIOS} run {rid}: weights sum to {s}")
        weights = {p: x for p, x in zip(names, w) if x > 0}  # as written: an exported fit re-imports exactly
        m = meta.get(rid)
        if m:
            d = int(m["d_model"])
            shape = ModelShape(d_model=d, n_layers=int(m["n_layers"]), context=int(m["context"]),
                               n_heads=4 if d < 256 else 8, d_ff=2 * d if d < 256 else 4 * d)
            spec = RunSpec(rid, shape, int(m["tokens"]), weights, {p: int(m[f"unique_{p}"]) for p in names if int(m[f"unique_{p}"])},
                           int(m["seed"]), kind=m["kind"])
        else:
            spec = RunSpec(rid, ModelShape(), 0, weights, {}, 0, kind="holdout" if rid in held else "swarm")
        runs.append(RunResult(spec, losses[rid], by_stream.get(rid, {}), 0.0, "imported", 0))
    return names, runs


def has_law_metadata(runs: list[RunResult]) -> bool:
    return all(r.spec.tokens > 0 for r in runs)
