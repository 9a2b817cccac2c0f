"""Files the sharder writes: the token cache and scatter files (Arrow IPC), and the shards (Parquet).

Every file appears complete or not at all (temporary name, then rename). Shards are also fsynced
before the rename (they are the output); scratch files and task markers are not: a crashed process
leaves them in the page cache, and only a power loss between a marker and its data reaching the disk
could leave a marker naming a damaged scratch file — a resumed run checks sizes, and
`curate shard verify` checks every shard.

- Token cache (`_work/tokens/<task>.arrow`): one Arrow IPC file per tokenisation task, columns
  `doc_hash` (uint64), `doc_ref` (uint64), `n_tokens` (int32), `tokens` (list<int32>, BOS/EOS
  included). IPC rather than Parquet: it is written once and read twice, and a narrow read
  (`doc_hash`, `n_tokens` for the mixer's histograms) touches nothing else.
- Scatter files (`_work/scatter/<task>.bin` + `.idx.npy`): for each bucket a task feeds, one
  serialized Arrow IPC stream of its rows sorted by key (the body) and one of its first <= seq_len
  tokens (the head, which the previous bucket reads to finish its last sequence). The index holds
  (bucket, kind, offset, length, rows, tokens) per blob, sorted by (bucket, kind), so a reader
  binary-searches its bucket and seeks straight to it: no per-file footer that grows with the
  number of buckets, and no table of every file's blobs on the driver.
- Shards (`shard-NNNNN.parquet`): Parquet, zstd, row groups of about ROW_GROUP_TOKENS tokens (the
  unit loaders split across workers), plus the file's SHA-256.
"""
from __future__ import annotations

import bisect
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.io import _fsync_dir, _tmp_name  # noqa: PLC2701 - the project's one atomic-file recipe

ROW_GROUP_TOKENS = 1 << 20  # ~4 MB of int32 ids per row group
TOKEN_TYPE = pa.int32()

TOKENS_SCHEMA = pa.schema([
    pa.field("doc_hash", pa.uint64()),
    pa.field("doc_ref", pa.uint64()),
    pa.field("n_tokens", pa.int32()),
    pa.field("tokens", pa.list_(TOKEN_TYPE)),
])

SCATTER_SCHEMA = pa.schema([
    pa.field("key", pa.float64()),
    pa.field("pool", pa.uint16()),
    pa.field("doc_hash", pa.uint64()),
    pa.field("doc_ref", pa.uint64()),
    pa.field("epoch", pa.uint16()),
    pa.field("tokens", pa.list_(TOKEN_TYPE)),
])

BODY, HEAD = 0, 1


def _ipc_options(compression: str | None) -> pa.ipc.IpcWriteOptions:
    return pa.ipc.IpcWriteOptions(compression=None if compression in (None, "none") else compression)


def np_array(a: np.ndarray, type: pa.DataType | None = None) -> pa.Array:
    """A numpy vector as an Arrow array, zero-copy. Unlike `pa.array`, this never imports pandas
    (pyarrow probes for pandas objects on its first conversion: a second or more per process)."""
    a = np.ascontiguousarray(a)
    t = type or pa.from_numpy_dtype(a.dtype)
    if a.dtype != np.dtype(t.to_pandas_dtype()):
        a = a.astype(t.to_pandas_dtype())
    return pa.Array.from_buffers(t, len(a), [None, pa.py_buffer(a)])


def list_array(values: np.ndarray, lengths: np.ndarray) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(np_array(offsets), np_array(values, TOKEN_TYPE))


