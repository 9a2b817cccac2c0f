"""`curate plan fit`: design proxy runs on the user's pools, run them, fit the estimators, and
validate each on held-out mixtures no fit saw.

Design, for K fit groups (pools, or small pools merged into a sibling: prepare.py):
- anchors: each group alone, one epoch of D_i = min(D0, its training tokens), base size (q_i);
- repetition: each group alone, `epochs` passes over a D_i/epochs sample (R*_i);
- size sweep: the largest group, one epoch, at the other sizes (A, alpha);
- small D: the largest group, one epoch of D0 x small_tokens_frac (B, beta);
- swarm: `n_swarm` Dirichlet mixtures (RegMix-style, around the groups' token shares), base size,
  D0 tokens, each group capped to a sample of mix_unique_frac x D0 tokens, so mixtures trade
  quality against repetition (trains regmix and dml; the law fits on it too);
- held-out: `n_holdout` more mixtures from the same distribution, another seed: validation only.

Every run is measured on the target (target.py): documents no candidate pool trains on.
Runs execute as Ray tasks, one CPU thread each (one GPU each on CUDA), so a cluster shortens a fit.

Proxy size follows the hardware (`design_for`): on CPU 25k-100k non-embedding parameters (far
below the >= 15M where Olmix measured rank transfer > 0.89, and below RegMix's 1M: the report
says so); on CUDA >= 15M. Token budgets, target size and the proxy vocabulary scale down to what
the pools hold.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import estimators as est
from .errors import PlanInputError
from .fit import FitResult, Observation, fit_law
from .pools import PoolsFile
from .prepare import prepare
from .proxy import EvalSet, ModelShape, PoolTokens, RunResult, RunSpec, TrainConfig, pick_device, train_run
from .target import TargetSpec

# Olmix (2026): rank correlation of proxy and 1B-target mixture rankings ~0.73 from 1M-parameter
# proxies, > 0.89 from 15M up. Below that, a fit ranks mixtures at proxy scale only.
RANK_TRANSFER_MIN_PARAMS = 15_000_000


@dataclass
class FitDesign:
    tokens: int = 2**17  # D0: tokens of a full proxy run (scaled down to what the pools hold)
    sizes: tuple[int, ...] = (32, 48, 64)  # d_model of the size sweep; the first is the base size
    n_layers: int = 2
    epochs: tuple[int, ...] = (4, 16)  # repetition runs per group (passes over a D_i/epochs sample)
    small_tokens_frac: float = 0.25
    n_swarm: int = 24
    n_holdout: int = 8
    mix_unique_frac: float = 0.25
    context: int = 128
    vocab: int = 2048  # cap; scaled down for small pools (prepare.scaled_vocab)
    target_tokens: int = 32768  # held-out target tokens (scaled down for small target pools)
    min_pool_tokens: int = 16384  # a pool with fewer training tokens is merged or given a prior
    max_chars_per_pool: int | None = 4_000_000  # read at most this much text per pool
    tokenizer_chars: int = 4_000_000
    seed: int = 0
    n_boot: int = 100
    name: str = "cpu"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=8, lr=1e-2))

    @property
    def base_size(self) -> int:
        return self.sizes[0]

    def shape(self, d: int) -> ModelShape:
        return ModelShape(d_model=d, n_layers=self.n_layers, n_heads=4 if d < 256 else 8, d_ff=2 * d if d < 256 else 4 * d,
                          context=self.context)

    def max_params(self) -> int:
        return max(self.shape(d).non_embedding_params() for d in self.sizes)


CPU_DESIGN = FitDesign()
# `make demo` and the YAML `fit: quick`: about a minute on two quiet cores for the sample's 8 fit
# groups (38 runs of 2^14 tokens, ~48 CPU s; the law's fit ~47 CPU s spread over the cores; measured
# under load, docs/planner.md). 12 swarm runs and 20 resamples: the 8 held-out mixtures the
# estimator table needs stay, and on the sample's pools held-out Spearman held (law 0.86, dml 0.93)
# against the previous 42 runs of 2^15 tokens (0.86, 0.88).
QUICK_DESIGN = replace(CPU_DESIGN, name="quick", tokens=2**14, sizes=(32, 48), epochs=(4,), n_swarm=12, n_holdout=8,
                       context=64, vocab=1024, target_tokens=16384, min_pool_tokens=8192, n_boot=20,
                       max_chars_per_pool=600_000, tokenizer_chars=1_500_000)
# Tests: seconds.
CI_DESIGN = replace(CPU_DESIGN, name="ci", tokens=2**13, sizes=(16, 32), epochs=(4,), small_tokens_frac=0.5, n_swarm=8,
                    n_holdout=8, context=32, vocab=384, target_tokens=4096, min_pool_tokens=2048, n_boot=10,
                    max_chars_per_pool=200_000, tokenizer_chars=400_000)
# A GPU: proxies of 15M-40M non-embedding parameters (8 layers, d_model 384-512), 2^24 tokens a run
# where the pools hold that much.
CUDA_DESIGN = replace(CPU_DESIGN, name="cuda", tokens=2**24, sizes=(384, 448, 512), n_layers=8, context=512, vocab=8192,
                      target_tokens=2**20, min_pool_tokens=2**16, max_chars_per_pool=None, tokenizer_chars=50_000_000,
                      train=TrainConfig(batch_size=32, lr=1e-3))

DESIGNS = {"cpu": CPU_DESIGN, "quick": QUICK_DESIGN, "ci": CI_DESIGN, "cuda": CUDA_DESIGN}


def design_for(device: str | None = None, quick: bool = False) -> FitDesign:
    """The design for this machine: CUDA -> proxies >= 15M parameters; CPU -> the CPU design."""
    device = device or pick_device()
    if device.startswith("cuda"):
        return replace(CUDA_DESIGN, train=replace(CUDA_DESIGN.train, device=device))
    return replace(QUICK_DESIGN if quick else CPU_DESIGN)


def scale_note(design: FitDesign, device: str) -> str:
    n = design.max_params()
    if n >= RANK_TRANSFER_MIN_PARAMS:
        return f"proxies up to {n:,} non-embedding parameters on {device}: in the range where rank transfer was measured"
    return (f"proxies of at most {n:,} non-embedding parameters on {device}: below the ~15M where mixture rankings "
            "were measured to transfer to 1B models (Olmix: ~0.73 rank correlation from 1M-parameter proxies, "
            "> 0.89 from 15M); the fit ranks mixtures at proxy scale")


# ----------------------------------------------------------------------------- design
def dirichlet_mixtures(shares: np.ndarray, n: int, seed: int, temperature: float = 0.5,
                       strengths: tuple[float, float] = (0.3, 5.0), minimum: float = 0.05) -> np.ndarray:
    """RegMix-style mixture sampling: prior = token shares ** temperature (renormalised), Dirichlet
    with a concentration drawn log-uniformly; weights under `minimum` are zeroed and the rest
    renormalised. A sample must mix at least two pools: a single-pool "mixture" would repeat a
    configuration the fit already trained on, and a held-out run must be one no fit saw."""
    rng = np.random.default_rng(seed)
    prior = shares**temperature
    prior = prior / prior.sum()
    out: list[np.ndarray] = []
    tries = 0
    while len(out) < n:
        tries += 1
        s = np.exp(rng.uniform(np.log(strengths[0]), np.log(strengths[1])))
        w = rng.dirichlet(prior * s * len(prior))
        w = np.where(w < minimum, 0.0, w)
        if np.count_nonzero(w) < min(2, len(w)):
            continue
        w = np.round(w / w.sum(), 3)
        w = w / w.sum()
        if tries > 100_000 or all(np.abs(w - o).sum() > 0.05 for o in out):
            out.append(w)
    return np.array(out)


def _floor(x: int, ctx: int) -> int:
    return max(ctx + 1, (int(x) // ctx) * ctx)


def design_runs(names: list[str], train_sizes: dict[str, int], d: FitDesign) -> list[RunSpec]:
    """The run list (see the module docstring); sizes are scaled to the groups' training tokens."""
    ctx = d.context
    biggest = max(names, key=lambda p: train_sizes[p])
    D0 = _floor(min(d.tokens, train_sizes[biggest]), ctx)
    base = d.shape(d.base_size)
    runs: list[RunSpec] = []
    for p in names:
        Di = _floor(min(D0, train_sizes[p]), ctx)
        runs.append(RunSpec(f"{p}/d{d.base_size}/1ep", base, Di, {p: 1.0}, {p: Di}, d.seed))
        for ep in d.epochs:
            u = Di // ep
            if u >= 2 * ctx + 1:
                runs.append(RunSpec(f"{p}/d{d.base_size}/{ep}ep", base, Di, {p: 1.0}, {p: u}, d.seed))
    for s in d.sizes[1:]:
        runs.append(RunSpec(f"{biggest}/d{s}/1ep", d.shape(s), D0, {biggest: 1.0}, {biggest: D0}, d.seed))
    if d.small_tokens_frac:
        ds = _floor(D0 * d.small_tokens_frac, ctx)
        runs.append(RunSpec(f"{biggest}/d{d.base_size}/1ep/D{ds}", base, ds, {biggest: 1.0}, {biggest: ds}, d.seed))
    if len(names) >= 2:
        shares = np.array([train_sizes[p] for p in names], float)
        unique = {p: _floor(min(train_sizes[p], d.mix_unique_frac * D0), ctx) for p in names}
        for kind, n, off in (("swarm", d.n_swarm, 17), ("holdout", d.n_holdout, 29)):
            for j, w in enumerate(dirichlet_mixtures(shares / shares.sum(), n, d.seed + off)):
                runs.append(RunSpec(f"{kind}{j}", base, D0, {p: float(x) for p, x in zip(names, w)}, dict(unique),
                                    d.seed, kind=kind))
    return runs


