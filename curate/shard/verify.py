"""`curate shard verify DIR`: re-read every shard and check it against manifest.json.

The trainer formats (Megatron, nanotron, MDS, LitData; mixed and per-pool) are checked by
verify_formats.py.

Per shard: present, size, SHA-256, readable as Parquet, row groups, row and token counts, every
packed row seq_len long (bar the run's last), token ids inside the vocabulary, per-pool tokens
adding up. Then the totals and the per-pool realised tokens against the shards, and shard files on
disk that the manifest does not list. Each problem is one line naming the file and what differs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .manifest import ManifestError, read_manifest
from .verify_formats import verify_trainer_formats
from processors.tokenizer import sha256_file


@dataclass
class VerifyReport:
    folder: Path
    problems: list[str] = field(default_factory=list)
    shards_checked: int = 0
    rows: int = 0
    tokens: int = 0
    bytes: int = 0
    format_files: int = 0  # trainer-format files checked (verify_formats.py)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_shard(folder: Path, s: dict[str, Any], m: dict[str, Any], is_last: bool, report: VerifyReport) -> dict:
    name = s["file"]
    path = folder / name
    found: dict[str, Any] = {"rows": 0, "tokens": 0}
    if not path.is_file():
        report.problems.append(f"{name}: missing (listed in the manifest with {s['rows']:,} rows, "
                               f"{s['tokens']:,} tokens)")
        return found
    size = path.stat().st_size
    report.bytes += size
    if size != s["bytes"]:
        how = "truncated" if size < s["bytes"] else "grown"
        report.problems.append(f"{name}: size {size:,} bytes, manifest says {s['bytes']:,} ({how})")
    digest = sha256_file(path)
    if digest != s["sha256"]:
        report.problems.append(f"{name}: SHA-256 mismatch (file {digest[:16]}..., manifest "
                               f"{s['sha256'][:16]}...): the file was changed after it was written")
    try:
        pf = pq.ParquetFile(path)
        groups = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
        ids = pf.read(columns=["input_ids"])["input_ids"]
    except Exception as e:  # noqa: BLE001 - any decoding failure is the finding
        report.problems.append(f"{name}: unreadable as Parquet ({type(e).__name__}: {str(e)[:200]})")
        return found
    report.shards_checked += 1
    lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
    found = {"rows": len(lengths), "tokens": int(lengths.sum())}
    report.rows += found["rows"]
    report.tokens += found["tokens"]
    if groups != s.get("row_groups", groups):
        report.problems.append(f"{name}: row groups {groups[:8]}{'...' if len(groups) > 8 else ''} differ from "
                               f"the manifest's {s['row_groups'][:8]}")
    if found["rows"] != s["rows"]:
        report.problems.append(f"{name}: {found['rows']:,} rows, manifest says {s['rows']:,}")
    if found["tokens"] != s["tokens"]:
        report.problems.append(f"{name}: {found['tokens']:,} tokens, manifest says {s['tokens']:,}")
    if sum(s.get("pool_tokens", {}).values()) != s["tokens"]:
        report.problems.append(f"{name}: per-pool tokens add up to {sum(s['pool_tokens'].values()):,}, "
                               f"not the shard's {s['tokens']:,}")
    if m.get("mode") == "packed" and len(lengths):
        L = m.get("row_tokens") or m["seq_len"]
        short = np.flatnonzero(lengths != L)
        allowed = {len(lengths) - 1} if is_last else set()
        bad = [int(i) for i in short if int(i) not in allowed or lengths[i] > L]
        if bad:
            report.problems.append(f"{name}: {len(bad)} row(s) not {L} tokens long (first: row {bad[0]} has "
                                   f"{int(lengths[bad[0]])})")
    vocab = (m.get("tokenizer") or {}).get("vocab_size")
    if vocab and found["tokens"]:
        values = pc.list_flatten(ids)
        lo, hi = pc.min_max(values).values()
        if lo.as_py() < 0 or hi.as_py() >= vocab:
            report.problems.append(f"{name}: token ids span [{lo.as_py()}, {hi.as_py()}], outside the "
                                   f"vocabulary [0, {vocab})")
    return found


def verify_shards(folder: str | Path) -> VerifyReport:
    folder = Path(folder)
    report = VerifyReport(folder)
    try:
        m = read_manifest(folder)
    except ManifestError as e:
        report.problems.append(str(e))
        return report
    shards = m.get("shards", [])
    pool_sum: dict[str, int] = {}
    for i, s in enumerate(shards):
        if s.get("file"):  # None: Parquet not written (--format without parquet)
            _check_shard(folder, s, m, i == len(shards) - 1, report)
        for k, v in s.get("pool_tokens", {}).items():
            pool_sum[k] = pool_sum.get(k, 0) + v
    report.format_files = verify_trainer_formats(folder, m, report.problems.append)
    if shards and not any(s.get("file") for s in shards):  # no Parquet: the formats' totals were checked
        report.rows, report.tokens = m["totals"]["rows"], m["totals"]["tokens"]
    listed = {s["file"] for s in shards}
    for p in sorted(folder.glob("shard-*.parquet")):
        if p.name not in listed:
            report.problems.append(f"{p.name}: on disk but not in the manifest (left from another run?)")
    totals = m.get("totals", {})
    if totals.get("shards") != len(shards):
        report.problems.append(f"manifest: totals.shards is {totals.get('shards')}, it lists {len(shards)}")
    for key in ("rows", "tokens"):
        want = sum(s[key] for s in shards)
        if totals.get(key) != want:
            report.problems.append(f"manifest: totals.{key} is {totals.get(key)}, its shards add up to {want}")
    for p in m.get("pools", []):
        got = pool_sum.get(p["name"], 0)
        if got != p["realised_tokens"]:
            report.problems.append(f"pool {p['name']!r}: shards hold {got:,} tokens, manifest says "
                                   f"{p['realised_tokens']:,} realised")
    return report
