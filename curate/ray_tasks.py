"""The Ray side of a segment: callable classes Ray Data runs in an actor pool.

Each actor builds its processors and calls `setup()` once (so models load once per worker), then
handles many tasks. Every call returns small JSON task records, never documents: documents go
straight from the worker to Parquet, and the driver only sums stats.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from curate.chain import Chain
from curate.config import StageSpec


def _records(recs: list[dict]) -> pa.Table:
    return pa.table({"record": pa.array([json.dumps(r) for r in recs], type=pa.string())})


class FileTaskWorker:
    """Runs the whole segment for each input it is handed (one output part per input).

    A segment may start with several reading stages (the crawl, a JSONL corpus, a code folder);
    each task names its reader, and every reader's chain is set up once, here.
    """

    def __init__(self, readers: list[StageSpec], body: list[StageSpec], out_dir: str) -> None:
        self.chains = {r.name: Chain(r, body) for r in readers} if readers else {None: Chain(None, body)}
        for chain in self.chains.values():
            chain.setup()
        self.out_dir = Path(out_dir)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _records([self.chains[r].run_file_task(json.loads(u), self.out_dir)
                         for r, u in zip(batch["reader"].to_pylist(), batch["uris"].to_pylist())])


# Steps around a shuffle (the cluster step's fused reads) run as plain tasks, not actor pools: Ray Data starts every actor pool
# of a plan up front, and actors holding all CPUs would starve the shuffle's own tasks (a
# deadlock seen with two pools on two CPUs). Ray reuses worker processes, so a per-process cache
# still loads each processor once per worker.
_CHAINS: dict[str, Chain] = {}


def _cached_chain(head: StageSpec | None, body: list[StageSpec]) -> Chain:
    # the driver-built state (an object reference) is part of the key: a later run with the same
    # parameters may have built it from changed files
    specs = ([head] if head is not None else []) + list(body)
    key = json.dumps(([] if head is not None else ["pre"]) + [s.model_dump(mode="json") for s in specs]
                     + [str(s._state) for s in specs], sort_keys=True)
    chain = _CHAINS.get(key)
    if chain is None:
        chain = Chain(head, body)
        chain.setup()
        _CHAINS[key] = chain
    return chain


def _cached_pre_chain(pre: list[StageSpec]) -> Chain:
    return _cached_chain(None, pre)
