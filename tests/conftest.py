"""Shared fixtures. Ray starts at most once per test session (it costs about 5 s)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray Data's shuffles run in their own worker pool; with Ray's default of one idle worker per CPU,
# workers are killed and respawned between steps (seconds each on 2 CPUs).
os.environ.setdefault("RAY_num_workers_soft_limit", "8")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the checkout: the real WARCs, gold and reference corpora."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}: it must sit beside the checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One embedded local Ray for the whole test session."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # never join a cluster another test (or process) started
            num_cpus=2,
            object_store_memory=512 * 1024 * 1024,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()
