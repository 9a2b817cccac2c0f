"""Token files the trainers read: Megatron's indexed dataset, nanotron's (datatrove's) `.ds` files,
MosaicML MDS and LitData chunks — written from the same rows as the Parquet shards.

Every writer takes `Rows` (the rows of one shard in training order, plus the document pieces each
row holds) and writes its files atomically (temporary name, then rename) in one pass over the
rows, so a worker holds one shard's rows, never the corpus. The byte layouts are the frameworks'
own, written here rather than through their packages because those pin other numpy/boto/torch
versions than curate (tests read every file back with the frameworks' own readers, and compare
MDS and LitData bytes with their own writers):

- **megatron** (megatron-core `IndexedDataset`, `_IndexWriter`): `PREFIX.bin` holds the token ids
  back to back, `PREFIX.idx` is `MMIDIDX\\x00\\x00`, version 1 (u64), dtype code (u8), sequence
  count and document count + 1 (u64), sequence lengths (i32), byte pointers (i64) and document
  indices (i64, from 0). A sequence is one document piece; every piece is its own document, so
  `GPTDataset` (which packs `seq_length + 1` windows itself, across EOD tokens) sees the exact
  token stream of the Parquet rows. dtype as Megatron chooses it: uint16 below 65,500 ids, else int32.
- **nanotron** (datatrove `DocumentTokenizer` layout, read by nanotron's Nanosets through datatrove's
  `DatatroveFolderDataset`): `NAME.ds` the token ids (uint16 when the vocabulary fits, else uint32),
  `NAME.ds.index` the end of every document piece (u64, exclusive), `NAME.ds.metadata`
  (`tokenizer|token size`, token count, the count in words). The reader takes windows of
  `seq_len + 1` tokens back to back: write with rows of `seq_len + 1` (`shifted_targets`).
- **mds** (`streaming.MDSWriter`, columns `tokens: ndarray:<dtype>` and `segment_lengths:
  ndarray:int32`): per shard a folder of `shard.NNNNN.mds` files (at most `size_limit` bytes
  each, split exactly where MDSWriter splits) and its `index.json`; the top `index.json` lists all
  of them, as `streaming.base.util.merge_index` writes it.
- **litdata** (`litdata.optimize` / `BinaryWriter` with `TokensLoader`, which LitGPT reads): chunks
  `chunk-<shard>-<i>.bin` (u32 item count, u32 offsets, then the token ids with no per-item header)
  and `index.json`. `TokensLoader(block_size=row length)` reads the rows back; LitGPT uses
  `block_size = max_seq_length + 1`: write with `shifted_targets`.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from curate.io import _fsync_dir, _tmp_name  # noqa: PLC2701 - the project's one atomic-file recipe

FORMATS = ("parquet", "megatron", "nanotron", "mds", "litdata")
SHIFTED_FORMATS = ("nanotron", "litdata")  # readers that take seq_len + 1 tokens per window
FORMAT_DIRS = {"megatron": "megatron", "nanotron": "nanotron", "mds": "mds", "litdata": "litdata"}

MEGATRON_HEADER = b"MMIDIDX\x00\x00"
MEGATRON_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
                  np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7,
                  np.dtype(np.uint16): 8}
MDS_SIZE_LIMIT = 1 << 26  # MDSWriter's default
LITDATA_CHUNK_BYTES = 64_000_000  # litdata's "64MB"
LITDATA_NUMPY_INDEX = {"int8": 0, "int16": 1, "int32": 2, "int64": 3, "uint8": 4, "uint16": 5, "uint32": 6,
                       "uint64": 7}
_COPY = 1 << 22  # bytes per write when streaming arrays to disk


def megatron_dtype(vocab_size: int) -> np.dtype:
    """Megatron's `DType.optimal_dtype`: uint16 below 65,500 ids, else int32."""
    return np.dtype(np.uint16 if vocab_size < 65500 else np.int32)


