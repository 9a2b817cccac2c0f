"""Read a shard folder's trainer formats with the trainers' own readers and compare them with its
Parquet rows, token for token; then the blend files' implied tokens per pool against the plan.

    make readers   # once: the readers' virtualenv (benchmarks/.venvs/shard-readers)
    .venv/bin/python benchmarks/check_trainer_formats.py OUT    # OUT from `curate shard --format ... --per-pool`

Readers: megatron-core `IndexedDataset`, datatrove `DatatroveFolderDataset` (what nanotron's Nanosets
read through), mosaicml-streaming `StreamingDataset`, litdata `StreamingDataset` + `TokensLoader`.
Prints one line per format (reader and version, items and tokens read, equal or not) and a table
of planned vs implied tokens per pool for every blend file. Exit 1 on any difference.
"""
from __future__ import annotations

import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
READERS = REPO / "benchmarks" / ".venvs" / "shard-readers" / "bin" / "python"


def main() -> int:
    out = Path(sys.argv[1]).resolve()
    m = json.loads((out / "manifest.json").read_text())
    rows = [np.asarray(r, dtype=np.int32) for s in m["shards"]
            for r in pq.read_table(out / s["file"], columns=["input_ids"])["input_ids"].to_pylist()]
    stream = np.concatenate(rows)
    row_len, seq_len = m["row_tokens"], m["seq_len"]
    full = [r for r in rows if len(r) == row_len]
    fm = m.get("formats", {})
    req: dict = {}
    if "megatron" in fm:
        req["megatron"] = [str(out / "megatron" / f"shard-{s['bucket']:05d}") for s in m["shards"]]
    if "nanotron" in fm:
        req["nanotron"] = {"folder": str(out / "nanotron"), "seq_len": row_len - 1,
                           "token_size": np.dtype(fm["nanotron"]["dtype"]).itemsize}
    if "mds" in fm:
        req["mds"] = {"folder": str(out / "mds")}
    if "litdata" in fm:
        req["litdata"] = {"folder": str(out / "litdata"), "block_size": row_len}
    po = m.get("pool_outputs") or {}
    if po and "megatron" in fm:
        req["megatron_pools"] = [str(out / "pools" / p / "megatron" / part["part"]) for p in po for part in po[p]["parts"]]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "req.json").write_text(json.dumps(req))
        subprocess.run([str(READERS), "-W", "ignore", str(REPO / "tests" / "shard_readers.py"),
                        str(Path(tmp) / "req.json"), str(Path(tmp) / "got.npz")], check=True,
                       stderr=subprocess.DEVNULL)
        z = np.load(Path(tmp) / "got.npz")
        got = {k: z[k] for k in z.files}
    versions = json.loads(got["info"].tobytes())["versions"]
    ok = True
    print(f"{out}: Parquet {len(rows):,} rows, {len(stream):,} tokens, rows of {row_len}")
    checks = {
        "megatron": ("megatron-core", "IndexedDataset", stream),
        "nanotron": ("datatrove", "DatatroveFolderDataset", np.concatenate(full)),
        "mds": ("mosaicml-streaming", "StreamingDataset", stream),
        "litdata": ("litdata", "StreamingDataset+TokensLoader", np.concatenate(full)),
    }
    for f, (pkg, reader, want) in checks.items():
        if f"{f}_values" not in got:
            continue
        v = got[f"{f}_values"]
        same = np.array_equal(v, want)
        ok &= same
        print(f"  {f:9s} {pkg} {versions.get(pkg)} {reader}: {len(got[f'{f}_lengths']):,} items, {len(v):,} tokens "
              f"-> {'EQUAL to' if same else 'DIFFERENT from'} the Parquet rows"
              + ("" if want is stream else f" ({len(full):,} full rows of {row_len})"))
    if "megatron_pools_values" in got:
        n = int(sum(po[p]["tokens"] for p in po))
        same = len(got["megatron_pools_values"]) == n
        ok &= same
        print(f"  per-pool megatron: {len(got['megatron_pools_lengths']):,} documents, "
              f"{len(got['megatron_pools_values']):,} tokens read (manifest {n:,})")
    # The blend files: what each trainer would take of each pool, against the plan.
    b = json.loads((out / "blend" / "blend.json").read_text())
    planned = b["planned_tokens"]
    print("\n  pool | planned tokens | " + " | ".join(f"{v}/{t}" for v, per in b["variants"].items() for t in per))
    diffs = collections.defaultdict(float)
    for p, t in planned.items():
        cells = []
        for v, per in b["variants"].items():
            for t_, d in per.items():
                x = d["implied_tokens"].get(p, 0.0)
                diffs[f"{v}/{t_}"] = max(diffs[f"{v}/{t_}"], abs(x - t))
                cells.append(f"{x:,.1f}")
        print(f"  {p} | {t:,} | " + " | ".join(cells))
    tol = {"megatron": seq_len, "nanotron": row_len, "mds": 1.0, "litdata": 1.0}
    for k, d in diffs.items():
        good = d <= tol[k.split("/")[1]]
        ok &= good
        print(f"  {k}: largest |implied - planned| = {d:,.1f} tokens ({'within' if good else 'outside'} rounding, "
              f"<= {tol[k.split('/')[1]]})")
    data_args = out / "blend" / "megatron-data-path.pools.txt"
    if data_args.is_file():
        print(f"\n  {data_args.name}: {data_args.read_text()[:300]}...")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
