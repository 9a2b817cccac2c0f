"""Exact deduplication on a hash of normalised text.

The key is a 128-bit xxHash of the normalised text (collisions are negligible at web scale: about
1 in 10^20 for a billion documents). The engine hash-partitions rows on the key, so every copy of a
text meets in one partition; `reduce` keeps one survivor per key, chosen without regard to input
order (smallest id by default), so the result is the same whatever the partitioning or CPU count.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field

from processors.base import BatchResult, Grouper, Params
from processors.normalize import normalize_for_dedup


class ExactDedupParams(Params):
    normalize: bool = Field(True, description="hash normalised text (case/punctuation/space folded)")
    keep: Literal["smallest_id", "longest_then_smallest_id"] = Field(
        "smallest_id", description="which copy survives")


class ExactDedup(Grouper):
    kind = "exact_dedup"
    Params = ExactDedupParams
    requires = ("id", "text")
    key_column: ClassVar[str] = "_exact_key"

    def add_key(self, batch: pa.Table) -> pa.Table:
        texts = batch["text"].to_pylist()
        norm = normalize_for_dedup if self.params.normalize else (lambda t: t)
        keys = [xxhash.xxh3_128_digest(norm(t or "").encode("utf-8")) for t in texts]
        return batch.append_column(self.key_column, pa.array(keys, type=pa.binary(16)))

    def reduce(self, partition: pa.Table) -> BatchResult:
        key = self.key_column
        if self.params.keep == "longest_then_smallest_id":
            length = pc.utf8_length(pc.fill_null(partition["text"], ""))
            order_cols = partition.append_column("_neg_len", pc.negate(length))
            sort = [(key, "ascending"), ("_neg_len", "ascending"), ("id", "ascending")]
            idx = pc.sort_indices(order_cols, sort_keys=sort)
        else:
            idx = pc.sort_indices(partition, sort_keys=[(key, "ascending"), ("id", "ascending")])
        ordered = partition.take(idx)
        keys = ordered[key].combine_chunks()
        # A row survives when its key differs from the previous row's: the first of each run.
        first = np.ones(ordered.num_rows, dtype=bool)
        if ordered.num_rows > 1:
            same = pc.equal(keys.slice(1), keys.slice(0, ordered.num_rows - 1))
            first[1:] = ~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
        kept = ordered.filter(pa.array(first)).drop_columns([key])
        kept = kept.take(pc.sort_indices(kept, sort_keys=[("id", "ascending")]))
        dropped = int((~first).sum())
        return BatchResult(kept, drops={"exact_duplicate": dropped} if dropped else {})
