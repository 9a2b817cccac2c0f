"""The planner's user-facing error: bad pools.json, target, swarm or fit options.

It is a user error for `curate` (one line, exit code 2, no traceback) and a ValueError for callers
that catch those.
"""
from __future__ import annotations

try:  # the CLI's single error path (curate/errors.py); a ValueError all the same
    from curate.errors import UserError as _Base
except ImportError:  # pragma: no cover - older checkouts
    _Base = ValueError  # type: ignore[misc,assignment]


class PlanInputError(_Base, ValueError):  # type: ignore[misc]
    """Something the user can fix: the message says what and where."""
