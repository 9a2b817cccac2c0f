"""manifest.json: what a shard folder holds, written last (atomically) so its presence means done.

Schema `curate.shards/v1` (every count is exact):

    {"format": "curate.shards/v1", "created_at": ISO-8601, "curate_version": "0.1.0",
     "fingerprint": sha256 of the settings and inputs that decide the bytes,
     "mode": "packed" | "documents", "seq_len": 2048 (null for documents),
     "seed": shuffle seed, "mix_seed": content seed, "min_copy_gap": 0.2,
     "tokenizer": {"backend", "name", "sha256", "vocab_size", "bos_id", "eos_id", "add_bos",
                   "add_eos", "library", ...},
     "columns": {"input_ids": "list<int32>", ...},
     "plan": {"path", "sha256", "content": the plan.json (or the weights) it realised},
     "pools": [{"name", "planned_tokens", "realised_tokens", "difference", "relative_difference",
                "tokenized_tokens", "tokenized_documents", "complete" (whole pool tokenised),
                "full_epochs", "partial_epoch_tokens", "planned_epochs", "realised_epochs", ...}],
     "totals": {"tokens", "rows", "shards", "bytes", "partial_rows"},
     "shards": [{"file": "shard-00000.parquet", "bucket", "rows", "tokens", "bytes", "sha256",
                 "row_groups": [rows per row group], "pool_tokens": {pool: tokens}, "partial_rows"}],
     "params": the settings, "timing": seconds per step}

`shards` is in training order: read them in this order, rows in file order. Shard numbers follow
buckets and may skip a number when a bucket started no sequence.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.io import read_json, write_json_atomic

FORMAT = "curate.shards/v1"
MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """A missing or unreadable manifest."""


def shard_name(bucket: int) -> str:
    return f"shard-{bucket:05d}.parquet"


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = Path(folder) / MANIFEST
    write_json_atomic(path, manifest)
    return path


def read_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST if folder.is_dir() or not folder.suffix else folder
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest (not a shard folder, or the run has not finished)")
    try:
        m = read_json(path)
    except ValueError as e:
        raise ManifestError(f"{path}: manifest is not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a {FORMAT} manifest (format: {m.get('format') if isinstance(m, dict) else None!r})")
    return m


def shard_paths(folder: str | Path, manifest: dict[str, Any] | None = None) -> list[Path]:
    """The shard files in training order."""
    folder = Path(folder)
    manifest = manifest or read_manifest(folder)
    return [folder / s["file"] for s in manifest["shards"]]


def pool_table_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a planned-vs-realised table."""
    return [{"pool": p["name"], "planned": p["planned_tokens"], "realised": p["realised_tokens"],
             "difference": p["difference"], "relative": p["relative_difference"],
             "epochs_planned": p.get("planned_epochs"), "epochs_realised": p.get("realised_epochs")}
            for p in manifest["pools"]]
