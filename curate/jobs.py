"""Jobs: whole-output steps at the end of a pipeline (pools, plan, shard).

A document stage maps batches; a job reads the previous step's folder as a whole and writes its
own artefacts (pools.json and per-pool Parquet, plan.json and report.html, token shards and a
manifest). Jobs may use Ray themselves, so they live in the engine layer, not in `processors/`.
The runner treats a job like any step: it runs once, writes `_stats.json`, commits last, and a
rerun skips it when committed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from processors.base import Params, Processor, ProcessorError


class Job(Processor):
    """Base of jobs. `run` returns a stats dict: docs_in, docs_out, counters, drops (all optional)."""

    checkpoint_default: ClassVar[bool] = True
    # The step's resources (curate.resources.StepResources), set by the runner before `run`.
    resources: Any = None

    def check(self) -> None:
        """Cheap checks only: the driver calls this before any work."""

    def run(self, prev_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
        raise NotImplementedError


# ---------------------------------------------------------------- pools
class PoolsParams(Params):
    quantiles: list[float] | None = Field([0.5], description="quality bucket edges as quantiles of "
                                          "the score (e.g. [0.5, 0.9]); or give `edges`")
    edges: list[float] | None = Field(None, description="explicit score thresholds between buckets")
    tokenizer: str = Field("cl100k_base", description="tiktoken encoding name or tokenizer.json path "
                           "used to count unique tokens per pool")
    tiktoken_cache: str | None = Field(None, description="folder of tiktoken BPE files (offline); "
                                       "default: $TIKTOKEN_CACHE_DIR")
    quality_column: str = "quality_score"
    domain_column: str | None = "domain_label"
    samples: int = Field(3, ge=0, description="sample texts kept per pool in the summary")


class PoolsJob(Job):
    kind = "pools"
    Params = PoolsParams
    requires = ("text",)

    def run(self, prev_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
        from curate.classify.pools import PoolsConfig, build_pools

        p = self.params
        parts = sorted(str(x) for x in Path(prev_dir).glob("part-*.parquet"))
        if not parts:
            raise ProcessorError(f"pools: no documents in {prev_dir}")
        cfg = PoolsConfig(inputs=parts, output=str(out_dir), edges=p.edges,
                          quantiles=None if p.edges is not None else p.quantiles,
                          tokenizer=p.tokenizer, tiktoken_cache=p.tiktoken_cache,
                          quality_column=p.quality_column,
                          domain_column=p.domain_column, samples=p.samples, executor="ray",
                          overwrite=True, workers=self.resources.asked if self.resources else None)
        summary = build_pools(cfg, log=lambda _m: None)
        pools = summary.get("pools", [])
        docs = sum(int(x.get("documents", 0)) for x in pools)
        return {"docs_in": docs, "docs_out": docs,
                "counters": {"pools": len(pools),
                             "unique_tokens": sum(int(x.get("unique_tokens", 0)) for x in pools)}}


# ---------------------------------------------------------------- plan
class PlanParams(Params):
    budget_flops: float | None = Field(None, gt=0, description="training compute budget C = 6·N·D")
    params: float | None = Field(None, gt=0, description="model parameters N (with `tokens`)")
    tokens: float | None = Field(None, gt=0, description="training tokens D (with `params`)")
    base: str = Field("chinchilla", description="scaling-law constants: chinchilla, epoch, "
                      "muennighoff_c4")
    fit: str | None = Field(None, description="fit the pools here first: `quick` (~3 min on 2 cores), `cpu`, "
                            "`cuda`, `auto` (cuda if present); or a fit.json path from `curate plan fit`. "
                            "Without one the weights are token shares (a warning says so)")
    target: dict[str, Any] | str | None = Field(None, description="what the fit measures: {sources: {src: w}}, "
                                                "{pools: {pool: w}}, {path: file or folder} or a path; default: "
                                                "held-out documents of the reference source (docs/planner.md)")
    estimator: str = Field("auto", description="auto (best held-out Spearman), law, regmix or dml")


class PlanJob(Job):
    kind = "plan"
    Params = PlanParams

    def check(self) -> None:
        p = self.params
        if p.budget_flops is None and (p.params is None or p.tokens is None):
            raise ProcessorError("plan: give budget_flops, or params and tokens")

    def run(self, prev_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
        from curate.planner.plan import plan_command

        p = self.params
        pools = Path(prev_dir) / "pools.json"
        if not pools.is_file():
            raise ProcessorError(f"plan: {pools} not found (a `pools` step must come first)")
        fit = p.fit
        counters: dict[str, Any] = {}
        if fit in DESIGN_NAMES:
            fit, counters = _fit_here(pools, Path(out_dir) / "fit", fit, p.target, p.estimator, seed)
        elif fit is not None and not Path(fit).is_file():
            raise ProcessorError(f"plan: fit {fit!r} is neither a design ({', '.join(sorted(DESIGN_NAMES))}) "
                                 "nor an existing fit.json")
        plan = plan_command(pools, out_dir, budget_flops=p.budget_flops, params=p.params,
                            tokens=p.tokens, base=p.base, fit=fit, estimator=p.estimator)
        kept = [x for x in plan.get("pools", []) if x.get("weight", 0) > 0] if isinstance(plan, dict) else []
        return {"counters": {"pools_kept": len(kept), **counters}}


DESIGN_NAMES = {"auto", "quick", "cpu", "cuda", "ci"}


def _fit_here(pools: Path, out: Path, design: str, target: Any, estimator: str, seed: int) -> tuple[str, dict]:
    """`fit: quick` etc.: proxy runs on this pipeline's own pools (Ray tasks), fit.json beside the plan."""
    import sys
    from dataclasses import replace

    from curate.planner import experiment
    from curate.planner.pools import load_pools
    from curate.planner.swarm import export_swarm
    from curate.planner.target import TargetSpec

    if design == "auto":
        d = experiment.design_for()
    elif design == "quick":
        d = experiment.design_for(quick=True)
    else:
        d = replace(experiment.DESIGNS[design])
    d.seed = seed
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(f"plan fit: {m}", file=sys.stderr)  # noqa: E731 - progress of a minutes-long step
    rep = experiment.fit_pools(load_pools(pools), d, TargetSpec.from_config(target), estimator=estimator, log=log)
    experiment.save_fit(rep, out / "fit.json")
    export_swarm(rep.to_dict(), out / "swarm")
    return str(out / "fit.json"), {"proxy_runs": len(rep.runs), "fit_seconds": round(rep.seconds, 1)}