def observation(r: RunResult, names: list[str]) -> Observation:
    s = r.spec
    tok = np.array([s.weights.get(p, 0.0) * s.tokens for p in names])
    uniq = np.array([s.unique.get(p, 1) for p in names], float)
    return Observation(float(s.shape.non_embedding_params()), tok, uniq, r.val_loss, s.name)


# ----------------------------------------------------------------------------- running
def _train_task(spec: RunSpec, pools: dict[str, PoolTokens], vocab: int, target: EvalSet, cfg: TrainConfig) -> RunResult:
    return train_run(spec, pools, vocab, target, cfg)


def run_all(specs: list[RunSpec], pools: dict[str, PoolTokens], vocab: int, target: EvalSet, cfg: TrainConfig,
            log=print, executor: str = "ray") -> list[RunResult]:
    """Train every run; with `ray`, one task per run (1 CPU and one thread each; 1 GPU each on CUDA).
    Results come back in spec order whatever order they finish in."""
    t0 = time.perf_counter()
    if executor != "ray" or len(specs) <= 1:
        out = []
        for i, s in enumerate(specs):
            r = train_run(s, pools, vocab, target, cfg)
            log(f"[{i + 1}/{len(specs)}] {s.name:30s} loss {r.val_loss:.4f}  {r.seconds:6.1f}s  ({r.device})")
            out.append(r)
        return out
    import ray

    if not ray.is_initialized():
        # Proxy runs are this command's work, not background: Ray's default worker niceness (15)
        # starves them on a shared machine (measured: 16 s of CPU took 70-90 s of wall time).
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    device = pick_device(cfg.device)
    opts = {"num_gpus": 1, "num_cpus": 1} if device.startswith("cuda") else {"num_cpus": 1}
    remote = ray.remote(max_retries=1, **opts)(_train_task)
    pools_ref, target_ref = ray.put(pools), ray.put(target)
    refs = [remote.remote(s, pools_ref, vocab, target_ref, replace(cfg, threads=1)) for s in specs]
    index = {r: i for i, r in enumerate(refs)}
    results: list[RunResult | None] = [None] * len(specs)
    pending, done = list(refs), 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            r = ray.get(ref)
            results[index[ref]] = r
            done += 1
            log(f"[{done}/{len(specs)}] {r.spec.name:30s} loss {r.val_loss:.4f}  {r.seconds:6.1f}s  ({r.device}) "
                f"{time.perf_counter() - t0:6.0f}s elapsed")
    return results  # type: ignore[return-value]


