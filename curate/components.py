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
neighbourhood is always complete in one reducer. Counters (changed edges, distinct edges,
components) go to a small actor, `StatsSink`, rather than through extra passes over the data.
"""
from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import ray

K, O = "k", "o"  # internal edge columns: shuffle key, other endpoint
NODE, COMPONENT = "node", "component"
_EDGE_SCHEMA = pa.schema([(K, pa.int64()), (O, pa.int64())])


@ray.remote(num_cpus=0)
class StatsSink:
    """Counters summed across Ray tasks, kept per run (reducers report once per partition)."""

    def __init__(self) -> None:
        self.runs: dict[str, Counter] = {}

    def add(self, run: str, counts: dict[str, int]) -> None:
        self.runs.setdefault(run, Counter()).update({k: int(v) for k, v in counts.items() if v})

    def get(self, run: str) -> dict[str, int]:
        return dict(self.runs.get(run, {}))

    def clear(self, run: str) -> None:
        self.runs.pop(run, None)


_SINK: tuple[tuple[str, str], Any] | None = None  # ((job id, node id), actor handle): one per driver


class RunStats:
    """A namespace in this driver's `StatsSink` (created once: an actor costs a process start)."""

    def __init__(self) -> None:
        global _SINK
        ctx = ray.get_runtime_context()
        # job ids restart at 1 in every new Ray instance: the node id tells instances apart
        key = (ctx.get_job_id(), ctx.get_node_id())
        if _SINK is None or _SINK[0] != key:
            _SINK = (key, StatsSink.remote())
        self.sink = _SINK[1]
        self.run = uuid.uuid4().hex

    @property
    def handle(self) -> tuple[Any, str]:
        """What tasks get: pass it to `report`."""
        return (self.sink, self.run)

    def get(self) -> dict[str, int]:
        return ray.get(self.sink.get.remote(self.run))

    def close(self) -> None:
        self.sink.clear.remote(self.run)


def report(handle: tuple[Any, str] | None, counts: dict[str, int]) -> None:
    """Add counters from inside a task (synchronously, so nothing is lost before the driver reads)."""
    if handle is not None and any(counts.values()):
        sink, run = handle
        ray.get(sink.add.remote(run, counts))


# -- vectorised partition steps ----------------------------------------------------------------


def _edges(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    if table.num_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (
        table.column(K).to_numpy().astype(np.int64, copy=False),
        table.column(O).to_numpy().astype(np.int64, copy=False),
    )


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


def _both_directions(k: np.ndarray, o: np.ndarray) -> pa.Table:
    return _table(np.concatenate((k, o)), np.concatenate((o, k)))


def _prepare(batch: pa.Table, src: str, dst: str) -> pa.Table:
    a = batch.column(src).to_numpy().astype(np.int64, copy=False)
    b = batch.column(dst).to_numpy().astype(np.int64, copy=False)
    loop = a == b
    if loop.any():
        a, b = a[~loop], b[~loop]
    return _both_directions(a, b)


def _large_star(part: pa.Table, sink: Any, round_no: int, count_edges: bool) -> pa.Table:
    k, o = unique_pairs(*_edges(part))  # both directions of every edge are present
    if k.size == 0:
        return _table(k, o)
    starts, sizes = _groups(k)
    m = np.repeat(np.minimum(o[starts], k[starts]), sizes)  # o sorted within a group: o[start] is min
    up = o > k
    changed = int(np.count_nonzero(m[up] != k[up]))
    counts = {f"changed_{round_no}": changed}
    if count_edges:
        counts["edges"] = int(np.count_nonzero(up))  # each undirected edge once, at its smaller end
        counts["nodes"] = int(starts.size)  # every node is a key exactly once (both directions)
    report(sink, counts)
    return _table(o[up], m[up])  # (v, m) keyed by the larger end v, v > m always


def _small_star(part: pa.Table, sink: Any, round_no: int) -> pa.Table:
    k, o = unique_pairs(*_edges(part))  # edges (k, o) with k > o, keyed by k
    if k.size == 0:
        return _table(k, o)
    starts, sizes = _groups(k)
    m_group = o[starts]
    m = np.repeat(m_group, sizes)
    report(sink, {f"changed_{round_no}": int(np.count_nonzero(sizes > 1))})
    leaf = o != m  # neighbours other than the new centre
    new_k = np.concatenate((o[leaf], k[starts]))
    new_o = np.concatenate((m[leaf], m_group))
    return _both_directions(new_k, new_o)


def _label(part: pa.Table, sink: Any) -> pa.Table:
    k, o = unique_pairs(*_edges(part))
    if k.size == 0:
        return pa.table({NODE: pa.array([], pa.int64()), COMPONENT: pa.array([], pa.int64())})
    starts, _ = _groups(k)
    nodes = k[starts]
    comp = np.minimum(nodes, o[starts])
    report(sink, {"components": int(np.count_nonzero(comp == nodes))})
    return pa.table({NODE: pa.array(nodes, pa.int64()), COMPONENT: pa.array(comp, pa.int64())})


# -- driver ------------------------------------------------------------------------------------


def connected_components(
    edges: ray.data.Dataset,
    *,
    num_partitions: int,
    src: str = "src",
    dst: str = "dst",
    max_rounds: int = 100,
    materialize: bool = True,
    on_round: Callable[[int, int], None] | None = None,
) -> tuple[ray.data.Dataset, dict[str, int]]:
    """Label every node that appears in `edges` with its component: the smallest node id in it.

    `edges` holds int64 columns `src` and `dst` (any orientation; duplicates and self-loops are
    fine). Returns a Dataset of (node, component), one row per node, and stats: rounds, edges
    (distinct undirected, self-loops excluded), nodes, and -- when `materialize` -- components.
    With `materialize=False` the labels come back lazy, to be fused with what consumes them.
    `on_round(round, changed)` is called after each round.
    """
    stats = RunStats()
    try:
        P = max(1, int(num_partitions))
        kw = {"batch_format": "pyarrow", "zero_copy_batch": True}
        current = edges.map_batches(_prepare, batch_size=65_536, fn_kwargs={"src": src, "dst": dst}, **kw)
        rounds = 0
        while True:
            rounds += 1
            if rounds > max_rounds:
                raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
            step = (
                current.repartition(P, keys=[K])
                .map_batches(
                    _large_star,
                    batch_size=None,
                    fn_kwargs={"sink": stats.handle, "round_no": rounds, "count_edges": rounds == 1},
                    **kw,
                )
                .repartition(P, keys=[K])
                .map_batches(_small_star, batch_size=None, fn_kwargs={"sink": stats.handle, "round_no": rounds}, **kw)
            )
            current = step.materialize()
            changed = stats.get().get(f"changed_{rounds}", 0)
            if on_round is not None:
                on_round(rounds, changed)
            if changed == 0:
                break
        labels = current.repartition(P, keys=[K]).map_batches(
            _label, batch_size=None, fn_kwargs={"sink": stats.handle if materialize else None}, **kw
        )
        counts = stats.get()
        out = {"rounds": rounds, "edges": counts.get("edges", 0), "nodes": counts.get("nodes", 0)}
        if materialize:
            labels = labels.materialize()
            out["components"] = stats.get().get("components", 0)
        return labels, out
    finally:
        stats.close()
