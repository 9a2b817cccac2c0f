"""Distributed connected components against an independent union-find."""
from __future__ import annotations

import os

# Ray Data's shuffle map tasks run in their own worker pool (a runtime env); with the default
# soft limit of one idle worker per CPU, Ray kills and respawns workers between stages, which
# costs seconds per stage on a 2-CPU machine. Must be set before the session's ray.init().
os.environ.setdefault("RAY_num_workers_soft_limit", "8")
# A bare ray.init() joins any cluster another process started on this machine with `ray start`
# or ray.cluster_utils (it reads /tmp/ray/ray_current_cluster); the session fixture must start
# its own embedded instance instead.
os.environ.setdefault("RAY_ADDRESS", "local")

import numpy as np
import pyarrow as pa

from curate.components import connected_components, unique_pairs


def union_find_labels(src: np.ndarray, dst: np.ndarray) -> dict[int, int]:
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(src.tolist(), dst.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the root is always the smallest node
    return {x: find(x) for x in list(parent)}


def to_table(ds) -> pa.Table:
    import ray

    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def _graph(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(-(2**62), 2**62, size=4000)  # arbitrary signed 64-bit node ids
    src = ids[rng.integers(0, ids.size, 3000)]
    dst = ids[rng.integers(0, ids.size, 3000)]
    # a long path in scrambled order (the slow case for label propagation), a big star,
    # duplicates and self-loops
    path = rng.permutation(ids[:300])
    star = ids[300:500]
    src = np.concatenate([src, path[:-1], np.full(199, star[0]), src[:50], ids[600:610]])
    dst = np.concatenate([dst, path[1:], star[1:], dst[:50], ids[600:610]])
    return src, dst


def test_unique_pairs_sorted_and_distinct():
    k, o = unique_pairs(np.array([3, 1, 3, 1, 2]), np.array([1, 5, 1, 4, 2]))
    assert k.tolist() == [1, 1, 2, 3] and o.tolist() == [4, 5, 2, 1]


def test_components_match_union_find(ray_session):
    import ray

    src, dst = _graph(0)
    tables = [pa.table({"src": src[i::4], "dst": dst[i::4]}) for i in range(4)]
    labels_ds, stats = connected_components(ray.data.from_arrow(tables), num_partitions=4)
    got = to_table(labels_ds)
    got_map = dict(zip(got.column("node").to_pylist(), got.column("component").to_pylist()))

    loops = src == dst
    expected = union_find_labels(src[~loops], dst[~loops])
    assert got.num_rows == len(got_map)  # one row per node
    assert got_map == expected
    distinct_edges = {(min(a, b), max(a, b)) for a, b in zip(src[~loops].tolist(), dst[~loops].tolist())}
    assert stats["edges"] == len(distinct_edges)
    assert stats["nodes"] == len(expected)
    assert stats["components"] == len(set(expected.values()))
    assert 1 <= stats["rounds"] <= 20


def test_components_of_nothing(ray_session):
    import ray

    empty = ray.data.from_arrow(pa.table({"src": pa.array([], pa.int64()), "dst": pa.array([], pa.int64())}))
    labels_ds, stats = connected_components(empty, num_partitions=2)
    assert labels_ds.count() == 0
    assert stats["components"] == 0 and stats["rounds"] == 1


def test_components_in_one_partition(ray_session):
    partitions = 1
    import ray

    src, dst = _graph(1)
    ds = ray.data.from_arrow(pa.table({"src": src, "dst": dst}))
    got = to_table(connected_components(ds, num_partitions=partitions)[0])
    loops = src == dst
    assert dict(zip(got.column("node").to_pylist(), got.column("component").to_pylist())) == union_find_labels(
        src[~loops], dst[~loops]
    )