# ---------------------------------------------------------------- shard
class ShardParams(Params):
    tokenizer: str = Field("cl100k_base", description="tiktoken encoding, tokenizer.json path or Hub id")
    tiktoken_cache: str | None = Field(None, description="folder of tiktoken BPE files (offline); "
                                       "default: $TIKTOKEN_CACHE_DIR")
    add_eos: bool = Field(True, description="append the tokenizer's EOS token to every document")
    add_bos: bool = Field(False, description="prepend the tokenizer's BOS token to every document")
    mode: str = Field("packed", description="packed: fixed seq_len rows; documents: one row each")
    seq_len: int = Field(2048, ge=2, description="tokens per packed sequence")
    shard_size: str | int = Field("128MB", description="target shard size (token bytes)")
    min_copy_gap: float = Field(0.2, ge=0, le=0.5, description="least distance between two copies "
                                "of a document, as a fraction of its pool's epoch")
    format: list[str] | str = Field(default_factory=lambda: ["parquet"], description="parquet, megatron, "
                                    "nanotron, mds, litdata (several allowed)")
    per_pool: bool = Field(False, description="also each pool once, with trainer-side weights (blend/)")


class ShardJob(Job):
    """Mix the pools per the plan of the previous step, tokenize, and write shuffled shards."""

    kind = "shard"
    Params = ShardParams

    def run(self, prev_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
        from curate.shard.config import ShardConfig
        from curate.shard.engine import run_shard

        plan = Path(prev_dir) / "plan.json"
        if not plan.is_file():
            raise ProcessorError(f"shard: {plan} not found (a `plan` step must come first)")
        p = self.params
        cfg = ShardConfig(output=str(out_dir), plan=str(plan),
                          tokenizer={"name": p.tokenizer, "add_eos": p.add_eos, "add_bos": p.add_bos,
                                     "tiktoken_cache": p.tiktoken_cache},
                          mode=p.mode, seq_len=p.seq_len, shard_size=p.shard_size, seed=seed,
                          mix_seed=seed, min_copy_gap=p.min_copy_gap, format=p.format, per_pool=p.per_pool,
                          **_shard_resources(self.resources))
        result = run_shard(cfg, resume=True, log=lambda _m: None)
        manifest = getattr(result, "manifest", None) or {}
        totals = manifest.get("totals", {}) if isinstance(manifest, dict) else {}
        counters = {k: v for k, v in totals.items() if isinstance(v, (int, float))}
        for name, f in (manifest.get("formats") or {}).items():  # trainer formats written (same rows)
            counters[f"{name}_tokens"] = f.get("tokens", 0)
        counters["pools_written_once"] = len(manifest.get("pool_outputs") or {})
        return {"counters": counters}


def _shard_resources(res: Any) -> dict[str, Any]:
    """The step's workers and memory per worker, where the user set them (else the shard defaults)."""
    if res is None:
        return {}
    out: dict[str, Any] = {}
    if res.asked:
        out["workers"] = res.asked
    if res.memory:
        out["memory"] = res.memory
    return out
