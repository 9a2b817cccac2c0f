"""What one step may use on the cluster, from the YAML's `num_cpus`, `memory`, `concurrency` and the
run's `workers` (`--workers` or `ray.workers`), the same for every kind of step.

The runner computes one `StepResources` per step and hands it to whatever runs the step (file
tasks, group reducers, unit and cluster dedup phases, jobs) as `Segment.resources`:

    ds.map_batches(fn, **res.map_args())            # Ray Data maps: CPUs, memory, parallelism
    ray.remote(fn).options(**res.task_args())       # plain tasks and actors: CPUs, memory

`concurrency` is the most tasks (or actors) of the step in flight at once: the smallest
`concurrency` among the step's stages, else `workers`, else the cluster's CPUs / `num_cpus`.
`asked` is None unless the user set it (a job then keeps its own default).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepResources:
    num_cpus: float = 1.0  # CPUs each task or actor of the step reserves (the most any stage asks)
    memory: int | None = None  # bytes each task reserves (the most any stage asks), None: not reserved
    concurrency: int = 1  # tasks/actors in flight at once
    asked: int | None = None  # concurrency/workers as the user set it (None: derived from the CPUs)

    def task_args(self) -> dict[str, Any]:
        """Options of a Ray task or actor (`ray.remote(...).options(**...)`) and Ray Data's
        `ray_remote_args`."""
        args: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.memory:
            args["memory"] = self.memory
        return args

    def map_args(self) -> dict[str, Any]:
        """Keyword arguments of a Ray Data `map_batches` with a function (not an actor class)."""
        return {**self.task_args(), "concurrency": self.concurrency}


def step_resources(stages: list, workers: int | None, cluster_cpus: float) -> StepResources:
    """The resources of a step made of `stages` (StageSpecs), `workers` from the run (CLI or YAML)."""
    num_cpus = max((s.num_cpus for s in stages), default=1.0)
    mem = [s.memory for s in stages if s.memory]
    asked_conc = [s.concurrency for s in stages if s.concurrency]
    asked = min(asked_conc) if asked_conc else (int(workers) if workers else None)
    concurrency = asked if asked else max(1, int(cluster_cpus // num_cpus))
    return StepResources(num_cpus=num_cpus, memory=max(mem) if mem else None, concurrency=concurrency, asked=asked)