def datatrove_dtype(vocab_size: int) -> np.dtype:
    """datatrove's token size: 2 bytes when every id fits in uint16, else 4 (uint32)."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def token_dtype(fmt: str, vocab_size: int) -> np.dtype:
    return datatrove_dtype(vocab_size) if fmt == "nanotron" else megatron_dtype(vocab_size)


# ---------------------------------------------------------------- what the writers receive
@dataclass
class Rows:
    """Rows in training order: `values` (all ids), `row_lengths`, and the document pieces of the rows
    (`segment_lengths`, row by row; `segments_per_row` of them in each row; a piece is the part of one
    document copy inside one row, so the pieces tile every row)."""

    values: np.ndarray
    row_lengths: np.ndarray
    segment_lengths: np.ndarray
    segments_per_row: np.ndarray

    @property
    def tokens(self) -> int:
        return int(len(self.values))

    @property
    def rows(self) -> int:
        return int(len(self.row_lengths))

    def row_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.row_lengths, dtype=np.int64)])

    def segment_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.segments_per_row, dtype=np.int64)])


def documents_as_rows(values: np.ndarray, doc_lengths: np.ndarray) -> Rows:
    """One row (and one piece) per document."""
    lens = np.asarray(doc_lengths, dtype=np.int64)
    return Rows(np.asarray(values), lens, lens, np.ones(len(lens), dtype=np.int64))


def pack_documents(values: np.ndarray, doc_lengths: np.ndarray, row_len: int) -> Rows:
    """Documents back to back, cut into rows of `row_len` (the last may be shorter), with the pieces."""
    lens = np.asarray(doc_lengths, dtype=np.int64)
    total = int(lens.sum())
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else np.zeros(0, dtype=np.int64)
    n_rows = -(-total // row_len)
    cuts = np.union1d(starts, np.arange(0, total, row_len, dtype=np.int64)) if total else np.zeros(0, np.int64)
    seg = np.diff(np.append(cuts, total))
    keep = seg > 0
    cuts, seg = cuts[keep], seg[keep]
    per_row = np.bincount(cuts // row_len, minlength=n_rows).astype(np.int64)
    rows = np.full(n_rows, row_len, dtype=np.int64)
    if n_rows and total % row_len:
        rows[-1] = total % row_len
    return Rows(np.asarray(values), rows, seg.astype(np.int64), per_row)


# ---------------------------------------------------------------- files
@dataclass
class FileRecord:
    file: str  # relative to the output folder
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "bytes": self.bytes, "sha256": self.sha256}


class _Out:
    """A file written through a temporary name, hashed while written, published by rename (fsynced:
    these are outputs)."""

    def __init__(self, root: Path, rel: str) -> None:
        self.root = Path(root)
        self.rel = rel
        self.path = self.root / rel
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _tmp_name(self.path)
        self._f = open(self.tmp, "wb")
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._f.write(data)
        self._h.update(data)
        self.size += len(data)

    def write_array(self, a: np.ndarray) -> None:
        a = np.ascontiguousarray(a)
        flat = a.reshape(-1).view(np.uint8)
        for s in range(0, len(flat), _COPY):
            self.write(memoryview(flat[s: s + _COPY]))

    def close(self) -> FileRecord:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)
        return FileRecord(self.rel, self.size, self._h.hexdigest())

    def abort(self) -> None:
        try:
            self._f.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _write_file(root: Path, rel: str, parts: Iterable[bytes | np.ndarray]) -> FileRecord:
    out = _Out(root, rel)
    try:
        for p in parts:
            if isinstance(p, np.ndarray):
                out.write_array(p)
            else:
                out.write(p)
        return out.close()
    except BaseException:
        out.abort()
        raise


def _cast(values: np.ndarray, dtype: np.dtype, vocab_size: int) -> np.ndarray:
    if len(values):
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= vocab_size or hi > np.iinfo(dtype).max:
            raise ValueError(f"token ids span [{lo}, {hi}]: outside the vocabulary [0, {vocab_size}) or {dtype}")
    return values.astype(dtype, copy=False)


# ---------------------------------------------------------------- Megatron
def megatron_index_bytes(dtype: np.dtype, seq_lengths: np.ndarray, doc_indices: np.ndarray) -> list[bytes]:
    lengths = np.asarray(seq_lengths, dtype=np.int32)
    pointers = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    return [MEGATRON_HEADER, struct.pack("<Q", 1), struct.pack("<B", MEGATRON_CODES[dtype]),
            struct.pack("<Q", len(lengths)), struct.pack("<Q", len(doc_indices)),
            lengths.tobytes(order="C"), pointers.tobytes(order="C"),
            np.asarray(doc_indices, dtype=np.int64).tobytes(order="C")]


def write_megatron(root: Path, prefix: str, rows: Rows, vocab_size: int) -> list[FileRecord]:
    """`prefix.bin` + `prefix.idx`: one sequence (and one document) per document piece."""
    dtype = megatron_dtype(vocab_size)
    seqs = rows.segment_lengths
    bin_rec = _write_file(root, prefix + ".bin", [_cast(rows.values, dtype, vocab_size)])
    idx_rec = _write_file(root, prefix + ".idx",
                          megatron_index_bytes(dtype, seqs, np.arange(len(seqs) + 1, dtype=np.int64)))
    return [bin_rec, idx_rec]


def read_megatron_index(path: Path) -> dict[str, Any]:
    """Parse an .idx (as megatron-core's `_IndexReader`); raises ValueError on a malformed file."""
    data = Path(path).read_bytes()
    head = len(MEGATRON_HEADER)
    if len(data) < head + 25 or data[:head] != MEGATRON_HEADER:
        raise ValueError("not a Megatron index (bad header)")
    version, = struct.unpack_from("<Q", data, head)
    code, = struct.unpack_from("<B", data, head + 8)
    n_seq, n_doc = struct.unpack_from("<QQ", data, head + 9)
    dtypes = {v: k for k, v in MEGATRON_CODES.items()}
    if version != 1 or code not in dtypes:
        raise ValueError(f"unsupported version {version} or dtype code {code}")
    at = head + 25
    need = at + n_seq * 4 + n_seq * 8 + n_doc * 8
    if len(data) != need:
        raise ValueError(f"{len(data):,} bytes, its header implies {need:,} (truncated?)")
    lengths = np.frombuffer(data, np.int32, n_seq, at)
    pointers = np.frombuffer(data, np.int64, n_seq, at + n_seq * 4)
    docs = np.frombuffer(data, np.int64, n_doc, at + n_seq * 12)
    return {"dtype": dtypes[code], "lengths": lengths, "pointers": pointers, "documents": docs}


# ---------------------------------------------------------------- nanotron (datatrove .ds)
def _metric(n: int) -> str:
    """The token count as `humanize.metric(n, unit="T")` writes it (3 significant digits)."""
    if n == 0:
        return "0 T"
    exp = min(int(np.floor(np.log10(abs(n)) / 3)), 8) if n else 0
    value = n / 1000 ** exp
    digits = max(0, 2 - int(np.floor(np.log10(abs(value)))))
    return f"{value:.{digits}f} {' kMGTPEZY'[exp].strip()}T"


def write_nanotron(root: Path, name: str, rows: Rows, vocab_size: int, tokenizer: str) -> list[FileRecord]:
    """`name.ds`, `name.ds.index` (u64 ends of the document pieces), `name.ds.metadata`."""
    dtype = datatrove_dtype(vocab_size)
    ends = np.cumsum(rows.segment_lengths, dtype=np.uint64)
    meta = "\n".join([f"{tokenizer}|{dtype.itemsize}", str(rows.tokens), _metric(rows.tokens)]).encode()
    return [_write_file(root, name + ".ds", [_cast(rows.values, dtype, vocab_size)]),
            _write_file(root, name + ".ds.index", [ends.astype("<u8")]),
            _write_file(root, name + ".ds.metadata", [meta])]


# ---------------------------------------------------------------- MDS
def _mds_columns(dtype: np.dtype) -> tuple[list[str], list[str]]:
    # MDSWriter orders columns by name
    return ["segment_lengths", "tokens"], ["ndarray:int32", f"ndarray:{dtype.name}"]


def _ndarray_head(n: int) -> bytes:
    """MDS `ndarray:<dtype>` (static dtype, dynamic shape) of a 1-D array: the shape byte and shape."""
    if n < 1 << 8:
        code, shape = 0, np.array([n], np.uint8)
    elif n < 1 << 16:
        code, shape = 1, np.array([n], np.uint16)
    elif n < 1 << 32:
        code, shape = 2, np.array([n], np.uint32)
    else:
        code, shape = 3, np.array([n], np.uint64)
    return bytes([(1 << 2) | code]) + shape.tobytes()


def _mds_sample_sizes(rows: Rows, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Encoded bytes of each sample's two columns (segment_lengths, tokens)."""
    def head(n: np.ndarray) -> np.ndarray:
        return 1 + np.where(n < 1 << 8, 1, np.where(n < 1 << 16, 2, np.where(n < 1 << 32, 4, 8)))

    seg = head(rows.segments_per_row) + 4 * rows.segments_per_row
    tok = head(rows.row_lengths) + dtype.itemsize * rows.row_lengths
    return seg.astype(np.int64), tok.astype(np.int64)


def write_mds(root: Path, folder: str, rows: Rows, vocab_size: int,
              size_limit: int = MDS_SIZE_LIMIT) -> tuple[list[FileRecord], dict[str, Any]]:
    """One MDS partition: `folder/shard.NNNNN.mds` files and `folder/index.json`, byte for byte what
    `MDSWriter(out=folder, columns={'tokens': 'ndarray:<dtype>', 'segment_lengths': 'ndarray:int32'})`
    writes for these rows. Returns the files and the partition's index (for the merged index)."""
    dtype = megatron_dtype(vocab_size)
    if rows.rows and int(rows.row_lengths.min()) < 1:
        raise ValueError("MDS cannot store an empty row")
    names, encodings = _mds_columns(dtype)
    config = {"column_encodings": encodings, "column_names": names, "column_sizes": [None, None],
              "compression": None, "format": "mds", "hashes": [], "size_limit": size_limit, "version": 2}
    config_data = json.dumps(config, sort_keys=True).encode("utf-8")
    seg_bytes, tok_bytes = _mds_sample_sizes(rows, dtype)
    sample = 8 + seg_bytes + tok_bytes  # two u32 sizes, then the columns
    # MDSWriter's split: a new file when the next sample would pass size_limit (4 extra bytes per
    # sample for its offset, 8 + config per file).
    groups: list[tuple[int, int]] = []
    start, size = 0, 8 + len(config_data)
    for i, s in enumerate(sample.tolist()):
        if size_limit < size + s + 4:  # (with nothing cached yet, MDSWriter flushes an empty file)
            groups.append((start, i))
            start, size = i, 8 + len(config_data)
        size += s + 4
    if start < rows.rows:
        groups.append((start, rows.rows))
    values = _cast(rows.values, dtype, vocab_size)
    row_off = rows.row_offsets()
    seg_off = rows.segment_offsets()
    seg_vals = rows.segment_lengths.astype(np.int32)
    records: list[FileRecord] = []
    shards: list[dict[str, Any]] = []
    for k, (a, b) in enumerate(groups):
        n = b - a
        offsets = np.concatenate([[0], np.cumsum(sample[a:b])]).astype(np.uint32)
        offsets += 4 + 4 * (n + 1) + len(config_data)

        def parts(a: int = a, b: int = b, n: int = n, offsets: np.ndarray = offsets) -> Iterator[bytes | np.ndarray]:
            yield np.uint32(n).tobytes() + offsets.tobytes() + config_data
            buf: list[bytes] = []
            size = 0
            for r in range(a, b):
                s_seg = seg_vals[seg_off[r]: seg_off[r + 1]]
                s_tok = values[row_off[r]: row_off[r + 1]]
                buf.append(np.array([seg_bytes[r], tok_bytes[r]], np.uint32).tobytes()
                           + _ndarray_head(len(s_seg)) + s_seg.tobytes()
                           + _ndarray_head(len(s_tok)) + s_tok.tobytes())
                size += len(buf[-1])
                if size >= _COPY:
                    yield b"".join(buf)
                    buf, size = [], 0
            if buf:
                yield b"".join(buf)

        rec = _write_file(root, f"{folder}/shard.{k:05d}.mds", parts())
        records.append(rec)
        shards.append({**config, "raw_data": {"basename": f"shard.{k:05d}.mds", "bytes": rec.bytes, "hashes": {}},
                       "samples": n, "zip_data": None})
    index = {"shards": shards, "version": 2}
    records.append(_write_file(root, f"{folder}/index.json", [json.dumps(index, sort_keys=True).encode()]))
    return records, index


def merge_mds_index(root: Path, folder: str, partitions: list[tuple[str, dict[str, Any]]]) -> FileRecord:
    """The top `index.json` over partition folders, as `streaming.base.util.merge_index` writes it."""
    shards = []
    for name, index in partitions:
        for s in index["shards"]:
            s = json.loads(json.dumps(s))
            for key in ("raw_data", "zip_data", "raw_meta", "zip_meta"):
                if s.get(key):
                    s[key]["basename"] = f"{name}/{s[key]['basename']}"
            shards.append(s)
    return _write_file(root, f"{folder}/index.json", [json.dumps({"version": 2, "shards": shards}).encode()])


# ---------------------------------------------------------------- LitData
def _litdata_config(dtype: np.dtype) -> dict[str, Any]:
    return {"chunk_bytes": LITDATA_CHUNK_BYTES, "chunk_size": None, "compression": None,
            "compression_batch_size": None, "compression_level": None,
            "data_format": [f"no_header_numpy:{LITDATA_NUMPY_INDEX[dtype.name]}"],
            "data_spec": json.dumps([1, {"type": None, "context": None, "children_spec": []}]),
            "encryption": None, "ipc_compression": None, "item_loader": "TokensLoader", "types": "json"}


def write_litdata(root: Path, folder: str, rank: int, rows: Rows, vocab_size: int,
                  chunk_bytes: int = LITDATA_CHUNK_BYTES) -> tuple[list[FileRecord], list[dict[str, Any]]]:
    """Chunks `folder/chunk-<rank>-<i>.bin` as litdata's `BinaryWriter(item_loader=TokensLoader())`
    writes one item per row; returns the files and the chunks' index entries."""
    dtype = megatron_dtype(vocab_size)
    values = _cast(rows.values, dtype, vocab_size)
    item = rows.row_lengths * dtype.itemsize
    groups: list[tuple[int, int]] = []
    start, size = 0, 0
    for i, s in enumerate(item.tolist()):
        # BinaryWriter closes a chunk when adding the item would pass chunk_bytes
        if i > start and size + s > chunk_bytes:
            groups.append((start, i))
            start, size = i, 0
        size += s
    if start < rows.rows:
        groups.append((start, rows.rows))
    row_off = rows.row_offsets()
    records, chunks = [], []
    for k, (a, b) in enumerate(groups):
        n = b - a
        header = 4 + 4 * (n + 1)
        offsets = (header + np.concatenate([[0], np.cumsum(item[a:b])])).astype(np.uint32)
        name = f"chunk-{rank}-{k}.bin"
        rec = _write_file(root, f"{folder}/{name}", [np.uint32(n).tobytes() + offsets.tobytes(),
                                                     values[row_off[a]: row_off[b]]])
        records.append(rec)
        chunks.append({"chunk_bytes": rec.bytes, "chunk_size": n, "dim": int(row_off[b] - row_off[a]),
                       "filename": name})
    return records, chunks


def write_litdata_index(root: Path, folder: str, chunks: list[dict[str, Any]], vocab_size: int) -> FileRecord:
    obj = {"chunks": chunks, "config": _litdata_config(megatron_dtype(vocab_size))}
    return _write_file(root, f"{folder}/index.json", [json.dumps(obj, sort_keys=True).encode()])
