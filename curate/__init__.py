"""curate: Common Crawl to training-ready pretraining data on Ray."""
from __future__ import annotations


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("curate")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0+source"


__version__ = _version()
