"""One error path for every `curate` command: a user error is one line on stderr and exit code 2.

A *user error* is something the person at the keyboard can fix: a missing or unreadable file,
malformed JSON/YAML/CSV/Parquet, a file of the wrong schema, a model that is missing or failed to
train, a tokenizer that cannot be loaded offline, a full disk. Code raises `UserError` (or one of
the existing error types listed in `_USER_ERROR_TYPES`), or simply lets `FileNotFoundError`,
`json.JSONDecodeError`, `yaml.YAMLError`, a Parquet reader's error, ... escape: `user_message`
turns each of those into one line that names the file and what is wrong. Anything else is a bug
and keeps its traceback.

The root `curate` group (`CurateGroup`, used by curate/cli.py) applies this around every command
and subcommand, including those added later, so a new command needs nothing to get it.
`curate --debug ...` or `CURATE_DEBUG=1` shows the traceback of user errors too.
"""
from __future__ import annotations

import builtins
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import typer
import typer.core

EXIT_USER_ERROR = 2
DEBUG_ENV = "CURATE_DEBUG"


class UserError(Exception):
    """An error the user can fix; its message names the file (or option) and what is wrong."""


# Error types defined elsewhere that are user errors by contract (their docstrings say so). Named,
# not imported: importing them here would pull Ray/tokenizers into every command and risk cycles.
_USER_ERROR_TYPES = {
    "curate.config.ConfigError", "processors.base.ProcessorError",
    "curate.classify.data.ClassifyError", "curate.shard.engine.ShardError",
    "curate.shard.inputs.InputError", "processors.tokenizer.TokenizerError",
    "curate.shard.manifest.ManifestError", "curate.planner.solver.Infeasible",
}
# Wrappers that name the failing step; they are user errors when what they wrap is one.
_WRAPPER_TYPES = {"curate.runner.StageFailed"}
# Failures of the machine rather than of the code: a killed worker, memory, the object store.
_ENVIRONMENT_TYPES = {
    "ray.exceptions.OutOfMemoryError", "ray.exceptions.WorkerCrashedError",
    "ray.exceptions.ObjectStoreFullError", "ray.exceptions.OutOfDiskError",
    "ray.exceptions.NodeDiedError", "ray.exceptions.ActorDiedError",
}
# Reader errors of pyarrow that mean "this file is not what it should be" (not a misuse of the API).
_ARROW_FILE_PROBLEM = re.compile(
    r"parquet|magic bytes|footer|file size is 0|thrift|IPC|CSV|JSON parse|Expected to read|"
    r"Invalid column|Unexpected end|truncated|corrupt", re.IGNORECASE)


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _type_names(exc: BaseException) -> set[str]:
    return {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """exc, then what it wraps: Ray's `cause` (the exception raised inside a task) and __cause__,
    then the original error of each Ray task as its remote traceback names it. A RayTaskError
    itself is skipped: its text is the remote traceback (and when Ray makes it an instance of the
    cause's class too, it still carries none of the cause's attributes)."""
    seen: set[int] = set()
    remote: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if "ray.exceptions.RayTaskError" in _type_names(cur):
            original = _remote_original(getattr(cur, "traceback_str", None) or str(cur))
            if original is not None:
                remote.append(original)
        else:
            yield cur
        nxt = getattr(cur, "cause", None)
        cur = nxt if isinstance(nxt, BaseException) else cur.__cause__
    yield from remote


# `pkg.mod.SomeError: message` at the start of a traceback line (Python prints the original
# exception first, then "The above exception was the direct cause of ...", then the wrappers).
_EXCEPTION_LINE = re.compile(r"^((?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)): (.+)$")


def _remote_original(traceback_str: str | None) -> BaseException | None:
    """The first exception of a remote traceback, rebuilt when it is a user error: Ray Data wraps a
    task's error in UserCodeException and the original object does not survive the trip (only
    its text does), e.g. `OSError: [Errno 28] ... No space left on device`."""
    if not isinstance(traceback_str, str):
        return None
    short_user_types = {n.rsplit(".", 1)[1] for n in _USER_ERROR_TYPES}
    for line in traceback_str.splitlines():
        m = _EXCEPTION_LINE.match(line)
        if not m or m.group(1).startswith("ray."):
            continue
        qualified, name, message = m.groups()
        cls = getattr(builtins, name, None) if qualified == name else None
        if isinstance(cls, type) and issubclass(cls, (OSError, MemoryError)):
            return cls(message)
        if qualified in _USER_ERROR_TYPES or name in short_user_types or qualified == "json.decoder.JSONDecodeError":
            return UserError(message)
        return None  # the task's own error is something else: a bug
    return None


def one_line(text: str) -> str:
    """Messages with several lines (pydantic, remote errors) joined into one."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


# Local names under which readers hold the file they read (curate's loaders, json, csv, pyarrow).
_PATH_LOCALS = {"path", "file", "filename", "fname", "file_path", "filepath", "fp", "f", "fh", "p",
                "src", "uri", "source", "config", "pipeline", "pools", "plan", "params_file", "mixtures",
                "losses", "manifest", "fit"}


def _file_in_traceback(exc: BaseException) -> str | None:
    """The file a reader was working on when `exc` was raised: in the innermost frame that has
    one, a local named like a path (`path`, `file`, `f`, ...) that is an existing file, or an open
    file object. For errors that do not carry the name themselves (json, pydantic, csv parsers)."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name, value in frame.f_locals.items():
            if name not in _PATH_LOCALS:
                continue
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                return value.name
            if isinstance(value, (str, Path)) and not isinstance(value, bool):
                s = str(value)
                if 0 < len(s) < 1024 and "\n" not in s and os.path.isfile(s):
                    return s
    return None


def _where(exc: BaseException, default: str | None = None) -> str:
    path = default or _file_in_traceback(exc)
    return f"{path}: " if path else ""


def _os_message(e: OSError) -> str:
    name = e.filename
    if name is None:
        return str(e)
    name = os.fsdecode(name)
    what = {FileNotFoundError: "does not exist", IsADirectoryError: "is a folder, not a file",
            NotADirectoryError: "is not a folder", PermissionError: "permission denied"}
    for cls, text in what.items():
        if isinstance(e, cls):
            return f"{name}: {text}"
    return f"{name}: {e.strerror or e}"


def yaml_problem(e: Exception) -> str:
    """What a YAML parser error says, in one line: `could not find expected ':': line 30 column 8`."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or one_line(str(e))
    return f"{problem}: line {mark.line + 1} column {mark.column + 1}" if mark is not None else problem


def validation_message(e: Any) -> str:
    """A pydantic ValidationError as one line: `Model: field: problem; field: problem`."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return f"{e.title}: " + "; ".join(parts)


def _direct_message(exc: BaseException) -> str | None:
    """The one-line message for exc itself if it is a user error, else None."""
    names = _type_names(exc)
    if isinstance(exc, UserError) or names & _USER_ERROR_TYPES:
        return str(exc)
    if names & _ENVIRONMENT_TYPES:
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, json.JSONDecodeError):
        what = "empty file" if not exc.doc.strip() else f"{exc.msg}: line {exc.lineno} column {exc.colno}"
        return f"{_where(exc)}not valid JSON ({what})"
    if "yaml.error.YAMLError" in names:
        mark = getattr(exc, "problem_mark", None)
        path = mark.name if mark is not None and not str(mark.name).startswith("<") else None
        return f"{_where(exc, path)}not valid YAML ({yaml_problem(exc)})"
    if "pyarrow.lib.ArrowException" in names:
        msg = str(exc)
        if _ARROW_FILE_PROBLEM.search(msg):
            path = _file_in_traceback(exc)
            path = None if path is None or path in msg else path
            return f"{path + ': ' if path else ''}not a readable Parquet/Arrow file ({one_line(msg)})"
        return None
    if isinstance(exc, OSError):
        return _os_message(exc)
    if isinstance(exc, UnicodeDecodeError):
        where = _where(exc)
        return f"{where}not UTF-8 text (byte {exc.start})" if where else None
    if names & {"pandas.errors.ParserError", "pandas.errors.EmptyDataError", "_csv.Error"}:
        where = _where(exc)
        return f"{where}not valid CSV ({one_line(str(exc))})" if where else None
    if "pydantic_core._pydantic_core.ValidationError" in names:
        return f"{_where(exc)}{validation_message(exc)}"  # the file whose content it validated
    if isinstance(exc, MemoryError):
        return "out of memory (MemoryError)"
    return None


