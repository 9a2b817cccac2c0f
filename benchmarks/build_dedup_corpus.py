"""Build a near-duplicate benchmark corpus with known ground truth from real web text.

    .venv/bin/python benchmarks/build_dedup_corpus.py --docs 100000 --seed 0 \
        --out benchmarks/results/dedup-corpus-100k

Real text: trafilatura (fast mode) over the 1,153 HTML pages of ../shared/data/web/*.warc.gz,
split into paragraphs. Paragraphs seen on two or more pages are boilerplate (menus, cookie
notices): they form the boilerplate pool and are kept out of the paragraph pool; the rest are
de-duplicated on their normalised form and kept when 8-120 words long.

Documents: each base document is a random sample of pool paragraphs (log-normal length around
400 words, at least 4 paragraphs and 120 words), so unrelated documents share little. A
`--family-fraction` of the documents belong to planted families: a base and 1-5 variants, each
variant derived from the base (or, one time in four, from an earlier variant, which makes
chains) by known edits -- adjacent word swaps, word insertions, deletions and replacements, and
boilerplate paragraphs added at the top or bottom -- in an amount aimed at a target Jaccard drawn
uniformly from [--min-target, 1]. The *true* similarity is then measured, not assumed.

Ground truth: exact Jaccard on the same shingles the dedup uses (processors.shingles: NFKC,
lowercase, punctuation/whitespace folded, word 5-grams), each shingle represented by its 64-bit
xxh3 hash (a collision in a pair of documents has probability ~1e-13, so these are the exact set
Jaccards for every practical purpose). It is computed for every pair inside a family (all pairs,
whatever their similarity, so any threshold can be evaluated). Pairs across families are
unrelated by construction; this is checked, not assumed:

- a document has >= 120 words and a pool paragraph <= 120 words, and documents are built from
  a pool of ~20k paragraphs, so two unrelated documents share a paragraph with probability of
  order (paragraphs per doc)^2 / pool size, and sharing one paragraph gives a small Jaccard;
- every cross-family pair of documents that shares two or more source paragraphs (found with an
  inverted index from paragraph to documents) gets its exact Jaccard computed;
- a uniform random sample of cross-family pairs gets its exact Jaccard computed.

The maxima of both are written to meta.json; the evaluation (bench_minhash.py) also computes the
exact Jaccard of every predicted pair that the truth file does not list, so an unplanted similar
pair would show up there rather than silently count against precision.

Outputs in --out: docs.parquet (the document schema + family, parent, edits), truth.parquet
(id_a, id_b, jaccard for every within-family pair) and meta.json (seed, parameters, counts,
checks). The same seed gives the same files.

Chunked corpora (a million documents and more; bench_scale.py builds them):

    .venv/bin/python benchmarks/build_dedup_corpus.py --docs 4000000 --chunk-docs 50000 \
        --out benchmarks/results/dedup-corpus-scale/seed0-chunk50000

--chunk-docs N builds the corpus as independent chunks of N documents: chunk c is the corpus
above built from the seed (seed, c) alone (numpy SeedSequence), its ids offset to
doc-<9 digits> and its family numbers to c * N. Every family lies inside one chunk, and the
cross-family checks run per chunk (chunks are drawn independently from the same pools, so a pair
across chunks is a cross-family pair like any other). A chunk is the same whatever the corpus
size, so the first k chunks of a larger corpus are the smaller corpus of the same seed: a 4M
build extends a 1M one, and an interrupted build resumes at the missing chunks (each chunk's
files are written atomically, its chunks/part-NNNNN.json last). Chunks are built --workers at a
time, each in about the time of the same number of documents above. Per chunk: docs/ (the
document schema only, ready for any pipeline), labels/ (id, family, parent, edits), truth/ (the
within-family pairs), chunks/ (its meta); corpus.json holds the settings (a folder built with
others is refused), meta.json the totals.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from processors.shingles import normalize_array, shingle_spans

DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "dedup-corpus"
NGRAM = 5

# A few hand-written boilerplate lines, added to the ones found on the real pages.
_EXTRA_BOILERPLATE = [
    "We use cookies to improve your experience on our website. By continuing to browse this site you agree to our use of cookies.",
    "Subscribe to our newsletter and get the latest news and exclusive offers delivered straight to your inbox.",
    "Share this article on Facebook, Twitter, LinkedIn or send it by email to a friend.",
    "All rights reserved. No part of this publication may be reproduced without the prior written permission of the publisher.",
    "Diese Website verwendet Cookies. Wenn Sie die Website weiter nutzen, stimmen Sie der Verwendung von Cookies zu.",
    "Melden Sie sich für unseren Newsletter an und verpassen Sie keine Neuigkeiten mehr.",
]


# ---------------------------------------------------------------------------------------------
# Real text
# ---------------------------------------------------------------------------------------------


def _extract_file(path: str, limit: int | None = None) -> list[str]:
    import trafilatura
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = []
    with open(path, "rb") as f:
        for n, rec in enumerate(ArchiveIterator(f, record_types=WarcRecordType.response)):
            if limit is not None and n >= limit:
                break
            text = trafilatura.extract(rec.reader.read(), fast=True)
            if text:
                out.append(text)
    return out


def extract_texts(data_dir: Path, workers: int = 2, cache: Path | None = None, limit_files: int | None = None) -> list[str]:
    """Main text of every HTML page in data_dir/web/*.warc.gz (cached by file names and sizes)."""
    files = sorted(glob.glob(str(Path(data_dir) / "web" / "*.warc.gz")))[:limit_files]
    if not files:
        raise SystemExit(f"no WARC files under {data_dir}/web")
    key = hashlib.sha1(json.dumps([(os.path.basename(f), os.path.getsize(f)) for f in files]).encode()).hexdigest()[:12]
    cache_file = Path(cache) / f"texts-{key}.parquet" if cache else None
    if cache_file and cache_file.exists():
        return pq.read_table(cache_file).column("text").to_pylist()
    if workers > 1 and len(files) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(files))) as ex:
            texts = [t for chunk in ex.map(_extract_file, files) for t in chunk]
    else:
        texts = [t for f in files for t in _extract_file(f)]
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": texts}), cache_file)
    return texts


def paragraph_pools(texts: list[str], min_words: int = 8, max_words: int = 120) -> tuple[list[str], list[str]]:
    """(paragraph pool, boilerplate pool) from page texts."""
    paras = [p.strip() for t in texts for p in t.split("\n") if p.strip()]
    norm = normalize_array(pa.array(paras, pa.string()))
    keys = [norm.data[norm.offsets[i] : norm.offsets[i + 1]].tobytes() for i in range(len(paras))]
    pages_of: dict[bytes, set[int]] = {}
    i = 0
    for page, t in enumerate(texts):
        for p in t.split("\n"):
            if p.strip():
                pages_of.setdefault(keys[i], set()).add(page)
                i += 1
    seen: set[bytes] = set()
    pool, boiler = [], []
    for p, k in zip(paras, keys):
        if k in seen or not k:
            continue
        seen.add(k)
        nw = len(p.split())
        if len(pages_of[k]) >= 2:
            if 4 <= nw <= 60:
                boiler.append(p)
        elif min_words <= nw <= max_words:
            pool.append(p)
    return pool, boiler + _EXTRA_BOILERPLATE


# ---------------------------------------------------------------------------------------------
# Shingle sets and exact Jaccard
# ---------------------------------------------------------------------------------------------


def shingle_sets(texts: list[str], n: int = NGRAM) -> list[np.ndarray]:
    """Sorted unique xxh3_64 hashes of each document's shingles."""
    import xxhash

    h = xxhash.xxh3_64_intdigest
    norm = normalize_array(pa.array(texts, pa.string()))
    spans = shingle_spans(norm, n)
    buf = norm.data.tobytes()
    hv = np.fromiter((h(buf[s:e]) for s, e in zip(spans.starts.tolist(), spans.ends.tolist())), np.uint64, count=len(spans.starts))
    out, pos = [], 0
    for c in spans.counts.tolist():
        out.append(np.unique(hv[pos : pos + c]))
        pos += c
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


# ---------------------------------------------------------------------------------------------
# Planting
# ---------------------------------------------------------------------------------------------


def _edit(paras: list[list[str]], target: float, rng: np.random.Generator, vocab: list[str], boiler: list[str]) -> tuple[list[list[str]], Counter]:
    """Apply edits aimed at Jaccard `target` with the source; returns (paragraphs, edit counts)."""
    paras = [list(p) for p in paras]
    words = sum(len(p) for p in paras)
    shingles = max(1, words - NGRAM + 1)
    edits: Counter = Counter()
    budget = shingles * (1 - target) / (1 + target)  # changed shingles on each side
    if budget <= 0:
        return paras, edits
    if rng.random() < 0.35:  # boilerplate at the top or bottom takes part of the budget
        for _ in range(int(rng.integers(1, 3))):
            b = boiler[int(rng.integers(len(boiler)))].split()
            if rng.random() < 0.5:
                paras.insert(0, b)
            else:
                paras.append(b)
            edits["boilerplate"] += 1
            budget -= len(b) * 2 / (1 + target)  # added shingles also grow the union
            if budget <= NGRAM:
                break
    n_word_edits = max(0, round(budget / NGRAM))
    ops = rng.choice(["swap", "insert", "delete", "replace"], size=n_word_edits, p=[0.3, 0.25, 0.25, 0.2])
    for op in ops:
        lens = np.array([len(p) for p in paras], dtype=float)
        if lens.sum() < 2:
            break
        pi = int(rng.choice(len(paras), p=lens / lens.sum()))
        p = paras[pi]
        i = int(rng.integers(len(p)))
        if op == "swap" and len(p) > 1:
            i = min(i, len(p) - 2)
            p[i], p[i + 1] = p[i + 1], p[i]
        elif op == "insert":
            p.insert(i, vocab[int(rng.integers(len(vocab)))])
        elif op == "delete" and len(p) > 1:
            del p[i]
        else:
            p[i] = vocab[int(rng.integers(len(vocab)))]
        edits[str(op)] += 1
    return paras, edits


def build_corpus(
    pool: list[str],
    boiler: list[str],
    n_docs: int,
    seed: int = 0,
    family_fraction: float = 0.4,
    min_target: float = 0.5,
    random_pairs: int = 200_000,
    log=print,
    id_offset: int = 0,
    id_width: int = 7,
) -> tuple[pa.Table, pa.Table, dict]:
    rng = np.random.default_rng(seed)
    pool_words = [p.split() for p in pool]
    pool_len = np.array([len(w) for w in pool_words])
    vocab = sorted({w for ws in pool_words[: min(len(pool_words), 5000)] for w in ws})

    def base_doc() -> list[int]:
        target = int(np.clip(rng.lognormal(np.log(400), 0.5), 120, 3000))
        ids, total = [], 0
        while total < target or len(ids) < 4:
            j = int(rng.integers(len(pool)))
            ids.append(j)
            total += int(pool_len[j])
        return ids

    # family layout
    sizes = []
    in_fam = 0
    size_choices, size_p = np.array([2, 3, 4, 5, 6]), np.array([0.45, 0.25, 0.15, 0.1, 0.05])
    while in_fam < family_fraction * n_docs:
        s = int(rng.choice(size_choices, p=size_p))
        s = min(s, int(family_fraction * n_docs) - in_fam) if in_fam + s > family_fraction * n_docs else s
        if s < 2:
            break
        sizes.append(s)
        in_fam += s
    n_single = n_docs - in_fam
    texts: list[str] = []
    family: list[int] = []
    parent: list[int] = []
    edits_col: list[str] = []
    para_ids: list[list[int]] = []
    for _ in range(n_single):
        ids = base_doc()
        texts.append("\n".join(pool[j] for j in ids))
        family.append(-1)
        parent.append(-1)
        edits_col.append("")
        para_ids.append(ids)
    for fam, s in enumerate(sizes):
        ids = base_doc()
        members = [[pool_words[j] for j in ids]]
        first = len(texts)
        texts.append("\n".join(pool[j] for j in ids))
        family.append(fam)
        parent.append(-1)
        edits_col.append("")
        para_ids.append(ids)
        for v in range(1, s):
            src = 0 if (v == 1 or rng.random() < 0.75) else int(rng.integers(1, v))
            target = float(rng.uniform(min_target, 1.0))
            paras, ed = _edit(members[src], target, rng, vocab, boiler)
            members.append(paras)
            texts.append("\n".join(" ".join(p) for p in paras))
            family.append(fam)
            parent.append(first + src)
            edits_col.append(",".join(f"{k}={v}" for k, v in sorted(ed.items())) or "none")
            para_ids.append(ids)
    # shuffle document order, assign ids
    order = rng.permutation(len(texts))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    ids_str = [f"doc-{id_offset + i:0{id_width}d}" for i in range(len(texts))]
    texts = [texts[i] for i in order]
    family_arr = np.array(family)[order]
    parent_arr = np.array(parent)[order]
    parent_new = np.where(parent_arr >= 0, inv[np.maximum(parent_arr, 0)], -1)
    edits_col = [edits_col[i] for i in order]
    para_ids = [para_ids[i] for i in order]
    log(f"  {len(texts)} documents, {len(sizes)} families ({in_fam} documents), {n_single} singletons")

    # truth: every within-family pair
    t0 = time.time()
    fam_members: dict[int, list[int]] = {}
    for i, f in enumerate(family_arr.tolist()):
        if f >= 0:
            fam_members.setdefault(f, []).append(i)
    member_list = sorted(i for m in fam_members.values() for i in m)
    sets: dict[int, np.ndarray] = {}
    for c0 in range(0, len(member_list), 4000):
        chunk = member_list[c0 : c0 + 4000]
        for i, s in zip(chunk, shingle_sets([texts[i] for i in chunk])):
            sets[i] = s
    ta, tb, tj = [], [], []
    for f, m in fam_members.items():
        for x in range(len(m)):
            for y in range(x + 1, len(m)):
                a, b = m[x], m[y]
                ta.append(ids_str[min(a, b)])
                tb.append(ids_str[max(a, b)])
                tj.append(jaccard(sets[a], sets[b]))
    truth = pa.table({"id_a": ta, "id_b": tb, "jaccard": pa.array(tj, pa.float64())})
    log(f"  truth: {truth.num_rows} within-family pairs in {time.time() - t0:.1f}s")

    # checks on cross-family pairs
    t0 = time.time()
    checks = _cross_family_checks(texts, family_arr, para_ids, rng, random_pairs, sets, log)
    log(f"  cross-family checks in {time.time() - t0:.1f}s: {checks}")

    docs = pa.table(
        {
            "id": pa.array(ids_str, pa.string()),
            "source": pa.array(["bench"] * len(texts), pa.string()),
            "url": pa.array([f"https://bench.invalid/{i}" for i in ids_str], pa.string()),
            "domain": pa.array(["bench.invalid"] * len(texts), pa.string()),
            "date": pa.nulls(len(texts), pa.string()),
            "text": pa.array(texts, pa.string()),
            "family": pa.array(family_arr, pa.int64()),
            "parent": pa.array([ids_str[p] if p >= 0 else None for p in parent_new.tolist()], pa.string()),
            "edits": pa.array(edits_col, pa.string()),
        }
    )
    j = np.array(tj)
    meta = {
        "seed": seed,
        "docs": len(texts),
        "families": len(sizes),
        "family_docs": in_fam,
        "singletons": n_single,
        "family_fraction": family_fraction,
        "min_target": min_target,
        "ngram": NGRAM,
        "paragraph_pool": len(pool),
        "boilerplate_pool": len(boiler),
        "within_family_pairs": int(truth.num_rows),
        "pairs_at_or_above": {str(t): int((j >= t).sum()) for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)},
        "jaccard_histogram": {f"{lo:.1f}-{lo + 0.1:.1f}": int(((j >= lo) & (j < lo + 0.1 + (1e-9 if lo >= 0.9 else 0))).sum()) for lo in np.arange(0.0, 1.0, 0.1)},
        "total_chars": int(sum(map(len, texts))),
        "cross_family": checks,
    }
    return docs, truth, meta


def _cross_family_checks(texts, family, para_ids, rng, random_pairs, sets, log) -> dict:
    n = len(texts)
    fam = np.asarray(family)
    # 1. pairs sharing >= 2 source paragraphs, across families
    uniq = [np.unique(p) for p in para_ids]
    doc_idx = np.repeat(np.arange(n), [u.size for u in uniq])
    par = np.concatenate(uniq)
    order = np.lexsort((doc_idx, par))
    doc_idx, par = doc_idx[order], par[order]
    starts = np.flatnonzero(np.concatenate(([True], par[1:] != par[:-1])))
    ends = np.concatenate((starts[1:], [par.size]))
    pair_keys = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        d = doc_idx[s:e]
        if d.size < 2:
            continue
        a, b = np.triu_indices(d.size, 1)
        da, db = d[a], d[b]
        cross = (fam[da] < 0) | (fam[db] < 0) | (fam[da] != fam[db])
        pair_keys.append(da[cross].astype(np.int64) * n + db[cross])
    keys = np.concatenate(pair_keys) if pair_keys else np.zeros(0, np.int64)
    uk, cnt = np.unique(keys, return_counts=True)
    multi = uk[cnt >= 2]
    shared2 = [(int(k // n), int(k % n)) for k in multi]
    max_shared = 0.0
    if shared2:
        need = sorted({i for p in shared2 for i in p} - set(sets))
        extra = dict(zip(need, shingle_sets([texts[i] for i in need]))) if need else {}
        get = lambda i: sets[i] if i in sets else extra[i]
        max_shared = max(jaccard(get(a), get(b)) for a, b in shared2)
    # 2. uniform random cross-family pairs
    sample_docs = rng.choice(n, size=min(n, 4000), replace=False)
    ss = dict(zip(sample_docs.tolist(), shingle_sets([texts[i] for i in sample_docs])))
    sd = np.array(sorted(ss))
    js = []
    m = min(random_pairs, sd.size * (sd.size - 1) // 2)
    a = rng.choice(sd, size=m)
    b = rng.choice(sd, size=m)
    for x, y in zip(a.tolist(), b.tolist()):
        if x == y or (fam[x] >= 0 and fam[x] == fam[y]):
            continue
        js.append(jaccard(ss[x], ss[y]))
    js_arr = np.array(js) if js else np.zeros(1)
    return {
        "pairs_sharing_2plus_paragraphs": len(shared2),
        "max_jaccard_sharing_2plus_paragraphs": round(float(max_shared), 4),
        "random_pairs": len(js),
        "random_pairs_max_jaccard": round(float(js_arr.max()), 4),
        "random_pairs_p9999_jaccard": round(float(np.quantile(js_arr, 0.9999)), 4),
    }


# ---------------------------------------------------------------------------------------------
# Chunked corpora (a million documents and more): chunk by chunk, in parallel, resumable
# ---------------------------------------------------------------------------------------------

CHUNK_LAYOUT = ("docs", "labels", "truth")  # one part-NNNNN.parquet per chunk in each
DOC_COLUMNS = ["id", "source", "url", "domain", "date", "text"]  # the document schema only
_POOLS: tuple[list[str], list[str]] | None = None  # set in each builder process


def chunk_seed(seed: int, chunk: int) -> int:
    """Chunk `chunk`'s generator seed, from (seed, chunk) alone: a chunk is the same whatever the
    corpus size, so the first k chunks of a 4M corpus are exactly the 1M corpus of the same seed."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1, np.uint64)[0])


def _init_pools(pool: list[str], boiler: list[str]) -> None:
    global _POOLS
    _POOLS = (pool, boiler)


def _write_parquet_atomic(table: pa.Table, path: Path, **kw) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, **kw)
    os.replace(tmp, path)


def _build_chunk(out: Path, chunk: int, chunk_docs: int, seed: int, family_fraction: float,
                 min_target: float, random_pairs: int) -> dict:
    assert _POOLS is not None, "_init_pools first"
    pool, boiler = _POOLS
    t0 = time.time()
    docs, truth, meta = build_corpus(
        pool, boiler, chunk_docs, seed=chunk_seed(seed, chunk), family_fraction=family_fraction,
        min_target=min_target, random_pairs=random_pairs, log=lambda *_: None,
        id_offset=chunk * chunk_docs, id_width=9,
    )
    # family numbers unique across chunks (a chunk has fewer families than documents)
    fam = np.asarray(docs.column("family"))
    fam = np.where(fam >= 0, fam + chunk * chunk_docs, -1)
    name = f"part-{chunk:05d}.parquet"
    _write_parquet_atomic(docs.select(DOC_COLUMNS), out / "docs" / name, row_group_size=5000)
    labels = pa.table({"id": docs.column("id"), "family": pa.array(fam, pa.int64()),
                       "parent": docs.column("parent"), "edits": docs.column("edits")})
    _write_parquet_atomic(labels, out / "labels" / name)
    _write_parquet_atomic(truth, out / "truth" / name)
    meta.update(chunk=chunk, chunk_seed=meta.pop("seed"), build_seconds=round(time.time() - t0, 1))
    path = out / "chunks" / f"part-{chunk:05d}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path)  # written last: the chunk's marker of completion
    return meta


def chunked_meta(out: Path, n_chunks: int) -> dict:
    """meta.json of the first n_chunks chunks: counts summed, cross-family checks at their worst."""
    spec = json.loads((out / "corpus.json").read_text())
    metas = [json.loads((out / "chunks" / f"part-{c:05d}.json").read_text()) for c in range(n_chunks)]
    total = lambda k: sum(m[k] for m in metas)
    cross = [m["cross_family"] for m in metas]
    return {
        **spec,
        "chunks": n_chunks,
        "docs": total("docs"),
        "families": total("families"),
        "family_docs": total("family_docs"),
        "singletons": total("singletons"),
        "within_family_pairs": total("within_family_pairs"),
        "pairs_at_or_above": {t: sum(m["pairs_at_or_above"][t] for m in metas) for t in metas[0]["pairs_at_or_above"]},
        "jaccard_histogram": {b: sum(m["jaccard_histogram"][b] for m in metas) for b in metas[0]["jaccard_histogram"]},
        "total_chars": total("total_chars"),
        "paragraph_pool": metas[0]["paragraph_pool"],
        "boilerplate_pool": metas[0]["boilerplate_pool"],
        "cross_family": {
            "scope": "within each chunk (every chunk is drawn independently from the same pools)",
            "pairs_sharing_2plus_paragraphs": sum(c["pairs_sharing_2plus_paragraphs"] for c in cross),
            "max_jaccard_sharing_2plus_paragraphs": max(c["max_jaccard_sharing_2plus_paragraphs"] for c in cross),
            "random_pairs": sum(c["random_pairs"] for c in cross),
            "random_pairs_max_jaccard": max(c["random_pairs_max_jaccard"] for c in cross),
        },
        "build_seconds_summed": round(total("build_seconds"), 1),
    }


def chunk_files(out: Path, n_docs: int) -> dict[str, list[Path]]:
    """The docs / labels / truth files holding the first n_docs documents of a chunked corpus."""
    spec = json.loads((out / "corpus.json").read_text())
    per = spec["chunk_docs"]
    if n_docs % per:
        raise SystemExit(f"{out}: {n_docs} documents is not a whole number of {per:,}-document chunks")
    n = n_docs // per
    missing = [c for c in range(n) if not (out / "chunks" / f"part-{c:05d}.json").exists()]
    if missing:
        raise SystemExit(f"{out}: chunks {missing[:5]}... not built; build {n_docs} documents first")
    return {d: [out / d / f"part-{c:05d}.parquet" for c in range(n)] for d in CHUNK_LAYOUT}


def build_chunked(data: Path, out: Path, n_docs: int, chunk_docs: int, seed: int = 0, workers: int = 2,
                  family_fraction: float = 0.4, min_target: float = 0.5, random_pairs: int = 20_000,
                  log=print) -> dict:
    """Build (or complete) a chunked corpus of n_docs documents in `out`; returns its meta.

    Chunks already in `out` are kept: a corpus grows from 1M to 4M by building the 3M missing
    documents, and an interrupted build resumes at the first missing chunk."""
    if n_docs % chunk_docs:
        raise SystemExit(f"--docs {n_docs} is not a multiple of --chunk-docs {chunk_docs}")
    cache = REPO / "benchmarks" / "results" / "cache"
    t0 = time.time()
    texts = extract_texts(data, workers=workers, cache=cache)
    pool, boiler = paragraph_pools(texts)
    pool_key = hashlib.sha1("\n".join(pool + ["--"] + boiler).encode()).hexdigest()[:16]
    spec = {"seed": seed, "chunk_docs": chunk_docs, "family_fraction": family_fraction, "min_target": min_target,
            "random_pairs_per_chunk": random_pairs, "ngram": NGRAM, "pages": len(texts), "pools_sha1": pool_key}
    out.mkdir(parents=True, exist_ok=True)
    for d in (*CHUNK_LAYOUT, "chunks"):
        (out / d).mkdir(exist_ok=True)
    spec_path = out / "corpus.json"
    if spec_path.exists():
        old = json.loads(spec_path.read_text())
        if old != spec:
            diff = {k: (old.get(k), v) for k, v in spec.items() if old.get(k) != v}
            raise SystemExit(f"{out} holds a corpus built with other settings {diff}: use another --out")
    else:
        spec_path.write_text(json.dumps(spec, indent=2))
    n_chunks = n_docs // chunk_docs
    todo = [c for c in range(n_chunks) if not (out / "chunks" / f"part-{c:05d}.json").exists()]
    log(f"{len(texts)} pages -> {len(pool)} pool paragraphs, {len(boiler)} boilerplate; "
        f"{n_chunks} chunks of {chunk_docs:,}, {len(todo)} to build ({workers} processes)")
    args = (chunk_docs, seed, family_fraction, min_target, random_pairs)
    if todo and workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, initializer=_init_pools, initargs=(pool, boiler)) as ex:
            futs = [ex.submit(_build_chunk, out, c, *args) for c in todo]
            for i, f in enumerate(futs, 1):
                m = f.result()
                log(f"  chunk {m['chunk']} ({i}/{len(todo)}): {m['build_seconds']}s, {time.time() - t0:.0f}s so far")
    else:
        _init_pools(pool, boiler)
        for i, c in enumerate(todo, 1):
            m = _build_chunk(out, c, *args)
            log(f"  chunk {c} ({i}/{len(todo)}): {m['build_seconds']}s, {time.time() - t0:.0f}s so far")
    built = 0
    while (out / "chunks" / f"part-{built:05d}.json").exists():
        built += 1
    meta = chunked_meta(out, built)
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return chunked_meta(out, n_chunks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--family-fraction", type=float, default=0.4)
    ap.add_argument("--min-target", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--random-pairs", type=int, default=None,
                    help="cross-family pairs whose Jaccard is checked (default 200,000; per chunk 20,000)")
    ap.add_argument("--chunk-docs", type=int, default=0,
                    help="write a chunked corpus (docs/, labels/, truth/ with one part per chunk of this "
                         "many documents; chunks built in parallel, each from (seed, chunk) alone)")
    args = ap.parse_args(argv)
    if args.chunk_docs:
        meta = build_chunked(args.data, args.out, args.docs, args.chunk_docs, seed=args.seed, workers=args.workers,
                             family_fraction=args.family_fraction, min_target=args.min_target,
                             random_pairs=20_000 if args.random_pairs is None else args.random_pairs)
        print(json.dumps(meta, indent=2))
        print(f"wrote {args.out}")
        return 0
    if args.random_pairs is None:
        args.random_pairs = 200_000
    t0 = time.time()
    cache = REPO / "benchmarks" / "results" / "cache"
    texts = extract_texts(args.data, workers=args.workers, cache=cache)
    pool, boiler = paragraph_pools(texts)
    print(f"{len(texts)} pages -> {len(pool)} pool paragraphs, {len(boiler)} boilerplate paragraphs ({time.time() - t0:.1f}s)")
    docs, truth, meta = build_corpus(
        pool, boiler, args.docs, seed=args.seed, family_fraction=args.family_fraction,
        min_target=args.min_target, random_pairs=args.random_pairs,
    )
    meta["pages"] = len(texts)
    meta["build_seconds"] = round(time.time() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(docs, args.out / "docs.parquet", row_group_size=10_000)
    pq.write_table(truth, args.out / "truth.parquet")
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
