"""Cluster deduplication on Ray Data, generic over `processors.base.ClusterDedup`: identify, then remove.

Only what a phase needs moves; the documents themselves are read twice from their parts (for
signatures, and to remove duplicates) and once more, for linked documents only, to check pairs
exactly. Each document gets a positional node id, `uid = part index << 32 | row in part`, so
anything keyed by uid can be routed back to the one part it came from.

Phases, each committed under the work dir (`<work>/<phase>/_COMMITTED`, written last, holding
the phase's counters) and skipped on a rerun with the same parts and settings:

1. signatures  one task per input part: the processor's `annotate` on bounded batches; written
               out narrow: uid, `id`, the survivor-rule columns and the processor's own columns
               (band keys, one-byte fingerprints, length) -- no text, no shingle lists.
2. edges       bucket rows (bucket key, uid[, payload]) are hash-shuffled on the key; each
               partition links the rows sharing a key (a star to the bucket's smallest node, or,
               with verification, every row to the first `verify_anchors` rows that pass
               `verify`). With `exact_verification` the linked uids are routed to their parts,
               each part is re-read for its linked rows only, and `exact_payload` (e.g. shingle
               sets) is brought to the pairs (broadcast below `broadcast_rows`/`broadcast_bytes`,
               else two hash joins); the pairs passing `exact_verify` are the edges.
3. components  `curate.components.connected_components` over the edges (distributed rounds); the
               labels (node, component) are written routed by part.
4. survivors   each part's linked rows get their component (a per-part join with its label file),
               a shuffle on the component elects the first under `survivor_keys()` + `id` + uid,
               and (uid, cluster_id, keep) rows are written routed by part.
5. removal     each original part streams through a filter against its own survivors file (an
               anti-join partition by partition, as NeMo Curator removes duplicates): the rows it
               does not name are kept with their own `id` as cluster id. The caller writes the
               result (the runner per part, with a task marker per part).

Keyed clusters (a processor with `cluster_key`, e.g. exact dedup): rows with equal keys are the
cluster, so there are no edges or components. Two phases: signatures (uid, `id`, the key and the
survivor-rule columns, per part), then survivors: those narrow rows are hash-shuffled on the
key, each partition elects the first row of every key held by two or more documents, and the
(uid, cluster id, keep) rows of those documents are written routed by part. Removal is the same.

No task holds all ids, all edges or the corpus: map tasks hold one bounded batch, reducers one
hash partition, and a part's label and survivor files hold only that part's linked rows. The
driver holds file listings and summed counters only; the broadcast lookups are bounded by
`broadcast_rows` / `broadcast_bytes`, above which the same step runs as hash joins.

Counters travel in task outputs (a JSON record per task, or stat rows in the components' edge
data) and are summed once when the phase commits: a retried task replaces its output, so it is
never counted twice. Stats: drops {drop_reason: documents removed}; counters: docs, kept,
bucket_rows, shared_buckets (buckets with 2+ documents), candidate_pairs (sum over buckets of
k*(k-1)/2: a pair sharing b bands counts b times), pairs_verified / pairs_rejected (signature
check inside buckets), pairs_exact_checked / pairs_exact_rejected (exact check), linked_docs
(documents re-read for it), edges (distinct links into the components), rounds, clustered_docs
(documents with a link), clusters (components of 2+ documents), plus the processor's own
(docs_signed, shingles, no_shingles for MinHash).

Determinism: part order (the caller's listing), rows within a part and every tie-break are
fixed, so the same input and settings give the same clusters and cluster ids on any number of
CPUs or nodes, and a resumed run gives the same result as an uninterrupted one.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from curate.components import connected_components, unique_pairs
from curate.io import AtomicParquetWriter, commit, conform, is_committed, read_commit, read_json, reset_folder, write_json_atomic
from curate.stats import source_counts
from processors.base import ClusterDedup, ProcessorError

log = logging.getLogger("curate")

UID = "_cd_uid"
KEEP = "_cd_keep"
COMPONENT = "_cd_component"
PART = "_cd_part"
BUCKET = "_cd_bucket"
PAYLOAD = "_cd_payload"
XPAYLOAD = "_cd_xpayload"
ID = "id"
SOURCE_COUNT = "_source:"  # counter-name prefix of the documents in per `source`
ROW_BITS = 32  # uid = part index << ROW_BITS | row: 2^32 rows per part, 2^31 parts
PHASES = ("signatures", "edges", "components", "survivors")  # committed; removal is per part
KEYED_PHASES = ("signatures", "survivors")  # a `cluster_key` processor: no edges, no components
KEY_HASH = "_cd_khash"  # int64 hash of a cluster key: what the keyed survivors shuffle partitions on
MANIFEST = "_MANIFEST.json"
DEFAULT_BROADCAST_ROWS = 1_000_000
DEFAULT_BROADCAST_BYTES = 256 * 2**20  # exact-verification payloads broadcast below this size
SHUFFLE_BATCH_BYTES = 32 * 2**20  # input of one shuffle-map task (Ray's default: 1 GiB)
MAX_BLOCK_BYTES = 32 * 2**20  # blocks a task emits (Ray's default: 128 MiB)
_KW = {"batch_format": "pyarrow", "zero_copy_batch": True}
# Row-wise maps take bounded batches (Ray Data's default is a whole block): per-worker memory
# then depends on these sizes, not on the corpus. Reducers after a keyed repartition take whole
# partitions (batch_size=None), bounded by the partition count.
DOC_BATCH = 1024  # documents per annotate / exact-payload call (text, shingles, signatures)
WIDE_BATCH = 4096  # rows per call of maps that carry whole documents (removal)
ROW_BATCH = 16_384  # rows per call of maps over narrow rows (bucket rows, links)
_LINKS = pa.schema([("src", pa.int64()), ("dst", pa.int64())])
_LABELS = pa.schema([("node", pa.int64()), ("component", pa.int64())])
_SURVIVORS = pa.schema([(UID, pa.int64()), ("cluster_id", pa.string()), (KEEP, pa.bool_())])


@dataclass
class ClusterDedupResult:
    kept: ray.data.Dataset
    dropped: ray.data.Dataset | None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Identified:
    """What the committed phases found: the survivors files to remove duplicates with."""

    work_dir: Path
    parts: list[str]
    counters: dict[str, int]
    sources_in: dict[str, int]
    resumed_at: str | None  # first phase this call ran after reusing committed ones (None: none reused)
    keyed: bool = False  # the clusters are the processor's `cluster_key` values (no edges)

    @property
    def survivors_dir(self) -> Path:
        return self.work_dir / "survivors"

    def stats(self, drop_reason: str) -> dict[str, Any]:
        c = Counter(self.counters)
        n_dropped = int(c.pop("dropped", 0))
        c["kept"] = int(c.get("docs", 0)) - n_dropped
        zeros = ("clusters", "clustered_docs") if self.keyed else (
            "candidate_pairs", "edges", "clusters", "rounds", "clustered_docs")
        for k in zeros:
            c.setdefault(k, 0)
        return {"drops": {drop_reason: n_dropped}, "counters": dict(c), "sources_in": dict(self.sources_in)}


# -- driver --------------------------------------------------------------------------------------


def run_cluster_dedup(
    data: ray.data.Dataset | Sequence[str],
    processor: ClusterDedup,
    *,
    num_partitions: int,
    work_dir: str | Path | None = None,
    broadcast_rows: int = DEFAULT_BROADCAST_ROWS,
    max_rounds: int = 100,
    on_phase: Callable[[str], None] | None = None,
) -> tuple[ray.data.Dataset, dict[str, Any]]:
    """Remove near-duplicates: returns (surviving documents with `cluster_id`, stats).

    `data` is a list of Parquet parts (read where they lie) or a Ray Dataset (first written as
    parts into the work dir). stats = {"drops": {drop_reason: n}, "counters": {...},
    "dropped": Dataset | None}; "dropped" holds the removed documents (with the `cluster_id` of
    their survivor) when the processor asks for a side output -- pop it before writing JSON.
    """
    res = cluster_dedup(data, processor, num_partitions=num_partitions, work_dir=work_dir,
                        broadcast_rows=broadcast_rows, max_rounds=max_rounds, on_phase=on_phase)
    stats = dict(res.stats)
    stats["dropped"] = res.dropped
    return res.kept, stats


def cluster_dedup(
    data: ray.data.Dataset | Sequence[str],
    processor: ClusterDedup,
    *,
    num_partitions: int,
    work_dir: str | Path | None = None,
    broadcast_rows: int = DEFAULT_BROADCAST_ROWS,
    max_rounds: int = 100,
    keep_dropped: bool | None = None,
    broadcast_bytes: int = DEFAULT_BROADCAST_BYTES,
    on_phase: Callable[[str], None] | None = None,
) -> ClusterDedupResult:
    """Identify (committed phases under `work_dir`; a temporary folder when None), then a lazy
    removal over the parts. `on_phase(message)` is told when each phase ends."""
    if work_dir is None:
        work_dir = Path(tempfile.mkdtemp(prefix="curate-dedup-"))
        atexit.register(shutil.rmtree, work_dir, True)  # the lazy result reads parts from it
    work_dir = Path(work_dir)
    parts = list(data) if not isinstance(data, ray.data.Dataset) else write_input_parts(data, work_dir / "input")
    ident = identify(parts, processor, work_dir=work_dir, num_partitions=num_partitions,
                     broadcast_rows=broadcast_rows, broadcast_bytes=broadcast_bytes, max_rounds=max_rounds,
                     on_phase=on_phase)
    keep_dropped = processor.side_output if keep_dropped is None else keep_dropped
    listing = _listing(parts)
    assigned = listing.map_batches(
        _assign_parts, batch_size=1, fn_kwargs={"survivors": str(ident.survivors_dir), "cluster_col": processor.cluster_column},
        batch_format="pyarrow",
    )
    if keep_dropped:
        assigned = assigned.materialize()
    kept = assigned.map_batches(_select, batch_size=WIDE_BATCH, fn_kwargs={"keep": True}, **_KW)
    dropped = assigned.map_batches(_select, batch_size=WIDE_BATCH, fn_kwargs={"keep": False}, **_KW) if keep_dropped else None
    return ClusterDedupResult(kept, dropped, ident.stats(processor.drop_reason))


def identify(
    parts: Sequence[str],
    processor: ClusterDedup,
    *,
    work_dir: Path,
    num_partitions: int,
    broadcast_rows: int = DEFAULT_BROADCAST_ROWS,
    broadcast_bytes: int = DEFAULT_BROADCAST_BYTES,
    max_rounds: int = 100,
    on_phase: Callable[[str], None] | None = None,
    step_key: str | None = None,
    reader: PartReader | None = None,
    remote_args: dict[str, Any] | None = None,
) -> Identified:
    """Run (or reuse) the committed phases signatures, edges, components, survivors.
    `step_key` (the runner's fingerprint of the step) joins the work dir's key. `reader` reads
    the input parts (plain Parquet when None; the runner's applies row-wise stages fused before
    the step). `remote_args` (num_cpus, memory, concurrency: the step's resources) go to every
    map of every phase; the shuffles' own tasks take Ray Data's settings (it has no per-call
    arguments for them)."""
    if not isinstance(processor, ClusterDedup):
        raise TypeError(f"{type(processor).__name__} is not a ClusterDedup processor")
    parts = [str(p) for p in parts]
    if len(parts) >= 2 ** (63 - ROW_BITS):
        raise ProcessorError(f"{processor.kind}: {len(parts):,} parts; at most {2 ** (63 - ROW_BITS) - 1:,}")
    P = max(1, int(num_partitions))
    _bound_ray_data_blocks()
    processor.setup()  # driver-side: fail early (missing dependency) before any task starts
    work_dir = Path(work_dir)
    _check_manifest(work_dir, parts, processor, P, step_key)
    t0 = time.monotonic()

    def tell(msg: str) -> None:
        if on_phase is not None:
            on_phase(f"{msg} ({time.monotonic() - t0:,.1f} s)")

    surv_keys = list(processor.survivor_keys())
    surv_cols = [c for c, _ in surv_keys]
    keyed = processor.cluster_key is not None
    phases = KEYED_PHASES if keyed else PHASES
    committed = [p for p in phases if is_committed(work_dir / p)]
    first_todo = next((p for p in phases if p not in committed), None)
    resumed_at = None
    if committed:
        resumed_at = first_todo or "removal"
        msg = f"resuming at phase {resumed_at}: {', '.join(committed)} committed earlier, reused"
        log.info(msg)
        tell(msg)
    counters: Counter = Counter()
    ctx = {"parts": parts, "proc": processor, "work": work_dir, "P": P, "tell": tell, "surv_cols": surv_cols,
           "surv_keys": surv_keys, "broadcast_rows": broadcast_rows, "broadcast_bytes": broadcast_bytes,
           "max_rounds": max_rounds, "reader": reader or PartReader(), "ra": dict(remote_args or {})}
    steps = ((("signatures", _phase_signatures), ("survivors", _phase_key_survivors)) if keyed else
             (("signatures", _phase_signatures), ("edges", _phase_edges),
              ("components", _phase_components), ("survivors", _phase_survivors)))
    for name, fn in steps:
        d = work_dir / name
        if is_committed(d):
            got = read_commit(d)["counters"]
        else:
            reset_folder(d)
            d.mkdir(parents=True)
            got = dict(fn(d, ctx, counters))
            commit(d, {"counters": got, "phase": name})
        counters.update(got)
    sources_in = {k[len(SOURCE_COUNT):]: counters.pop(k) for k in list(counters) if k.startswith(SOURCE_COUNT)}
    return Identified(work_dir, parts, dict(counters), sources_in, resumed_at, keyed)


def _bound_ray_data_blocks() -> None:
    # Ray Data coalesces up to 1 GiB of blocks into one shuffle-map task and emits blocks up to
    # 128 MiB by default, so a worker's memory would grow with the corpus up to those sizes.
    ctx = ray.data.DataContext.get_current()
    ctx.shuffle_input_batch_bytes = min(ctx.shuffle_input_batch_bytes or SHUFFLE_BATCH_BYTES, SHUFFLE_BATCH_BYTES)
    ctx.target_max_block_size = min(ctx.target_max_block_size or MAX_BLOCK_BYTES, MAX_BLOCK_BYTES)


def _check_manifest(work: Path, parts: list[str], processor: ClusterDedup, P: int, step_key: str | None) -> None:
    """Committed phases are reused only for the same parts (paths, sizes, modification times),
    settings and partition count; anything else starts the work dir afresh."""
    listing = []
    for p in parts:
        try:
            st = Path(p).stat()
            listing.append([p, st.st_size, st.st_mtime_ns])
        except OSError:  # a remote part: its path stands for it
            listing.append([p, None, None])
    params = processor.params.model_dump(mode="json") if getattr(processor, "params", None) is not None else {}
    key = hashlib.sha1(json.dumps({"kind": processor.kind, "params": params, "parts": listing, "P": P,
                                   "step": step_key, "layout": 1}, sort_keys=True, default=str).encode()).hexdigest()
    manifest = work / MANIFEST
    if manifest.is_file() and read_json(manifest).get("key") == key:
        return
    for name in PHASES:  # (KEYED_PHASES are among them)
        reset_folder(work / name)
    write_json_atomic(manifest, {"key": key, "parts": len(parts)})


def _listing(parts: Sequence[str], indices: Sequence[int] | None = None) -> ray.data.Dataset:
    idx = list(range(len(parts))) if indices is None else list(indices)
    return ray.data.from_items([{"path": parts[i], PART: i} for i in idx], override_num_blocks=max(1, len(idx)))


def _sum_records(ds: ray.data.Dataset) -> Counter:
    """Counters of the task records, streamed: the driver keeps the sum, not the records."""
    total: Counter = Counter()
    for row in ds.iter_rows():
        total.update(json.loads(row["counters"]))
    return total


def _record(counts: dict[str, int]) -> pa.Table:
    return pa.table({"counters": [json.dumps({k: int(v) for k, v in counts.items() if v})]})


def _files(folder: Path, prefix: str) -> list[str]:
    return sorted(str(p) for p in folder.glob(f"{prefix}-*.parquet"))


def _part_of(path: str) -> int:
    return int(Path(path).stem.split("-", 1)[1])


def write_input_parts(ds: ray.data.Dataset, folder: Path) -> list[str]:
    """Write an in-memory dataset as Parquet parts named after their content (a rerun writes the
    same names); sorted names give a deterministic part order."""
    folder.mkdir(parents=True, exist_ok=True)
    for _ in ds.map_batches(_write_input_block, fn_kwargs={"folder": str(folder)}, batch_size=None, **_KW).iter_rows():
        pass
    parts = _files(folder, "in")
    if not parts:
        raise ProcessorError("near-dedup: no documents")
    return parts


def _write_input_block(block: pa.Table, folder: str) -> pa.Table:
    if block.num_rows:
        import xxhash

        h = xxhash.xxh3_64_hexdigest("\x00".join(map(str, block.column(ID).to_pylist())).encode())
        with AtomicParquetWriter(Path(folder) / f"in-{h}.parquet") as w:
            w.write(block)
    return pa.table({"n": [block.num_rows]})


class PartReader:
    """How the phases read an input part: here plain Parquet. The runner's reader applies the
    row-wise stages fused before the step (`curate.cluster_runner.FusedReader`); a reader must
    yield the same rows in the same order on every read, since a uid is a row's position in
    what it yields (signatures, the exact check's re-read and removal each read the part).

    `schema` (curate.ray_io.unified_schema of every input part): whole rows are read into it, so
    the parts a step writes, one per input part, share one schema (a code part has the crawl's
    columns as nulls) and read back as one dataset."""

    def __init__(self, schema: pa.Schema | None = None) -> None:
        self.unified = schema

    def names(self, path: str) -> list[str]:
        """The columns the reader yields for `path`."""
        return _open(path).schema_arrow.names

    def schema(self, path: str) -> pa.Schema:
        """The schema of a part that yields no rows."""
        return self.unified if self.unified is not None else _open(path).schema_arrow

    def batches(self, path: str, columns: list[str] | None, batch_rows: int,
                stats: dict | None = None) -> Iterator[pa.Table]:
        """The part's rows, `columns` only (None: all), in batches of at most `batch_rows`.
        `stats`: where a reader applying stages counts them (None: not counted)."""
        for rb in _open(path).iter_batches(batch_size=batch_rows, columns=columns):
            table = pa.Table.from_batches([rb])
            yield conform(table, self.unified) if columns is None and self.unified is not None else table

    def write_side(self, out_dir: Path, tid: str) -> None:
        """Rows the reader's own stages removed, for the removal task named `tid`: none here."""

    def discard_side(self) -> None:
        """Forget such rows after a failed attempt: none here."""


# -- phase 1: signatures -------------------------------------------------------------------------


def _phase_signatures(d: Path, ctx: dict, counters: Counter) -> Counter:
    proc = ctx["proc"]
    recs = _listing(ctx["parts"]).map_batches(
        _sign_parts, batch_size=1, fn_kwargs={"processor": proc, "out": str(d), "surv_cols": ctx["surv_cols"],
                                              "reader": ctx["reader"]},
        batch_format="pyarrow", **ctx["ra"],
    )
    got = _sum_records(recs)
    ctx["tell"](f"signatures of {got.get('docs', 0):,} documents")
    return got


def _sign_parts(listing: pa.Table, processor: ClusterDedup, out: str, surv_cols: list[str],
                reader: PartReader | None = None) -> pa.Table:
    processor.setup()
    reader = reader or PartReader()
    recs = []
    for path, idx in zip(listing.column("path").to_pylist(), listing.column(PART).to_pylist()):
        names = reader.names(path)
        own = set(processor.internal_columns())  # made by `annotate`, not read
        need = [c for c in [ID, *processor.requires, *surv_cols] if c not in own]
        missing = [c for c in need if c not in names]
        if missing:
            raise ProcessorError(f"{processor.kind}: {path} has no column {missing[0]!r}")
        read = list(dict.fromkeys(need + (["source"] if "source" in names else [])))
        counts: Counter = Counter()
        offset = 0
        with AtomicParquetWriter(Path(out) / f"p-{idx:010d}.parquet") as w:
            for batch in reader.batches(path, read, DOC_BATCH):
                res = processor.annotate(batch)
                n = batch.num_rows
                uid = (np.int64(idx) << np.int64(ROW_BITS)) + np.arange(offset, offset + n, dtype=np.int64)
                offset += n
                keep = [c for c in dict.fromkeys([*surv_cols, *processor.internal_columns()])
                        if c != ID and c in res.table.column_names]
                cols = {UID: pa.array(uid, pa.int64()), ID: batch.column(ID)}
                cols.update({c: res.table.column(c) for c in keep})
                w.write(pa.table(cols))
                counts.update({"docs": n, **res.counters})
                counts.update({SOURCE_COUNT + s: k for s, k in source_counts(batch).items()})
        recs.append(_record(counts))
    return pa.concat_tables(recs)


def _open(path: str) -> pq.ParquetFile:
    if "://" in path:
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        return pq.ParquetFile(filesystem.open_input_file(inner))
    return pq.ParquetFile(path)


# -- phase 2: edges ------------------------------------------------------------------------------


def _phase_edges(d: Path, ctx: dict, counters: Counter) -> Counter:
    from curate.ray_io import read_parquet_parts

    proc, P = ctx["proc"], ctx["P"]
    sig_files = _files(ctx["work"] / "signatures", "p")
    if not sig_files:
        return Counter()
    exact = proc.exact_verification
    cand_dir = d / "_candidates" if exact else d
    got = _sum_records(
        read_parquet_parts(sig_files, remote_args=ctx["ra"])
        .map_batches(_bucket_rows, batch_size=ROW_BATCH, fn_kwargs={"processor": proc}, **_KW, **ctx["ra"])
        .repartition(P, keys=[BUCKET])
        .map_batches(_bucket_links, batch_size=None,
                     fn_kwargs={"processor": proc, "anchors": int(proc.verify_anchors), "out": str(cand_dir),
                                "prefix": "c" if exact else "e"}, **_KW, **ctx["ra"])
    )
    if exact:
        got.update(_exact_check(d, cand_dir, ctx))
        shutil.rmtree(cand_dir, ignore_errors=True)
        shutil.rmtree(d / "_linked", ignore_errors=True)
    ctx["tell"](f"{got.get('candidate_pairs', 0):,} candidate pairs in {got.get('shared_buckets', 0):,} shared buckets")
    return got


def _bucket_rows(batch: pa.Table, processor: ClusterDedup) -> pa.Table:
    processor.setup()
    rows, keys = processor.buckets(batch)
    rows = np.asarray(rows, dtype=np.int64)
    uid = _np(batch.column(UID))
    cols = {BUCKET: pa.array(np.asarray(keys, dtype=np.uint64), pa.uint64()), UID: pa.array(uid[rows], pa.int64())}
    payload = processor.payload(batch)
    if payload is not None:
        cols[PAYLOAD] = payload.take(pa.array(rows))
    return pa.table(cols)


def _bucket_links(part: pa.Table, processor: ClusterDedup, anchors: int, out: str, prefix: str) -> pa.Table:
    """Links of one bucket partition, written (lo, hi, distinct) to a file named after the
    partition's buckets: a retried task rewrites the same file and returns the same record."""
    if part.num_rows == 0:
        return _record({})
    processor.setup()
    b = _np(part.column(BUCKET))
    u = _np(part.column(UID))
    order = np.lexsort((u, b))
    b, u = b[order], u[order]
    distinct = np.concatenate(([True], (b[1:] != b[:-1]) | (u[1:] != u[:-1])))
    order, b, u = order[distinct], b[distinct], u[distinct]
    starts = np.flatnonzero(np.concatenate(([True], b[1:] != b[:-1])))
    sizes = np.diff(np.concatenate((starts, [b.size])))
    multi = sizes > 1
    counts = {
        "bucket_rows": int(b.size),
        "shared_buckets": int(multi.sum()),
        "candidate_pairs": int((sizes[multi] * (sizes[multi] - 1) // 2).sum()),
    }
    if not multi.any():
        return _record(counts)
    group_start = np.repeat(starts, sizes)
    pos = np.arange(b.size) - group_start
    if PAYLOAD not in part.column_names:
        sel = pos > 0  # star of every bucket to its smallest node
        src, dst = u[sel], u[group_start[sel]]
    else:
        # each row against the first `anchors` rows of its bucket (all pairs in small buckets)
        na = np.minimum(pos, max(1, anchors))
        left = np.repeat(np.arange(b.size), na)
        right = np.repeat(group_start, na) + (np.arange(left.size) - np.repeat(np.cumsum(na) - na, na))
        payload = part.column(PAYLOAD).take(pa.array(order))
        if isinstance(payload, pa.ChunkedArray):
            payload = payload.combine_chunks()
        ok = np.asarray(processor.verify(payload.take(pa.array(left)), payload.take(pa.array(right))), dtype=bool)
        counts["pairs_verified"] = int(left.size)
        counts["pairs_rejected"] = int(left.size - ok.sum())
        src, dst = u[left[ok]], u[right[ok]]
    src, dst = unique_pairs(np.minimum(src, dst), np.maximum(src, dst))
    if src.size:
        import xxhash

        name = xxhash.xxh3_64_hexdigest(b[starts].tobytes())
        with AtomicParquetWriter(Path(out) / f"{prefix}-{name}.parquet") as w:
            w.write(pa.table({"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64())}, schema=_LINKS))
    return _record(counts)


def _exact_check(d: Path, cand_dir: Path, ctx: dict) -> Counter:
    """The candidate pairs' exact check: linked uids routed to their parts, each part re-read for
    its linked rows only, their `exact_payload` brought to the pairs."""
    from curate.ray_io import read_parquet_parts

    proc, P = ctx["proc"], ctx["P"]
    cand_files = sorted(str(p) for p in cand_dir.glob("c-*.parquet"))
    got: Counter = Counter()
    if not cand_files:
        return got
    linked_dir = d / "_linked"
    got.update(_sum_records(
        read_parquet_parts(cand_files, remote_args=ctx["ra"])
        .map_batches(_endpoints, batch_size=ROW_BATCH, **_KW, **ctx["ra"])
        .repartition(P, keys=[PART])
        .map_batches(_write_by_part, batch_size=None, fn_kwargs={"out": str(linked_dir), "prefix": "k", "key": UID,
                                                                 "counter": "linked_docs"}, **_KW, **ctx["ra"])
    ))
    linked_parts = [_part_of(f) for f in _files(linked_dir, "k")]
    xp_type = proc.exact_payload(pa.table({c: pa.array([], pa.string()) for c in [ID, *proc.requires]})).type
    pay_schema = pa.schema([(UID, pa.int64()), (XPAYLOAD, xp_type)])
    payloads = _listing(ctx["parts"], linked_parts).map_batches(
        _exact_payloads, batch_size=1, fn_kwargs={"processor": proc, "linked": str(linked_dir), "schema": pay_schema,
                                                  "reader": ctx["reader"]},
        batch_format="pyarrow", **ctx["ra"],
    ).materialize()
    cands = read_parquet_parts(cand_files, remote_args=ctx["ra"])
    if got.get("linked_docs", 0) <= ctx["broadcast_rows"] and payloads.size_bytes() <= ctx["broadcast_bytes"]:
        # few linked documents: their payloads go to every worker, one map checks the links
        table = _collect_sorted(payloads, UID, [XPAYLOAD], pay_schema)
        recs = cands.map_batches(_verify_broadcast, batch_size=ROW_BATCH,
                                 fn_kwargs={"payloads": [table], "processor": proc, "out": str(d)}, **_KW, **ctx["ra"])
    else:
        with_src = copartition(cands, payloads, left_key="src", right_key=UID, left_schema=_LINKS,
                               right_schema=pay_schema, num_partitions=P, fn=_attach_src, remote_args=ctx["ra"])
        src_schema = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("_cd_xa", xp_type)])
        recs = copartition(with_src, payloads, left_key="dst", right_key=UID, left_schema=src_schema,
                           right_schema=pay_schema, num_partitions=P, fn=_verify_dst,
                           fn_kwargs={"processor": proc, "out": str(d)}, remote_args=ctx["ra"])
    got.update(_sum_records(recs))
    return got


def _endpoints(links: pa.Table) -> pa.Table:
    u = np.concatenate((_np(links.column("src")), _np(links.column("dst"))))
    return pa.table({PART: pa.array(u >> ROW_BITS, pa.int64()), UID: pa.array(u, pa.int64())})


def _write_by_part(part: pa.Table, out: str, prefix: str, key: str, counter: str | None = None,
                   stats: Callable[[pa.Table], dict[str, int]] | None = None) -> pa.Table:
    """Rows routed by part (a hash partition on PART holds every row of its parts): one file per
    part, distinct and sorted by `key`, named after the part."""
    if part.num_rows == 0:
        return _record({})
    t = part.sort_by([(PART, "ascending"), (key, "ascending")])
    p = _np(t.column(PART))
    k = _np(t.column(key))
    first = np.concatenate(([True], (p[1:] != p[:-1]) | (k[1:] != k[:-1])))
    t = t.filter(pa.array(first))
    p = p[first]
    starts = np.flatnonzero(np.concatenate(([True], p[1:] != p[:-1])))
    ends = np.concatenate((starts[1:], [p.size]))
    counts: Counter = Counter()
    for s, e in zip(starts.tolist(), ends.tolist()):
        rows = t.slice(s, e - s).drop_columns([PART])
        with AtomicParquetWriter(Path(out) / f"{prefix}-{int(p[s]):010d}.parquet") as w:
            w.write(rows)
        if counter:
            counts[counter] += rows.num_rows
        if stats:
            counts.update(stats(rows))
    return _record(counts)


def _exact_payloads(listing: pa.Table, processor: ClusterDedup, linked: str, schema: pa.Schema,
                    reader: PartReader | None = None) -> Iterator[pa.Table]:
    """`exact_payload` of a part's linked rows only: the part is streamed, its other rows skipped."""
    processor.setup()
    reader = reader or PartReader()
    for path, idx in zip(listing.column("path").to_pylist(), listing.column(PART).to_pylist()):
        uids = _np(pq.read_table(Path(linked) / f"k-{idx:010d}.parquet").column(UID))
        rows = uids & np.int64((1 << ROW_BITS) - 1)
        offset = 0
        for rb in reader.batches(path, list(dict.fromkeys([ID, *processor.requires])), DOC_BATCH):
            n = rb.num_rows
            lo, hi = np.searchsorted(rows, [offset, offset + n])
            if hi > lo:
                batch = rb.take(pa.array(rows[lo:hi] - offset))
                yield pa.table({UID: pa.array(uids[lo:hi], pa.int64()), XPAYLOAD: processor.exact_payload(batch)},
                               schema=schema)
            offset += n
    yield schema.empty_table()


def _write_edges(src: np.ndarray, dst: np.ndarray, out: str) -> None:
    if src.size:
        import xxhash

        name = xxhash.xxh3_64_hexdigest(src.tobytes() + dst.tobytes())
        with AtomicParquetWriter(Path(out) / f"e-{name}.parquet") as w:
            w.write(pa.table({"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64())}, schema=_LINKS))


def _verify_broadcast(links: pa.Table, payloads: list, processor: ClusterDedup, out: str) -> pa.Table:
    src, dst = unique_pairs(_np(links.column("src")), _np(links.column("dst")))
    if src.size == 0:
        return _record({})
    processor.setup()
    p = ray.get(payloads[0])
    uids = _np(p.column(UID))
    ia, _ = _lookup(uids, src)
    ib, _ = _lookup(uids, dst)
    col = p.column(XPAYLOAD).combine_chunks()
    ok = np.asarray(processor.exact_verify(col.take(pa.array(ia)), col.take(pa.array(ib))), dtype=bool)
    _write_edges(src[ok], dst[ok], out)
    return _record({"pairs_exact_checked": int(ok.size), "pairs_exact_rejected": int(ok.size - ok.sum())})


def _attach_src(links: pa.Table, payloads: pa.Table) -> pa.Table:
    src, dst = unique_pairs(_np(links.column("src")), _np(links.column("dst")))
    xtype = payloads.schema.field(XPAYLOAD).type
    if src.size == 0 or payloads.num_rows == 0:  # (a link's payload is always in its partition)
        return pa.table({"src": pa.array([], pa.int64()), "dst": pa.array([], pa.int64()), "_cd_xa": pa.array([], xtype)})
    p = payloads.sort_by(UID)
    idx, _ = _lookup(_np(p.column(UID)), src)
    return pa.table({"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64()),
                     "_cd_xa": p.column(XPAYLOAD).take(pa.array(idx))})


def _verify_dst(links: pa.Table, payloads: pa.Table, processor: ClusterDedup, out: str) -> pa.Table:
    if links.num_rows == 0:
        return _record({})
    processor.setup()
    links = links.sort_by([("src", "ascending"), ("dst", "ascending")])
    p = payloads.sort_by(UID)
    idx, _ = _lookup(_np(p.column(UID)), _np(links.column("dst")))
    xb = p.column(XPAYLOAD).take(pa.array(idx))
    ok = np.asarray(processor.exact_verify(links.column("_cd_xa"), xb), dtype=bool)
    _write_edges(_np(links.column("src"))[ok], _np(links.column("dst"))[ok], out)
    return _record({"pairs_exact_checked": int(ok.size), "pairs_exact_rejected": int(ok.size - ok.sum())})


# -- phase 3: components -------------------------------------------------------------------------


def _phase_components(d: Path, ctx: dict, counters: Counter) -> Counter:
    from curate.ray_io import read_parquet_parts

    edge_files = _files(ctx["work"] / "edges", "e")
    tell = ctx["tell"]
    if not edge_files:
        tell("0 edges between 0 documents, 0 rounds")
        return Counter(edges=0, rounds=0, clustered_docs=0)
    labels, cc = connected_components(
        read_parquet_parts(edge_files, remote_args=ctx["ra"]), num_partitions=ctx["P"], src="src", dst="dst", max_rounds=ctx["max_rounds"],
        materialize=False, on_round=lambda r, changed: tell(f"components round {r}: {changed:,} edges changed"),
        remote_args=ctx["ra"],
    )
    _sum_records(
        labels.map_batches(_label_parts, batch_size=ROW_BATCH, **_KW, **ctx["ra"])
        .repartition(ctx["P"], keys=[PART])
        .map_batches(_write_by_part, batch_size=None, fn_kwargs={"out": str(d), "prefix": "l", "key": "node"},
                     **_KW, **ctx["ra"])
    )
    tell(f"{cc['edges']:,} edges between {cc['nodes']:,} documents, {cc['rounds']} rounds")
    return Counter(edges=cc["edges"], rounds=cc["rounds"], clustered_docs=cc["nodes"])


def _label_parts(labels: pa.Table) -> pa.Table:
    return labels.append_column(PART, pa.array(_np(labels.column("node")) >> ROW_BITS, pa.int64()))


# -- phase 4: survivors --------------------------------------------------------------------------


def _phase_survivors(d: Path, ctx: dict, counters: Counter) -> Counter:
    work, P = ctx["work"], ctx["P"]
    label_parts = [_part_of(f) for f in _files(work / "components", "l")]
    got: Counter = Counter()
    if label_parts:
        listing = ray.data.from_items(
            [{"sig": str(work / "signatures" / f"p-{i:010d}.parquet"), "labels": str(work / "components" / f"l-{i:010d}.parquet")}
             for i in label_parts], override_num_blocks=len(label_parts))
        keys = list(ctx["surv_keys"]) + [(ID, "ascending"), (UID, "ascending")]
        got = _sum_records(
            listing.map_batches(_members, batch_size=1, fn_kwargs={"columns": list(dict.fromkeys([UID, ID, *ctx["surv_cols"]]))},
                                batch_format="pyarrow", **ctx["ra"])
            .repartition(P, keys=[COMPONENT])
            .map_batches(_elect, batch_size=None, fn_kwargs={"keys": keys}, **_KW, **ctx["ra"])
            .repartition(P, keys=[PART])
            .map_batches(_write_by_part, batch_size=None,
                         fn_kwargs={"out": str(d), "prefix": "s", "key": UID, "stats": _survivor_counts},
                         **_KW, **ctx["ra"])
        )
    ctx["tell"]("survivors elected")
    return Counter(clusters=got.get("clusters", 0), dropped=got.get("dropped", 0))


def _members(listing: pa.Table, columns: list[str]) -> Iterator[pa.Table]:
    """A part's linked rows with their component: a per-part join with the part's labels."""
    for sig, lab in zip(listing.column("sig").to_pylist(), listing.column("labels").to_pylist()):
        labels = pq.read_table(lab)
        nodes, comps = _np(labels.column("node")), _np(labels.column("component"))
        for rb in pq.ParquetFile(sig).iter_batches(batch_size=ROW_BATCH, columns=columns):
            t = pa.Table.from_batches([rb])
            idx, hit = _lookup(nodes, _np(t.column(UID)))
            rows = np.flatnonzero(hit)
            if rows.size:
                yield t.take(pa.array(rows)).append_column(COMPONENT, pa.array(comps[idx[rows]], pa.int64()))


def _elect(part: pa.Table, keys: list[tuple[str, str]], group: str = COMPONENT,
           singletons: bool = True) -> pa.Table:
    """One row per member of each `group` value: (uid, cluster id = the survivor's id, keep),
    routed by part. Without `singletons`, groups of one row emit nothing (a document no
    survivors file names is kept as it is)."""
    if part.num_rows == 0:
        return pa.schema([(PART, pa.int64()), *_SURVIVORS]).empty_table()
    t = part.sort_by([(group, "ascending")] + [(c, o) for c, o in keys])
    n = t.num_rows
    uid = _np(t.column(UID))
    g = t.column(group).combine_chunks()
    first = np.ones(n, dtype=bool)
    if n > 1:  # (compared in Arrow: a keyed group's value may be a 128-bit binary)
        first[1:] = np.asarray(pc.not_equal(g.slice(1), g.slice(0, n - 1)).to_numpy(zero_copy_only=False), dtype=bool)
    starts = np.flatnonzero(first)
    sizes = np.diff(np.concatenate((starts, [n])))
    surv = np.repeat(starts, sizes)
    ids = t.column(ID).combine_chunks().cast(pa.string())
    out = pa.table({PART: pa.array(uid >> ROW_BITS, pa.int64()), UID: pa.array(uid, pa.int64()),
                    "cluster_id": ids.take(pa.array(surv)), KEEP: pa.array(first)})
    return out if singletons else out.filter(pa.array(np.repeat(sizes > 1, sizes)))


def _survivor_counts(rows: pa.Table) -> dict[str, int]:
    keep = _np(rows.column(KEEP)).astype(bool)
    return {"clusters": int(keep.sum()), "dropped": int((~keep).sum()), "clustered_docs": int(keep.size)}


# -- phase 4, keyed: survivors per key -----------------------------------------------------------


def _phase_key_survivors(d: Path, ctx: dict, counters: Counter) -> Counter:
    """Keyed clusters: the signatures' narrow rows (uid, `id`, key, survivor-rule columns) are
    hash-shuffled on the key; each partition elects the first row of every key held by two or
    more documents, and those documents' (uid, cluster id, keep) rows are written routed by
    part. A key held once writes nothing: removal keeps every row its part's file does not name."""
    from curate.ray_io import read_parquet_parts

    proc, P = ctx["proc"], ctx["P"]
    sig_files = _files(ctx["work"] / "signatures", "p")
    got: Counter = Counter()
    if sig_files:
        key = proc.cluster_key
        keys = list(ctx["surv_keys"]) + [(ID, "ascending"), (UID, "ascending")]
        columns = list(dict.fromkeys([UID, ID, key, *ctx["surv_cols"]]))
        got = _sum_records(
            read_parquet_parts(sig_files, columns=columns, remote_args=ctx["ra"])
            .map_batches(_with_key_hash, batch_size=ROW_BATCH, fn_kwargs={"key": key}, **_KW, **ctx["ra"])
            .repartition(P, keys=[KEY_HASH])
            .map_batches(_elect, batch_size=None, fn_kwargs={"keys": keys, "group": key, "singletons": False},
                         **_KW, **ctx["ra"])
            .repartition(P, keys=[PART])
            .map_batches(_write_by_part, batch_size=None,
                         fn_kwargs={"out": str(d), "prefix": "s", "key": UID, "stats": _survivor_counts},
                         **_KW, **ctx["ra"])
        )
    ctx["tell"](f"survivors elected: {got.get('clusters', 0):,} keys held by {got.get('clustered_docs', 0):,} "
                f"documents, {got.get('dropped', 0):,} to remove")
    return Counter(clusters=got.get("clusters", 0), dropped=got.get("dropped", 0),
                   clustered_docs=got.get("clustered_docs", 0))


def _with_key_hash(batch: pa.Table, key: str) -> pa.Table:
    return batch.append_column(KEY_HASH, pa.array(key_hash(batch.column(key)), pa.int64()))


def key_hash(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An int64 per value, equal for equal values, spread for the shuffle: a digest's first 8
    bytes (a fixed-size binary of 8+ bytes is taken to be a hash already), an integer as it is,
    anything else by xxh3_64 of its bytes. Equal hashes meet; `_elect` groups on the value."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    if pa.types.is_fixed_size_binary(col.type) and col.type.byte_width >= 8 and col.null_count == 0:
        w = col.type.byte_width
        data = np.frombuffer(col.buffers()[1], dtype=np.uint8)[col.offset * w:(col.offset + n) * w]
        return data.reshape(n, w)[:, :8].copy().view(np.int64).ravel()
    if pa.types.is_integer(col.type) and col.null_count == 0:
        return col.to_numpy().astype(np.int64)
    import xxhash

    vals = col.to_pylist()
    return np.fromiter((xxhash.xxh3_64_intdigest(v if isinstance(v, bytes) else repr(v).encode()) for v in vals),
                       dtype=np.uint64, count=n).view(np.int64)


# -- phase 5: removal ----------------------------------------------------------------------------


def assign_part(path: str, idx: int, survivors_dir: str | Path, cluster_col: str | None,
                batch_rows: int = WIDE_BATCH, reader: PartReader | None = None,
                stats: dict | None = None) -> Iterator[pa.Table]:
    """Stream part `idx` with `cluster_col` (the survivor's id; its own id for a document linked
    to nothing; no such column when None) and KEEP, filtered against this part's survivors file
    only. `reader` and `stats`: see `PartReader` (the same reader as the phases', so uids match)."""
    reader = reader or PartReader()
    sfile = Path(survivors_dir) / f"s-{idx:010d}.parquet"
    if sfile.is_file():
        s = pq.read_table(sfile)
        s_uid, s_cid, s_keep = _np(s.column(UID)), s.column("cluster_id").combine_chunks(), _np(s.column(KEEP)).astype(bool)
    else:
        s_uid, s_cid, s_keep = np.zeros(0, np.int64), pa.array([], pa.string()), np.zeros(0, bool)
    offset = 0
    emitted = False
    for t in reader.batches(path, None, batch_rows, stats):
        n = t.num_rows
        uid = (np.int64(idx) << np.int64(ROW_BITS)) + np.arange(offset, offset + n, dtype=np.int64)
        offset += n
        ix, hit = _lookup(s_uid, uid)
        keep = np.where(hit, s_keep[ix], True) if hit.any() else np.ones(n, bool)
        t = t.drop_columns([c for c in (cluster_col, KEEP) if c in t.column_names])
        if cluster_col is not None:
            own = t.column(ID).combine_chunks().cast(pa.string())
            t = t.append_column(cluster_col, pc.if_else(pa.array(hit), s_cid.take(pa.array(ix)), own)
                                if hit.any() else own)
        emitted = True
        yield t.append_column(KEEP, pa.array(keep, pa.bool_()))
    if not emitted:
        schema = reader.schema(path)
        schema = pa.schema([f for f in schema if f.name not in (cluster_col, KEEP)])
        empty = schema.empty_table()
        if cluster_col is not None:
            empty = empty.append_column(cluster_col, pa.array([], pa.string()))
        yield empty.append_column(KEEP, pa.array([], pa.bool_()))


def _assign_parts(listing: pa.Table, survivors: str, cluster_col: str | None) -> Iterator[pa.Table]:
    for path, idx in zip(listing.column("path").to_pylist(), listing.column(PART).to_pylist()):
        yield from assign_part(path, idx, survivors, cluster_col)


def _select(batch: pa.Table, keep: bool) -> pa.Table:
    mask = batch.column(KEEP)
    if not keep:
        mask = pc.invert(mask)
    return batch.filter(mask).drop_columns([KEEP])


# -- helpers -------------------------------------------------------------------------------------


def node_ids(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hash of every document id (xxh3_64 of its UTF-8 bytes, as int64)."""
    import xxhash

    h = xxhash.xxh3_64_intdigest
    vals = ids.to_pylist()
    if any(v is None for v in vals):
        raise ProcessorError("documents without an id cannot be deduplicated")
    return np.fromiter((h(v.encode("utf-8")) for v in vals), dtype=np.uint64, count=len(vals)).view(np.int64)


def _lookup(keys_sorted: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into keys_sorted, hit mask) for each query value."""
    if keys_sorted.size == 0:
        return np.zeros(query.size, np.int64), np.zeros(query.size, bool)
    idx = np.searchsorted(keys_sorted, query)
    idx = np.minimum(idx, keys_sorted.size - 1)
    return idx, keys_sorted[idx] == query


def _np(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col.to_numpy(zero_copy_only=False)


def _collect_sorted(ds: ray.data.Dataset, key: str, columns: list[str], schema: pa.Schema) -> ray.ObjectRef:
    """A small dataset, sorted by `key`, as one table in the object store for broadcast lookups
    (bounded by the caller's broadcast limits). `schema` types the lookup of a dataset without blocks.

    A Ray task gathers and sorts the blocks, not the driver: the driver passes their references on
    and never holds the payloads (up to `broadcast_bytes`, 256 MiB by default), so its memory does
    not grow with the corpus. No CPU is reserved for it, as none was when the driver did this work:
    it must not queue behind the run's own tasks for a slot."""
    return _sorted_table.options(num_cpus=0).remote(key, columns, schema, *ds.to_arrow_refs())


@ray.remote
def _sorted_table(key: str, columns: list[str], schema: pa.Schema, *tables: pa.Table) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    if tables:
        return pa.concat_tables(tables).select([key] + columns).sort_by(key)
    return schema.empty_table().select([key] + columns)


def copartition(
    left: ray.data.Dataset,
    right: ray.data.Dataset,
    *,
    left_key: str,
    right_key: str,
    left_schema: pa.Schema,
    right_schema: pa.Schema,
    num_partitions: int,
    fn: Callable[..., pa.Table],
    fn_kwargs: dict[str, Any] | None = None,
    remote_args: dict[str, Any] | None = None,
) -> ray.data.Dataset:
    """Hash join by co-partitioning: rows of both datasets with equal (int64) keys meet in one
    partition, where `fn(left_rows, right_rows, **fn_kwargs)` runs. Built from union + keyed
    repartition, so it needs no join backend; the two sides travel in one padded schema."""
    fields = [pa.field("_cp_side", pa.int8()), pa.field("_cp_key", pa.int64())]
    fields += [pa.field("l." + f.name, f.type) for f in left_schema]
    fields += [pa.field("r." + f.name, f.type) for f in right_schema]
    unified = pa.schema(fields)
    ra = dict(remote_args or {})
    tag = dict(batch_size=WIDE_BATCH, **_KW, **ra)
    lt = left.map_batches(_tag, fn_kwargs={"side": 0, "key": left_key, "prefix": "l.", "schema": unified}, **tag)
    rt = right.map_batches(_tag, fn_kwargs={"side": 1, "key": right_key, "prefix": "r.", "schema": unified}, **tag)
    return (
        lt.union(rt)
        .repartition(max(1, num_partitions), keys=["_cp_key"])
        .map_batches(
            _untag,
            batch_size=None,
            fn_kwargs={"fn": fn, "fn_kwargs": fn_kwargs or {}, "left_schema": left_schema, "right_schema": right_schema},
            **_KW, **ra,
        )
    )


def _tag(batch: pa.Table, side: int, key: str, prefix: str, schema: pa.Schema) -> pa.Table:
    n = batch.num_rows
    arrays = [pa.array(np.full(n, side, np.int8)), batch.column(key).cast(pa.int64())]
    for f in list(schema)[2:]:
        if f.name.startswith(prefix):
            arrays.append(batch.column(f.name[len(prefix) :]).cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _untag(part: pa.Table, fn: Callable, fn_kwargs: dict, left_schema: pa.Schema, right_schema: pa.Schema) -> pa.Table:
    side = _np(part.column("_cp_side"))
    sides = []
    for s, prefix, sch in ((0, "l.", left_schema), (1, "r.", right_schema)):
        rows = part.filter(pa.array(side == s)).select([prefix + f.name for f in sch])
        rows = rows.rename_columns([f.name for f in sch])
        sides.append(rows.cast(sch))
    return fn(sides[0], sides[1], **fn_kwargs)