def list_values(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Concatenated values of a list array (respecting offsets and slices) as int32 numpy."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr.flatten().to_numpy(zero_copy_only=False)


def list_lengths(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)


class _AtomicFile:
    durable = False  # fsync before publishing (shards); scratch files skip it

    def __init__(self, path: Path, durable: bool | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _tmp_name(self.path)
        if durable is not None:
            self.durable = durable

    def publish(self) -> None:
        if self.durable:
            with open(self.tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        if self.durable:
            _fsync_dir(self.path.parent)

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


class TokenCacheWriter(_AtomicFile):
    """Streams tokenised batches into one IPC file; `close()` publishes it."""

    def __init__(self, path: Path, compression: str | None = None) -> None:
        super().__init__(path)
        self._sink = pa.OSFile(str(self.tmp), "wb")
        self._writer = pa.ipc.new_file(self._sink, TOKENS_SCHEMA, options=_ipc_options(compression))
        self.rows = 0
        self.tokens = 0

    def write(self, doc_hash: np.ndarray, doc_ref: np.ndarray, flat: np.ndarray, lens: np.ndarray) -> None:
        if len(lens) == 0:
            return
        batch = pa.record_batch([np_array(doc_hash, pa.uint64()), np_array(doc_ref, pa.uint64()),
                                 np_array(lens, pa.int32()), list_array(flat, lens)],
                                schema=TOKENS_SCHEMA)
        self._writer.write_batch(batch)
        self.rows += len(lens)
        self.tokens += int(lens.sum())

    def close(self) -> None:
        self._writer.close()
        self._sink.close()
        self.publish()

    def abort(self) -> None:
        try:
            self._writer.close()
            self._sink.close()
        except Exception:  # noqa: BLE001 - already failing
            pass
        super().abort()


def read_token_cache(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The cache file as a table; `columns` limits what is read (and decompressed)."""
    source = pa.memory_map(str(path), "r")
    opts = None
    if columns is not None:
        opts = pa.ipc.IpcReadOptions(included_fields=[TOKENS_SCHEMA.get_field_index(c) for c in columns])
    return pa.ipc.open_file(source, options=opts).read_all()


class ScatterWriter(_AtomicFile):
    """Blobs of rows per (bucket, kind) in one file, with an index beside it."""

    def __init__(self, path: Path, compression: str | None = None) -> None:
        super().__init__(path)
        self._f = open(self.tmp, "wb")
        self._opts = _ipc_options(compression)
        self.index: list[tuple[int, int, int, int, int, int]] = []
        self._offset = 0

    def write(self, bucket: int, kind: int, table: pa.Table, tokens: int) -> None:
        if table.num_rows == 0:
            return
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, SCATTER_SCHEMA, options=self._opts) as w:
            w.write_table(table)
        buf = sink.getvalue()
        self._f.write(buf)
        self.index.append((bucket, kind, self._offset, buf.size, table.num_rows, tokens))
        self._offset += buf.size

    def close(self) -> np.ndarray:
        self._f.close()
        idx = np.array(self.index, dtype=np.int64).reshape(-1, 6)
        # Sorted by (bucket, kind), stably (a bucket's blobs keep their write order): a pack task
        # finds its bucket's rows by binary search in the memory-mapped index (bucket_refs), reading
        # a few pages of each file's index instead of all of it.
        idx = idx[np.argsort(idx[:, 0] * 2 + idx[:, 1], kind="stable")]
        idx_path = index_path(self.path)
        tmp = _tmp_name(idx_path)
        with open(tmp, "wb") as f:
            np.save(f, idx)
        os.replace(tmp, idx_path)
        self.publish()
        return idx

    def abort(self) -> None:
        try:
            self._f.close()
        except Exception:  # noqa: BLE001
            pass
        super().abort()


def index_path(path: Path) -> Path:
    return Path(path).with_suffix(".idx.npy")


def load_index(path: str | Path) -> np.ndarray:
    return np.load(index_path(Path(path)))


def bucket_tokens(files: Iterable[str | Path], buckets: int) -> np.ndarray:
    """Body tokens per bucket over the scatter files, reading one index at a time: the caller (the
    driver) holds `buckets` counts, never the tasks x buckets rows of all the indexes together."""
    size = np.zeros(buckets, dtype=np.int64)
    for f in files:
        idx = load_index(f)
        body = idx[idx[:, 1] == BODY]
        np.add.at(size, body[:, 0], body[:, 5])
    return size


def _blob_rows(path: str | Path, bucket: int, kind: int) -> np.ndarray:
    """Index rows of one (bucket, kind) of a scatter file: binary search in its memory-mapped index
    (sorted by bucket and kind, see ScatterWriter.close), so only a few pages of it are read."""
    idx = np.load(index_path(Path(path)), mmap_mode="r")
    n = len(idx)

    def key(i: int) -> int:
        return int(idx[i, 0]) * 2 + int(idx[i, 1])

    want = bucket * 2 + kind
    lo = bisect.bisect_left(range(n), want, key=key)
    hi = bisect.bisect_left(range(n), want + 1, lo=lo, key=key)
    return np.array(idx[lo:hi])


def bucket_refs(files: Iterable[str | Path], bucket: int, kind: int) -> list[tuple[str, np.ndarray]]:
    """(scatter file, its index rows) of every file holding blobs of (bucket, kind), in file order:
    what read_blobs needs, looked up by the pack task itself."""
    out = []
    for f in files:
        rows = _blob_rows(f, bucket, kind)
        if len(rows):
            out.append((str(f), rows))
    return out


def read_blobs(path: str | Path, rows: np.ndarray) -> list[pa.Table]:
    """Tables of the index rows given (each row: bucket, kind, offset, length, rows, tokens)."""
    out = []
    with open(path, "rb") as f:
        for r in rows:
            f.seek(int(r[2]))
            data = f.read(int(r[3]))
            if len(data) != int(r[3]):
                raise OSError(f"{path}: scatter file shorter than its index (truncated?)")
            out.append(pa.ipc.open_stream(pa.py_buffer(data)).read_all())
    return out


@dataclass
class ShardFile:
    file: str
    rows: int
    tokens: int
    bytes: int
    sha256: str
    row_groups: list[int]


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def write_shard(path: Path, table: pa.Table, tokens: int, compression: str = "zstd",
                compression_level: int | None = 1) -> ShardFile:
    """Write one shard atomically in row groups of about ROW_GROUP_TOKENS tokens."""
    path = Path(path)
    af = _AtomicFile(path, durable=True)
    rows = table.num_rows
    per_row = max(1.0, tokens / max(rows, 1))
    group = max(1, int(ROW_GROUP_TOKENS // per_row))
    groups: list[int] = []
    dictionary = [c for c in table.column_names if pa.types.is_dictionary(table.schema.field(c).type)]
    try:
        with pq.ParquetWriter(str(af.tmp), table.schema, compression=compression,
                              compression_level=compression_level if compression == "zstd" else None,
                              use_dictionary=dictionary or False, write_statistics=False) as w:
            for start in range(0, max(rows, 1), group):
                piece = table.slice(start, group)
                if piece.num_rows == 0 and rows:
                    continue
                w.write_table(piece, row_group_size=max(piece.num_rows, 1))
                groups.append(piece.num_rows)
        af.publish()
    except BaseException:
        af.abort()
        raise
    return ShardFile(path.name, rows, tokens, path.stat().st_size, sha256_file(path), groups)


def write_marker(path: str | Path, record: dict) -> None:
    """A task's result, written after its output (tmp + rename, no fsync: see the module docstring)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.write_text(json.dumps(record, sort_keys=True, default=str))
    os.replace(tmp, path)


def table_tokens(tables: Iterable[pa.Table]) -> int:
    return sum(int(list_lengths(t["tokens"]).sum()) for t in tables if t.num_rows)