def user_message(exc: BaseException) -> str | None:
    """One line for a user error (also one raised inside a Ray task or a stage), or None for a bug."""
    if type(exc).__module__.split(".")[0] in ("typer", "click"):
        return None  # usage errors, typer.Exit, Abort: the CLI library prints and exits with these
    for e in _causes(exc):
        if _type_names(e) & _WRAPPER_TYPES:
            # The wrapper's text names the step; it is a user error when its root cause is one,
            # and says that cause when its own text does not (Ray Data's "UDF failed ...").
            cause = next((m for m in map(_direct_message, list(_causes(e))[1:]) if m is not None), None)
            if cause is None:
                return None
            text = one_line(str(e))
            return text if one_line(cause) in text else f"{text} (cause: {one_line(cause)})"
        msg = _direct_message(e)
        if msg is not None:
            return one_line(msg)
    return None


def report(message: str) -> None:
    """Print one error line on stderr (plain text: rich would wrap it at 80 columns off a terminal)."""
    typer.echo(typer.style("error:", fg="red", bold=True) + " " + message, err=True)


def enable_debug(on: bool = True) -> None:
    """`curate --debug`: tracebacks for user errors too (also for Ray workers, via the environment)."""
    if on:
        os.environ[DEBUG_ENV] = "1"


class CurateGroup(typer.core.TyperGroup):
    """The root `curate` group: every command and subcommand runs inside `invoke`, so a user error
    anywhere below becomes one line and exit code 2 (the traceback with --debug / CURATE_DEBUG=1)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:  # noqa: BLE001 - only user errors are handled; bugs re-raise
            msg = user_message(exc)
            if msg is None or debug_enabled():
                raise
            report(msg)
            raise typer.Exit(EXIT_USER_ERROR) from None

