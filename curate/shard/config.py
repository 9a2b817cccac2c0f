"""`ShardConfig`: every setting of a sharding run, from the command line or a YAML file.

A YAML file holds the same keys (the `tokenizer` key is a mapping of TokenizerSpec's keys, or just
a name), e.g.

    output: out/shards
    plan: out/plan/plan.json
    pools: out/pools/pools.json
    tokenizer: {name: cl100k_base, tiktoken_cache: ../shared/data/tokenizers}
    seq_len: 2048
    shard_size: 256MB
    seed: 0
    format: [parquet, megatron, mds]    # or "parquet,megatron"; see curate/shard/formats.py
    per_pool: true                      # also each pool once, for the trainer's own blend
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.units import parse_size

from processors.tokenizer import TokenizerSpec


class ShardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: str = Field(..., description="folder for shard-*.parquet and manifest.json")
    plan: str | None = Field(None, description="plan.json from `curate plan`")
    pools: str | None = Field(None, description="pools.json from `curate pools` (where each pool's files are)")
    weights: dict[str, float] | None = Field(None, description="without a plan: pool -> weight")
    total_tokens: int | None = Field(None, ge=1, description="without a plan: tokens of the whole mix")
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    mode: Literal["packed", "documents"] = Field("packed", description="packed sequences or one row per document")
    seq_len: int = Field(2048, ge=2, description="tokens per packed sequence")
    format: list[Literal["parquet", "megatron", "nanotron", "mds", "litdata"]] = Field(
        default_factory=lambda: ["parquet"], description="files to write: parquet, megatron (.bin/.idx), "
        "nanotron (datatrove .ds), mds (MosaicML streaming), litdata (LitGPT chunks); several allowed")
    shifted_targets: bool | None = Field(None, description="packed rows of seq_len + 1 tokens (inputs and "
                                         "shifted targets in one row, as nanotron and LitGPT read them); "
                                         "default: on when nanotron or litdata is written")
    per_pool: bool = Field(False, description="also write each pool's planned documents once, per pool, in "
                           "the chosen formats, with trainer-side weights (blend/)")
    shard_size: int = Field(128 << 20, ge=1 << 12, description="target shard size, as bytes of int32 token ids "
                            "(a packing worker holds about 4x this)")
    seed: int = Field(0, description="order: the shuffle of sequences within each shard")
    mix_seed: int = Field(0, description="content: epoch permutations and the sample of partial epochs")
    min_copy_gap: float = Field(0.2, ge=0.0, le=0.5, description="least distance between two copies of a "
                                "document, as a fraction of its pool's epoch")
    text_column: str = "text"
    id_column: str | None = Field("id", description="column identifying documents (position when absent)")
    provenance: bool = Field(False, description="add per-row provenance (pool, document, epoch, offsets)")
    sample: bool = Field(True, description="tokenise only about what a pool planned below one epoch needs")
    task_bytes: int | None = Field(None, ge=1 << 10, description="text bytes per tokenisation task (default: "
                                   "1/64 of the input, between 1 MB and 64 MB)")
    batch_docs: int = Field(256, ge=1, description="documents per encode_batch call")
    compression: Literal["zstd", "snappy", "lz4", "gzip", "none"] = "zstd"
    compression_level: int | None = 1
    scratch_compression: Literal["lz4", "zstd", "none"] = "none"
    workers: int | None = Field(None, ge=1, description="parallel workers (default: CPUs / tokenizer threads)")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the embedded Ray (default: all)")
    address: str | None = Field(None, description="Ray cluster address")
    memory: int | None = Field(None, description="memory reserved per packing task (bytes)")
    keep_cache: bool = Field(False, description="keep the token cache (_work/tokens) after success")

    @field_validator("shard_size", "task_bytes", "memory", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return parse_size(v) if isinstance(v, str) else v

    @field_validator("format", mode="before")
    @classmethod
    def _formats(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [x.strip() for x in v.split(",") if x.strip()]
        if isinstance(v, (list, tuple)):
            v = list(dict.fromkeys(v))  # keep the first of repeats, in order
            if not v:
                raise ValueError("format: name at least one of parquet, megatron, nanotron, mds, litdata")
        return v

    @property
    def row_len(self) -> int:
        """Tokens per packed row: seq_len, or seq_len + 1 with shifted targets."""
        shifted = self.shifted_targets
        if shifted is None:
            from .formats import SHIFTED_FORMATS

            shifted = any(f in SHIFTED_FORMATS for f in self.format)
        return self.seq_len + (1 if shifted and self.mode == "packed" else 0)

    @field_validator("tokenizer", mode="before")
    @classmethod
    def _tok(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _source(self) -> "ShardConfig":
        if self.plan is None and not self.weights:
            raise ValueError("give `plan` (plan.json), or `weights` with `total_tokens` and `pools`")
        if self.plan is not None and self.weights:
            raise ValueError("give `plan` or `weights`, not both")
        return self

    def content_fingerprint(self, inputs: dict[str, Any]) -> str:
        """What decides the shards' bytes: settings except where/how they run, plus the inputs."""
        skip = {"output", "workers", "num_cpus", "address", "memory", "keep_cache", "task_bytes",
                "batch_docs", "scratch_compression"}
        data = self.model_dump(mode="json", exclude=skip)
        data["tokenizer"].pop("threads", None)
        data["tokenizer"].pop("tiktoken_cache", None)
        return hashlib.sha256(json.dumps({"config": data, "inputs": inputs}, sort_keys=True,
                                         default=str).encode()).hexdigest()


def load_shard_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ShardConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping of settings")
    if isinstance(data.get("shard"), dict) and len(data) == 1:
        data = data["shard"]  # a `shard:` section on its own
    for k in ("plan", "pools"):  # input paths are relative to the YAML file; output to the cwd
        if isinstance(data.get(k), str) and not Path(data[k]).is_absolute():
            data[k] = str((path.parent / data[k]).resolve())
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return ShardConfig(**data)
    except ValidationError as e:
        raise ValueError(f"{path}: {e}") from None
