"""Local paths and remote URIs (s3://, https://, ...) through one filesystem layer: fsspec."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import fsspec
from urllib.parse import urlsplit

_GLOB_CHARS = set("*?[")


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


DATASET_IGNORE = (".", "_")  # what pyarrow.dataset skips in a folder: markers, stats, side outputs


def expand_glob(pattern: str, suffixes: tuple[str, ...] = (), ignore_prefixes: tuple[str, ...] = (".",)) -> list[str]:
    """Expand one pattern to a sorted list of files.

    A directory expands to the files inside it whose names end with one of `suffixes` (all files
    when none are given), leaving out every file or sub-folder whose name starts with one of
    `ignore_prefixes`. Pass `DATASET_IGNORE` when the folder is a dataset (a stage's output):
    its `_dropped/`, `_tasks/` and `_stats.json` are not data. A source-code folder keeps the
    default, so `__init__.py` is read. A local pattern that matches nothing is an error naming
    the pattern: a typo must not turn into an empty run.
    """
    if is_remote(pattern):
        fs, _, paths = fsspec.get_fs_token_paths(pattern)
        protocol = pattern.split("://", 1)[0]
        if any(c in pattern for c in _GLOB_CHARS):
            found = sorted(fs.glob(pattern.split("://", 1)[1]) if protocol not in ("http", "https")
                           else fs.glob(pattern))
            return [p if "://" in p else f"{protocol}://{p}" for p in found]
        return [pattern]
    path = pattern[len("file://"):] if pattern.startswith("file://") else pattern
    path = os.path.expanduser(path)
    if any(c in path for c in _GLOB_CHARS):
        matches = sorted(glob.glob(path, recursive=True))
        if not matches:
            raise FileNotFoundError(f"input pattern {pattern!r} matches no file")
    else:
        if not os.path.exists(path):
            raise FileNotFoundError(f"input {pattern!r} does not exist")
        matches = [path]
    files: list[str] = []
    for m in matches:
        if os.path.isdir(m):
            inner = sorted(str(p) for p in Path(m).rglob("*") if p.is_file()
                           and not any(part.startswith(ignore_prefixes) for part in p.relative_to(m).parts)
                           and (not suffixes or p.name.endswith(suffixes)))
            files.extend(inner)
        else:
            files.append(m)
    return [os.path.abspath(f) for f in files]


def expand_all(patterns: list[str], suffixes: tuple[str, ...] = (), ignore_prefixes: tuple[str, ...] = (".",)) -> list[str]:
    """Expand every pattern (see `expand_glob`), keep first-seen order, drop repeats."""
    seen: dict[str, None] = {}
    for p in patterns:
        for f in expand_glob(p, suffixes, ignore_prefixes):
            seen.setdefault(f, None)
    return list(seen)


def domain_of(url: str | None) -> str | None:
    """Lowercased host without port, trailing dot or leading `www.` (the schema's `domain`)."""
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.rstrip(".").lower()
    return host[4:] if host.startswith("www.") else host
