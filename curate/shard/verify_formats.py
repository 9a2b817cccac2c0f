"""`curate shard verify`, for the trainer formats: every Megatron, nanotron, MDS and LitData file the
manifest lists, for the mixed stream and for the per-pool outputs.

Per file: present, size, SHA-256. Per format, the structure its reader relies on:
- megatron: the .idx parses (header, version, dtype code = Megatron's choice for the vocabulary,
  its size matches its counts: a truncated index is caught), sequence lengths add up to the
  manifest's tokens and to the .bin's size, pointers follow the lengths, document indices run 0..n;
  the .bin's ids lie inside the vocabulary;
- nanotron: .ds size = tokens x token size; .ds.index ends increase and end at the token count;
  ids inside the vocabulary;
- mds / litdata: every shard or chunk named in the merged index.json exists with its size; samples
  (rows) and tokens add up to the manifest's.
Then each format's totals against the Parquet totals (the same rows).
"""
from __future__ import annotations

import json
from struct import error as struct_error
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import formats as fmt
from processors.tokenizer import sha256_file

Problem = Callable[[str], None]
_CHUNK = 1 << 24  # ids per vocabulary-range read


def check_file(folder: Path, rec: dict[str, Any], problem: Problem) -> bool:
    """Present, same size, same SHA-256; False when it cannot be read further."""
    path = folder / rec["file"]
    if not path.is_file():
        problem(f"{rec['file']}: missing (listed in the manifest, {rec['bytes']:,} bytes)")
        return False
    size = path.stat().st_size
    if size != rec["bytes"]:
        how = "truncated" if size < rec["bytes"] else "grown"
        problem(f"{rec['file']}: size {size:,} bytes, manifest says {rec['bytes']:,} ({how})")
    digest = sha256_file(path)
    if digest != rec["sha256"]:
        problem(f"{rec['file']}: SHA-256 mismatch (file {digest[:16]}..., manifest {rec['sha256'][:16]}...): "
                "the file was changed after it was written")
    return True


def _ids_in_vocab(folder: Path, rel: str, dtype: np.dtype, vocab: int, problem: Problem) -> None:
    path = folder / rel
    data = np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)
    for s in range(0, len(data), _CHUNK):
        part = data[s: s + _CHUNK]
        lo, hi = int(part.min()), int(part.max())
        if lo < 0 or hi >= vocab:
            problem(f"{rel}: token ids span [{lo}, {hi}], outside the vocabulary [0, {vocab})")
            return


def _megatron(folder: Path, entry: dict[str, Any], vocab: int, problem: Problem) -> None:
    files = {f["file"]: f for f in entry["files"]}
    idx = next(f for f in files if f.endswith(".idx"))
    binf = next(f for f in files if f.endswith(".bin"))
    if not (folder / idx).is_file() or not (folder / binf).is_file():
        return
    try:
        ix = fmt.read_megatron_index(folder / idx)
    except (ValueError, OSError, struct_error) as e:
        problem(f"{idx}: unreadable Megatron index ({e})")
        return
    want = fmt.megatron_dtype(vocab)
    if ix["dtype"] != want:
        problem(f"{idx}: dtype {ix['dtype']}, Megatron's choice for {vocab:,} ids is {want}")
    lengths = ix["lengths"].astype(np.int64)
    if int(lengths.sum()) != entry["tokens"] or len(lengths) != entry["segments"]:
        problem(f"{idx}: {len(lengths):,} sequences of {int(lengths.sum()):,} tokens, manifest says "
                f"{entry['segments']:,} of {entry['tokens']:,}")
    pointers = np.concatenate([[0], np.cumsum(lengths[:-1]) * ix["dtype"].itemsize]) if len(lengths) else lengths
    if not np.array_equal(ix["pointers"], pointers):
        problem(f"{idx}: sequence pointers do not follow the sequence lengths")
    docs = ix["documents"]
    if len(docs) == 0 or docs[0] != 0 or docs[-1] != len(lengths) or np.any(np.diff(docs) <= 0):
        problem(f"{idx}: document indices do not run from 0 to {len(lengths):,} in increasing order")
    size = (folder / binf).stat().st_size
    if size != int(lengths.sum()) * ix["dtype"].itemsize:
        problem(f"{binf}: {size:,} bytes, its index implies {int(lengths.sum()) * ix['dtype'].itemsize:,}")
    else:
        _ids_in_vocab(folder, binf, ix["dtype"], vocab, problem)


