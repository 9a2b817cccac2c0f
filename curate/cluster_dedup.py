"""Cluster deduplication on Ray Data, generic over `processors.base.ClusterDedup`.

Stages (the processor supplies the per-batch pieces, this module the distributed plumbing):

1. annotate   map over the documents: the processor adds its columns (signatures, ranks), the
              engine a 64-bit node id per document (xxh3_64 of `id`). Materialized once: every
              later stage reads it and the input pipeline is not run twice.
2. buckets    map: (bucket key, node id[, payload]) rows; hash shuffle on the bucket key; each
              partition links the rows that share a key -- a star to the bucket's smallest node,
              or, when the processor verifies, every row to the first `verify_anchors` rows of
              its bucket that pass `verify`.
   verify     (processors with `exact_verification`) the links that passed `verify` are checked
              again on `exact_payload` values (e.g. whole shingle sets): the payloads of the
              linked documents are broadcast when they fit in `broadcast_bytes`, else brought to
              each link by two hash joins.
3. clusters   `curate.components.connected_components` over the links (distributed rounds).
4. survivors  the nodes' survivor keys are attached to their component (a hash join, or a
              broadcast lookup when the graph is small), then a shuffle on the component elects
              the first node under `survivor_keys()` + `id`: one (node, cluster_id, keep) row per
              node in a cluster.
5. assign     documents get `cluster_id` (the survivor's `id`; a document linked to nothing is its
              own cluster) and are split into kept and dropped (hash join, or broadcast lookup).

No stage collects documents, bucket rows or links in one process. The broadcast lookups collect
node ids (or exact payloads) of the *linked* documents only, and only below `broadcast_rows`
(`broadcast_bytes`): bounds, not sizes that grow with the corpus; above them the same stages run
as hash joins.

Stats: drops {drop_reason: documents removed}; counters: docs, kept, bucket_rows, shared_buckets
(buckets with 2+ documents), candidate_pairs (sum over buckets of k*(k-1)/2: a pair sharing b
bands counts b times), pairs_verified / pairs_rejected (signature check inside buckets),
pairs_exact_checked / pairs_exact_rejected (exact check; a pair linked in several bands can be
checked more than once on the broadcast path), edges (distinct links into the components),
rounds, clustered_docs (documents with a link), clusters (components of 2+ documents),
uid_collisions, plus the processor's own (docs_signed, shingles, no_shingles for MinHash).

Node ids are 64-bit hashes of the document ids: two distinct ids collide with probability
n^2 / 2^65 (1e-4 for 10^8 documents). A collision is detected where it could matter -- two
documents of one node inside a cluster -- and those documents are then always kept, their own
cluster, and counted as `uid_collisions`.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from curate.components import RunStats, connected_components, report
from curate.stats import source_counts
from processors.base import ClusterDedup, ProcessorError

UID = "_cd_uid"
KEEP = "_cd_keep"
COMPONENT = "_cd_component"
# What the components step labels (node -> component) and the survivor election writes.
_LABELS_SCHEMA = pa.schema([("node", pa.int64()), ("component", pa.int64())])
_ASSIGN_SCHEMA = pa.schema([(UID, pa.int64()), ("cluster_id", pa.string()), (KEEP, pa.bool_())])
BUCKET = "_cd_bucket"
PAYLOAD = "_cd_payload"
ID = "id"
SOURCE_COUNT = "_source:"  # counter-name prefix of the documents in per `source`
DEFAULT_BROADCAST_ROWS = 1_000_000
DEFAULT_BROADCAST_BYTES = 256 * 2**20  # exact-verification payloads broadcast below this size
SHUFFLE_BATCH_BYTES = 32 * 2**20  # input of one shuffle-map task (Ray's default: 1 GiB)
MAX_BLOCK_BYTES = 32 * 2**20  # blocks a task emits (Ray's default: 128 MiB)
_KW = {"batch_format": "pyarrow", "zero_copy_batch": True}
# Row-wise maps take bounded batches (Ray Data's default is a whole block, which can be a whole
# input file): per-worker memory then depends on these sizes, not on the corpus. Reducers after
# a keyed repartition take whole partitions (batch_size=None), bounded by the partition count.
DOC_BATCH = 1024  # documents per annotate / exact-payload call (text, shingles, signatures)
WIDE_BATCH = 4096  # rows per call of maps that carry whole documents (joins, assignment)
ROW_BATCH = 16_384  # rows per call of maps over narrow rows (bucket rows, links)


@dataclass
class ClusterDedupResult:
    kept: ray.data.Dataset
    dropped: ray.data.Dataset | None
    stats: dict[str, Any] = field(default_factory=dict)


def run_cluster_dedup(
    ds: ray.data.Dataset,
    processor: ClusterDedup,
    *,
    num_partitions: int,
    broadcast_rows: int = DEFAULT_BROADCAST_ROWS,
    max_rounds: int = 100,
    on_phase: Callable[[str], None] | None = None,
) -> tuple[ray.data.Dataset, dict[str, Any]]:
    """Remove near-duplicates: returns (surviving documents with `cluster_id`, stats).

    stats = {"drops": {drop_reason: n}, "counters": {...}, "dropped": Dataset | None}; "dropped"
    holds the removed documents (with the `cluster_id` of their survivor) when the processor asks
    for a side output, else None -- pop it before writing the stats as JSON.
    """
    res = cluster_dedup(
        ds, processor, num_partitions=num_partitions, broadcast_rows=broadcast_rows, max_rounds=max_rounds,
        on_phase=on_phase,
    )
    stats = dict(res.stats)
    stats["dropped"] = res.dropped
    return res.kept, stats


def cluster_dedup(
    ds: ray.data.Dataset,
    processor: ClusterDedup,
    *,
    num_partitions: int,
    broadcast_rows: int = DEFAULT_BROADCAST_ROWS,
    max_rounds: int = 100,
    keep_dropped: bool | None = None,
    shuffle_batch_bytes: int | None = SHUFFLE_BATCH_BYTES,
    broadcast_bytes: int = DEFAULT_BROADCAST_BYTES,
    on_phase: Callable[[str], None] | None = None,
) -> ClusterDedupResult:
    """`on_phase(message)` is told when each phase ends (a long dedup shows where it is)."""
    if not isinstance(processor, ClusterDedup):
        raise TypeError(f"{type(processor).__name__} is not a ClusterDedup processor")
    P = max(1, int(num_partitions))
    if shuffle_batch_bytes:
        # Ray Data coalesces up to 1 GiB of blocks into one shuffle-map task by default, so the
        # memory of a worker would grow with the corpus up to that size. The context is shared
        # by this dataset's lineage (every dataset derived here), not by the rest of the driver.
        ctx = ds.context
        ctx.shuffle_input_batch_bytes = min(ctx.shuffle_input_batch_bytes or shuffle_batch_bytes, shuffle_batch_bytes)
        ctx.target_max_block_size = min(ctx.target_max_block_size or MAX_BLOCK_BYTES, MAX_BLOCK_BYTES)
    keep_dropped = processor.side_output if keep_dropped is None else keep_dropped
    processor.setup()  # driver-side: fail early, and ship computed state (e.g. LSH layout) to workers
    run = RunStats()
    sink = run.handle
    t0 = time.monotonic()

    def phase(msg: str) -> None:
        if on_phase is not None:
            on_phase(f"{msg} ({time.monotonic() - t0:,.1f} s)")

    try:
        # 1. annotate
        docs = ds.map_batches(
            _annotate, batch_size=DOC_BATCH, fn_kwargs={"processor": processor, "sink": sink}, **_KW
        ).materialize()
        n_docs = docs.count()
        phase(f"signatures of {n_docs:,} documents")
        schema = docs.schema().base_schema if n_docs else None
        if schema is None:
            return _empty_result(docs, processor, Counter(run.get()))
        surv_keys = list(processor.survivor_keys()) + [(ID, "ascending")]
        missing = [c for c, _ in surv_keys if c not in schema.names]
        if missing:
            raise ProcessorError(f"{processor.kind}: survivor columns {missing} are not in the data")

        # 2. buckets -> links
        links = (
            docs.map_batches(_bucket_rows, batch_size=ROW_BATCH, fn_kwargs={"processor": processor}, **_KW)
            .repartition(P, keys=[BUCKET])
            .map_batches(
                _bucket_links,
                batch_size=None,
                fn_kwargs={"processor": processor, "sink": sink, "anchors": int(processor.verify_anchors)},
                **_KW,
            )
        )

        if processor.exact_verification:
            links = _exact_verify_links(links, docs, schema, processor, sink, P, broadcast_rows, broadcast_bytes)

        # 3. clusters
        labels, cc = connected_components(
            links, num_partitions=P, src="src", dst="dst", max_rounds=max_rounds, materialize=False,
            on_round=lambda r, changed: phase(f"components round {r}: {changed:,} edges changed"),
        )
        phase(f"{cc['edges']:,} edges between {cc['nodes']:,} documents, {cc['rounds']} rounds")

        # 4. survivors
        rank_cols = [UID] + [c for c, _ in surv_keys]
        rank_cols = list(dict.fromkeys(rank_cols))
        n_nodes = cc["nodes"]
        if n_nodes <= broadcast_rows:
            lookup = _collect_sorted(labels, "node", ["component"], _LABELS_SCHEMA)
            members = docs.map_batches(
                _attach_broadcast,
                batch_size=ROW_BATCH, fn_kwargs={"lookup": [lookup], "columns": rank_cols}, **_KW
            )
        else:
            members = copartition(
                docs.select_columns(rank_cols),
                labels,
                left_key=UID,
                right_key="node",
                left_schema=pa.schema([schema.field(c) for c in rank_cols]),
                right_schema=labels.schema().base_schema,
                num_partitions=P,
                fn=_attach_joined,
            )
        assignment = (
            members.repartition(P, keys=[COMPONENT])
            .map_batches(_elect, batch_size=None, fn_kwargs={"keys": surv_keys, "sink": sink}, **_KW)
            .materialize()
        )
        phase("survivors elected")
        del labels, members

        # 5. assign
        n_assign = assignment.count()
        drop_cols = [c for c in processor.internal_columns() if c in schema.names] + [UID]
        cluster_col = processor.cluster_column
        if n_assign <= broadcast_rows:
            lookup = _collect_sorted(assignment, UID, ["cluster_id", KEEP], _ASSIGN_SCHEMA)
            assigned = docs.map_batches(
                _assign_broadcast,
                batch_size=WIDE_BATCH,
                fn_kwargs={"lookup": [lookup], "drop": drop_cols, "cluster_col": cluster_col},
                **_KW,
            )
        else:
            assigned = copartition(
                docs,
                assignment,
                left_key=UID,
                right_key=UID,
                left_schema=schema,
                right_schema=assignment.schema().base_schema,
                num_partitions=P,
                fn=_assign_joined,
                fn_kwargs={"drop": drop_cols, "cluster_col": cluster_col},
            )
        if keep_dropped:
            assigned = assigned.materialize()
        kept = assigned.map_batches(_select, batch_size=WIDE_BATCH, fn_kwargs={"keep": True}, **_KW)
        dropped = (
            assigned.map_batches(_select, batch_size=WIDE_BATCH, fn_kwargs={"keep": False}, **_KW) if keep_dropped else None
        )

        counters = Counter(run.get())
        sources_in = {k[len(SOURCE_COUNT):]: counters.pop(k) for k in list(counters) if k.startswith(SOURCE_COUNT)}
        counters.update({"edges": cc["edges"], "rounds": cc["rounds"], "clustered_docs": cc["nodes"]})
        n_dropped = int(counters.pop("dropped", 0))
        counters["clusters"] = int(counters.get("clusters", 0))
        counters["kept"] = int(counters.get("docs", 0)) - n_dropped
        counters.setdefault("candidate_pairs", 0)
        stats = {"drops": {processor.drop_reason: n_dropped}, "counters": dict(counters), "sources_in": sources_in}
        return ClusterDedupResult(kept, dropped, stats)
    finally:
        run.close()


def _empty_result(docs: ray.data.Dataset, processor: ClusterDedup, counters: Counter) -> ClusterDedupResult:
    counters.update({"candidate_pairs": 0, "edges": 0, "clusters": 0, "rounds": 0, "kept": 0})
    return ClusterDedupResult(docs, None, {"drops": {processor.drop_reason: 0}, "counters": dict(counters)})


# -- stage functions (run on workers) -----------------------------------------------------------


def node_ids(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit node id of every document id (xxh3_64 of its UTF-8 bytes, as int64)."""
    import xxhash

    h = xxhash.xxh3_64_intdigest
    vals = ids.to_pylist()
    if any(v is None for v in vals):
        raise ProcessorError("documents without an id cannot be deduplicated")
    return np.fromiter((h(v.encode("utf-8")) for v in vals), dtype=np.uint64, count=len(vals)).view(np.int64)


