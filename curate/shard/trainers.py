"""The plan as each trainer's own blend: merged MDS/LitData indexes and the `blend/` files.

Two ways to hand a plan to a trainer (docs/sharding.md says when each fits):

- **mixed**: the pre-mixed, globally shuffled stream (every pool at its planned tokens and epochs,
  already repeated and interleaved); the trainer reads it once, in order, weight 1.
- **pools** (`per_pool`): each pool's planned documents once, in its own folder; the trainer mixes
  and repeats them with the plan's weights: Megatron `--data-path W1 PREFIX1 ...` (weights = each
  pool's share of the planned tokens, split over its parts by their tokens; Megatron repeats a pool
  as many epochs as its weight asks; `--split 100,0,0` so that no part is held out for validation,
  which would change the epochs), nanotron's `dataset_folder` + `dataset_weights`, MDS `Stream`s
  with `repeat` = the plan's epochs, LitData `CombinedStreamingDataset` weights.

`blend/blend.json` states, per variant and trainer, the tokens each pool gets when the run trains
on the plan's total (`train_samples` samples of `seq_length`), next to the plan's own tokens.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import formats as fmt
from curate.io import write_json_atomic


def merge_indexes(out: Path, sub: str, records: list[dict[str, Any]], formats: list[str],
                  vocab_size: int) -> dict[str, Any]:
    """Per format: its folder, totals, and (MDS, LitData) the merged top index over all parts.
    Drops the per-part index copies from `records` (the index files hold them)."""
    out = Path(out)
    summary: dict[str, Any] = {}
    for f in formats:
        if f == "parquet":
            continue
        parts = [r["formats"][f] for r in records if f in (r.get("formats") or {})]
        folder = f"{sub}{fmt.FORMAT_DIRS[f]}"
        entry: dict[str, Any] = {"folder": folder, "rows": sum(p["rows"] for p in parts),
                                 "tokens": sum(p["tokens"] for p in parts),
                                 "segments": sum(p["segments"] for p in parts),
                                 "dtype": fmt.token_dtype(f, vocab_size).name}
        if f == "mds":
            entry["index"] = fmt.merge_mds_index(out, folder, [(p["partition"], p["index"]) for p in parts]).to_dict()
        elif f == "litdata":
            chunks = [c for p in parts for c in p["chunks"]]
            entry["index"] = fmt.write_litdata_index(out, folder, chunks, vocab_size).to_dict()
        for p in parts:
            p.pop("index", None)
            p.pop("chunks", None)
        summary[f] = entry
    return summary


def _fmt_weight(w: float) -> str:
    return f"{w:.12g}"


def _megatron(prefixes: list[tuple[float, str]]) -> str:
    return " ".join(f"{_fmt_weight(w)} {p}" for w, p in prefixes)


def write_blends(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write blend/ for every trainer format written (mixed, and pools when per-pool outputs exist)."""
    out = Path(out).resolve()
    blend_dir = out / "blend"
    blend_dir.mkdir(parents=True, exist_ok=True)
    total = int(manifest["totals"]["tokens"])
    # documents mode has no rows of its own: the trainer's sequence length is still the run's setting
    seq_len = int(manifest.get("seq_len") or (manifest.get("params") or {}).get("seq_len") or 2048)
    row = int(manifest.get("row_tokens") or seq_len)
    planned = {p["name"]: int(p["planned_tokens"]) for p in manifest["pools"]}
    formats = manifest.get("formats", {})
    pool_out = manifest.get("pool_outputs") or {}
    info: dict[str, Any] = {"total_tokens": total, "seq_length": seq_len, "row_tokens": row,
                            "planned_tokens": planned, "variants": {}}
    files: list[str] = []

    def put(name: str, text: str) -> None:
        (blend_dir / name).write_text(text)
        files.append(f"blend/{name}")

    variants: dict[str, dict[str, Any]] = {}
    shards = manifest["shards"]
    # Megatron: a sample is seq_length + 1 tokens sharing one with the next: seq_length new tokens each.
    train_samples = math.ceil(total / seq_len) if seq_len else None
    if "megatron" in formats:
        mixed = [(s["formats"]["megatron"]["tokens"] / total, str(out / "megatron" / s["file_stem"]))
                 for s in _stems(shards) if "megatron" in s.get("formats", {})]
        implied = {p: 0.0 for p in planned}
        for s in shards:
            for pool, t in s["pool_tokens"].items():
                implied[pool] += (s["tokens"] / total) * train_samples * seq_len * t / s["tokens"]
        variants.setdefault("mixed", {})["megatron"] = {"data_path": mixed, "implied_tokens": implied}
        if pool_out:
            pp, implied = [], {}
            for pool, po in pool_out.items():
                w_pool = planned[pool] / total
                for part in po["parts"]:
                    if "megatron" in part["formats"] and po["tokens"]:
                        pp.append((w_pool * part["tokens"] / po["tokens"],
                                   str(out / "pools" / pool / "megatron" / part["part"])))
                implied[pool] = w_pool * train_samples * seq_len
            variants.setdefault("pools", {})["megatron"] = {"data_path": pp, "implied_tokens": implied}
    if "nanotron" in formats:
        n_samples = math.floor(total / row) if row else None
        variants.setdefault("mixed", {})["nanotron"] = {
            "dataset_folder": [str(out / "nanotron")], "dataset_weights": [1.0],
            "implied_tokens": {p: float(t) for p, t in planned.items()}}
        if pool_out:
            variants.setdefault("pools", {})["nanotron"] = {
                "dataset_folder": [str(out / "pools" / p / "nanotron") for p in pool_out],
                "dataset_weights": [planned[p] / total for p in pool_out],
                "implied_tokens": {p: planned[p] / total * n_samples * row for p in pool_out}}
    if "mds" in formats:
        variants.setdefault("mixed", {})["mds"] = {
            "streams": {"mixed": {"local": str(out / "mds"), "repeat": 1.0}},
            "implied_tokens": {p: float(t) for p, t in planned.items()}}
        if pool_out:
            streams = {p: {"local": str(out / "pools" / p / "mds"), "repeat": po["epochs"]}
                       for p, po in pool_out.items()}
            variants.setdefault("pools", {})["mds"] = {
                "streams": streams,
                "implied_tokens": {p: streams[p]["repeat"] * po["formats"]["mds"]["tokens"]
                                   for p, po in pool_out.items()}}
    if "litdata" in formats:
        variants.setdefault("mixed", {})["litdata"] = {
            "datasets": [{"input_dir": str(out / "litdata"), "weight": 1.0}], "block_size": row,
            "implied_tokens": {p: float(t) for p, t in planned.items()}}
        if pool_out:
            variants.setdefault("pools", {})["litdata"] = {
                "datasets": [{"input_dir": str(out / "pools" / p / "litdata"), "weight": planned[p] / total}
                             for p in pool_out], "block_size": row,
                "implied_tokens": {p: float(planned[p]) for p in pool_out}}

    for variant, per in variants.items():
        if "megatron" in per:
            args = _megatron(per["megatron"]["data_path"])
            put(f"megatron-data-args.{variant}.txt", args + "\n")
            put(f"megatron-data-path.{variant}.txt",
                f"--data-path {args} --split 100,0,0 --seq-length {seq_len} --train-samples {train_samples}\n")
        if "nanotron" in per:
            n = per["nanotron"]
            # tokenizer_name set here: nanotron then only checks it against the .ds.metadata files
            # instead of loading it with AutoTokenizer (a tiktoken name is no Hub tokenizer).
            tok = manifest.get("tokenizer") or {}
            stage = {"data_stages": [{"name": f"curate {variant}", "start_training_step": 1, "data": {
                "dataset": {"dataset_folder": n["dataset_folder"], "dataset_weights": n["dataset_weights"],
                            "tokenizer_name": tok.get("name"), "vocab_size": tok.get("vocab_size"),
                            "token_size_in_bytes": np.dtype(formats["nanotron"]["dtype"]).itemsize},
                "num_loading_workers": 1, "seed": manifest.get("seed", 0)}}],
                "tokens": {"sequence_length": seq_len}}
            put(f"nanotron.{variant}.yaml", yaml.safe_dump(stage, sort_keys=False))
        if "mds" in per:
            put(f"mds-streams.{variant}.yaml", yaml.safe_dump(
                {"train_loader": {"dataset": {"streams": per["mds"]["streams"], "max_seq_len": row,
                                              "shuffle": True}}}, sort_keys=False))
        if "litdata" in per:
            lit = per["litdata"]
            put(f"litdata.{variant}.json", json.dumps({"datasets": lit["datasets"], "block_size": lit["block_size"],
                                                       "item_loader": "TokensLoader"}, indent=2) + "\n")
    info["variants"] = variants
    info["megatron_train_samples"] = train_samples
    write_json_atomic(blend_dir / "blend.json", info)
    files.append("blend/blend.json")
    return {"files": files, "variants": sorted(variants)}


def _stems(shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shards with the stem every format's files share (shard-NNNNN)."""
    return [{**s, "file_stem": f"shard-{s['bucket']:05d}"} for s in shards]
