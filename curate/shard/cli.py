"""`curate shard`: mix pools per the plan, tokenise, write shuffled token shards; `curate shard verify`.

Mounted by curate/cli.py as `app.add_typer(shard_app, name="shard")`.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

shard_app = typer.Typer(
    help="Mix pools per the plan, tokenize, and write globally shuffled token shards (Parquet) with a "
         "manifest; `verify` re-checks a shard folder.",
    invoke_without_command=True, no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False,
)
console = Console(stderr=True)

_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_count(text: str | None) -> int | None:
    """'1e9', '250M', '2.5B', '1000000' → int."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMbBgGtT]?)\s*", text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a token count (e.g. 1e9, 250M, 2.5B)")
    return int(round(float(m.group(1)) * _SUFFIX[m.group(2).lower()]))


def _fail(msg: str, code: int = 2) -> None:
    if code == 2:
        from curate.errors import UserError

        raise UserError(msg)  # one line, exit 2: curate/errors.py
    console.print(f"[bold red]error:[/] {msg}", highlight=False)
    raise typer.Exit(code=code)


def pools_table(manifest: dict[str, Any]) -> Table:
    t = Table(title=f"{manifest['totals']['tokens']:,} tokens in {manifest['totals']['shards']} shards, "
                    f"{manifest['totals']['rows']:,} rows ({manifest['mode']}"
                    + (f", seq_len {manifest['seq_len']}" if manifest.get("seq_len") else "")
                    + (f", rows of {manifest['row_tokens']}" if manifest.get("row_tokens", manifest.get("seq_len"))
                       != manifest.get("seq_len") else "") + ")")
    for col in ("pool", "planned tokens", "realised tokens", "difference", "epochs", "tokenized", "documents"):
        t.add_column(col, justify="left" if col == "pool" else "right")
    for p in manifest["pools"]:
        ep = p.get("realised_epochs")
        t.add_row(p["name"], f"{p['planned_tokens']:,}", f"{p['realised_tokens']:,}",
                  f"{p['difference']:+,} ({p['relative_difference']:+.4%})",
                  f"{ep:.3f}" if ep is not None else f"<1 (sampled {p['sampled_to']:.0%})",
                  f"{p['tokenized_tokens']:,}", f"{p['tokenized_documents']:,}")
    return t


