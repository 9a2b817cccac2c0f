"""SHA-1 of many short byte spans of one buffer, computed in C (DuckDB's `sha1`), not per call.

datasketch hashes every shingle with ``struct.unpack('<I', hashlib.sha1(s).digest()[:4])``. In
Python that is one `hashlib` call per shingle, about 0.5 us each: most of the time of a batch
signature. DuckDB's vectorised `sha1` is the same SHA-1 (tests compare it with `hashlib` on real
shingles) at about a third of the CPU time on one thread. Why DuckDB and not a hand-written
kernel: it is a maintained, widely deployed library whose hash is a stock SQL function, and it
reads Arrow binary-view arrays without a copy, so the overlapping shingle spans of the normalised
buffer are handed over as (offset, length) views -- the shingles are never materialised.

One DuckDB connection per thread, limited to one thread: a stage runs one task per CPU, and a
library that spawned its own thread pool inside it would oversubscribe the node.
"""
from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa

from processors.base import ProcessorError

_INLINE = 12  # Arrow binary-view: values up to 12 bytes are stored inside the view itself
_MAX_CHUNK = 1 << 20  # spans per DuckDB call: bounds the hex output (40 B per span)
_local = threading.local()

_HEX = np.zeros(256, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def require_duckdb() -> None:
    """Fail before any work when the hashing backend is missing."""
    try:
        import duckdb  # noqa: F401
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ProcessorError("minhash_dedup needs the `duckdb` package for batch SHA-1 (pip install duckdb)") from exc


def _connection():
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(":memory:")
        con.execute("SET threads = 1")
        _local.con = con
    return con


def binary_views(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """An Arrow `binary_view` array whose value i is ``buf[starts[i]:ends[i]]`` (no copy of the
    spans: long values point into `buf`, short ones are inlined as the format requires)."""
    n = len(starts)
    if len(buf) >= 2**31:
        raise ValueError("binary_views: buffer over 2 GiB (offsets are 32-bit); hash it in chunks")
    starts = np.asarray(starts, dtype=np.int64)
    lens = (np.asarray(ends, dtype=np.int64) - starts).astype(np.int32)
    views = np.zeros((n, 4), dtype=np.int32)  # length | prefix or inline bytes | buffer index | offset
    views[:, 0] = lens
    raw = views.view(np.uint8).reshape(n, 16)
    padded = np.concatenate((np.asarray(buf, dtype=np.uint8), np.zeros(16, np.uint8)))
    long_ = np.flatnonzero(lens > _INLINE)
    raw[long_, 4:8] = padded[starts[long_, None] + np.arange(4)]
    views[long_, 3] = starts[long_]  # buffer index 0 (already zero)
    short = np.flatnonzero(lens <= _INLINE)
    if short.size:
        inline = padded[starts[short, None] + np.arange(_INLINE)]
        inline[np.arange(_INLINE)[None, :] >= lens[short, None]] = 0  # the format wants zero padding
        raw[short, 4:16] = inline
    return pa.Array.from_buffers(pa.binary_view(), n, [None, pa.py_buffer(views), pa.py_buffer(buf)])


def _digest_prefix_le(hex_digests: pa.Array, nbytes: int) -> np.ndarray:
    """First `nbytes` (4 or 8) digest bytes as a little-endian unsigned integer, from lowercase
    hex SHA-1 digests."""
    if isinstance(hex_digests, pa.ChunkedArray):
        hex_digests = hex_digests.combine_chunks()
    hex_digests = hex_digests.cast(pa.string())
    n = len(hex_digests)
    offsets = np.frombuffer(hex_digests.buffers()[1], np.int32)[hex_digests.offset : hex_digests.offset + n + 1]
    if n and not np.all(np.diff(offsets) == 40):
        raise ProcessorError("unexpected SHA-1 output from DuckDB (not 40 hex digits each)")
    data = np.frombuffer(hex_digests.buffers()[2], np.uint8)[offsets[0] : offsets[0] + 40 * n].reshape(n, 40)
    nib = _HEX[data[:, : 2 * nbytes]]
    prefix = (nib[:, 0::2] << 4) | nib[:, 1::2]
    return np.ascontiguousarray(prefix).view(f"<u{nbytes}").reshape(n)


def sha1_first4(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``uint32 little-endian of sha1(buf[s:e]).digest()[:4]`` for every span (datasketch's
    `sha1_hash32`)."""
    return _sha1_prefix(buf, starts, ends, 4)


def sha1_first8(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``uint64 little-endian of sha1(buf[s:e]).digest()[:8]`` for every span: a 64-bit key that
    is the same on every machine and library version (decontamination and paragraph keys)."""
    return _sha1_prefix(buf, starts, ends, 8)


def _sha1_prefix(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, nbytes: int) -> np.ndarray:
    n = len(starts)
    out = np.empty(n, dtype=np.uint32 if nbytes == 4 else np.uint64)
    if n == 0:
        return out
    buf = np.frombuffer(buf, np.uint8) if isinstance(buf, (bytes, bytearray, memoryview)) else buf
    starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    con = _connection()
    for c in range(0, n, _MAX_CHUNK):
        s, e = starts[c : c + _MAX_CHUNK], ends[c : c + _MAX_CHUNK]
        lo, hi = int(s.min()), int(e.max())
        views = binary_views(buf[lo:hi], s - lo, e - lo)
        rel = con.from_arrow(pa.table({"s": views}))
        hexes = rel.select("sha1(s) AS h").to_arrow_table().column("h")
        out[c : c + len(s)] = _digest_prefix_le(hexes, nbytes)
    return out