# ----------------------------------------------------------------------------- fitting
@dataclass
class FitReport:
    fit: FitResult | None  # None: an imported swarm without the law's metadata
    scores: dict[str, est.Score]
    chosen: str
    runs: list[RunResult]
    design: FitDesign
    prepared: dict
    seconds: float
    cpu_seconds: float = 0.0
    device: str = "cpu"
    mixtures: dict = field(default_factory=dict)  # estimator -> best mixture at proxy scale

    @property
    def validation(self) -> est.Score:
        return self.scores["law"]

    def to_dict(self) -> dict:
        held = [r for r in self.runs if r.spec.kind == "holdout"]
        law = self.scores["law"]
        return {"schema": "curate.fit/v2", "fit": self.fit.to_dict() if self.fit else {"pools": [], "at_bound": []},
                "estimators": {k: s.to_dict() for k, s in self.scores.items()}, "chosen_estimator": self.chosen,
                "heldout_runs": [r.spec.name for r in held],
                "validation": {"runs": [{"name": r.spec.name, "measured": m, "predicted": p} for r, m, p in
                                        zip(held, law.measured, law.predicted)],
                               "spearman": law.spearman, "mae": law.mae},
                "mixtures": self.mixtures, "groups": self.prepared["groups"], "unplaced": self.prepared["unplaced"],
                "notes": self.prepared["notes"], "target": self.prepared["target"],
                "target_tokens": self.prepared["target_tokens"], "proxy_vocab": self.prepared["vocab"],
                "runs": [r.to_dict() for r in self.runs], "design": _design_dict(self.design), "device": self.device,
                "scale_note": scale_note(self.design, self.device), "max_proxy_params": self.design.max_params(),
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                "proxy_cpu_seconds": sum(r.cpu_seconds for r in self.runs), "n_runs": len(self.runs)}


