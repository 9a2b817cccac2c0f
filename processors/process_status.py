"""How a child process ended, in words: `exit 3`, `killed by SIGSEGV`."""
from __future__ import annotations

import signal


def exit_status(code: int | None) -> str:
    """`exit N` for a return code, `killed by SIGNAME` for a negative (signal) one, `still running`
    for None (a child that closed its pipe but has not exited)."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"