@shard_app.callback()
def shard(
    ctx: typer.Context,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for shard-*.parquet + manifest.json."),
    plan: Optional[Path] = typer.Option(None, "--plan", help="plan.json from `curate plan` (tokens per pool)."),
    pools: Optional[Path] = typer.Option(None, "--pools", help="pools.json from `curate pools` (files per pool)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Without a plan: POOL=W,... (normalised)."),
    total_tokens: Optional[str] = typer.Option(None, "--total-tokens", help="Without a plan: tokens of the mix "
                                               "(1e9, 250M, ...)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with these settings (flags override it)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="tiktoken encoding (cl100k_base, "
                                            "o200k_base), a tokenizer.json path, or a Hub id. Default cl100k_base."),
    tiktoken_cache: Optional[str] = typer.Option(None, "--tiktoken-cache", help="Folder of tiktoken BPE files "
                                                 "(TIKTOKEN_CACHE_DIR), for offline use."),
    bos: Optional[bool] = typer.Option(None, "--bos/--no-bos", help="Prepend BOS to each document (default off)."),
    eos: Optional[bool] = typer.Option(None, "--eos/--no-eos", help="Append EOS to each document (default on)."),
    bos_token: Optional[str] = typer.Option(None, "--bos-token", help="BOS token text or id."),
    eos_token: Optional[str] = typer.Option(None, "--eos-token", help="EOS token text or id."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", min=2, help="Tokens per packed sequence (2048)."),
    format: Optional[str] = typer.Option(None, "--format", help="Files to write, comma-separated: parquet, "
                                         "megatron (.bin/.idx), nanotron (datatrove .ds), mds (MosaicML), litdata "
                                         "(LitGPT). Default parquet."),
    per_pool: Optional[bool] = typer.Option(None, "--per-pool/--no-per-pool", help="Also write each pool's "
                                            "planned documents once, per pool, with trainer-side weights in "
                                            "OUTPUT/blend/."),
    shifted_targets: Optional[bool] = typer.Option(None, "--shifted-targets/--no-shifted-targets", help="Packed "
                                                   "rows of seq_len + 1 tokens (default: on with nanotron or "
                                                   "litdata, whose readers take seq_len + 1 per sample)."),
    documents: Optional[bool] = typer.Option(None, "--documents/--packed", help="One row per document instead "
                                             "of packed sequences."),
    shard_size: Optional[str] = typer.Option(None, "--shard-size", help="Target shard size as token bytes "
                                             "(4 per token), e.g. 256MB."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Shuffle seed: order of sequences (0)."),
    mix_seed: Optional[int] = typer.Option(None, "--mix-seed", help="Content seed: epoch permutations and "
                                           "partial-epoch samples (0)."),
    min_copy_gap: Optional[float] = typer.Option(None, "--min-copy-gap", help="Least gap between two copies of "
                                                 "a document, in epochs of its pool (0.2)."),
    provenance: Optional[bool] = typer.Option(None, "--provenance/--no-provenance", help="Add per-row "
                                              "provenance columns (pool, document, epoch, offsets)."),
    sample: Optional[bool] = typer.Option(None, "--sample/--no-sample", help="Tokenise only about what a pool "
                                          "planned below one epoch needs (on)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of the pool files (text)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Parallel workers (default: CPUs)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Tokenizer threads per worker (1)."),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", min=1, help="CPUs of the embedded Ray."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address."),
    keep_cache: Optional[bool] = typer.Option(None, "--keep-cache/--no-keep-cache", help="Keep the token cache "
                                              "(OUTPUT/_work/tokens) for reruns with another seed or seq_len."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Reuse finished tasks of an interrupted run."),
    force: bool = typer.Option(False, "--force", help="Replace shards written with other settings."),
) -> None:
    """Mix, tokenize and write shards (see `curate shard --help`)."""
    if ctx.invoked_subcommand is not None:
        return
    from curate.shard.config import ShardConfig, load_shard_config
    from curate.shard.engine import ShardError, run_shard
    from curate.shard.inputs import InputError, parse_weights
    from processors.tokenizer import TokenizerError

    def _tok_value(v: str | None) -> str | int | None:
        return int(v) if v is not None and v.isdigit() else v

    try:
        tok: dict[str, Any] = {k: v for k, v in dict(
            name=tokenizer, tiktoken_cache=tiktoken_cache, add_bos=bos, add_eos=eos,
            bos_token=_tok_value(bos_token), eos_token=_tok_value(eos_token), threads=threads).items()
            if v is not None}
        flags: dict[str, Any] = dict(
            output=str(output) if output else None, plan=str(plan) if plan else None,
            pools=str(pools) if pools else None, weights=parse_weights(weights) if weights else None,
            total_tokens=parse_count(total_tokens), seq_len=seq_len, format=format, per_pool=per_pool,
            shifted_targets=shifted_targets,
            mode=None if documents is None else ("documents" if documents else "packed"),
            shard_size=shard_size, seed=seed, mix_seed=mix_seed, min_copy_gap=min_copy_gap,
            provenance=provenance, sample=sample, text_column=text_column, workers=workers,
            num_cpus=num_cpus, address=address, keep_cache=keep_cache)
        flags = {k: v for k, v in flags.items() if v is not None}
        if config is not None:
            cfg = load_shard_config(config, flags)
            if tok:
                cfg = cfg.model_copy(update={"tokenizer": cfg.tokenizer.model_copy(update=tok)})
        else:
            if "output" not in flags:
                _fail("give --output DIR (or --config YAML)")
            cfg = ShardConfig(**flags, **({"tokenizer": tok} if tok else {}))
    except (ValueError, InputError) as e:
        _fail(str(e))
    try:
        result = run_shard(cfg, resume=resume, force=force,
                           log=lambda m: console.print(f"[dim]\\[shard][/] {m}", highlight=False))
    except (ShardError, InputError, TokenizerError, FileNotFoundError) as e:
        _fail(str(e))
    out = Console(width=None if sys.stdout.isatty() else 140)
    out.print(pools_table(result.manifest))
    t = result.manifest.get("timing", {})
    if t.get("total_s") and not result.resumed:
        out.print(f"{result.manifest['totals']['tokens'] / t['total_s']:,.0f} tokens/s over {t['total_s']:.1f} s "
                  f"(tokenize {t.get('tokenize_s', 0):.1f} s, mix {t.get('mix_s', 0):.1f} s, scatter "
                  f"{t.get('scatter_s', 0):.1f} s, pack+write {t.get('pack_s', 0):.1f} s)")
    out.print(f"manifest: {result.output / 'manifest.json'}   check with: curate shard verify {result.output}")


@shard_app.command()
def verify(folder: Path = typer.Argument(..., help="A shard folder (holding manifest.json).")) -> None:
    """Re-read every shard: presence, size, SHA-256, Parquet, row and token counts, sequence lengths,
    token ids, per-pool totals. Exit code 1 on any problem."""
    from curate.shard.manifest import read_manifest
    from curate.shard.verify import verify_shards

    read_manifest(folder)  # no folder, or a missing/cut manifest: one error line, exit 2 (curate/errors.py)
    report = verify_shards(folder)
    for p in report.problems:
        typer.echo(f"problem: {p}", err=True)
    if not report.ok:
        typer.echo(f"{folder}: {len(report.problems)} problem(s)", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"{folder}: OK — {report.shards_checked} shards, {report.rows:,} rows, {report.tokens:,} tokens, "
               f"{report.bytes:,} bytes, checksums match"
               + (f"; {report.format_files:,} trainer-format files checked" if report.format_files else ""))


if __name__ == "__main__":  # `python -m curate.shard.cli ...` until `curate shard` is mounted
    import logging
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.basicConfig(level=logging.WARNING)
    shard_app()
