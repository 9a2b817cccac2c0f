"""Quality classifiers side by side: held-out ROC AUC, boilerplate separation, throughput; then pools.

    .venv/bin/python benchmarks/bench_classifiers.py [--max-chunks-per-class N] [--pools DIR]

Data (all real, from ../shared/data):
- positives: WikiText-2 valid + test, de-tokenised (processors/detok.py), one document per article;
- negatives: main text of the 1,153 pages in web/*.warc.gz (fastwarc + trafilatura), English only;
- both cut into 50..600-word paragraph chunks, 20% of articles / web hosts held out
  (curate/classify/train_quality.py). Both models train on exactly the same chunks and splits.

Measured, for each model (`fasttext`: word uni+bigrams; `embedding`: all-MiniLM-L6-v2 + linear head):
1. held-out ROC AUC and precision/recall at 0.5 (reference vs web chunks);
2. boilerplate separation: gold/trafilatura-evaldata.json gives, for 990 pages, snippets of main
   text (`with`) and of boilerplate (`without`); each snippet is scored and the ROC AUC of
   main text vs boilerplate reported, over all pages and over the English pages (page language:
   fastText lid.176 on the page's `with` snippets joined). Snippets are short (median 5 and 3
   words) and mostly German: this is a hard, out-of-domain test, reported as it comes out;
3. scoring throughput of the `quality` stage in one process with one thread, over real extracted
   pages: documents per CPU-second of this process (= per core; robust to other jobs on the
   machine) and per wall-clock second.
With `--pools DIR`, the English extracted pages (language_id, as a pipeline runs it first: both
classifiers are English-only) are scored (fastText quality + domain_label: the topic model trained
on reference/topics, whose text is synthetic, mapped to 4 coarse domains) and grouped into pools by
`curate pools`' own code; the table and pools.json are printed.

The embedding model's chunk embeddings are cached in WORK/embeddings.npz (keyed by the chunks'
text and the encoder settings): delete it to measure embedding time again.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from curate.classify.train_quality import (  # noqa: E402
    EmbeddingOptions, FastTextOptions, QualityTrainConfig, eval_path, train_quality,
)
from processors.quality import Quality, QualityParams  # noqa: E402

COARSE = {  # the 30 synthetic topics -> 5 coarse domains, for a pool count that 1,122 pages can fill
    "stem": ["science", "technology", "engineering", "mathematics", "energy", "universe", "nature"],
    "society": ["politics", "government", "law", "economy", "business", "military", "society"],
    "culture": ["culture", "entertainment", "sports", "food_and_drink", "mass_media", "history",
                "religion", "philosophy", "language", "people", "geography", "ethics"],
    "health_education": ["health", "education", "academia", "communication"],
}


def web_corpus(work: Path) -> Path:
    out = work / "web.parquet"
    if not out.is_file():
        from curate.classify.webtext import extract_warc_documents

        t0 = time.perf_counter()
        table = extract_warc_documents(sorted(glob.glob(str(DATA / "web" / "*.warc.gz"))))
        pq.write_table(table, out)
        print(f"extracted {table.num_rows} pages in {time.perf_counter() - t0:.0f} s -> {out}")
    return out


def boilerplate_sets() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Snippets, label (True = main text), and whether the page is English."""
    from processors.language_id import LanguageId

    gold = json.loads((DATA / "gold" / "trafilatura-evaldata.json").read_text())
    lid = LanguageId(LanguageId.Params(label_only=True))
    lid.setup()
    pages = [v for v in gold.values() if v.get("with") and v.get("without")]
    langs, _ = lid.predict([" ".join(v["with"]) for v in pages])
    texts, labels, english = [], [], []
    for v, lang in zip(pages, langs):
        for key, label in (("with", True), ("without", False)):
            for s in v[key]:
                if s and s.strip():
                    texts.append(s)
                    labels.append(label)
                    english.append(lang == "en")
    return texts, np.array(labels), np.array(english)