def _design_dict(d: FitDesign) -> dict:
    out = asdict(d)
    out["base_size"] = d.base_size
    return out


def fit_estimators(results: list[RunResult], names: list[str], design: FitDesign, ref: str | None,
                   prior: np.ndarray | None = None, which: tuple[str, ...] = est.ESTIMATORS,
                   log=print) -> tuple[FitResult | None, dict[str, est.Score], dict]:
    """Fit every estimator on the training runs; score each on the held-out ones."""
    train = [r for r in results if r.spec.kind != "holdout"]
    held = [r for r in results if r.spec.kind == "holdout"]
    swarm = [r for r in results if r.spec.kind == "swarm"]
    meas = np.array([r.val_loss for r in held])
    scores: dict[str, est.Score] = {}
    mixtures: dict[str, dict] = {}
    fit = None
    if "law" in which and all(r.spec.tokens > 0 for r in results):
        fit = fit_law([observation(r, names) for r in train], names, ref=ref, n_boot=design.n_boot, seed=design.seed)
        if held:
            scores["law"] = est.score("law", fit.predict([observation(r, names) for r in held]), meas, len(train))
        else:
            scores["law"] = est.Score("law", math.nan, math.nan, len(train), 0, error="no held-out runs")
    else:
        scores["law"] = est.Score("law", math.nan, math.nan, 0, len(held),
                                  error="runs lack model size / tokens / unique tokens (runs.csv)")
    X = lambda rs: np.array([[r.spec.weights.get(p, 0.0) for p in names] for r in rs])  # noqa: E731
    shares = np.ones(len(names)) if prior is None else np.asarray(prior, float)
    for name, cls in (("regmix", est.RegMixEstimator), ("dml", est.DMLEstimator)):
        if name not in which:
            continue
        if len(swarm) < 4 or not held:
            scores[name] = est.Score(name, math.nan, math.nan, len(swarm), len(held),
                                     error=f"needs >= 4 swarm runs and held-out runs (have {len(swarm)}, {len(held)})")
            continue
        try:
            m = cls().fit(X(swarm), np.array([r.val_loss for r in swarm]))
            scores[name] = est.score(name, m.predict(X(held)), meas, len(swarm))
            w, pred = est.optimise_mixture(m.predict, shares / shares.sum(), seed=design.seed)
            mixtures[name] = {"weights": dict(zip(names, map(float, w))), "predicted_loss": pred,
                              "scale": "proxy (swarm configuration)"}
        except Exception as e:  # noqa: BLE001 - a regressor that cannot fit is reported, not fatal
            scores[name] = est.Score(name, math.nan, math.nan, len(swarm), len(held), error=f"{type(e).__name__}: {e}")
    for s in scores.values():
        log(f"  estimator {s.name:7s} held-out Spearman {s.spearman:.3f}  MAE {s.mae:.4f}  "
            f"(trained on {s.n_train} runs, {s.n_heldout} held out)" + (f"  [{s.error}]" if s.error else ""))
    return fit, scores, mixtures


