"""`curate pools`: group classified documents into the pools the mixture planner chooses from.

A pool is one (source x) domain x quality bucket. Input: Parquet parts of classified documents
(`text`, `quality_score` from the `quality` stage, `domain_label` from the `domain_label` stage,
`source`). Output, in the layout the planner reads (curate/planner/pools.py, docs/planner.md):

    POOLS_DIR/pools.json                  {"version": 1, "tokenizer": ..., "pools": [...]}
    POOLS_DIR/<pool name>/part-NNNNN.parquet   the pool's documents, all input columns
    POOLS_DIR/pools_summary.json          shares, bucket edges, mean scores, sample texts

Each pool entry: name, source, domain, quality_bucket, documents, characters, unique_tokens (the
total tokens of the pool's documents with the pipeline's tokenizer: the input is deduplicated
upstream, so every token is unique data) and path (the pool's folder, relative to pools.json).
pools.json is validated with the planner's own `PoolsFile` model before it is written.

Quality buckets: explicit `edges` (thresholds; bucket i holds edges[i-1] <= score < edges[i]), or
`quantiles` of the score over the whole input (e.g. [0.5, 0.9]: bottom half, next 40%, top 10%).
Quantiles come from a first pass that merges per-part histograms of 100,000 bins over [0, 1]
(edges exact to 1e-5; scores outside [0, 1] need explicit edges). A document without a score
(empty text) goes to the lowest bucket and is counted as `unscored`.

Scale: every step is per Parquet part, in parallel (a process pool, or Ray tasks with
`executor: ray`, which also runs on a cluster), and only small per-part results travel back to the
driver: counts per pool, a histogram, and the bottom-k sample of each pool (the k documents with
the smallest hash of their id: a uniform sample that merges across parts). No process ever holds
more than one batch of one part. Outputs are deterministic: part N of the input writes
`part-N.parquet` of each pool it feeds, and merged results keep input order.
"""
from __future__ import annotations

import heapq
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.classify.data import ClassifyError
from processors.uris import DATASET_IGNORE

HIST_BINS = 100_000
READ_ROWS = 4096
SUMMARY = "pools_summary.json"


class PoolsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(min_length=1)
    output: str
    quality_column: str = "quality_score"
    domain_column: str | None = "domain_label"
    source_column: str | None = "source"
    text_column: str = "text"
    id_column: str = "id"
    edges: list[float] | None = None
    quantiles: list[float] | None = None
    bucket_names: list[str] | None = None
    tokenizer: str = "cl100k_base"
    tiktoken_cache: str | None = None
    samples: int = Field(3, ge=0)
    sample_chars: int = Field(300, ge=1)
    workers: int | None = Field(None, ge=1)
    executor: Literal["process", "ray"] = "process"
    address: str | None = None
    overwrite: bool = False

    @model_validator(mode="after")
    def _buckets(self) -> "PoolsConfig":
        if self.edges is not None and self.quantiles is not None:
            raise ValueError("give bucket `edges` or `quantiles`, not both")
        if self.edges is None and self.quantiles is None:
            self.quantiles = [0.5, 0.9]
        cuts = self.edges if self.edges is not None else self.quantiles
        if list(cuts) != sorted(set(cuts)):
            raise ValueError(f"bucket cuts must be strictly increasing, got {cuts}")
        if self.quantiles is not None and not all(0 < q < 1 for q in self.quantiles):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {self.quantiles}")
        n = len(cuts) + 1
        if self.bucket_names is None:
            self.bucket_names = {1: ["all"], 2: ["low", "high"], 3: ["low", "mid", "high"]}.get(
                n, [f"q{i}" for i in range(n)])
        if len(self.bucket_names) != n or len(set(self.bucket_names)) != n:
            raise ValueError(f"{n} buckets need {n} distinct names, got {self.bucket_names}")
        return self


_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def safe_name(value: str) -> str:
    s = _UNSAFE.sub("-", str(value).lower()).strip("-.")
    return s or "none"


def pool_name(source: str | None, domain: str | None, bucket: str) -> str:
    return "_".join(safe_name(x) for x in (source, domain, bucket) if x is not None)


