"""Command line: `curate classify train-quality | train-domain` and `curate pools`.

The lead mounts them on the main app (curate/cli.py):

    from curate.classify.cli import classify_app, pools_command
    app.add_typer(classify_app, name="classify")
    app.command("pools")(pools_command)
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from curate.classify.data import ClassifyError, check_parquet_inputs
from curate.errors import UserError, validation_message

classify_app = typer.Typer(help="Train the quality and domain classifiers the `quality` and "
                           "`domain_label` stages use.", no_args_is_help=True, add_completion=False,
                           pretty_exceptions_enable=False)
console = Console(stderr=True)


def _fail(msg: str) -> None:
    raise UserError(msg)  # one line, exit 2: curate/errors.py


def _log(msg: str) -> None:
    console.print(msg, highlight=False)


def _csv(value: Optional[str], cast=str) -> Optional[list]:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return []
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError as e:
        _fail(f"{value!r}: {e}")
        raise


@classify_app.command("train-quality")
def train_quality_command(
    web: Optional[List[str]] = typer.Option(None, "--web", help="Extracted web documents (negatives): "
                                            "Parquet files, globs or folders with a `text` column. Repeatable."),
    web_source: Optional[List[str]] = typer.Option(None, "--web-source", help="Keep only web rows "
                                                    "whose `source` is this (e.g. cc). Repeatable."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Model file to write (.bin for "
                                          "fasttext, .safetensors for embedding); <stem>.eval.json goes beside it."),
    reference: Optional[List[str]] = typer.Option(
        None, "--reference", help="Reference corpus (positives). Repeatable. [default: "
        "../shared/data/reference/wikitext-2-*.txt, WikiText, de-tokenised]"),
    reference_format: Optional[str] = typer.Option(None, help="auto | wikitext | text | jsonl | parquet [auto]"),
    model_type: Optional[str] = typer.Option(None, "--model-type", help="fasttext | embedding [fasttext]"),
    lang: Optional[str] = typer.Option(None, help="Keep only documents in these languages (comma-separated, "
                                       "fastText lid.176); '' keeps all. [en]"),
    chunk_words: Optional[str] = typer.Option(None, help="MIN,MAX words of the training chunks "
                                              "(log-uniform). [50,600]"),
    max_chunks_per_class: Optional[int] = typer.Option(None, help="Cap on chunks per class (quick runs)."),
    test_fraction: Optional[float] = typer.Option(None, help="Fraction of groups (articles, web hosts) held out. [0.2]"),
    threshold: Optional[float] = typer.Option(None, help="Threshold at which precision/recall are reported. [0.5]"),
    seed: Optional[int] = typer.Option(None, help="Seed for chunking, sampling, splitting and training. [0]"),
    lr: Optional[float] = typer.Option(None, help="Learning rate (fastText 0.5; head 3e-3)."),
    epoch: Optional[int] = typer.Option(None, help="Epochs (fastText 20; head 60)."),
    head: Optional[str] = typer.Option(None, help="embedding: linear | mlp [linear]"),
    max_tokens: Optional[int] = typer.Option(None, help="embedding: tokens of each text the encoder reads. [256]"),
    threads: Optional[int] = typer.Option(None, help="embedding: torch threads [torch's default]."),
    embedding_cache: Optional[Path] = typer.Option(None, help="embedding: .npz keeping the chunk "
                                                   "embeddings, reused by later runs on the same chunks."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with any QualityTrainConfig key "
                                          "(nested fasttext: and embedding: blocks); options override it."),
) -> None:
    """Train the quality classifier (reference-like vs web) and write its held-out evaluation."""
    from curate.classify.train_quality import QualityTrainConfig, train_quality

    data: dict = dict(yaml.safe_load(config.read_text()) or {}) if config else {}
    for key, value in (("web", list(web) if web else None),
                       ("web_sources", list(web_source) if web_source else None), ("output", str(output) if output else None),
                       ("reference", list(reference) if reference else None),
                       ("reference_format", reference_format), ("model_type", model_type),
                       ("lang", _csv(lang)), ("max_chunks_per_class", max_chunks_per_class),
                       ("test_fraction", test_fraction), ("threshold", threshold), ("seed", seed)):
        if value is not None:
            data[key] = value
    if chunk_words is not None:
        words = _csv(chunk_words, int) or []
        if len(words) != 2:
            _fail(f"--chunk-words {chunk_words!r}: expected MIN,MAX")
        data["chunk_min_words"], data["chunk_max_words"] = words
    ft = dict(data.get("fasttext") or {})
    em = dict(data.get("embedding") or {})
    for key, value in (("head", head), ("max_tokens", max_tokens), ("threads", threads),
                       ("cache", str(embedding_cache) if embedding_cache else None)):
        if value is not None:
            em[key] = value
    if lr is not None:
        (em if data.get("model_type") == "embedding" else ft)["lr"] = lr
    if epoch is not None:
        ft["epoch"] = epoch
        em["epochs"] = epoch
    data["fasttext"], data["embedding"] = ft, em
    try:
        cfg = QualityTrainConfig.model_validate(data)
        train_quality(cfg, log=_log)
    except ValidationError as e:
        _fail(validation_message(e))
    except (ClassifyError, FileNotFoundError) as e:
        _fail(str(e))


@classify_app.command("train-domain")
def train_domain_command(
    train: List[str] = typer.Option(..., "--train", help="Labelled JSONL(.gz) or Parquet files. Repeatable."),
    output: Path = typer.Option(..., "--output", "-o", help="fastText model file to write (.bin)."),
    test: Optional[List[str]] = typer.Option(None, "--test", help="Held-out labelled files (default: "
                                             "a hash split of --train)."),
    text_field: str = typer.Option("text", help="Field holding the text (dotted path)."),
    label_field: str = typer.Option("label", help="Field holding the label(s), dotted path, e.g. metadata.topics."),
    label_sep: str = typer.Option(",", help="Separator of several labels in one string."),
    loss: str = typer.Option("ova", help="ova (multi-label) | softmax (single-label)."),
    test_fraction: float = typer.Option(0.1, help="Held-out fraction when --test is not given."),
    epoch: int = typer.Option(25), lr: float = typer.Option(0.5), dim: int = typer.Option(64),
    seed: int = typer.Option(0),
) -> None:
    """Train the fastText topic classifier for the `domain_label` stage."""
    from curate.classify.train_domain import DomainTrainConfig, train_domain

    try:
        cfg = DomainTrainConfig(train=list(train), test=list(test or []), output=str(output),
                                text_field=text_field, label_field=label_field, label_sep=label_sep,
                                loss=loss, test_fraction=test_fraction, epoch=epoch, lr=lr, dim=dim, seed=seed)
        train_domain(cfg, log=_log)
    except ValidationError as e:
        _fail(validation_message(e))
    except (ClassifyError, FileNotFoundError) as e:
        _fail(str(e))


def pools_command(
    inputs: List[str] = typer.Argument(..., help="Parquet parts of classified documents (files, globs, "
                                       "folders, e.g. the quality or domain_label stage's output)."),
    output: Path = typer.Option(..., "--output", "-o", help="POOLS_DIR: pools.json, pools_summary.json "
                                "and one folder of Parquet parts per pool."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with any `curate pools` setting "
                                          "(keys as the options, with underscores); options override it."),
    quality_column: Optional[str] = typer.Option(None, help="Score column [quality_score]."),
    domain_column: Optional[str] = typer.Option(None, help="Domain column [domain_label]; '' for none."),
    source_column: Optional[str] = typer.Option(None, help="Source column [source]; '' to not split by source."),
    edges: Optional[str] = typer.Option(None, help="Bucket thresholds, e.g. 0.2,0.6."),
    quantiles: Optional[str] = typer.Option(None, help="Bucket quantiles, e.g. 0.5,0.9 (the default)."),
    bucket_names: Optional[str] = typer.Option(None, help="Bucket names, lowest first, e.g. low,mid,high."),
    tokenizer: Optional[str] = typer.Option(None, help="tiktoken encoding name or tokenizer.json path [cl100k_base]."),
    tiktoken_cache: Optional[str] = typer.Option(None, help="TIKTOKEN_CACHE_DIR for offline tiktoken."),
    samples: Optional[int] = typer.Option(None, help="Sample texts per pool in pools_summary.json [3]."),
    workers: Optional[int] = typer.Option(None, help="Parallel workers [all CPUs]."),
    ray: bool = typer.Option(False, "--ray", help="Run the per-part work as Ray tasks."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (implies --ray)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace pools already in POOLS_DIR."),
) -> None:
    """Group classified documents into pools (source x domain x quality bucket) for the planner."""
    from curate.classify.pools import PoolsConfig, build_pools

    data: dict = dict(yaml.safe_load(config.read_text()) or {}) if config else {}
    data.update({"inputs": list(inputs), "output": str(output)})
    for key, value in (("quality_column", quality_column), ("tokenizer", tokenizer),
                       ("tiktoken_cache", tiktoken_cache), ("samples", samples), ("workers", workers),
                       ("address", address)):
        if value is not None:
            data[key] = value
    for key, value in (("domain_column", domain_column), ("source_column", source_column)):
        if value is not None:
            data[key] = value or None
    if edges is not None:
        data["edges"], data["quantiles"] = _csv(edges, float), None
    if quantiles is not None:
        data["quantiles"], data["edges"] = _csv(quantiles, float), None
    if bucket_names is not None:
        data["bucket_names"] = _csv(bucket_names)
    if ray or address:
        data["executor"] = "ray"
    if overwrite:
        data["overwrite"] = True
    try:
        cfg = PoolsConfig.model_validate(data)
        check_parquet_inputs(cfg.inputs, "curate pools")
        summary = build_pools(cfg, log=_log)
    except ValidationError as e:
        _fail(validation_message(e))
        raise
    except (ClassifyError, FileNotFoundError, ValueError, RuntimeError) as e:
        _fail(str(e))
        raise
    Console(width=max(100, 70 + max(len(p["name"]) for p in summary["pools"]))).print(pools_table(summary))


def pools_table(summary: dict) -> Table:
    t = Table(title=f"{len(summary['pools'])} pools, tokens: {summary['tokenizer']}, "
              f"bucket edges {[round(e, 4) for e in summary['bucket_edges']]}")
    width = max([len(p["name"]) for p in summary["pools"]] + [5])
    t.add_column("pool", no_wrap=True, min_width=width)
    for col in ("documents", "characters", "unique tokens", "share", "mean score"):
        t.add_column(col, justify="right", no_wrap=True)
    for p in summary["pools"]:
        ms = p["mean_quality_score"]
        t.add_row(p["name"], f"{p['documents']:,}", f"{p['characters']:,}", f"{p['unique_tokens']:,}",
                  f"{100 * p['token_share']:.1f}%", "-" if ms is None else f"{ms:.3f}")
    t.add_row("total", f"{summary['documents']:,}", "", f"{summary['unique_tokens']:,}", "100%", "")
    return t


if __name__ == "__main__":  # `python -m curate.classify.cli ...` before the lead mounts it
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.add_typer(classify_app, name="classify")
    app.command("pools")(pools_command)
    app()
