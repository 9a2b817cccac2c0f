"""Connected components of a graph held as a Ray Dataset of edges, never collected in one process.

Algorithm: alternating *large-star* and *small-star* (Kiveris, Lattanzi, Mirrokni, Rastogi,
Vassilvitskii, "Connected Components in MapReduce and Beyond", SoCC 2014). Each step is one hash
shuffle on a node key followed by a vectorised pass over every partition:

- large-star(u): m = min(u, N(u)); every neighbour v > u is re-linked to m;
- small-star(u): m = min(u, {v in N(u): v < u}); u and every such v are linked to m.

Both keep connectivity and lower the labels; a round in which neither step changes an edge leaves
every component a star centred on its smallest node, which is its label. The number of rounds is
O(log^2 n) in the worst case and small in practice (2-4 on near-duplicate graphs, whose
components are small stars already). A final shuffle turns the star edges into one
(node, component) row per node.

Partition reducers run on whole partitions (`batch_size=None` after a keyed repartition: Ray Data
never splits a hash partition, the property its own `map_groups` relies on), so a node's
neighbourhood is always complete in one reducer.

Counters (changed edges per round, distinct edges, nodes) travel *in the data*: a reducer appends
one stat row per counter, (k = a reserved sentinel below every node id, o = its partition's
count), which the next step passes on and the driver sums from the materialized round. A task
that Ray retries replaces its output, stat rows included, so nothing is ever counted twice (an
additive call to a counting actor, as before, counted a retried task once per attempt). Node ids
must therefore be above `MIN_NODE` (every int64 but the 16 smallest values).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

K, O = "k", "o"  # internal edge columns: shuffle key, other endpoint
NODE, COMPONENT = "node", "component"
_EDGE_SCHEMA = pa.schema([(K, pa.int64()), (O, pa.int64())])
_STAT_BASE = np.iinfo(np.int64).min  # stat rows: k = _STAT_BASE + counter index
MIN_NODE = int(_STAT_BASE) + 16  # node ids must be >= this
_COUNTERS = ("changed", "edges", "nodes")


# -- vectorised partition steps ----------------------------------------------------------------


def _split(table: pa.Table) -> tuple[np.ndarray, np.ndarray, Counter]:
    """(k, o) of the edges and the summed stat rows of a partition."""
    if table.num_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), Counter()
    k = table.column(K).to_numpy().astype(np.int64, copy=False)
    o = table.column(O).to_numpy().astype(np.int64, copy=False)
    stat = k < MIN_NODE
    counts: Counter = Counter()
    if stat.any():
        for idx, v in zip((k[stat] - _STAT_BASE).tolist(), o[stat].tolist()):
            counts[_COUNTERS[idx]] += v
        k, o = k[~stat], o[~stat]
    return k, o, counts


def _with_stats(k: np.ndarray, o: np.ndarray, counts: Counter) -> pa.Table:
    """Edges plus one stat row per non-zero counter."""
    names = [c for c in _COUNTERS if counts.get(c)]
    if names:
        k = np.concatenate((k, np.array([_STAT_BASE + _COUNTERS.index(c) for c in names], np.int64)))
        o = np.concatenate((o, np.array([counts[c] for c in names], np.int64)))
    return _table(k, o)


def stat_totals(ds, remote_args: dict[str, Any] | None = None) -> dict[str, int]:
    """Sum of the stat rows of a materialized round (one small table per block comes back)."""
    total: Counter = Counter()
    kw = {"batch_format": "pyarrow", "zero_copy_batch": True, **(remote_args or {})}
    for row in ds.map_batches(_stat_rows, batch_size=None, **kw).iter_rows():
        total[_COUNTERS[int(row[K]) - int(_STAT_BASE)]] += int(row[O])
    return dict(total)


def _stat_rows(part: pa.Table) -> pa.Table:
    _, _, counts = _split(part)
    return _with_stats(np.zeros(0, np.int64), np.zeros(0, np.int64), counts)


def unique_pairs(k: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (k, o) pairs sorted by k, then o."""
    if k.size == 0:
        return k, o
    order = np.lexsort((o, k))
    k, o = k[order], o[order]
    keep = np.empty(k.size, dtype=bool)
    keep[0] = True
    np.logical_or(k[1:] != k[:-1], o[1:] != o[:-1], out=keep[1:])
    return k[keep], o[keep]


