"""Exact deduplication on a hash of normalised text: identify, then remove.

The key is a 128-bit xxHash of the normalised text (collisions are negligible at web scale: about
1 in 10^20 for a billion documents). Documents with equal keys are one cluster: this is a
`ClusterDedup` whose `cluster_key` is the hash, so the engine (`curate.cluster_dedup`) shuffles
narrow rows only -- (key, positional uid, `id`, length) -- on the key, elects one survivor per key
(smallest `id` by default), routes the removed uids back to the part they came from, and removes
them with a per-part anti-join that streams each original part. The text never moves between
workers. The choice ignores input order, so the result is the same whatever the partitioning or
CPU count. Unlike near-dedup, no `cluster_id` column is added: the output keeps the input's
columns.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field

from processors.base import BatchResult, ClusterDedup, Params
from processors.normalize import normalize_for_dedup


class ExactDedupParams(Params):
    normalize: bool = Field(True, description="hash normalised text (case/punctuation/space folded)")
    keep: Literal["smallest_id", "longest_then_smallest_id"] = Field(
        "smallest_id", description="which copy survives")


class ExactDedup(ClusterDedup):
    kind = "exact_dedup"
    Params = ExactDedupParams
    requires = ("id", "text")
    provides = ()  # removes rows only: no cluster_id column
    checkpoint_default = True
    drop_reason = "exact_duplicate"
    cluster_column = None
    cluster_key = "_exact_key"
    length_column: ClassVar[str] = "_exact_len"

    def keys(self, texts: pa.Array | pa.ChunkedArray) -> pa.Array:
        """128-bit key of each text (a null text hashes as the empty one)."""
        norm = normalize_for_dedup if self.params.normalize else (lambda t: t)
        return pa.array([xxhash.xxh3_128_digest(norm(t or "").encode("utf-8")) for t in texts.to_pylist()],
                        type=pa.binary(16))

    def annotate(self, batch: pa.Table) -> BatchResult:
        # The length (characters of the raw text) rides along for `longest_then_smallest_id`; it is
        # 8 bytes a row, so it is always written rather than making the layout depend on `keep`.
        length = pc.utf8_length(pc.fill_null(batch["text"], "")).cast(pa.int64())
        return BatchResult(batch.append_column(self.cluster_key, self.keys(batch["text"]))
                           .append_column(self.length_column, length))

    def survivor_keys(self) -> list[tuple[str, str]]:
        # the engine adds `id` ascending (then the row's position) as the final tie-breaks
        if self.params.keep == "longest_then_smallest_id":
            return [(self.length_column, "descending")]
        return []

    def internal_columns(self) -> tuple[str, ...]:
        return (self.cluster_key, self.length_column)