def _annotate(batch: pa.Table, processor: ClusterDedup, sink: Any) -> pa.Table:
    processor.setup()
    res = processor.annotate(batch)
    table = res.table
    if UID in table.column_names:
        table = table.drop_columns([UID])
    table = table.append_column(UID, pa.array(node_ids(batch.column(ID)), pa.int64()))
    # documents per source ride with the `docs` count: the per-source stats need no second pass
    per_source = {SOURCE_COUNT + src: n for src, n in source_counts(batch).items()}
    report(sink, {"docs": table.num_rows, **res.counters, **per_source})
    return table


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


def _bucket_links(part: pa.Table, processor: ClusterDedup, sink: Any, anchors: int) -> pa.Table:
    empty = pa.table({"src": pa.array([], pa.int64()), "dst": pa.array([], pa.int64())})
    if part.num_rows == 0:
        return empty
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
    has_payload = PAYLOAD in part.column_names
    if not multi.any():
        report(sink, counts)
        return empty
    group_start = np.repeat(starts, sizes)
    pos = np.arange(b.size) - group_start
    if not has_payload:
        # star of every bucket to its smallest node
        sel = pos > 0
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
    report(sink, counts)
    return pa.table({"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64())})


XPAYLOAD = "_cd_xpayload"
_LINKS = pa.schema([("src", pa.int64()), ("dst", pa.int64())])


def _exact_verify_links(links, docs, schema, processor, sink, P: int, broadcast_rows: int, broadcast_bytes: int):
    """Second check of the linked pairs on `exact_payload` values, brought to each pair by two
    hash joins (on the pair's first, then its second node). Only linked documents' payloads
    travel: their node ids are broadcast when few, else every payload is shuffled."""
    links = links.map_batches(_normalize_links, batch_size=ROW_BATCH, **_KW).materialize()
    xp_type = processor.exact_payload(schema.empty_table()).type
    pay_schema = pa.schema([(UID, pa.int64()), (XPAYLOAD, xp_type)])
    linked = None
    if 2 * links.count() <= broadcast_rows:
        tables = [t for t in ray.get(links.to_arrow_refs()) if t.num_rows]
        nodes = np.unique(np.concatenate([_np(t.column(c)) for t in tables for c in ("src", "dst")])) if tables else np.zeros(0, np.int64)
        linked = ray.put(nodes)
    payloads = docs.map_batches(
        _exact_rows, batch_size=DOC_BATCH, fn_kwargs={"processor": processor, "linked": [linked]}, **_KW
    ).materialize()
    if linked is not None and payloads.size_bytes() <= broadcast_bytes:
        # few linked documents: their payloads go to every worker, one map checks the links
        table = _collect_sorted(payloads, UID, [XPAYLOAD], pay_schema)
        return links.map_batches(
            _verify_broadcast, batch_size=ROW_BATCH,
            fn_kwargs={"payloads": [table], "processor": processor, "sink": sink}, **_KW,
        )
    with_src = copartition(
        links, payloads, left_key="src", right_key=UID, left_schema=_LINKS, right_schema=pay_schema,
        num_partitions=P, fn=_attach_src,
    )
    src_schema = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("_cd_xa", xp_type)])
    return copartition(
        with_src, payloads, left_key="dst", right_key=UID, left_schema=src_schema, right_schema=pay_schema,
        num_partitions=P, fn=_verify_dst, fn_kwargs={"processor": processor, "sink": sink},
    )