def _groups(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and size of each run of equal keys in a sorted array."""
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    sizes = np.diff(np.concatenate((starts, [k.size])))
    return starts, sizes


def _table(k: np.ndarray, o: np.ndarray) -> pa.Table:
    return pa.Table.from_arrays([pa.array(k, pa.int64()), pa.array(o, pa.int64())], schema=_EDGE_SCHEMA)


def _both_directions(k: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate((k, o)), np.concatenate((o, k))


def _prepare(batch: pa.Table, src: str, dst: str) -> pa.Table:
    a = batch.column(src).to_numpy().astype(np.int64, copy=False)
    b = batch.column(dst).to_numpy().astype(np.int64, copy=False)
    loop = a == b
    if loop.any():
        a, b = a[~loop], b[~loop]
    if a.size and min(a.min(), b.min()) < MIN_NODE:
        raise ValueError(f"connected_components: node ids must be >= {MIN_NODE}")
    return _table(*_both_directions(a, b))


def _large_star(part: pa.Table, count_edges: bool) -> pa.Table:
    k, o, _ = _split(part)  # stat rows of the previous round were read by the driver: dropped
    k, o = unique_pairs(k, o)  # both directions of every edge are present
    if k.size == 0:
        return _table(k, o)
    starts, sizes = _groups(k)
    m = np.repeat(np.minimum(o[starts], k[starts]), sizes)  # o sorted within a group: o[start] is min
    up = o > k
    counts = Counter(changed=int(np.count_nonzero(m[up] != k[up])))
    if count_edges:
        counts["edges"] = int(np.count_nonzero(up))  # each undirected edge once, at its smaller end
        counts["nodes"] = int(starts.size)  # every node is a key exactly once (both directions)
    return _with_stats(o[up], m[up], counts)  # (v, m) keyed by the larger end v, v > m always


def _small_star(part: pa.Table) -> pa.Table:
    k, o, counts = _split(part)  # the large-star's counters ride on to the driver
    k, o = unique_pairs(k, o)  # edges (k, o) with k > o, keyed by k
    if k.size == 0:
        return _with_stats(k, o, counts)
    starts, sizes = _groups(k)
    m_group = o[starts]
    m = np.repeat(m_group, sizes)
    counts["changed"] += int(np.count_nonzero(sizes > 1))
    leaf = o != m  # neighbours other than the new centre
    new_k = np.concatenate((o[leaf], k[starts]))
    new_o = np.concatenate((m[leaf], m_group))
    return _with_stats(*_both_directions(new_k, new_o), counts)


def _label(part: pa.Table) -> pa.Table:
    k, o, _ = _split(part)
    k, o = unique_pairs(k, o)
    if k.size == 0:
        return pa.table({NODE: pa.array([], pa.int64()), COMPONENT: pa.array([], pa.int64())})
    starts, _ = _groups(k)
    nodes = k[starts]
    comp = np.minimum(nodes, o[starts])
    return pa.table({NODE: pa.array(nodes, pa.int64()), COMPONENT: pa.array(comp, pa.int64())})


def _count_roots(part: pa.Table) -> pa.Table:
    n = 0
    if part.num_rows:
        n = int(np.count_nonzero(part.column(NODE).to_numpy() == part.column(COMPONENT).to_numpy()))
    return pa.table({"n": pa.array([n], pa.int64())})


# -- driver ------------------------------------------------------------------------------------


def connected_components(
    edges,
    *,
    num_partitions: int,
    src: str = "src",
    dst: str = "dst",
    max_rounds: int = 100,
    materialize: bool = True,
    on_round: Callable[[int, int], None] | None = None,
    remote_args: dict[str, Any] | None = None,
):
    """Label every node that appears in `edges` with its component: the smallest node id in it.

    `edges` (a Ray Dataset) holds int64 columns `src` and `dst` (any orientation; duplicates and
    self-loops are fine; ids >= `MIN_NODE`). Returns a Dataset of (node, component), one row per
    node, and stats: rounds, edges (distinct undirected, self-loops excluded), nodes, and -- when
    `materialize` -- components. With `materialize=False` the labels come back lazy, to be fused
    with what consumes them. `on_round(round, changed)` is called after each round.
    `remote_args` (a step's num_cpus, memory, concurrency) go to every map of every round.
    """
    P = max(1, int(num_partitions))
    kw = {"batch_format": "pyarrow", "zero_copy_batch": True, **(remote_args or {})}
    current = edges.map_batches(_prepare, batch_size=65_536, fn_kwargs={"src": src, "dst": dst}, **kw)
    rounds = 0
    out = {"edges": 0, "nodes": 0}
    while True:
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
        step = (
            current.repartition(P, keys=[K])
            .map_batches(_large_star, batch_size=None, fn_kwargs={"count_edges": rounds == 1}, **kw)
            .repartition(P, keys=[K])
            .map_batches(_small_star, batch_size=None, **kw)
        )
        current = step.materialize()
        totals = stat_totals(current, remote_args)
        if rounds == 1:
            out = {"edges": totals.get("edges", 0), "nodes": totals.get("nodes", 0)}
        changed = totals.get("changed", 0)
        if on_round is not None:
            on_round(rounds, changed)
        if changed == 0:
            break
    labels = current.repartition(P, keys=[K]).map_batches(_label, batch_size=None, **kw)
    out["rounds"] = rounds
    if materialize:
        labels = labels.materialize()
        out["components"] = sum(int(r["n"]) for r in labels.map_batches(_count_roots, batch_size=None, **kw).iter_rows())
    return labels, out
