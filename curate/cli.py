"""`curate` command line: the YAML runner and one command per stage, all through one runner."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
import yaml
from rich.console import Console

from curate.config import ConfigError, PipelineConfig, load_pipeline, pipeline_from_dict
from curate.errors import (
    EXIT_USER_ERROR, CurateGroup, UserError, debug_enabled, enable_debug, report, user_message,
)

app = typer.Typer(
    help="curate: Common Crawl → clean, deduplicated, mixed, tokenized pretraining data.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    cls=CurateGroup,  # one error path for every command: curate/errors.py
)
console = Console(stderr=True)

# Options shared by every command that runs work.
OUTPUT = typer.Option(..., "--output", "-o", help="Output directory (one folder per checkpointed stage).")
ADDRESS = typer.Option(None, "--address", help="Ray cluster address (ray://host:10001 or host:6379); "
                       "default: start an embedded local Ray.")
RESUME = typer.Option(True, "--resume/--no-resume", help="Skip stages already committed by an "
                      "earlier run of the same settings (and finished tasks of an interrupted one).")
FORCE = typer.Option(False, "--force", help="Redo every stage from scratch, ignoring commits.")
WORKERS = typer.Option(None, "--workers", min=1, help="Parallel workers per stage (default: all CPUs).")
NUM_CPUS = typer.Option(None, "--num-cpus", min=1, help="CPUs for the embedded Ray (default: all).")
SEED = typer.Option(0, "--seed", help="Seed for every random choice (same input + seed = same output).")
SET = typer.Option(None, "--set", help="Any stage parameter as KIND.KEY=VALUE (VALUE parsed as YAML), "
                   "e.g. --set gopher_quality.min_doc_words=30. Repeatable.")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar while stages run.")


def _fail(msg: str) -> None:
    raise UserError(msg)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show the full traceback of every error "
                                     "(also: CURATE_DEBUG=1).")) -> None:
    """curate: Common Crawl → clean, deduplicated, mixed, tokenized pretraining data."""
    enable_debug(debug)


def _apply_sets(stages: list[dict[str, Any]], sets: list[str] | None) -> None:
    for item in sets or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            _fail(f"--set {item!r}: expected KIND.KEY=VALUE")
        lhs, value = item.split("=", 1)
        kind, key = lhs.split(".", 1)
        matches = [s for s in stages if kind in s]
        if not matches:
            _fail(f"--set {item!r}: no stage {kind!r} in this command (stages: "
                  f"{', '.join(next(iter(s)) for s in stages)})")
        for s in matches:
            s[kind] = dict(s[kind] or {})
            s[kind][key] = yaml.safe_load(value)


def _run(cfg: PipelineConfig, address: str | None, resume: bool, force: bool, workers: int | None,
         progress: bool, source: str) -> None:
    from curate.runner import RunOptions, run_pipeline
    from curate.stats import source_table, summary_table

    opts = RunOptions(resume=resume, force=force, address=address, workers=workers, progress=progress)
    result = run_pipeline(cfg, opts, source)  # user errors (also StageFailed): curate/errors.py
    out = Console(width=None if sys.stdout.isatty() else 160)
    out.print(summary_table(result.stats, title=f"{cfg.name}: {result.wall_s:.1f} s"))
    if len({src for s in result.stats for src in s.by_source}) > 1:
        out.print(source_table([s for s in result.stats if s.by_source]))
    out.print(f"output: {result.final_dir}  (stats per stage in {result.output}/<stage>/_stats.json)")


def _adhoc(name: str, inputs: list[str], output: Path, stages: list[dict[str, Any]], seed: int,
           num_cpus: int | None, sets: list[str] | None) -> PipelineConfig:
    _apply_sets(stages, sets)
    data = {"name": name, "inputs": inputs, "output": str(output), "seed": seed, "stages": stages,
            "ray": {"num_cpus": num_cpus}}
    try:
        return pipeline_from_dict(data, f"curate {name}")
    except ConfigError as e:
        _fail(str(e))
        raise


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="Pipeline YAML file."),
    address: Optional[str] = ADDRESS, resume: bool = RESUME, force: bool = FORCE,
    workers: Optional[int] = WORKERS, progress: bool = PROGRESS,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Override the YAML's output."),
) -> None:
    """Run a whole pipeline YAML (embedded Ray by default, or a cluster with --address)."""
    try:
        cfg = load_pipeline(pipeline)
    except ConfigError as e:
        _fail(str(e))
    if output is not None:
        cfg = cfg.model_copy(update={"output": str(output)})
    _run(cfg, address, resume, force, workers, progress, str(pipeline))


@app.command()
def validate(pipeline: Path = typer.Argument(..., help="Pipeline YAML file.")) -> None:
    """Check a pipeline YAML (stages, keys, types, column contracts) without running it."""
    from curate.plan_graph import build_segments

    try:
        cfg = load_pipeline(pipeline)
        segments = build_segments(cfg, str(pipeline))
    except ConfigError as e:
        _fail(str(e))
    typer.echo(f"{pipeline}: valid — {len(cfg.stages)} stages in {len(segments)} committed steps:")
    for seg in segments:
        typer.echo(f"  {cfg.output}/{seg.name}: " + " → ".join(s.name for s in seg.stages))


@app.command()
def extract(
    inputs: List[str] = typer.Argument(..., help="WARC/WET files, globs, folders, s3:// or https:// "
                                       "URIs, or a Common Crawl warc.paths.gz listing."),
    output: Path = OUTPUT,
    extractor: str = typer.Option("trafilatura", help="Main-text extractor: trafilatura or resiliparse."),
    address: Optional[str] = ADDRESS, resume: bool = RESUME, force: bool = FORCE,
    workers: Optional[int] = WORKERS, num_cpus: Optional[int] = NUM_CPUS, seed: int = SEED,
    sets: Optional[List[str]] = SET, progress: bool = PROGRESS,
) -> None:
    """Extract main text from WARC (HTML) and WET records into Parquet documents."""
    stages = [{"extract": {"extractor": extractor}}]
    cfg = _adhoc("extract", inputs, output, stages, seed, num_cpus, sets)
    _run(cfg, address, resume, force, workers, progress, "curate extract")


DEFAULT_RULES = "language_id,gopher_quality,gopher_repetition,c4,fineweb"


@app.command("filter")
def filter_(
    inputs: List[str] = typer.Argument(..., help="Parquet files or folders (e.g. OUT/extract)."),
    output: Path = OUTPUT,
    rules: str = typer.Option(DEFAULT_RULES, help="Comma-separated filter stages to run, in order "
                              "(language_id, gopher_quality, gopher_repetition, c4, fineweb, url_blocklist)."),
    languages: Optional[str] = typer.Option(None, help="Languages to keep, comma-separated "
                                            "(e.g. en,de); default: the language_id stage's default."),
    lang_threshold: Optional[float] = typer.Option(None, help="Minimum fastText language score."),
    blocklist: Optional[Path] = typer.Option(None, help="File of blocked domains/URLs; adds url_blocklist."),
    pii: bool = typer.Option(False, "--pii", help="Then redact e-mail, public IP addresses and phone "
                             "numbers (docs/hygiene.md); --set pii.phone=drop|count|off per kind."),
    address: Optional[str] = ADDRESS, resume: bool = RESUME, force: bool = FORCE,
    workers: Optional[int] = WORKERS, num_cpus: Optional[int] = NUM_CPUS, seed: int = SEED,
    sets: Optional[List[str]] = SET, progress: bool = PROGRESS,
) -> None:
    """Language ID, Gopher/C4/FineWeb quality rules, a URL blocklist and PII redaction; each drop counted by reason."""
    kinds = [r.strip() for r in rules.split(",") if r.strip()]
    if blocklist is not None and "url_blocklist" not in kinds:
        kinds.insert(0, "url_blocklist")
    stages: list[dict[str, Any]] = []
    for kind in kinds:
        params: dict[str, Any] = {}
        if kind == "language_id":
            if languages is not None:
                params["languages"] = [x.strip() for x in languages.split(",") if x.strip()]
            if lang_threshold is not None:
                params["threshold"] = lang_threshold
        if kind == "url_blocklist" and blocklist is not None:
            params["path"] = str(blocklist)
        stages.append({kind: params})
    if pii and "pii" not in kinds:
        stages.append({"pii": {}})
    if not stages:
        _fail("no stage to run: give --rules and/or --pii")
    cfg = _adhoc("filter", inputs, output, stages, seed, num_cpus, sets)
    _run(cfg, address, resume, force, workers, progress, "curate filter")


@app.command()
def dedup(
    inputs: List[str] = typer.Argument(..., help="Parquet files or folders."),
    output: Path = OUTPUT,
    exact: bool = typer.Option(False, "--exact", help="Exact dedup on a hash of normalised text."),
    minhash: bool = typer.Option(False, "--minhash", help="Near-dedup with MinHash LSH."),
    threshold: Optional[float] = typer.Option(None, help="--minhash: Jaccard similarity at which "
                                              "documents are near-duplicates (default 0.8)."),
    num_perm: Optional[int] = typer.Option(None, help="--minhash: permutations per signature (default 128)."),
    ngram: Optional[int] = typer.Option(None, help="--minhash: words per shingle (default 5)."),
    bands: Optional[int] = typer.Option(None, help="--minhash: LSH bands (with --rows; default: "
                                        "chosen from the threshold as datasketch does)."),
    rows: Optional[int] = typer.Option(None, help="--minhash: rows per LSH band (with --bands)."),
    verify: Optional[str] = typer.Option(None, help="--minhash: check candidate pairs by 'exact' "
                                         "shingle-set Jaccard (default), 'signature' estimate, or 'none'."),
    survivor: Optional[str] = typer.Option(None, help="--minhash: who survives a cluster: longest "
                                           "(default), shortest, smallest_id, max:COLUMN, min:COLUMN."),
    side_output: bool = typer.Option(False, "--side-output", help="--minhash: also write the removed "
                                     "documents, with their cluster_id, to OUT/minhash_dedup/_dropped."),
    paragraphs: bool = typer.Option(False, "--paragraphs", help="Crawl-wide paragraph (line) dedup: "
                                    "lines found in more than --max-documents documents are removed."),
    max_documents: Optional[int] = typer.Option(None, help="--paragraphs: a line in more documents than "
                                                "this is removed (default 1)."),
    address: Optional[str] = ADDRESS, resume: bool = RESUME, force: bool = FORCE,
    workers: Optional[int] = WORKERS, num_cpus: Optional[int] = NUM_CPUS, seed: int = SEED,
    sets: Optional[List[str]] = SET, progress: bool = PROGRESS,
) -> None:
    """Remove exact (--exact) and/or near (--minhash) duplicates, and/or repeated paragraphs (--paragraphs)."""
    if not (exact or minhash or paragraphs):
        _fail("choose --exact, --minhash and/or --paragraphs")
    if max_documents is not None and not paragraphs:
        _fail("--max-documents is a --paragraphs option")
    mh_flags = {"threshold": threshold, "num_perm": num_perm, "ngram": ngram, "bands": bands, "rows": rows,
                "verify": verify, "survivor": survivor, "side_output": side_output or None}
    mh_params = {k: v for k, v in mh_flags.items() if v is not None}
    if mh_params and not minhash:
        _fail(f"--{next(iter(mh_params)).replace('_', '-')} is a --minhash option")
    stages: list[dict[str, Any]] = []
    if exact:
        stages.append({"exact_dedup": {}})
    if minhash:
        stages.append({"minhash_dedup": mh_params})
    if paragraphs:
        stages.append({"paragraph_dedup": {} if max_documents is None else {"max_documents": max_documents}})
    cfg = _adhoc("dedup", inputs, output, stages, seed, num_cpus, sets)
    _run(cfg, address, resume, force, workers, progress, "curate dedup")


@app.command()
def decontaminate(
    inputs: List[str] = typer.Argument(..., help="Parquet files or folders."),
    output: Path = OUTPUT,
    eval_sets: List[str] = typer.Option(..., "--eval", help="An evaluation set as NAME=PATH[,PATH...] "
                                        "or PATH (named after the file): JSONL, Parquet, text files, "
                                        "globs or folders; repeatable."),
    fields: Optional[str] = typer.Option(None, help="JSONL/Parquet fields joined per sample, "
                                         "comma-separated (default: text), e.g. question,answer."),
    ngram: Optional[int] = typer.Option(None, help="Words per n-gram (default 13)."),
    action: Optional[str] = typer.Option(None, help="'drop' the document (default) or 'cut' the "
                                         "overlapping spans with --set decontaminate.context_chars=N."),
    address: Optional[str] = ADDRESS, resume: bool = RESUME, force: bool = FORCE,
    workers: Optional[int] = WORKERS, num_cpus: Optional[int] = NUM_CPUS, seed: int = SEED,
    sets: Optional[List[str]] = SET, progress: bool = PROGRESS,
) -> None:
    """Remove documents (or spans) sharing word n-grams with evaluation sets; what went is kept in
    OUT/decontaminate/_removed/decontaminate."""
    specs = []
    for item in eval_sets:
        name, sep, paths = item.partition("=")
        if not sep:
            name, paths = Path(item.rstrip("/")).name.split(".")[0] or "eval", item
        if not name or not paths:
            _fail(f"--eval {item!r}: expected NAME=PATH[,PATH...] or PATH")
        spec: dict[str, Any] = {"name": name, "paths": [p for p in paths.split(",") if p]}
        if fields:
            spec["fields"] = [f.strip() for f in fields.split(",") if f.strip()]
        specs.append(spec)
    params: dict[str, Any] = {"eval_sets": specs}
    params.update({k: v for k, v in (("ngram", ngram), ("action", action)) if v is not None})
    params["checkpoint"] = True
    cfg = _adhoc("decontaminate", inputs, output, [{"decontaminate": params}], seed, num_cpus, sets)
    _run(cfg, address, resume, force, workers, progress, "curate decontaminate")


@app.command()
def check(output: Path = typer.Argument(..., help="A run's output directory."),
          address: Optional[str] = typer.Option(None, help="Ray cluster to count on (default: an embedded Ray).")) -> None:
    """Verify a finished run: every stage committed, parts match task records, every stage's
    documents in = out + dropped, ids unique (counted on Ray), shards match their manifest.
    Exit code 1 on any problem."""
    from curate.check import check_output

    report = check_output(output, address=address)
    if not report.stages and report.problems:  # no such folder, or not a run's output
        _fail(report.problems[0])
    for s in report.stages:
        typer.echo(f"  {s['stage']}: " + ("committed" if s["committed"] else "NOT committed")
                   + (f", {s['rows']:,} docs in {s['parts']} parts" if "rows" in s else ""))
    for p in report.problems:
        typer.echo(f"problem: {p}", err=True)
    if not report.ok:
        raise typer.Exit(code=1)
    typer.echo(f"{output}: OK")


@app.command()
def stages() -> None:
    """List every stage kind with its parameters and defaults."""
    from curate.registry import registry

    for kind, cls in registry().items():
        typer.echo(f"{kind}  ({cls.__module__}.{cls.__name__})")
        for fname, f in cls.Params.model_fields.items():
            desc = f" — {f.description}" if f.description else ""
            default = "(required)" if f.is_required() else repr(f.get_default(call_default_factory=True))
            typer.echo(f"    {fname} = {default}{desc}")


def _mount_subcommands() -> None:
    """Sub-apps that live beside their code: classifiers, pools, planner."""
    from curate.classify.cli import classify_app, pools_command
    from curate.planner.cli import plan_app
    from curate.shard.cli import shard_app

    app.add_typer(classify_app, name="classify", help="Train the quality and domain classifiers.")
    app.command("pools", help="Group classified documents into pools (source × domain × "
                "quality bucket): pools.json + per-pool Parquet.")(pools_command)
    app.add_typer(plan_app, name="plan", help="The mixture planner: pools, budget → plan.json + report.")
    app.add_typer(shard_app, name="shard", help="Mix per plan.json, tokenize, write shuffled token "
                  "shards + manifest; `curate shard verify DIR` re-checks them.")


_mount_subcommands()


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except Exception as e:  # noqa: BLE001 - raised outside a command (CurateGroup handles those)
        msg = user_message(e)
        if msg is None or debug_enabled():
            raise
        report(msg)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
