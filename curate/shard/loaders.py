"""Reading shards for training: a PyTorch IterableDataset and the Hugging Face `datasets` files.

PyTorch (sharded across DataLoader workers and distributed ranks)::

    from torch.utils.data import DataLoader
    from curate.shard.loaders import ShardDataset

    ds = ShardDataset("out/shards")            # rank/world size from torch.distributed if set up
    loader = DataLoader(ds, batch_size=8, num_workers=4)
    for batch in loader:
        batch["input_ids"]                      # LongTensor [8, seq_len]

The shards are one globally shuffled sequence of rows (manifest order, then file order). Rank r of
W reads rows [r*M, (r+1)*M) with M = N // W (`even=True`, the default: every rank gets the same
number of rows, so no rank waits at a collective for one that ran out; the last N - W*M rows are
not read), and that range is split again between the rank's DataLoader workers. Each reader opens
only the row groups overlapping its range. `drop_partial` (default) leaves out the run's last
sequence when it is shorter than seq_len. `set_epoch(e)` with `shuffle=True` reorders each
reader's row groups and rows within a buffer, differently every epoch.

Hugging Face `datasets`::

    from datasets import load_dataset
    from curate.shard.loaders import hf_data_files

    ds = load_dataset("parquet", data_files=hf_data_files("out/shards"), split="train")
    ds = ds.with_format("torch")                # ds[0]["input_ids"]: a LongTensor of seq_len

`hf_data_files` lists the shards in training order (a glob would sort them the same way, but the
manifest is the authority). With several ranks, `datasets.distributed.split_dataset_by_node`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow.parquet as pq

from .manifest import read_manifest

try:  # torch is a dependency of the project, but keep `hf_data_files` importable without it
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError:  # pragma: no cover
    IterableDataset = object  # type: ignore[misc,assignment]

    def get_worker_info():  # type: ignore[no-redef]
        return None


def hf_data_files(folder: str | Path) -> list[str]:
    """Shard paths in training order, for `datasets.load_dataset("parquet", data_files=...)`."""
    folder = Path(folder)
    return [str(folder / s["file"]) for s in read_manifest(folder)["shards"]]


def _dist() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardDataset(IterableDataset):
    """Rows of a shard folder, each reader (rank x DataLoader worker) reading its own slice."""

    def __init__(self, folder: str | Path, *, rank: int | None = None, world_size: int | None = None,
                 columns: tuple[str, ...] = ("input_ids",), drop_partial: bool = True, even: bool = True,
                 shuffle: bool = False, shuffle_buffer: int = 1024, seed: int = 0, as_tensors: bool = True) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        r, w = _dist()
        self.rank = r if rank is None else rank
        self.world_size = w if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")
        self.columns = tuple(columns)
        self.drop_partial = drop_partial
        self.even = even
        self.shuffle = shuffle
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.seed = seed
        self.epoch = 0
        self.as_tensors = as_tensors
        # Row groups in training order: (path, group index, first global row, rows).
        self.groups: list[tuple[Path, int, int, int]] = []
        at = 0
        for s in self.manifest["shards"]:
            for gi, n in enumerate(s["row_groups"]):
                self.groups.append((self.folder / s["file"], gi, at, n))
                at += n
        self.total_rows = at
        partial = self.manifest["totals"].get("partial_rows", 0)
        self.rows = at - (partial if drop_partial else 0)  # the partial row is the very last one

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rank_range(self) -> tuple[int, int]:
        if self.even:
            per = self.rows // self.world_size
            return self.rank * per, (self.rank + 1) * per
        return self.rank * self.rows // self.world_size, (self.rank + 1) * self.rows // self.world_size

    def _reader_range(self) -> tuple[int, int]:
        lo, hi = self.rank_range()
        info = get_worker_info()
        if info is None:
            return lo, hi
        n = hi - lo
        return lo + info.id * n // info.num_workers, lo + (info.id + 1) * n // info.num_workers

    def __len__(self) -> int:
        lo, hi = self.rank_range()
        return hi - lo

    def _blocks(self, lo: int, hi: int) -> Iterator[dict[str, Any]]:
        groups = [g for g in self.groups if g[2] < hi and g[2] + g[3] > lo]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, lo])
            groups = [groups[i] for i in rng.permutation(len(groups))]
        files: dict[Path, pq.ParquetFile] = {}
        for path, gi, start, n in groups:
            pf = files.get(path) or files.setdefault(path, pq.ParquetFile(path))
            table = pf.read_row_group(gi, columns=list(self.columns))
            a, b = max(lo, start) - start, min(hi, start + n) - start
            yield {c: table[c].slice(a, b - a) for c in self.columns}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        lo, hi = self._reader_range()
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, lo, 1]) if self.shuffle else None
        buffer: list[dict[str, Any]] = []
        for block in self._blocks(lo, hi):
            rows = self._rows(block)
            if rng is None:
                yield from rows
                continue
            for row in rows:
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(row)
                    continue
                j = int(rng.integers(len(buffer)))
                buffer[j], row = row, buffer[j]
                yield row
        if rng is not None:
            for j in rng.permutation(len(buffer)):
                yield buffer[j]

    def _rows(self, block: dict[str, Any]) -> Iterator[dict[str, Any]]:
        import pyarrow as pa

        cols = {}
        n = 0
        for c, arr in block.items():
            arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
            n = len(arr)
            if pa.types.is_list(arr.type) and pa.types.is_integer(arr.type.value_type):
                values = arr.flatten().to_numpy(zero_copy_only=False)
                offs = arr.offsets.to_numpy() - arr.offsets[0].as_py()
                cols[c] = ("ids", values, offs)
            else:
                cols[c] = ("py", arr.to_pylist(), None)
        if self.as_tensors:
            import torch
        for i in range(n):
            row = {}
            for c, (kind, v, offs) in cols.items():
                if kind == "ids":
                    x = v[offs[i]: offs[i + 1]]
                    row[c] = torch.from_numpy(x.astype(np.int64)) if self.as_tensors else x
                else:
                    row[c] = v[i]
            yield row
