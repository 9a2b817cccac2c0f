"""The mixture planner: how much of each pool to train on under a compute budget.

See docs/planner.md. Entry points: `curate plan` (cli.plan_app), `plan.plan_command`,
`experiment.fit_pools` (`curate plan fit`), `qqt.best_pool`, `regmix.cross_validate`.
"""
import importlib

# Loaded on first use (PEP 562): the CLI imports the `plan` sub-app on every command, and the
# solver's scipy import cost every `curate run` ~1 s before any work.
_EXPORTS = {
    "CHINCHILLA": "laws", "EPOCH": "laws", "MUENNIGHOFF_C4": "laws", "LawConstants": "laws",
    "compute_optimal": "laws", "effective_data": "laws", "MixtureLaw": "mixture",
    "Caps": "solver", "Infeasible": "solver", "general_solve": "solver", "plan_for_budget": "solver",
    "waterfill": "solver",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