def _nanotron(folder: Path, entry: dict[str, Any], vocab: int, problem: Problem) -> None:
    ds = next(f["file"] for f in entry["files"] if f["file"].endswith(".ds"))
    index = ds + ".index"
    dtype = fmt.datatrove_dtype(vocab)
    if not (folder / ds).is_file() or not (folder / index).is_file():
        return
    size = (folder / ds).stat().st_size
    if size != entry["tokens"] * dtype.itemsize:
        problem(f"{ds}: {size:,} bytes, manifest's {entry['tokens']:,} tokens x {dtype.itemsize} bytes differ")
    raw = (folder / index).read_bytes()
    if len(raw) % 8:
        problem(f"{index}: {len(raw)} bytes, not a whole number of u64 ends (truncated?)")
        return
    ends = np.frombuffer(raw, "<u8").astype(np.int64)
    if len(ends) != entry["segments"] or (len(ends) and (ends[-1] != entry["tokens"] or np.any(np.diff(ends) <= 0))):
        problem(f"{index}: {len(ends):,} document ends (last {int(ends[-1]) if len(ends) else 0:,}), manifest says "
                f"{entry['segments']:,} pieces of {entry['tokens']:,} tokens")
    if size == entry["tokens"] * dtype.itemsize:
        _ids_in_vocab(folder, ds, dtype, vocab, problem)


def _merged_index(folder: Path, summary: dict[str, Any], name: str, problem: Problem) -> None:
    """The top index.json of MDS / LitData: every file it names exists with its size; counts add up."""
    path = folder / summary["index"]["file"]
    if not check_file(folder, summary["index"], problem):
        return
    try:
        index = json.loads(path.read_text())
    except ValueError as e:
        problem(f"{summary['index']['file']}: not JSON ({e})")
        return
    base = path.parent
    if name == "mds":
        items = [(s["raw_data"]["basename"], s["raw_data"]["bytes"], s["samples"]) for s in index.get("shards", [])]
    else:
        items = [(c["filename"], c["chunk_bytes"], c["chunk_size"]) for c in index.get("chunks", [])]
        dims = sum(int(c.get("dim") or 0) for c in index.get("chunks", []))
        if dims != summary["tokens"]:
            problem(f"{summary['index']['file']}: chunks hold {dims:,} tokens, manifest says {summary['tokens']:,}")
    for file, size, _ in items:
        p = base / file
        if not p.is_file():
            problem(f"{summary['folder']}/{file}: missing (named in {summary['index']['file']})")
        elif p.stat().st_size != size:
            problem(f"{summary['folder']}/{file}: size {p.stat().st_size:,} bytes, its index says {size:,}")
    rows = sum(n for *_, n in items)
    if rows != summary["rows"]:
        problem(f"{summary['index']['file']}: {rows:,} samples, manifest says {summary['rows']:,}")


_CHECKS = {"megatron": _megatron, "nanotron": _nanotron}


def check_parts(folder: Path, parts: list[dict[str, Any]], summary: dict[str, Any], vocab: int,
                problem: Problem) -> int:
    """Files of every part (shard or per-pool part) in every format, then the merged indexes; returns
    the number of files checked."""
    n = 0
    for part in parts:
        for name, entry in (part.get("formats") or {}).items():
            present = [check_file(folder, f, problem) for f in entry["files"]]
            n += len(present)
            if all(present) and name in _CHECKS:
                _CHECKS[name](folder, entry, vocab, problem)
    for name, s in summary.items():
        got = sum(p["formats"][name]["tokens"] for p in parts if name in (p.get("formats") or {}))
        if got != s["tokens"]:
            problem(f"{s['folder']}: parts hold {got:,} tokens, manifest says {s['tokens']:,}")
        if name in ("mds", "litdata"):
            _merged_index(folder, s, name, problem)
            n += 1
    return n


def verify_trainer_formats(folder: Path, m: dict[str, Any], problem: Problem) -> int:
    vocab = int((m.get("tokenizer") or {}).get("vocab_size") or 0)
    summary = m.get("formats") or {}
    n = check_parts(folder, m.get("shards", []), summary, vocab, problem)
    for name, s in summary.items():
        if s["tokens"] != m["totals"]["tokens"] or s["rows"] != m["totals"]["rows"]:
            problem(f"{s['folder']}: {s['rows']:,} rows / {s['tokens']:,} tokens, the shards hold "
                    f"{m['totals']['rows']:,} / {m['totals']['tokens']:,}")
    for pool, po in (m.get("pool_outputs") or {}).items():
        n += check_parts(folder, po.get("parts", []), po.get("formats") or {}, vocab, problem)
        for name, s in (po.get("formats") or {}).items():
            if s["tokens"] != po["tokens"]:
                problem(f"pool {pool!r} {name}: {s['tokens']:,} tokens, the pool's output holds {po['tokens']:,}")
    return n