def _verify_broadcast(links: pa.Table, payloads: list, processor: ClusterDedup, sink: Any) -> pa.Table:
    from curate.components import unique_pairs

    src, dst = unique_pairs(_np(links.column("src")), _np(links.column("dst")))
    if src.size == 0:
        return _LINKS.empty_table()
    processor.setup()
    p = ray.get(payloads[0])
    uids = _np(p.column(UID))
    ia, _ = _lookup(uids, src)
    ib, _ = _lookup(uids, dst)
    col = p.column(XPAYLOAD).combine_chunks()
    ok = np.asarray(processor.exact_verify(col.take(pa.array(ia)), col.take(pa.array(ib))), dtype=bool)
    report(sink, {"pairs_exact_checked": int(ok.size), "pairs_exact_rejected": int(ok.size - ok.sum())})
    return pa.table({"src": pa.array(src[ok], pa.int64()), "dst": pa.array(dst[ok], pa.int64())}, schema=_LINKS)


def _normalize_links(batch: pa.Table) -> pa.Table:
    a, b = _np(batch.column("src")), _np(batch.column("dst"))
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    return pa.table({"src": pa.array(lo[keep], pa.int64()), "dst": pa.array(hi[keep], pa.int64())}, schema=_LINKS)


def _exact_rows(batch: pa.Table, processor: ClusterDedup, linked: list) -> pa.Table:
    if linked[0] is not None:  # only the linked documents
        _, hit = _lookup(ray.get(linked[0]), _np(batch.column(UID)))
        batch = batch.take(pa.array(np.flatnonzero(hit)))
    return pa.table({UID: pa.array(_np(batch.column(UID)), pa.int64()), XPAYLOAD: processor.exact_payload(batch)})


