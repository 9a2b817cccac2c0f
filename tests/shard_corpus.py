"""A small real corpus for the sharding tests and benchmark: two pools in the `curate pools` layout.

- `web`: main text of the real HTML pages in ../shared/data/web/*.warc.gz (records read with
  fastwarc, text extracted with trafilatura), pages with at least 20 words;
- `wiki`: WikiText-2 (valid + test) de-tokenised, one document per article.

Each pool is a folder of Parquet parts (`id`, `text`) beside pools.json, as `curate pools` writes.
`write_plan` writes a plan.json in the planner's schema (`curate.plan/v1`) asking for given
tokens per pool.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def web_texts(shared_data: Path, warcs: int | None = 1, extractor: str = "resiliparse") -> list[str]:
    """Main text of the HTML pages; `trafilatura` (as the pipeline's default) or `resiliparse`
    (about 15x faster, for tests)."""
    files = sorted((shared_data / "web").glob("*.warc.gz"))[: warcs or None]
    if extractor == "trafilatura":
        from curate.planner.demo_pools import warc_main_texts

        return warc_main_texts(files, fast=True)
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    out = []
    for p in files:
        with open(p, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
                body = rec.reader.read()
                text = extract_plain_text(bytes_to_str(body, detect_encoding(body)), main_content=True)
                if text and len(text.split()) >= 20:
                    out.append(text)
    return out


def wiki_texts(shared_data: Path) -> list[str]:
    from curate.planner.demo_pools import wikitext_articles

    ref = shared_data / "reference"
    return wikitext_articles([ref / "wikitext-2-valid.txt", ref / "wikitext-2-test.txt"])


def write_pool(folder: Path, name: str, texts: list[str], parts: int = 2, row_group: int = 64) -> Path:
    d = folder / name
    d.mkdir(parents=True, exist_ok=True)
    per = -(-len(texts) // parts)
    for i in range(parts):
        chunk = texts[i * per: (i + 1) * per]
        if not chunk:
            continue
        ids = [f"{name}-{i * per + j}" for j in range(len(chunk))]
        pq.write_table(pa.table({"id": ids, "text": chunk}), d / f"part-{i:05d}.parquet", row_group_size=row_group)
    return d


def write_pools_json(folder: Path, pools: dict[str, list[str]], unique_tokens: dict[str, int] | None = None) -> Path:
    entries = []
    for name, texts in pools.items():
        entries.append({"name": name, "source": "test", "domain": name, "quality_bucket": "0",
                        "documents": len(texts), "characters": sum(map(len, texts)),
                        "unique_tokens": int((unique_tokens or {}).get(name) or max(1, sum(map(len, texts)) // 4)),
                        "path": name})
    path = folder / "pools.json"
    path.write_text(json.dumps({"version": 1, "tokenizer": "cl100k_base", "pools": entries}, indent=2))
    return path


def write_plan(folder: Path, tokens: dict[str, int], unique: dict[str, int] | None = None) -> Path:
    total = sum(tokens.values())
    pools = [{"name": n, "kept": t > 0, "weight": t / total, "tokens": float(t),
              "epochs": (t / unique[n]) if unique else None, "unique_tokens": (unique or {}).get(n)}
             for n, t in tokens.items()]
    path = folder / "plan.json"
    path.write_text(json.dumps({"schema": "curate.plan/v1", "mode": "law", "model": {"tokens": float(total)},
                                "pools": pools}, indent=2))
    return path


def build(shared_data: Path, folder: Path, warcs: int | None = 1, parts: int = 2,
          extractor: str = "resiliparse") -> dict[str, list[str]]:
    """Write both pools and pools.json under `folder`; returns the texts per pool."""
    folder.mkdir(parents=True, exist_ok=True)
    pools = {"web": web_texts(shared_data, warcs, extractor), "wiki": wiki_texts(shared_data)}
    for name, texts in pools.items():
        write_pool(folder, name, texts, parts=parts)
    write_pools_json(folder, pools)
    return pools
