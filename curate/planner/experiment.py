"""`curate plan fit`: design the proxy runs, run them, fit the law, validate on held-out mixtures.

Design (for K pools; `FitDesign` holds the numbers):
- each pool alone for one epoch at several model sizes (identifies A, alpha and the pool's q);
- each pool alone at the base size for 2, 4, 8, 16 epochs of a D0/epochs sample (identifies R*_i);
- each pool alone for one epoch at a quarter of the tokens (identifies B, beta apart from q);
- held-out mixtures, sampled from Dirichlet priors around the pools' token shares as RegMix does,
  each pool capped to a sample of `mix_unique_frac` x D0 unique tokens so that mixtures trade
  quality against repetition. No fit sees them: they are the validation.
For 3 pools and the default design that is 3 x (3 + 4 + 1) = 24 fit runs + 6 held-out = 30 runs.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .fit import FitResult, Observation, Validation, fit_law, validate
from .pools import PoolsFile, iter_texts
from .proxy import (
    ModelShape,
    PoolTokens,
    RunResult,
    RunSpec,
    TrainConfig,
    encode_docs,
    split_pool,
    train_run,
    train_tokenizer,
)


@dataclass
class FitDesign:
    # Sized for two shared CPU cores: 30 runs of 2^17 tokens. The models (d_model 32-64, 2 layers,
    # 2k vocabulary: 25k-100k non-embedding parameters) are far below RegMix's 1M proxies; on a GPU
    # raise tokens and sizes (the design is the same).
    tokens: int = 2**17  # D0: tokens of a full proxy run
    sizes: tuple[int, ...] = (32, 48, 64)  # d_model of the one-epoch size sweep
    base_size: int = 32  # d_model of the epoch sweep, the small-D runs and the held-out mixtures
    epochs: tuple[int, ...] = (2, 4, 8, 16)  # plus the one-epoch run of the size sweep
    small_tokens_frac: float = 0.25
    n_holdout: int = 6
    mix_unique_frac: float = 0.25
    context: int = 128
    vocab: int = 2048
    valid_tokens: int = 16384  # held-out tokens per pool for the validation mix
    seed: int = 0
    n_boot: int = 100
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=8, lr=1e-2))

    def shape(self, d: int) -> ModelShape:
        return ModelShape(d_model=d, n_layers=2, n_heads=4, d_ff=2 * d, context=self.context)


CI_DESIGN = FitDesign(tokens=2**13, sizes=(16, 32), base_size=16, epochs=(4,), small_tokens_frac=0.5, n_holdout=2,
                      context=32, vocab=384, valid_tokens=2048, n_boot=20,
                      train=TrainConfig(batch_size=8, lr=1e-2))


def prepare_tokens(pf: PoolsFile, design: FitDesign, max_chars: int | None = None):
    """Train the proxy tokenizer on all pools and split each pool into train / validation."""
    texts = {}
    for p in pf.pools:
        out, n = [], 0
        for t in iter_texts(p):
            out.append(t)
            n += len(t)
            if max_chars and n >= max_chars:
                break
        texts[p.name] = out
    # Tokenizer input order is fixed (pool order, document order): BPE training is deterministic.
    tok = train_tokenizer([t for p in pf.pools for t in texts[p.name]], design.vocab)
    pools = {name: split_pool(name, encode_docs(tok, docs), design.valid_tokens, design.seed)
             for name, docs in texts.items()}
    return tok, pools


def dirichlet_mixtures(shares: np.ndarray, n: int, seed: int, temperature: float = 0.5,
                       strengths: tuple[float, float] = (0.3, 5.0), minimum: float = 0.05) -> np.ndarray:
    """RegMix-style mixture sampling: prior = token shares ** temperature (renormalised), Dirichlet
    with a concentration drawn log-uniformly; weights under `minimum` are zeroed and the rest
    renormalised. A sample must mix at least two pools: a single-pool "mixture" would repeat a
    configuration the fit already trained on, and a held-out run must be one no fit saw."""
    rng = np.random.default_rng(seed)
    prior = shares**temperature
    prior = prior / prior.sum()
    out = []
    while len(out) < n:
        s = np.exp(rng.uniform(np.log(strengths[0]), np.log(strengths[1])))
        w = rng.dirichlet(prior * s * len(prior))
        w = np.where(w < minimum, 0.0, w)
        if np.count_nonzero(w) < min(2, len(w)):
            continue
        w = np.round(w / w.sum(), 3)
        w = w / w.sum()
        if all(np.abs(w - o).sum() > 0.05 for o in out):
            out.append(w)
    return np.array(out)


def design_runs(names: list[str], train_sizes: dict[str, int], d: FitDesign) -> list[RunSpec]:
    D0 = d.tokens
    runs: list[RunSpec] = []
    base = d.shape(d.base_size)
    for p in names:
        for s in d.sizes:
            runs.append(RunSpec(f"{p}/d{s}/1ep", d.shape(s), D0, {p: 1.0}, {p: D0}, d.seed))
        for ep in d.epochs:
            runs.append(RunSpec(f"{p}/d{d.base_size}/{ep}ep", base, D0, {p: 1.0}, {p: D0 // ep}, d.seed))
        if d.small_tokens_frac:
            ds = int(D0 * d.small_tokens_frac)
            runs.append(RunSpec(f"{p}/d{d.base_size}/1ep/D{ds}", base, ds, {p: 1.0}, {p: ds}, d.seed))
    shares = np.array([train_sizes[p] for p in names], float)
    mixes = dirichlet_mixtures(shares / shares.sum(), d.n_holdout, d.seed + 17)
    u = int(D0 * d.mix_unique_frac)
    for j, w in enumerate(mixes):
        runs.append(RunSpec(f"holdout{j}", base, D0, {p: float(x) for p, x in zip(names, w)}, {p: u for p in names},
                            d.seed, kind="holdout"))
    return runs


def observation(r: RunResult, names: list[str]) -> Observation:
    s = r.spec
    tok = np.array([s.weights.get(p, 0.0) * s.tokens for p in names])
    uniq = np.array([s.unique.get(p, 1) for p in names], float)
    return Observation(float(s.shape.non_embedding_params()), tok, uniq, r.val_loss, s.name)


def run_all(specs: list[RunSpec], pools: dict[str, PoolTokens], vocab: int, val_mix: dict[str, float],
            cfg: TrainConfig, log=print) -> list[RunResult]:
    results = []
    for i, s in enumerate(specs):
        r = train_run(s, pools, vocab, val_mix, cfg)
        log(f"[{i + 1}/{len(specs)}] {s.name:28s} loss {r.val_loss:.4f}  {r.seconds:6.1f}s  ({r.device})")
        results.append(r)
    return results


@dataclass
class FitReport:
    fit: FitResult
    validation: Validation
    runs: list[RunResult]
    design: FitDesign
    val_mix: dict[str, float]
    seconds: float
    cpu_seconds: float = 0.0  # process CPU time: on shared, busy cores a steadier figure than wall time

    def to_dict(self) -> dict:
        return {"fit": self.fit.to_dict(), "validation": self.validation.to_dict(),
                "runs": [r.to_dict() for r in self.runs], "design": asdict(self.design), "val_mix": self.val_mix,
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "n_runs": len(self.runs)}


def fit_pools(pf: PoolsFile, design: FitDesign, val_mix: dict[str, float] | None = None, ref: str | None = None,
              log=print) -> FitReport:
    """The whole `curate plan fit`: tokenise, run the proxies, fit, validate."""
    t0, c0 = time.perf_counter(), time.process_time()
    names = [p.name for p in pf.pools]
    _, pools = prepare_tokens(pf, design)
    val_mix = val_mix or {p: 1.0 for p in names}
    specs = design_runs(names, {p: len(pools[p].train) for p in names}, design)
    results = run_all(specs, pools, design.vocab, val_mix, design.train, log)
    fit_obs = [observation(r, names) for r in results if r.spec.kind != "holdout"]
    held = [observation(r, names) for r in results if r.spec.kind == "holdout"]
    fit = fit_law(fit_obs, names, ref=ref, n_boot=design.n_boot, seed=design.seed)
    val = validate(fit, held)
    return FitReport(fit, val, results, design, val_mix, time.perf_counter() - t0, time.process_time() - c0)


def save_fit(rep: FitReport, path: str | Path) -> None:
    Path(path).write_text(json.dumps(rep.to_dict(), indent=1) + "\n")


def load_fit(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