def _attach_src(links: pa.Table, payloads: pa.Table) -> pa.Table:
    from curate.components import unique_pairs

    src, dst = unique_pairs(_np(links.column("src")), _np(links.column("dst")))
    xtype = payloads.schema.field(XPAYLOAD).type
    if src.size == 0 or payloads.num_rows == 0:  # (a link's payload is always in its partition)
        return pa.table({"src": pa.array([], pa.int64()), "dst": pa.array([], pa.int64()), "_cd_xa": pa.array([], xtype)})
    p = payloads.sort_by(UID)
    idx, _ = _lookup(_np(p.column(UID)), src)
    return pa.table({"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64()),
                     "_cd_xa": p.column(XPAYLOAD).take(pa.array(idx))})


def _verify_dst(links: pa.Table, payloads: pa.Table, processor: ClusterDedup, sink: Any) -> pa.Table:
    if links.num_rows == 0:
        return _LINKS.empty_table()
    processor.setup()
    p = payloads.sort_by(UID)
    idx, _ = _lookup(_np(p.column(UID)), _np(links.column("dst")))
    xb = p.column(XPAYLOAD).take(pa.array(idx))
    ok = np.asarray(processor.exact_verify(links.column("_cd_xa"), xb), dtype=bool)
    report(sink, {"pairs_exact_checked": int(ok.size), "pairs_exact_rejected": int(ok.size - ok.sum())})
    return links.select(["src", "dst"]).filter(pa.array(ok))


