"""Every `curate` command and subcommand fails on bad input the same way: one line, exit code 2.

The commands are discovered from the Typer app (the click command tree), not listed here, so a
command added later is covered without touching this file. Each is run in-process on (a) a missing
input, (b) an empty file and (c) a truncated file (the first half of a valid one) and must exit
non-zero with exactly one line of output that names the file, no traceback, and without starting Ray
(a bad input is found before work starts).

`python tests/test_cli_errors.py` prints the table of what each command prints (closing note of
issue 17).
"""
from __future__ import annotations

import gzip
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer.main
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MODES = ("missing", "empty", "truncated")

# Inputs of commands whose input options are all optional (they take one of several inputs).
# (Otherwise the optional options named in KIND_BY_NAME are taken, e.g. --pools and --plan.)
OPTIONAL_INPUTS = {
    ("classify", "train-quality"): ("web",),
}
# What each input is, by parameter name; otherwise guessed from its help text (first match wins).
KIND_BY_NAME = {"pools": "json", "plan": "json", "fit": "json", "pipeline": "yaml", "config": "yaml",
                "folder": "dir", "params_file": "jsonl", "mixtures": "csv", "losses": "csv"}
KIND_BY_HELP = (("warc", "warc"), ("jsonl", "jsonl"), ("yaml", "yaml"), ("csv", "csv"),
                ("parquet", "parquet"), ("folder", "dir"), ("directory", "dir"), ("json", "json"))
# Options a command needs besides its inputs to get as far as reading them.
EXTRA_ARGS = {("dedup",): ["--exact"]}
EXT = {"json": ".json", "jsonl": ".jsonl", "yaml": ".yaml", "csv": ".csv", "parquet": ".parquet",
       "warc": ".warc.gz", "dir": "", "text": ".txt"}
OUTPUT_NAMES = {"output", "out"}
# A WARC cut short is not an error: its complete records are extracted and the cut one is a counted
# skip (`truncated_record`), as WARC readers do for partial downloads; the run needs Ray, and
# tests/test_bad_inputs_pipeline.py checks it on real data. The table shows what it prints.
COUNTED_SKIP = {("warc", "truncated")}


@dataclass
class Case:
    path: tuple[str, ...]       # e.g. ("plan", "fit")
    inputs: list[tuple[Any, str]]  # (click parameter, kind)
    outputs: list[Any]          # output options, given a fresh folder

    @property
    def name(self) -> str:
        return " ".join(self.path)


def _root():
    from curate.cli import app

    return app


