"""What a committed step's fingerprint covers beyond its settings: its inputs and its code.

A commit recognised by input URI alone reuses stale work when a file is rewritten in place or a
new version of a stage's code changes what it produces. So the fingerprint also covers:

- each input's identity: size and modification time of a local file; for a remote object the
  ETag (or the store's checksum/generation) and size from its filesystem's file info (fsspec,
  which s3fs/gcsfs/adlfs fill from the listing they already made), falling back to its
  modification time;
- the code of each stage: curate's version plus a digest of the source of the module that
  defines the stage's processor (a changed `processors/minhash.py` reruns near-dedup, not
  extraction).
"""
from __future__ import annotations

import hashlib
import inspect
import os
from functools import lru_cache
from typing import Any, Iterable

# File-info keys that identify a remote object's content, in order of preference (s3fs: ETag;
# gcsfs: md5Hash/crc32c/generation; adlfs: etag; http: ETag via HEAD).
_REMOTE_IDENTITY_KEYS = ("ETag", "etag", "md5Hash", "crc32c", "generation", "version_id", "VersionId")
_REMOTE_TIME_KEYS = ("LastModified", "last_modified", "mtime", "updated", "modified")


def file_identity(uri: str) -> dict[str, Any]:
    """Size and modification time (local) or ETag-like identity and size (remote) of one input."""
    from processors.uris import is_remote

    if not is_remote(uri):
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        try:
            st = os.stat(path)
        except OSError:
            return {"uri": uri, "missing": True}
        return {"uri": uri, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri)
        info = fs.info(path)
    except (OSError, ValueError):  # unreachable now: the reader will say so; identity by name only
        return {"uri": uri, "unknown": True}
    ident: dict[str, Any] = {"uri": uri, "size": info.get("size")}
    for key in _REMOTE_IDENTITY_KEYS:
        if info.get(key) is not None:
            ident[key.lower()] = str(info[key])
            return ident
    for key in _REMOTE_TIME_KEYS:
        if info.get(key) is not None:
            ident["mtime"] = str(info[key])
            return ident
    return ident


def inputs_digest(uris: Iterable[str]) -> str:
    """One digest of the identities of every input (in the given order)."""
    h = hashlib.sha1()
    for uri in uris:
        h.update(repr(sorted(file_identity(uri).items())).encode())
        h.update(b"\n")
    return h.hexdigest()


def curate_version() -> str:
    import curate

    return str(getattr(curate, "__version__", "unknown"))


@lru_cache(maxsize=None)
def _module_digest(module: str) -> str:
    import importlib

    mod = importlib.import_module(module)
    try:
        source = inspect.getsource(mod)
    except (OSError, TypeError):  # no source shipped (a compiled module): its version alone
        return str(getattr(mod, "__version__", "no-source"))
    return hashlib.sha1(source.encode()).hexdigest()


def stage_code_version(kind: str) -> str:
    """curate's version and a digest of the module that defines stage `kind`'s processor."""
    from curate.registry import processor_class

    cls = processor_class(kind)
    return f"{curate_version()}:{cls.__module__}:{_module_digest(cls.__module__)}"