def _xxh(value: str) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(value.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------- per-part work (runs on workers)

def part_histogram(path: str, column: str) -> dict:
    """Histogram of one part's scores over [0, 1] (HIST_BINS bins), plus null and out-of-range counts."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if column not in pf.schema_arrow.names:
        raise ClassifyError(f"{path}: no column {column!r} (columns: {pf.schema_arrow.names})")
    counts = np.zeros(HIST_BINS, dtype=np.int64)
    nulls = outside = 0
    for batch in pf.iter_batches(batch_size=READ_ROWS * 4, columns=[column]):
        s = batch.column(0).to_numpy(zero_copy_only=False).astype(np.float64)
        ok = ~np.isnan(s)
        nulls += int((~ok).sum())
        s = s[ok]
        bad = (s < 0) | (s > 1)
        outside += int(bad.sum())
        idx = np.minimum((s[~bad] * HIST_BINS).astype(np.int64), HIST_BINS - 1)
        counts += np.bincount(idx, minlength=HIST_BINS)
    return {"counts": counts, "nulls": nulls, "outside": outside}


def quantile_edges(counts: np.ndarray, quantiles: Sequence[float]) -> list[float]:
    """Edges such that about q of the scores fall below each: the upper bound of the bin where the
    cumulative count reaches q (bins of width 1/HIST_BINS)."""
    total = int(counts.sum())
    if total == 0:
        raise ClassifyError("no document has a quality score: cannot compute quantile edges")
    cum = np.cumsum(counts)
    edges = []
    for q in quantiles:
        b = int(np.searchsorted(cum, q * total, side="left"))
        edges.append(min(1.0, (b + 1) / HIST_BINS))
    return edges


def pool_part(index: int, path: str, cfg: dict, edges: list[float]) -> dict:
    """Assign one part's documents to pools, write them, and return per-pool counts and samples."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from curate.classify.tokens import TokenCounter
    from curate.io import AtomicParquetWriter

    c = PoolsConfig.model_validate(cfg)
    counter = TokenCounter(c.tokenizer, c.tiktoken_cache)
    out = Path(c.output)
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    for col in [c.text_column, c.quality_column] + [x for x in (c.domain_column, c.source_column) if x]:
        if col not in names:
            raise ClassifyError(f"{path}: no column {col!r} (columns: {names}); "
                                f"set the column option, or null to not split by it")
    cuts = np.asarray(edges, dtype=np.float64)
    pools: dict[str, dict] = {}
    writers: dict[str, AtomicParquetWriter] = {}
    rows = unscored = 0
    try:
        for rb in pf.iter_batches(batch_size=READ_ROWS):
            batch = pa.Table.from_batches([rb])
            n = batch.num_rows
            rows += n
            scores = batch.column(c.quality_column).to_numpy(zero_copy_only=False).astype(np.float64)
            null = np.isnan(scores)
            unscored += int(null.sum())
            bucket = np.searchsorted(cuts, np.where(null, -np.inf, scores), side="right")
            domains = (batch.column(c.domain_column).to_pylist() if c.domain_column else [None] * n)
            sources = (batch.column(c.source_column).to_pylist() if c.source_column else [None] * n)
            texts = ["" if t is None else t for t in batch.column(c.text_column).to_pylist()]
            ids = (batch.column(c.id_column).to_pylist() if c.id_column in names else [None] * n)
            tokens = counter.count(texts)
            keys = []
            for i in range(n):
                src = None if not c.source_column else (sources[i] if sources[i] is not None else "unknown")
                dom = "all" if not c.domain_column else (domains[i] if domains[i] is not None else "unknown")
                b = c.bucket_names[int(bucket[i])]
                name = pool_name(src, dom, b)
                keys.append(name)
                p = pools.get(name)
                if p is None:
                    p = pools[name] = {"source": src if src is not None else "all", "domain": dom,
                                       "quality_bucket": b, "documents": 0, "characters": 0,
                                       "unique_tokens": 0, "score_sum": 0.0, "scored": 0, "samples": []}
                p["documents"] += 1
                p["characters"] += len(texts[i])
                p["unique_tokens"] += tokens[i]
                if not null[i]:
                    p["score_sum"] += float(scores[i])
                    p["scored"] += 1
                if c.samples and texts[i]:
                    key = ids[i] if ids[i] is not None else texts[i]
                    item = (-_xxh(str(key)), str(ids[i]), texts[i][:c.sample_chars])
                    if len(p["samples"]) < c.samples:
                        heapq.heappush(p["samples"], item)
                    elif item > p["samples"][0]:
                        heapq.heapreplace(p["samples"], item)
            key_arr = pa.array(keys, type=pa.string())
            for name in sorted(set(keys)):
                part = batch.filter(pc.equal(key_arr, name))
                w = writers.get(name)
                if w is None:
                    w = writers[name] = AtomicParquetWriter(out / name / f"part-{index:05d}.parquet")
                w.write(part)
        for w in writers.values():
            w.close()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for p in pools.values():  # heap of (-hash): turn into an ascending-hash list
        p["samples"] = [{"hash": -h, "id": i, "text": t} for h, i, t in sorted(p["samples"], reverse=True)]
    return {"part": path, "rows": rows, "unscored": unscored, "pools": pools}


# ---------------------------------------------------------------- driver

def _run_parallel(fn: Callable, calls: list[tuple], cfg: PoolsConfig, merge: Callable[[Any, Any], Any],
                  acc: Any) -> Any:
    """fn(*args) for each args tuple, in parallel, each result folded into `acc` by `merge` as it
    arrives: the driver holds the running total and the results in flight (at most twice the
    workers), never one result per part. `merge` must not depend on the order of arrival."""
    if cfg.executor == "ray":
        import ray

        from curate.ray_session import ensure_ray

        ensure_ray(cfg.address, None if cfg.address else cfg.workers)
        remote = ray.remote(num_cpus=1, max_retries=2)(fn)
        window = 2 * int(cfg.workers or ray.cluster_resources().get("CPU", 1))
        pending: list = []
        for args in calls:
            pending.append(remote.remote(*args))
            if len(pending) >= window:
                ready, pending = ray.wait(pending, num_returns=1)
                acc = merge(acc, ray.get(ready[0]))
        for ref in pending:
            acc = merge(acc, ray.get(ref))
        return acc
    workers = min(cfg.workers or os.cpu_count() or 1, max(len(calls), 1))
    if workers <= 1:
        for args in calls:
            acc = merge(acc, fn(*args))
        return acc
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        for f in as_completed([ex.submit(fn, *args) for args in calls]):
            acc = merge(acc, f.result())
    return acc


def _merge_histograms(acc: dict | None, h: dict) -> dict:
    if acc is None:
        return {"counts": np.asarray(h["counts"]).copy(), "outside": h["outside"]}
    acc["counts"] = acc["counts"] + h["counts"]
    acc["outside"] += h["outside"]
    return acc


def _merge_parts(acc: dict, r: dict, samples: int) -> dict:
    """Per-pool counts and the `samples` smallest-hash sample texts, summed over parts."""
    acc["rows"] += r["rows"]
    acc["unscored"] += r["unscored"]
    merged = acc["pools"]
    for name, p in r["pools"].items():
        m = merged.get(name)
        if m is None:
            merged[name] = {**p, "samples": sorted(p["samples"], key=lambda s: s["hash"])[:samples]}
            continue
        for k in ("documents", "characters", "unique_tokens", "score_sum", "scored"):
            m[k] += p[k]
        m["samples"] = sorted(m["samples"] + p["samples"], key=lambda s: s["hash"])[:samples]
    return acc


def _clear_output(out: Path, overwrite: bool) -> None:
    existing = [p for p in out.glob("*/part-*.parquet")] + [p for p in (out / "pools.json", out / SUMMARY) if p.exists()]
    if not existing:
        return
    if not overwrite:
        raise ClassifyError(f"{out} already holds pools ({len(existing)} files); pass --overwrite to replace them")
    for p in existing:
        p.unlink()
    for p in out.glob("*/.part-*.tmp-*"):
        p.unlink(missing_ok=True)
    for d in out.iterdir():
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def build_pools(cfg: PoolsConfig, log: Callable[[str], None] = print) -> dict:
    """Run both passes and write pools.json, the per-pool Parquet parts and pools_summary.json."""
    from curate.classify.data import expand
    from curate.classify.tokens import TokenCounter
    from curate.planner.pools import Pool, PoolsFile, save_pools

    t0 = time.perf_counter()
    parts = expand(cfg.inputs, suffixes=(".parquet",), ignore_prefixes=DATASET_IGNORE)
    if not parts:
        raise ClassifyError(f"no Parquet files in {cfg.inputs}")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    _clear_output(out, cfg.overwrite)
    tokenizer_name = TokenCounter(cfg.tokenizer, cfg.tiktoken_cache).name  # fails here, not in workers
    hist_info = None
    if cfg.quantiles is not None:
        hist = _run_parallel(part_histogram, [(p, cfg.quality_column) for p in parts], cfg,
                             _merge_histograms, None)
        counts, outside = hist["counts"], hist["outside"]
        if outside:
            raise ClassifyError(f"{outside} values of {cfg.quality_column!r} lie outside [0, 1]: "
                                "quantile buckets need scores in [0, 1]; give explicit --edges")
        edges = quantile_edges(counts, cfg.quantiles)
        if len(set(edges)) != len(edges):
            raise ClassifyError(f"quantiles {cfg.quantiles} give repeated edges {edges} (too few distinct "
                                "scores); give explicit --edges")
        hist_info = {"quantiles": cfg.quantiles, "scored_documents": int(counts.sum())}
        log(f"quality quantiles {cfg.quantiles} -> edges {[round(e, 5) for e in edges]}")
    else:
        edges = list(cfg.edges or [])
    cfg_dict = cfg.model_dump(mode="json")
    totals = _run_parallel(pool_part, [(i, p, cfg_dict, edges) for i, p in enumerate(parts)], cfg,
                           lambda acc, r: _merge_parts(acc, r, cfg.samples), {"rows": 0, "unscored": 0, "pools": {}})
    merged: dict[str, dict] = totals["pools"]
    order = {b: i for i, b in enumerate(cfg.bucket_names)}
    names = sorted(merged, key=lambda n: (merged[n]["source"], merged[n]["domain"],
                                          order[merged[n]["quality_bucket"]]))
    empty = [n for n in names if merged[n]["unique_tokens"] == 0]
    for n in empty:  # the planner requires unique_tokens > 0: a pool of empty texts is no pool
        shutil.rmtree(out / n, ignore_errors=True)
    kept = [n for n in names if n not in empty]
    if not kept:
        raise ClassifyError("every pool is empty (no tokens): nothing to write")
    pf = PoolsFile(version=1, tokenizer=tokenizer_name, pools=[
        Pool(name=n, source=str(merged[n]["source"]), domain=str(merged[n]["domain"]),
             quality_bucket=merged[n]["quality_bucket"], documents=merged[n]["documents"],
             characters=merged[n]["characters"], unique_tokens=merged[n]["unique_tokens"], path=n,
             score=_mean_score(merged[n]))
        for n in kept])
    save_pools(pf, out / "pools.json")
    total_tokens = sum(merged[n]["unique_tokens"] for n in kept)
    total_docs = sum(merged[n]["documents"] for n in kept)
    summary = {
        "pools_json": str(out / "pools.json"),
        "tokenizer": tokenizer_name,
        "bucket_edges": edges,
        "bucket_names": cfg.bucket_names,
        "quantile_pass": hist_info,
        "input_parts": len(parts),
        "input_documents": totals["rows"],
        "unscored_documents": totals["unscored"],
        "documents": total_docs,
        "unique_tokens": total_tokens,
        "empty_pools_dropped": empty,
        "seconds": round(time.perf_counter() - t0, 2),
        "pools": [{
            "name": n, "source": merged[n]["source"], "domain": merged[n]["domain"],
            "quality_bucket": merged[n]["quality_bucket"], "documents": merged[n]["documents"],
            "characters": merged[n]["characters"], "unique_tokens": merged[n]["unique_tokens"],
            "token_share": merged[n]["unique_tokens"] / total_tokens,
            "document_share": merged[n]["documents"] / total_docs,
            "mean_quality_score": (merged[n]["score_sum"] / merged[n]["scored"]) if merged[n]["scored"] else None,
            "samples": [{"id": s["id"], "text": s["text"]} for s in merged[n]["samples"]],
        } for n in kept],
        "config": cfg_dict,
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    log(f"{len(kept)} pools, {total_docs} documents, {total_tokens} tokens ({tokenizer_name}) -> {out / 'pools.json'}")
    return summary


def _mean_score(m: dict) -> float | None:
    """The pool's mean quality score, passed on to the planner (None: no document was scored)."""
    return round(m["score_sum"] / m["scored"], 6) if m["scored"] else None


def summary_rows(summary: dict) -> list[dict[str, Any]]:
    return [{k: p[k] for k in ("name", "documents", "characters", "unique_tokens", "token_share",
                               "mean_quality_score")} for p in summary["pools"]]
