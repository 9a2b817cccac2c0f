"""Starting or joining Ray: the one place that calls `ray.init` for pipelines, pools and sharding.

Embedded (no address): a fresh local Ray sized by the caller, never a cluster some other process
left running. With an address: join that cluster. Either way no dashboard, no log forwarding
(curate prints its own progress and summary) and no usage statistics (the machines are often offline).

Token authentication: Ray 2.60 turns it on by default for a new local cluster and says so, at
WARNING level, on every start ("Token authentication is enabled for this Ray cluster ..."). The
behaviour is right (and kept: nothing here changes the auth mode); only that one logger is quieted,
so a run's terminal shows curate's own output. Setting `RAY_AUTH_MODE` ourselves would also silence
it, but Ray caches its config at import, and a late change left driver and cluster disagreeing.
"""
from __future__ import annotations

import logging
import os
from typing import Any

# The module whose WARNING announces token authentication on every local start (Ray 2.60).
_AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"


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
    return True


def quiet_ray_data() -> None:
    """Ray Data narrates every execution (plan, progress bars) at INFO/WARNING; curate prints its
    own progress and summary instead. Call after Ray is up."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
