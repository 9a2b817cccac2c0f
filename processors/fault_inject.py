"""A stage that kills its own worker process, once: for testing that runs survive worker loss.

Chaos testing belongs in the product, not only in a test file: a user can add this stage to a
pipeline on their cluster to check that retries finish the job with no document lost or
duplicated. The kill happens at most once per `marker` file, so the retry succeeds.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pyarrow as pa
from pydantic import Field

from processors.base import Mapper, Params


class FaultInjectParams(Params):
    marker: str = Field(..., description="file created just before the kill; while it exists, no kill")
    after_rows: int = Field(0, ge=0, description="kill once this many rows have passed this worker")


class FaultInject(Mapper):
    kind = "fault_inject"
    Params = FaultInjectParams

    def setup(self) -> None:
        self._seen = 0

    def check(self) -> None:
        Path(self.params.marker).parent.mkdir(parents=True, exist_ok=True)

    def map(self, batch: pa.Table) -> pa.Table:
        self._seen = getattr(self, "_seen", 0) + batch.num_rows
        marker = Path(self.params.marker)
        if self._seen > self.params.after_rows and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception: a real crash
        return batch