def throughput(stage: Quality, texts: list[str], min_seconds: float = 5.0) -> tuple[float, float]:
    """(docs per CPU-second of this process, docs per wall second), repeating to >= min_seconds."""
    stage.score(texts[:2])  # warm up
    n = 0
    c0, w0 = time.process_time(), time.perf_counter()
    while True:
        stage.score(texts)
        n += len(texts)
        if time.perf_counter() - w0 >= min_seconds:
            break
    return n / (time.process_time() - c0), n / (time.perf_counter() - w0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/curate-bench-classifiers"))
    ap.add_argument("--max-chunks-per-class", type=int, default=None)
    ap.add_argument("--embedding-docs", type=int, default=120, help="pages for the embedding throughput run")
    ap.add_argument("--skip-train", action="store_true", help="reuse models already in --work")
    ap.add_argument("--pools", type=Path, default=None, help="also build pools from the scored pages here")
    ap.add_argument("--json", type=Path, default=None, help="write all figures here")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    web = web_corpus(work)
    import torch

    torch.set_num_threads(1)
    reports, models = {}, {}
    for kind, name in (("fasttext", "quality_fasttext.bin"), ("embedding", "quality_embedding.safetensors")):
        path = work / name
        models[kind] = path
        if args.skip_train and eval_path(path).is_file():
            reports[kind] = json.loads(eval_path(path).read_text())
            continue
        cfg = QualityTrainConfig(reference=[str(DATA / "reference" / "wikitext-2-*.txt")], web=[str(web)],
                                 output=str(path), model_type=kind,
                                 max_chunks_per_class=args.max_chunks_per_class,
                                 fasttext=FastTextOptions(),
                                 embedding=EmbeddingOptions(threads=1, cache=str(work / "embeddings.npz")))
        reports[kind] = train_quality(cfg)

    texts, labels, english = boilerplate_sets()
    pages = pq.read_table(web, columns=["text"]).column("text").to_pylist()
    results = {}
    for kind, path in models.items():
        stage = Quality(QualityParams(model_type=kind, model_path=str(path), threads=1))
        stage.setup()
        from sklearn.metrics import roc_auc_score

        t0 = time.perf_counter()
        s = stage.score(texts)
        t_snip = time.perf_counter() - t0
        docs = pages if kind == "fasttext" else pages[:args.embedding_docs]
        per_cpu, per_wall = throughput(stage, docs, 5.0 if kind == "fasttext" else 0.0)
        held = reports[kind]["held_out"]
        results[kind] = {
            "held_out_roc_auc": held["roc_auc"], "held_out_n": held["n"],
            "precision_at_0.5": held["precision"], "recall_at_0.5": held["recall"],
            "boilerplate_roc_auc_all": float(roc_auc_score(labels, s)),
            "boilerplate_roc_auc_english": float(roc_auc_score(labels[english], s[english])),
            "boilerplate_snippets": int(len(labels)), "boilerplate_english_snippets": int(english.sum()),
            "docs_per_cpu_second": per_cpu, "docs_per_wall_second": per_wall,
            "throughput_docs": len(docs), "snippet_scoring_s": t_snip,
            "model_bytes": path.stat().st_size,
            "train_seconds": reports[kind]["seconds"],
        }
    load = os.getloadavg()
    print()
    print(f"data: {reports['fasttext']['data']['ref']['chunks']} reference chunks, "
          f"{reports['fasttext']['data']['web']['chunks']} web chunks "
          f"({reports['fasttext']['data']['web']['documents_in_language']} English pages of "
          f"{reports['fasttext']['data']['web']['documents_read']}); "
          f"boilerplate gold: {len(labels)} snippets ({int(labels.sum())} main text), "
          f"{int(english.sum())} from English pages; load average {load[0]:.1f} on {os.cpu_count()} CPUs")
    head = ["model", "held-out AUC", "P@0.5", "R@0.5", "boilerplate AUC (all)", "boilerplate AUC (en)",
            "docs/s per core", "docs/s wall", "model size"]
    rows = []
    for kind, r in results.items():
        rows.append([kind, f"{r['held_out_roc_auc']:.4f}", f"{r['precision_at_0.5']:.3f}", f"{r['recall_at_0.5']:.3f}",
                     f"{r['boilerplate_roc_auc_all']:.4f}", f"{r['boilerplate_roc_auc_english']:.4f}",
                     f"{r['docs_per_cpu_second']:,.1f}", f"{r['docs_per_wall_second']:,.1f}",
                     f"{r['model_bytes'] / 1e6:.1f} MB" if r["model_bytes"] > 1e6 else f"{r['model_bytes'] / 1e3:.1f} kB"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
    out = {"results": results, "load_average": load, "cpus": os.cpu_count()}
    if args.pools:
        out["pools"] = build_demo_pools(work, web, models["fasttext"], args.pools)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


def build_demo_pools(work: Path, web: Path, quality_model: Path, pools_dir: Path) -> dict:
    """Score every page (quality + domain_label) into 4 parts, then build pools from them."""
    from curate.classify.cli import pools_table
    from curate.classify.pools import PoolsConfig, build_pools
    from curate.classify.train_domain import DomainTrainConfig, train_domain
    from processors.domain import DomainLabel, DomainLabelParams
    from rich.console import Console

    topics = DATA / "reference" / "topics"
    topic_model = work / "topics.bin"
    if not topic_model.is_file():
        train_domain(DomainTrainConfig(train=[str(topics / "train.jsonl.gz")], test=[str(topics / "test.jsonl.gz")],
                                       label_field="metadata.topics", output=str(topic_model)))
    from processors.language_id import LanguageId

    # as a pipeline would: language ID first (both classifiers are English-only), then score
    table = LanguageId(LanguageId.Params(languages=["en"])).process(pq.read_table(web)).table
    quality = Quality(QualityParams(model_path=str(quality_model)))
    label_map = {topic: coarse for coarse, ts in COARSE.items() for topic in ts}
    domain = DomainLabel(DomainLabelParams(model_path=str(topic_model), labels=list(COARSE),
                                           label_map=label_map, threshold=0.0))
    table = domain.process(quality.process(table).table).table
    scored = work / "scored"
    scored.mkdir(exist_ok=True)
    for old in scored.glob("part-*.parquet"):
        old.unlink()
    n = table.num_rows
    for k in range(4):
        pq.write_table(table.slice(k * n // 4, (k + 1) * n // 4 - k * n // 4), scored / f"part-{k:05d}.parquet")
    summary = build_pools(PoolsConfig(inputs=[str(scored)], output=str(pools_dir), tokenizer="cl100k_base",
                                      tiktoken_cache=str(DATA / "tokenizers"), workers=2, overwrite=True))
    Console(width=130).print(pools_table(summary))
    print((pools_dir / "pools.json").read_text())
    return summary


if __name__ == "__main__":
    main()
