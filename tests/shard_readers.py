"""Read curate's token files with the trainers' own readers; run in the readers' virtualenv.

    python tests/shard_readers.py REQUEST.json OUT.npz

REQUEST: {"megatron": [prefix, ...], "megatron_pools": [prefix, ...], "nanotron": {"folder", "seq_len", "token_size"},
"mds": {"folder"}, "litdata": {"folder", "block_size"},
"mds_rewrite": [{"rows": rows.npz, "out": folder, "size_limit"}, ...], "litdata_rewrite": {...}}
(each optional).
OUT gets, per format, `<fmt>_values` (every id read, in reading order) and `<fmt>_lengths` (ids per
item read), plus `versions` (JSON of the reader packages' versions). The `*_rewrite` requests write
the given rows again with the package's own writer (MDSWriter, litdata's BinaryWriter), so the
test can compare bytes.

Runs beside megatron-core, datatrove, mosaicml-streaming and litdata, which pin other versions than
curate (tests/test_shard_formats.py creates the environment; see the Makefile's `readers` target).
"""
from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from importlib.metadata import version
from pathlib import Path

import numpy as np


def _no_torchvision() -> None:
    """`import streaming` imports its vision datasets, hence torchvision, whose PyPI wheels are built
    for CUDA torch: an empty stand-in lets the text reader load (nothing of it is used)."""
    if "torchvision" in sys.modules:
        return
    mods = {n: types.ModuleType(n) for n in ("torchvision", "torchvision.datasets", "torchvision.transforms",
                                             "torchvision.transforms.functional")}
    mods["torchvision.datasets"].VisionDataset = type("VisionDataset", (), {})
    mods["torchvision.datasets"].CIFAR10 = None
    mods["torchvision.transforms.functional"].to_tensor = None
    for name, m in mods.items():
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules.update(mods)


def megatron(prefixes: list[str]) -> tuple[list[np.ndarray], dict]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    items = []
    docs = []
    for p in prefixes:
        ds = IndexedDataset(p, mmap=True)
        items.extend(np.array(ds[i], copy=True) for i in range(len(ds)))  # copies: the mmap closes with ds
        docs.append(np.asarray(ds.document_indices).tolist())
    return items, {"document_indices": docs}


def nanotron(req: dict) -> list[np.ndarray]:
    from datatrove.utils.dataset import DatatroveFolderDataset

    ds = DatatroveFolderDataset(req["folder"], seq_len=req["seq_len"], filename_pattern="*.ds", recursive=False,
                                token_size=req["token_size"], shuffle=False)
    return [ds[i]["input_ids"].numpy() for i in range(len(ds))]


def mds(req: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    _no_torchvision()
    from streaming import StreamingDataset

    ds = StreamingDataset(local=req["folder"], shuffle=False, batch_size=1)
    tokens, segs = [], []
    for i in range(ds.num_samples):
        s = ds.get_item(i)
        tokens.append(np.asarray(s["tokens"]))
        segs.append(np.asarray(s["segment_lengths"]))
    return tokens, segs


def litdata(req: dict) -> list[np.ndarray]:
    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    ds = StreamingDataset(req["folder"], item_loader=TokensLoader(block_size=req["block_size"]))
    return [np.array(ds[i], copy=True) for i in range(len(ds))]


def _rows(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    z = np.load(path)
    vo = np.concatenate([[0], np.cumsum(z["row_lengths"])])
    so = np.concatenate([[0], np.cumsum(z["segments_per_row"])])
    return [(z["values"][vo[i]: vo[i + 1]], z["segment_lengths"][so[i]: so[i + 1]].astype(np.int32))
            for i in range(len(z["row_lengths"]))]


def mds_rewrite(req: dict) -> None:
    _no_torchvision()
    from streaming import MDSWriter

    rows = _rows(req["rows"])
    cols = {"tokens": f"ndarray:{rows[0][0].dtype.name}", "segment_lengths": "ndarray:int32"}
    with MDSWriter(out=req["out"], columns=cols, size_limit=req.get("size_limit", 1 << 26)) as w:
        for tok, seg in rows:
            w.write({"tokens": tok, "segment_lengths": seg})


def litdata_rewrite(req: dict) -> None:
    from litdata.streaming.item_loader import TokensLoader
    from litdata.streaming.writer import BinaryWriter

    w = BinaryWriter(req["out"], chunk_bytes=req.get("chunk_bytes", "64MB"), item_loader=TokensLoader())
    for i, (tok, _) in enumerate(_rows(req["rows"])):
        w[i] = tok
    w.done()
    w.merge()


def _flat(items: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lens = np.array([len(x) for x in items], dtype=np.int64)
    vals = np.concatenate(items).astype(np.int32) if items else np.zeros(0, np.int32)
    return vals, lens


def main() -> None:
    req = json.loads(Path(sys.argv[1]).read_text())
    out: dict[str, np.ndarray] = {}
    info: dict = {"versions": {}}
    if "megatron" in req:
        items, extra = megatron(req["megatron"])
        out["megatron_values"], out["megatron_lengths"] = _flat(items)
        info["megatron"] = extra
        info["versions"]["megatron-core"] = version("megatron-core")
    if "megatron_pools" in req:
        items, _ = megatron(req["megatron_pools"])
        out["megatron_pools_values"], out["megatron_pools_lengths"] = _flat(items)
    if "nanotron" in req:
        out["nanotron_values"], out["nanotron_lengths"] = _flat(nanotron(req["nanotron"]))
        info["versions"]["datatrove"] = version("datatrove")
    if "mds" in req:
        tokens, segs = mds(req["mds"])
        out["mds_values"], out["mds_lengths"] = _flat(tokens)
        out["mds_segments"], out["mds_segments_per_row"] = _flat(segs)
        info["versions"]["mosaicml-streaming"] = version("mosaicml-streaming")
    if "litdata" in req:
        out["litdata_values"], out["litdata_lengths"] = _flat(litdata(req["litdata"]))
        info["versions"]["litdata"] = version("litdata")
    for r in req.get("mds_rewrite", []):
        mds_rewrite(r)
    if "litdata_rewrite" in req:
        litdata_rewrite(req["litdata_rewrite"])
    out["info"] = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)
    np.savez(sys.argv[2], **out)


if __name__ == "__main__":
    main()