def _lookup(keys_sorted: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into keys_sorted, hit mask) for each query value."""
    if keys_sorted.size == 0:
        return np.zeros(query.size, np.int64), np.zeros(query.size, bool)
    idx = np.searchsorted(keys_sorted, query)
    idx = np.minimum(idx, keys_sorted.size - 1)
    return idx, keys_sorted[idx] == query


def _attach(docs: pa.Table, nodes: np.ndarray, comps: np.ndarray, columns: list[str]) -> pa.Table:
    idx, hit = _lookup(nodes, _np(docs.column(UID)))
    rows = np.flatnonzero(hit)
    out = docs.select(columns).take(pa.array(rows))
    return out.append_column(COMPONENT, pa.array(comps[idx[rows]], pa.int64()))


def _attach_broadcast(batch: pa.Table, lookup: list, columns: list[str]) -> pa.Table:
    table = ray.get(lookup[0])
    return _attach(batch, _np(table.column(0)), _np(table.column(1)), columns)


def _attach_joined(docs: pa.Table, labels: pa.Table) -> pa.Table:
    labels = labels.sort_by("node")
    return _attach(docs, _np(labels.column("node")), _np(labels.column("component")), list(docs.column_names))


def _elect(part: pa.Table, keys: list[tuple[str, str]], sink: Any) -> pa.Table:
    out_schema = _ASSIGN_SCHEMA
    if part.num_rows == 0:
        return out_schema.empty_table()
    t = part.sort_by([(COMPONENT, "ascending")] + [(c, o) for c, o in keys])
    comp = _np(t.column(COMPONENT))
    uid = _np(t.column(UID))
    ids = t.column(ID).combine_chunks().cast(pa.string())
    # one node, several documents: a 64-bit id collision; never drop on its account
    su = np.sort(uid)
    dup_vals = su[1:][su[1:] == su[:-1]]
    collided = np.isin(uid, dup_vals) if dup_vals.size else np.zeros(uid.size, bool)
    starts = np.flatnonzero(np.concatenate(([True], comp[1:] != comp[:-1])))
    group = np.searchsorted(starts, np.arange(comp.size), side="right") - 1
    valid = np.flatnonzero(~collided)
    g_valid = group[valid]
    first_valid = valid[np.concatenate(([True], g_valid[1:] != g_valid[:-1]))] if valid.size else valid
    survivor_of_group = np.full(starts.size, -1, dtype=np.int64)
    survivor_of_group[group[first_valid]] = first_valid
    surv = survivor_of_group[group]
    keep = collided | (surv == np.arange(comp.size)) | (surv < 0)
    cluster = ids.take(pa.array(np.where(surv >= 0, surv, np.arange(comp.size))))
    rows = np.flatnonzero(~collided)
    tables = [
        pa.table(
            {UID: pa.array(uid[rows], pa.int64()), "cluster_id": cluster.take(pa.array(rows)), KEEP: pa.array(keep[rows])},
            schema=out_schema,
        )
    ]
    if collided.any():
        cu = np.unique(uid[collided])
        tables.append(
            pa.table(
                {UID: pa.array(cu, pa.int64()), "cluster_id": pa.nulls(cu.size, pa.string()), KEEP: pa.array(np.ones(cu.size, bool))},
                schema=out_schema,
            )
        )
    report(
        sink,
        {
            "clusters": int(np.count_nonzero(survivor_of_group >= 0)),
            "dropped": int(np.count_nonzero(~keep)),
            "uid_collisions": int(collided.sum()),
        },
    )
    return pa.concat_tables(tables)


def _assign(docs: pa.Table, a_uid: np.ndarray, a_cid: pa.Array, a_keep: np.ndarray, drop: list[str], cluster_col: str) -> pa.Table:
    idx, hit = _lookup(a_uid, _np(docs.column(UID)))
    ids = docs.column(ID).combine_chunks().cast(pa.string())
    cid = a_cid.take(pa.array(idx)) if a_uid.size else pa.nulls(docs.num_rows, pa.string())
    use = pa.array(hit) if a_uid.size else pa.array(np.zeros(docs.num_rows, bool))
    cluster = pc.if_else(pc.and_(use, pc.is_valid(cid)), cid, ids)
    keep = np.where(hit, a_keep[idx] if a_uid.size else True, True)
    out = docs.drop_columns([c for c in drop + [cluster_col, KEEP] if c in docs.column_names])
    return out.append_column(cluster_col, cluster).append_column(KEEP, pa.array(keep, pa.bool_()))


def _assign_broadcast(batch: pa.Table, lookup: list, drop: list[str], cluster_col: str) -> pa.Table:
    table = ray.get(lookup[0])
    return _assign(batch, _np(table.column(0)), table.column(1).combine_chunks(), _np(table.column(2)), drop, cluster_col)


def _assign_joined(docs: pa.Table, assignment: pa.Table, drop: list[str], cluster_col: str) -> pa.Table:
    a = assignment.sort_by(UID)
    return _assign(docs, _np(a.column(UID)), a.column("cluster_id").combine_chunks(), _np(a.column(KEEP)), drop, cluster_col)


def _select(batch: pa.Table, keep: bool) -> pa.Table:
    mask = batch.column(KEEP)
    if not keep:
        mask = pc.invert(mask)
    return batch.filter(mask).drop_columns([KEEP])


# -- helpers -------------------------------------------------------------------------------------


def _np(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col.to_numpy(zero_copy_only=False)


def _collect_sorted(ds: ray.data.Dataset, key: str, columns: list[str], schema: pa.Schema) -> ray.ObjectRef:
    """Put a small dataset, sorted by `key`, in the object store for broadcast lookups.

    `schema` types the empty lookup: a dataset with no rows (one document, no edges) has no
    blocks, and Ray then knows no schema for it."""
    refs = ds.to_arrow_refs()
    tables = [t for t in ray.get(refs) if t.num_rows]
    if tables:
        table = pa.concat_tables(tables).select([key] + columns).sort_by(key)
    else:
        table = schema.empty_table().select([key] + columns)
    return ray.put(table)


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
) -> ray.data.Dataset:
    """Hash join by co-partitioning: rows of both datasets with equal (int64) keys meet in one
    partition, where `fn(left_rows, right_rows, **fn_kwargs)` runs. Built from union + keyed
    repartition, so it needs no join backend; the two sides travel in one padded schema."""
    fields = [pa.field("_cp_side", pa.int8()), pa.field("_cp_key", pa.int64())]
    fields += [pa.field("l." + f.name, f.type) for f in left_schema]
    fields += [pa.field("r." + f.name, f.type) for f in right_schema]
    unified = pa.schema(fields)
    tag = dict(batch_size=WIDE_BATCH, **_KW)
    lt = left.map_batches(_tag, fn_kwargs={"side": 0, "key": left_key, "prefix": "l.", "schema": unified}, **tag)
    rt = right.map_batches(_tag, fn_kwargs={"side": 1, "key": right_key, "prefix": "r.", "schema": unified}, **tag)
    return (
        lt.union(rt)
        .repartition(max(1, num_partitions), keys=["_cp_key"])
        .map_batches(
            _untag,
            batch_size=None,
            fn_kwargs={"fn": fn, "fn_kwargs": fn_kwargs or {}, "left_schema": left_schema, "right_schema": right_schema},
            **_KW,
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