def fit_pools(pf: PoolsFile, design: FitDesign, target: TargetSpec | None = None, ref: str | None = None,
              estimator: str = "auto", log=print, executor: str = "ray", swarm_out: str | Path | None = None) -> FitReport:
    """The whole `curate plan fit`: prepare, run the proxies (Ray), fit, validate, choose."""
    t0, c0 = time.perf_counter(), time.process_time()
    device = pick_device(design.train.device)
    prep = prepare(pf, target or TargetSpec(), vocab_cap=design.vocab, target_tokens=design.target_tokens,
                   min_pool_tokens=design.min_pool_tokens, max_chars_per_pool=design.max_chars_per_pool,
                   tokenizer_chars=design.tokenizer_chars, seed=design.seed, log=log)
    names = [g.name for g in prep.groups]
    if not names:
        raise PlanInputError("no pool is large enough to measure: " + "; ".join(prep.unplaced.values()))
    if ref is not None and ref not in names:
        raise PlanInputError(f"reference pool {ref!r} is not a fit group (groups: {names})")
    sizes = {g.name: g.train_tokens for g in prep.groups}
    ref = ref or max(names, key=lambda p: sizes[p])
    specs = design_runs(names, sizes, design)
    log(f"target: {prep.resolved.description}; {prep.target.tokens()} held-out tokens; proxy vocabulary {prep.vocab}")
    log(f"{len(specs)} proxy runs on {len(names)} fit groups, {device}; {scale_note(design, device)}")
    results = run_all(specs, prep.streams, prep.vocab, prep.target, design.train, log, executor)
    prior = np.array([sizes[p] for p in names], float)
    fit, scores, mixtures = fit_estimators(results, names, design, ref, prior=prior, log=log)
    chosen = est.choose(scores, estimator)
    rep = FitReport(fit, scores, chosen, results, design, prep.to_dict(), time.perf_counter() - t0,
                    time.process_time() - c0, device, mixtures)
    if swarm_out:
        from .swarm import export_swarm

        export_swarm(rep.to_dict(), swarm_out)
    return rep


def save_fit(rep: FitReport | dict, path: str | Path) -> None:
    d = rep.to_dict() if isinstance(rep, FitReport) else rep
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(d, indent=1, default=_default) + "\n")
    tmp.replace(path)  # atomic: a plan never reads half a fit


def _default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def load_fit(path: str | Path) -> dict:
    """fit.json; a missing or malformed file is one clear error naming it."""
    path = Path(path)
    if not path.is_file():
        raise PlanInputError(f"fit {path}: does not exist (run `curate plan fit` first)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PlanInputError(f"fit {path}: not valid JSON ({e})") from None
    if not isinstance(d, dict) or "fit" not in d:
        raise PlanInputError(f"fit {path}: not a fit.json from `curate plan fit` (no 'fit' key)")
    return d


def fit_imported(folder: str | Path, design: FitDesign, target: str = "target", ref: str | None = None,
                 estimator: str = "auto", log=print) -> FitReport:
    """Fit the estimators on a swarm run elsewhere (swarm.py layout) instead of running proxies."""
    from .swarm import import_swarm

    t0, c0 = time.perf_counter(), time.process_time()
    names, runs = import_swarm(folder, target=target, seed=design.seed)
    log(f"imported {len(runs)} runs over {len(names)} pools from {folder} "
        f"({sum(r.spec.kind == 'holdout' for r in runs)} held out)")
    sizes = {p: sum(r.spec.unique.get(p, 0) for r in runs) for p in names}
    ref = ref or max(names, key=lambda p: sizes[p])
    prior = np.array([max(sizes[p], 1) for p in names], float)
    fit, scores, mixtures = fit_estimators(runs, names, design, ref, prior=prior, log=log)
    chosen = est.choose(scores, estimator)
    prepared = {"groups": [{"name": n, "members": [n], "train_tokens": sizes[n]} for n in names], "unplaced": {},
                "notes": [f"imported swarm: {folder}"], "target": {"kind": "imported", "description": f"metric {target!r} of {folder}"},
                "target_tokens": None, "vocab": None}
    return FitReport(fit, scores, chosen, runs, design, prepared, time.perf_counter() - t0, time.process_time() - c0,
                     "imported", mixtures)
