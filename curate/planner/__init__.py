"""The mixture planner: how much of each pool to train on under a compute budget.

See docs/planner.md. Entry points: `curate plan` (cli.plan_app), `plan.plan_command`,
`experiment.fit_pools` (`curate plan fit`), `qqt.best_pool`, `regmix.cross_validate`.
"""
from .laws import (
           CHINCHILLA,
           EPOCH,
           MUENNIGHOFF_C4,
           LawConstants,
           compute_optimal,
           effective_data,
)
from .mixture import MixtureLaw
from .solver import Caps, Infeasible, general_solve, plan_for_budget, waterfill

__all__ = ["CHINCHILLA", "EPOCH", "MUENNIGHOFF_C4", "LawConstants", "compute_optimal", "effective_data", "MixtureLaw",
           "Caps", "Infeasible", "general_solve", "plan_for_budget", "waterfill"]
