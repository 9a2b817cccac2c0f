"""Starting or joining Ray: the one place that calls `ray.init` for pipelines, pools and sharding.

Embedded (no address): a fresh local Ray sized by the caller, never a cluster some other process
left running. With an address: join that cluster. Either way no dashboard, no log forwarding
(curate prints its own progress and summary) and no usage statistics (the machines are often offline).

Token authentication: Ray 2.60 turns it on by default for a new local cluster and says so, at
WARNING level, on every start ("Token authentication is enabled for this Ray cluster ..."). The
behaviour is right (and kept: nothing here changes the auth mode); only that one logger is quieted,
so a run's terminal shows curate's own output. Setting `RAY_AUTH_MODE` ourselves would also silence
it, but Ray caches its config at import, and a late change left driver and cluster disagreeing.

Ray Data's actor-restart false alarm (an ERROR line from the driver's C++ core worker on every run
with an actor-pool map): dropped from the driver's stderr by StderrFilter, that line only; why below.
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
from typing import Any

# The module whose WARNING announces token authentication on every local start (Ray 2.60).
_AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"

# Ray Data 2.60 starts the workers of an actor-pool map (a segment's FileTaskWorker pool, on every
# `curate run`) with its transform and DataContext passed as ObjectRefs and max_restarts=-1, and
# the driver's core worker then logs, at ERROR level straight to the process's stderr, that
# "Actor with class name: 'MapWorker(...)' ... has constructor arguments in the object store and
# max_restarts > 0" (ray-project/ray#57733, open). It warns that a restart fails once such refs go
# out of scope (ray#53727); Ray Data holds both (the operator's cached refs) for as long as the map
# and its actors run, so a restarted worker finds them. The two ways to stop it on Ray's side cost
# too much: max_restarts=0 gives up restarting a worker that died (node lost, out of memory), and
# RAY_BACKEND_LOG_LEVEL=fatal hides every real error of the driver's core worker. So this one line,
# for Ray Data's map workers only, is dropped from the driver's stderr; everything else passes
# unchanged (an actor of ours started with a large argument still shows it), and the line stays in
# the driver's log in the Ray session folder.
_FALSE_ALARM = re.compile(rb"\[[^\]\n]*\] core_worker\.cc:\d+: Actor with class name: 'MapWorker\([^\n]*"
                          rb"has constructor arguments in the object store and max_restarts > 0[^\n]*\n?")


def drop_false_alarm(data: bytes) -> bytes:
    """`data` less the core worker's restart warning for Ray Data's own map workers (see above)."""
    return _FALSE_ALARM.sub(b"", data)


class StderrFilter:
    """fd 2 of this process through a pipe; a thread copies every byte on to the real stderr at
    once (no line buffering: progress lines are not held back), less what `drop_false_alarm`
    removes. Installed after Ray's daemons start, so they keep the real stderr."""

    def __init__(self) -> None:
        self.saved = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        self._r = r
        self._pipe = os.fstat(2).st_ino
        self._thread = threading.Thread(target=self._pump, name="curate-stderr-filter", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # after an uncaught exception's traceback is written: it drains

    def _pump(self) -> None:
        gone = False  # the real stderr is closed: keep draining (a full pipe would block every writer)
        try:
            while chunk := os.read(self._r, 1 << 16):
                if b"has constructor arguments" in chunk:  # one write of the C++ logger: the whole line
                    chunk = drop_false_alarm(chunk)
                view = memoryview(chunk)
                while view and not gone:
                    try:
                        view = view[os.write(self.saved, view):]
                    except OSError:
                        gone = True
        finally:
            os.close(self._r)

    def close(self) -> None:
        """Give fd 2 back; the pipe's last writer goes with it, so the thread copies what is left."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        try:
            ours = os.fstat(2).st_ino == self._pipe
        except OSError:
            ours = False
        if ours:  # not when someone (a test's output capture) has pointed fd 2 elsewhere since
            os.dup2(self.saved, 2)
        self._thread.join(timeout=2)


_filter: StderrFilter | None = None


def prepare_environment() -> None:
    """Environment every Ray process of ours inherits; call before importing ray."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Shuffles run in their own worker pool; with Ray's default of one idle worker per CPU,
    # workers are killed and respawned between steps, costing seconds on small machines.
    os.environ.setdefault("RAY_num_workers_soft_limit", "8")


def ensure_ray(address: str | None, num_cpus: int | None = None,
               object_store_memory: int | None = None) -> bool:
    """Start an embedded Ray or join `address`, unless Ray is already up in this process.

    Returns True when this call started (or joined) Ray, so the caller knows to shut it down."""
    prepare_environment()
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    logging.getLogger(_AUTH_NOTICE_LOGGER).setLevel(logging.ERROR)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(address="local", num_cpus=num_cpus, object_store_memory=object_store_memory, **kwargs)
    global _filter
    if _filter is None:
        try:
            _filter = StderrFilter()
        except OSError:  # no stderr to filter (fd 2 closed)
            pass
    return True


def quiet_ray_data() -> None:
    """Ray Data narrates every execution (plan, progress bars) at INFO/WARNING; curate prints its
    own progress and summary instead. Call after Ray is up."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