def _runnable(group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command that runs something: leaf commands, and groups that run without a subcommand."""
    for name, cmd in sorted(group.commands.items()):
        path = prefix + (name,)
        if hasattr(cmd, "commands"):
            if cmd.invoke_without_command and cmd.callback is not None:
                yield path, cmd
            yield from _runnable(cmd, path)
        else:
            yield path, cmd


def _kind(param) -> str:
    if param.name in KIND_BY_NAME:
        return KIND_BY_NAME[param.name]
    text = (param.help or "").lower()
    return next((kind for word, kind in KIND_BY_HELP if word in text), "json")


def discover() -> list[Case]:
    cases = []
    for path, cmd in _runnable(typer.main.get_command(_root())):
        is_option = {p.name: p.param_type_name == "option" for p in cmd.params}
        outputs = [p for p in cmd.params if p.name in OUTPUT_NAMES and is_option[p.name]]
        wanted = set(OPTIONAL_INPUTS.get(path, ()))
        inputs = [(p, _kind(p)) for p in cmd.params if p not in outputs and (p.required or p.name in wanted)]
        if not inputs:  # every input optional (one of several ways in): the well-known input files
            inputs = [(p, _kind(p)) for p in cmd.params if p.name in KIND_BY_NAME and p.name not in ("config", "fit")]
        cases.append(Case(path, inputs, outputs))
    return cases


# ------------------------------------------------------------------ inputs: missing, empty, truncated
def _valid_bytes(kind: str) -> bytes:
    """A small valid file of each kind; its first half is the truncated input."""
    if kind == "json":
        return json.dumps({"schema": "curate.pools/v1", "pools": [
            {"name": f"pool{i}", "tokens": 1e9, "quality": 1.0, "path": f"pool{i}/part-0.parquet"}
            for i in range(4)]}, indent=2).encode()
    if kind == "jsonl":
        return b"".join(json.dumps({"text": f"document {i} " * 20, "label": "news", "key": "u",
                                    "value": 0.5}).encode() + b"\n" for i in range(6))
    if kind == "yaml":
        return (REPO / "pipelines" / "sample.yaml").read_bytes()
    if kind == "csv":
        return b"index,a,b,c\n" + b"".join(f"{i},0.2,0.3,0.5\n".encode() for i in range(20))
    if kind in ("parquet", "dir"):
        words = "the harbour committee met on tuesday to discuss the ferry timetable".split()
        table = pa.table({"id": [f"d{i}" for i in range(300)], "source": ["cc"] * 300,
                          "url": [f"http://e.example/{i}" for i in range(300)],
                          "text": [" ".join(words[(i + j) % len(words)] for j in range(80)) for i in range(300)],
                          "quality_score": [i / 300 for i in range(300)]})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()
    if kind == "warc":
        return (SHARED / "cc" / "CC-MAIN-2020-34-sample.warc.gz").read_bytes()
    return b"".join(f"line {i} of a plain text file\n".encode() for i in range(50))


def make_input(tmp: Path, name: str, kind: str, mode: str) -> Path:
    """The bad input: a path that does not exist, an empty file (folder) or a cut file."""
    path = tmp / mode / f"{name}{EXT[kind]}"
    if mode == "missing":
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir":  # an empty folder; or one whose metadata (a shard manifest, a commit) is cut
        path.mkdir()
        if mode == "truncated":
            blob = json.dumps({"format": "curate.shards/v1", "rows": 10, "stages": ["extract"]}).encode()
            (path / "stage").mkdir()
            for meta in ("manifest.json", "stage/_COMMITTED"):
                (path / meta).write_bytes(blob[: len(blob) // 2])
        return path
    path.write_bytes(b"" if mode == "empty" else truncated(kind))
    return path


def truncated(kind: str) -> bytes:
    """The first half of a valid file, cut inside a line or token (as a copy that stopped early)."""
    data = _valid_bytes(kind)
    cut = len(data) // 2
    if kind in ("jsonl", "yaml", "text"):
        while data[cut - 1:cut] in (b"\n", b" ", b"#"):
            cut += 1
    if kind == "csv":  # cut after a separator: the last row lacks fields (a cut number still parses)
        cut = data.index(b",", cut) + 1
    if kind == "yaml":  # a cut that still parses is a shorter file, not a truncated one
        import yaml

        while cut < len(data):
            try:
                yaml.safe_load(data[:cut])
            except yaml.YAMLError:
                break
            cut += 1
    return data[:cut]


def args_for(case: Case, tmp: Path, mode: str) -> tuple[list[str], list[Path]]:
    args, bad = list(case.path) + EXTRA_ARGS.get(case.path, []), []
    for param, kind in case.inputs:
        value = make_input(tmp, param.name, kind, mode)
        bad.append(value)
        args += [str(value)] if param.param_type_name == "argument" else [param.opts[0], str(value)]
    for param in case.outputs:
        args += [param.opts[0], str(tmp / mode / f"{param.name}-new")]
    return args, bad


@dataclass
class Outcome:
    exit_code: int
    lines: list[str]
    traceback: bool
    names_file: bool


def run_case(case: Case, tmp: Path, mode: str) -> Outcome:
    args, bad = args_for(case, tmp, mode)
    res = CliRunner().invoke(_root(), args)
    text = res.stdout + res.stderr
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        lines.append("".join(traceback.format_exception(res.exception)))
    return Outcome(res.exit_code, lines, "Traceback" in "\n".join(lines) or res.exception is not None
                   and not isinstance(res.exception, SystemExit),
                   any(str(b) in text or b.name in text for b in bad))


CASES = discover()


def test_discovers_every_command():
    names = {c.name for c in CASES}
    # The commands the issue names are found by walking the app (new ones join automatically).
    assert {"run", "validate", "extract", "filter", "dedup", "check", "pools", "plan", "plan fit",
            "plan qqt", "plan regmix", "classify train-quality", "classify train-domain", "shard",
            "shard verify"} <= names
    for c in CASES:
        assert c.inputs or c.name == "stages", f"`curate {c.name}` has no input: add it to OPTIONAL_INPUTS"


@pytest.fixture
def _no_ray(monkeypatch):
    """A bad input must be refused before any work starts: starting Ray here is a failure."""
    import ray

    def refuse(*a, **k):
        raise AssertionError("the command started Ray before checking its inputs")

    monkeypatch.setattr(ray, "init", refuse)
    # in a full test session Ray may already be up (ray_session): refuse the runner's use of it too
    monkeypatch.setattr("curate.runner.ray_context", refuse)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(SHARED / "tokenizers"))


def counted_skip(case: Case, mode: str) -> bool:
    return any((kind, mode) in COUNTED_SKIP for _, kind in case.inputs)


@pytest.mark.parametrize("case,mode", [(c, m) for c in CASES if c.inputs for m in MODES if not counted_skip(c, m)],
                         ids=lambda v: v.name.replace(" ", "-") if isinstance(v, Case) else v)
@pytest.mark.usefixtures("_no_ray")
def test_bad_input_is_one_line(case, mode, tmp_path):
    out = run_case(case, tmp_path, mode)
    shown = "\n".join(out.lines)
    assert out.exit_code != 0, shown
    assert not out.traceback, shown
    assert len(out.lines) == 1, shown
    assert out.lines[0].startswith("error: "), shown
    assert out.names_file, shown
    assert out.exit_code == 2, shown


@pytest.mark.usefixtures("_no_ray")
def test_wrong_schema_is_one_line_naming_the_file(tmp_path):
    """Readable files of the wrong shape: a Parquet file without `text`, a pools.json without pools,
    a losses CSV without the target column."""
    docs = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["a"], "body": ["no text column here"]}), docs)
    pools = tmp_path / "pools.json"
    pools.write_text('{"version": 1, "buckets": []}')
    csv = tmp_path / "runs.csv"
    csv.write_text("index,a,b\n" + "".join(f"{i},0.{i},0.{9 - i}\n" for i in range(10)))
    for args, bad, says in (
        (["filter", str(docs), "-o", str(tmp_path / "f")], docs, "no column 'text', which stage 'language_id' needs"),
        (["plan", "--pools", str(pools), "--out", str(tmp_path / "p")], pools, "pools"),
        (["plan", "regmix", "--mixtures", str(csv), "--losses", str(csv), "--out", str(tmp_path / "r")], csv,
         "no loss column for --target 'pile_cc'"),
    ):
        res = CliRunner().invoke(_root(), args)
        lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1, res.output
        assert lines[0].startswith(f"error: {bad}: ") and says in lines[0], lines[0]


# ------------------------------------------------------------------ what is a user error, what a bug
def test_user_and_bug_classification(tmp_path):
    from pydantic import BaseModel, ValidationError
    from ray.exceptions import RayTaskError

    from curate.errors import UserError, user_message
    from curate.runner import StageFailed
    from processors.base import ProcessorError

    missing = FileNotFoundError(2, "No such file or directory", "/data/x.parquet")
    assert user_message(missing) == "/data/x.parquet: does not exist"
    assert user_message(ProcessorError("quality: model_path 'm.bin' does not exist")) == \
        "quality: model_path 'm.bin' does not exist"
    assert user_message(UserError("a\nb")) == "a; b"  # one line, always
    # raised inside a Ray task: the task's own error decides
    assert user_message(RayTaskError("read", "remote traceback", missing)) == "/data/x.parquet: does not exist"
    assert user_message(RayTaskError("read", "remote traceback", missing).as_instanceof_cause()) == \
        "/data/x.parquet: does not exist"
    assert user_message(RayTaskError("f", "tb", KeyError("text"))) is None  # a bug: traceback
    # a failed step is one line when what failed is a user error (a full disk), a traceback when a bug
    for cause, expected in ((OSError(28, "No space left on device"), True), (TypeError("bad operand"), False)):
        try:
            try:
                raise RayTaskError("write", "tb", cause)
            except RayTaskError as e:
                raise StageFailed(f"step 'dedup' failed: {type(cause).__name__}: {cause}") from e
        except StageFailed as failed:
            assert (user_message(failed) is not None) == expected
    # Ray Data wraps a task's error in UserCodeException; only the remote traceback keeps the original
    from ray.exceptions import UserCodeException

    remote = ("Traceback (most recent call last):\n  File \"curate/io.py\", line 110, in write\n"
              "OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device\n\n"
              "The above exception was the direct cause of the following exception:\n\n"
              "ray.exceptions.UserCodeException: UDF failed to process a data block.")
    for tb, expected in ((remote, "No space left on device"), (remote.replace("OSError", "KeyError"), None)):
        try:
            try:
                raise RayTaskError("reduce", tb, UserCodeException("UDF failed to process a data block."))
            except RayTaskError as e:
                raise StageFailed("step 'exact_dedup' failed: UserCodeException: UDF failed to process a data block.") from e
        except StageFailed as failed:
            msg = user_message(failed)
            assert msg is None if expected is None else msg == (
                "step 'exact_dedup' failed: UserCodeException: UDF failed to process a data block. (cause: "
                "[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device)"), msg
    # malformed files name themselves even when the error does not carry the name
    path = tmp_path / "pools.json"  # a loader's local: the file it read
    path.write_text('{"pools": [')
    try:
        json.loads(path.read_text())
    except ValueError as e:
        assert user_message(e) == f"{path}: not valid JSON (Expecting value: line 1 column 12)"
    output = tmp_path / "model.bin"  # an existing file under another name is not taken for the input
    output.write_text("x")

    class M(BaseModel):
        n: int

    try:
        M(n="x")
    except ValidationError as e:
        del path  # (nor a stale local of an earlier step)
        assert user_message(e) == "M: n: Input should be a valid integer, unable to parse string as an integer"
    for bug in (KeyError("x"), TypeError("y"), AttributeError("z"), ValueError("w"), AssertionError()):
        assert user_message(bug) is None


def test_user_error_inside_a_real_ray_task_is_one_line(ray_session, tmp_path):
    from curate.errors import user_message

    @ray_session.remote
    def read(path: str) -> str:
        with open(path) as f:
            return f.read()

    with pytest.raises(Exception) as e:
        ray_session.get(read.remote(str(tmp_path / "gone.json")))
    assert user_message(e.value) == f"{tmp_path / 'gone.json'}: does not exist"


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("CURATE_DEBUG", raising=False)  # and unset again after this test
    args = ["plan", "qqt", "--params-file", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "q")]
    assert CliRunner().invoke(_root(), args).exit_code == 2
    res = CliRunner().invoke(_root(), ["--debug"] + args)
    assert isinstance(res.exception, FileNotFoundError)  # re-raised: python prints its traceback
    os.environ.pop("CURATE_DEBUG")  # --debug set it for this process (and its Ray workers)
    assert CliRunner().invoke(_root(), args).exit_code == 2
    monkeypatch.setenv("CURATE_DEBUG", "1")
    assert isinstance(CliRunner().invoke(_root(), args).exception, FileNotFoundError)


def run_counted_skip(case: Case, tmp: Path, mode: str) -> str:
    """A counted skip runs for real (Ray included): the table shows the exit code and the stats."""
    import subprocess

    args, _ = args_for(case, tmp, mode)
    res = subprocess.run([str(REPO / ".venv" / "bin" / "curate"), *args, "--no-progress", "--num-cpus", "2"],
                         capture_output=True, text=True, timeout=600)
    stats = sorted((tmp / mode).glob("*-new/*/_stats.json"))
    summary = "; ".join(f"docs_out={d['docs_out']}, drops={d['drops']}" for d in
                        (json.loads(p.read_text()) for p in stats))
    return f"counted skip, exit {res.returncode}: {summary or res.stderr.strip()[-200:]}"


def table(tmp: Path) -> str:
    rows = ["| command | missing input | empty file | truncated file |", "|---|---|---|---|"]
    for case in CASES:
        if not case.inputs:
            continue
        cells = []
        for mode in MODES:
            if counted_skip(case, mode):
                cells.append(run_counted_skip(case, tmp / case.name.replace(" ", "_"), mode))
                continue
            o = run_case(case, tmp / case.name.replace(" ", "_"), mode)
            shown = " / ".join(o.lines)[:300].replace("|", "\\|").replace(str(tmp), "$TMP")
            cells.append(f"`{shown}` (exit {o.exit_code})")
        rows.append(f"| `curate {case.name}` ({', '.join(f'{p.name}: {k}' for p, k in case.inputs)}) | "
                    + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    import tempfile

    import ray

    ray.init = lambda *a, **k: (_ for _ in ()).throw(AssertionError("started Ray"))  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="curate-cli-errors-") as d:
        print(table(Path(d)))
    sys.exit(0)
