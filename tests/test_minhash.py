"""MinHash near-dedup: shingles, signatures (== datasketch), LSH layout, and the Ray pipeline
checked against an independent single-process computation on real text."""
from __future__ import annotations

import json
import os

# Ray Data's shuffle map tasks run in their own worker pool (a runtime env); with the default
# soft limit of one idle worker per CPU, Ray kills and respawns workers between stages, which
# costs seconds per stage on a 2-CPU machine. Must be set before the session's ray.init().
os.environ.setdefault("RAY_num_workers_soft_limit", "8")
# A bare ray.init() joins any cluster another process started on this machine with `ray start`
# or ray.cluster_utils (it reads /tmp/ray/ray_current_cluster); the session fixture must start
# its own embedded instance instead.
os.environ.setdefault("RAY_ADDRESS", "local")

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from processors.minhash import (
    MinHashDedup,
    MinHashDedupParams,
    MinHasher,
    band_keys,
    bbit_jaccard,
    candidate_probability,
    optimal_bands_rows,
)
from processors.shingles import normalize_py, shingles_of_array, shingles_py

REPO = Path(__file__).resolve().parents[1]


def load_builder():
    spec = importlib.util.spec_from_file_location("build_dedup_corpus", REPO / "benchmarks" / "build_dedup_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def builder():
    return load_builder()


@pytest.fixture(scope="module")
def pages(shared_data, builder) -> list[str]:
    """Main text of the first 90 pages of a real WARC (trafilatura, fast mode)."""
    texts = builder._extract_file(str(shared_data / "web" / "pages-0000.warc.gz"), limit=90)
    assert len(texts) >= 80
    return texts


@pytest.fixture(scope="module")
def corpus(pages, builder):
    """500 documents resampled from those pages, 40% in planted near-duplicate families."""
    pool, boiler = builder.paragraph_pools(pages)
    docs, truth, meta = builder.build_corpus(pool, boiler, 500, seed=3, random_pairs=2000, log=lambda *a: None)
    assert meta["families"] > 50 and truth.num_rows > 100
    return docs, truth, meta


EDGE_CASES = ["", "a", "Hello, World!", "  x  y\u00a0z\u2014w ", "\ufb01ne \uff21\uff22\uff23 d e f", "...", "İstanbul Straße ist groß", "tab\tsep\u2028line\x85nel"]


# -- shingles ------------------------------------------------------------------------------------


def test_vectorised_shingles_equal_python_definition(pages):
    texts = pages + EDGE_CASES + [None]
    fast = shingles_of_array(pa.array(texts, pa.string()), 5)
    for t, got in zip(texts, fast):
        assert got == shingles_py(t or "", 5)
    assert fast[len(pages) + 2] == [b"hello world"]
    assert fast[len(pages) + 3] == [b"x y z w"]
    assert sum(map(len, fast)) > 50_000  # real text, not a toy


@pytest.mark.parametrize("n", [1, 3, 7])
def test_shingle_sizes(n):
    text = "One, two; three four five six seven."
    words = normalize_py(text).split(" ")
    assert words == ["one", "two", "three", "four", "five", "six", "seven"]
    expected = [" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)]
    assert shingles_of_array(pa.array([text]), n)[0] == expected == shingles_py(text, n)


# -- signatures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("hash_name", ["sha1", "xxh32"])
@pytest.mark.parametrize("num_perm,seed", [(128, 1), (64, 42)])
def test_signatures_equal_datasketch(pages, scheme, hash_name, num_perm, seed):
    import xxhash
    from datasketch import MinHash

    texts = pages[:40] + ["", "two words"]
    sigs, counts = MinHasher(num_perm, seed, scheme, hash_name).signatures(pa.array(texts), 5)
    assert sigs.shape == (len(texts), num_perm) and sigs.dtype == np.uint32
    kw = {} if hash_name == "sha1" else {"hashfunc": xxhash.xxh32_intdigest}
    for i, t in enumerate(texts):
        sh = shingles_py(t, 5)
        assert counts[i] == len(sh)
        ref = MinHash(num_perm=num_perm, seed=seed, scheme=scheme, **kw)
        for s in sh:
            ref.update(s)
        assert np.array_equal(ref.hashvalues.astype(np.uint64), sigs[i].astype(np.uint64)), (i, scheme, hash_name)


def test_signature_of_long_document_spanning_blocks(pages):
    from datasketch import MinHash

    text = " ".join(pages)  # > 8192 shingles: the per-document minimum crosses permutation blocks
    sig, counts = MinHasher().signatures(pa.array([text, "x"]))
    assert counts[0] > 20_000
    ref = MinHash(num_perm=128, seed=1)
    ref.update_batch(shingles_py(text))
    assert np.array_equal(ref.hashvalues.astype(np.uint64), sig[0].astype(np.uint64))


def test_batch_sha1_equals_hashlib_on_every_view_kind(pages, monkeypatch):
    """DuckDB's SHA-1 over binary views must be datasketch's `sha1_hash32`: inline views
    (<= 12 bytes, zero padded), empty spans, long views, spans into the middle of the buffer,
    non-ASCII bytes, and input split across several DuckDB calls."""
    import hashlib
    import struct

    import processors.span_hash as span_hash

    buf = " ".join(pages[:30]).encode("utf-8")
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(buf) - 200, 5000)
    lens = np.concatenate((np.arange(0, 40), rng.integers(0, 200, 5000 - 40)))
    ends = starts + lens
    ref = [struct.unpack("<I", hashlib.sha1(buf[a:b]).digest()[:4])[0] for a, b in zip(starts.tolist(), ends.tolist())]
    monkeypatch.setattr(span_hash, "_MAX_CHUNK", 777)  # several calls, each rebased on its own spans
    got = span_hash.sha1_first4(np.frombuffer(buf, np.uint8), starts, ends)
    assert got.dtype == np.uint32 and got.tolist() == ref
    assert any(b >= 0x80 for b in buf)  # real multi-byte text went through
    views = span_hash.binary_views(np.frombuffer(buf, np.uint8), starts[:100], ends[:100])
    assert views.to_pylist() == [buf[a:b] for a, b in zip(starts[:100].tolist(), ends[:100].tolist())]
    assert span_hash.sha1_first4(np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)).size == 0


# -- LSH layout ------------------------------------------------------------------------------------


def test_optimal_bands_rows_is_datasketchs():
    from datasketch.lsh import _optimal_param

    assert optimal_bands_rows(0.8, 128) == (9, 13)
    for t, k, w in [(0.5, 64, (0.5, 0.5)), (0.7, 128, (0.5, 0.5)), (0.9, 128, (0.5, 0.5)), (0.8, 256, (0.3, 0.7))]:
        assert optimal_bands_rows(t, k, *w) == _optimal_param(t, k, *w)


def test_verify_defaults_to_exact():
    assert MinHashDedupParams().verify == "exact"


def test_verify_accepts_booleans():
    assert MinHashDedupParams(verify=True).verify == "signature"
    assert MinHashDedupParams(verify=False).verify == "none"


def test_exact_set_jaccard_equals_python_sets(corpus):
    from processors.minhash import hash_sets, set_jaccard

    docs, _, _ = corpus
    texts = docs.column("text").slice(0, 60)
    _, counts, hv = MinHasher().signatures_and_hashes(texts)
    sets = hash_sets(hv, counts)
    starts = np.concatenate(([0], np.cumsum(counts)))
    py = [set(hv[starts[i] : starts[i + 1]].tolist()) for i in range(60)]
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 60, 200), rng.integers(0, 60, 200)
    got = set_jaccard(sets.take(pa.array(a)), sets.take(pa.array(b)))
    want = [len(py[x] & py[y]) / len(py[x] | py[y]) for x, y in zip(a, b)]
    assert np.allclose(got, want)
    assert sorted(py[0]) == sets[0].as_py()


def test_processor_layout_from_params():
    # datasketch's layout with its default weights; recall-weighted when verification is exact
    sig = MinHashDedup(MinHashDedupParams(verify="signature"))
    assert (sig.bands, sig.rows) == (9, 13) and sig.lsh_weights == (0.5, 0.5)
    assert (MinHashDedup().bands, MinHashDedup().rows) == (16, 8) == optimal_bands_rows(0.8, 128, 0.05, 0.95)
    assert MinHashDedup().lsh_weights == (0.05, 0.95)
    p = MinHashDedup(MinHashDedupParams(verify="exact", false_positive_weight=0.5, false_negative_weight=0.5))
    assert (p.bands, p.rows) == (9, 13)
    p = MinHashDedup(MinHashDedupParams(bands=16, rows=8))
    assert (p.bands, p.rows) == (16, 8)
    assert MinHashDedup.kind == "minhash_dedup"


@pytest.mark.parametrize(
    "bad",
    [
        {"unknown": 1},
        {"bands": 9},
        {"bands": 20, "rows": 10},
        {"threshold": 1.0},
        {"survivor": "best"},
        {"scheme": "affine64"},
        {"ngram": 0},
        {"verify": "maybe"},
    ],
)
def test_params_are_validated(bad):
    with pytest.raises(ValidationError):
        MinHashDedupParams(**bad)


def test_band_keys_equal_exactly_when_bands_equal():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(4, 12), dtype=np.uint64).astype(np.uint32)
    sig[1] = sig[0]
    sig[1, 0] ^= 1  # differs in band 0 only
    sig[2, 3:6] = sig[0, 3:6]  # shares band 1 only
    keys = band_keys(sig, 4, 3)
    assert keys[0, 0] != keys[1, 0] and (keys[0, 1:] == keys[1, 1:]).all()
    assert keys[0, 1] == keys[2, 1] and (keys[0, [0, 2, 3]] != keys[2, [0, 2, 3]]).all()
    same = np.zeros((1, 12), np.uint32)
    k = band_keys(same, 4, 3)
    assert len(set(k[0].tolist())) == 4  # equal values in different bands never share a bucket


def test_bbit_estimate_tracks_exact_jaccard(corpus):
    docs, truth, _ = corpus
    ids = docs.column("id").to_pylist()
    pos = {d: i for i, d in enumerate(ids)}
    sigs, _ = MinHasher().signatures(docs.column("text"))
    fp = (sigs & 0xFF).astype(np.uint8)
    a = np.array([pos[x] for x in truth.column("id_a").to_pylist()])
    b = np.array([pos[x] for x in truth.column("id_b").to_pylist()])
    est = bbit_jaccard(fp[a], fp[b])
    full = (sigs[a] == sigs[b]).mean(axis=1)
    exact = truth.column("jaccard").to_numpy()
    assert np.abs(est - exact).mean() < 0.04
    assert np.abs(est - exact).max() < 0.2
    assert np.abs(full - exact).mean() < 0.04


def test_processor_hooks(pages):
    proc = MinHashDedup()
    batch = pa.table({"id": ["a", "b", "c"], "text": [pages[0], "", pages[0]]})
    res = proc.annotate(batch)
    t = res.table
    assert res.counters["no_shingles"] == 1 and res.counters["docs_signed"] == 2
    rows, keys = proc.buckets(t)
    b = proc.bands
    assert rows.tolist() == [0] * b + [2] * b
    assert (keys[:b] == keys[b:]).all() and len(set(keys[:b].tolist())) == b
    sets = proc.exact_payload(t)
    assert proc.exact_verify(sets.take([0]), sets.take([2])).tolist() == [True]
    assert sets[0].as_py() == sorted(set(sets[0].as_py())) and len(sets[1]) == 0
    payload = proc.payload(t)
    assert proc.verify(payload.take([0]), payload.take([2])).tolist() == [True]
    assert proc.survivor_keys() == [("_mh_len", "descending")]
    assert set(proc.internal_columns()) <= set(t.column_names)


# -- the pipeline on Ray, against an independent computation ---------------------------------------


def independent_dedup(docs: pa.Table, params: MinHashDedupParams) -> tuple[dict[str, str], int, int]:
    """Single-process reference: all pairs that share a band key (and pass the b-bit check when
    verifying) are linked; union-find; survivor = first by the rule, then id.
    Returns (cluster_id per id, candidate pair incidences, clusters with >= 2 documents)."""
    proc = MinHashDedup(params)
    ids = docs.column("id").to_pylist()
    texts = docs.column("text").to_pylist()
    sigs, counts, hv = MinHasher(params.num_perm, params.seed, params.scheme, params.hash).signatures_and_hashes(
        pa.array(texts), params.ngram
    )
    keys = band_keys(sigs, proc.bands, proc.rows, seed=params.seed)
    fp = (sigs & 0xFF).astype(np.uint8)
    n = len(ids)
    has = counts > 0
    shared = np.zeros((n, n), dtype=np.int64)
    for j in range(proc.bands):
        shared += keys[:, j][:, None] == keys[:, j][None, :]
    shared[~has, :] = 0
    shared[:, ~has] = 0
    iu = np.triu_indices(n, 1)
    incidences = int(shared[iu].sum())
    a, b = iu[0][shared[iu] > 0], iu[1][shared[iu] > 0]
    if params.verify == "signature":
        ok = bbit_jaccard(fp[a], fp[b]) >= params.threshold
        a, b = a[ok], b[ok]
    elif params.verify == "exact":
        ok = bbit_jaccard(fp[a], fp[b]) >= params.threshold - params.verify_margin
        a, b = a[ok], b[ok]
        starts = np.concatenate(([0], np.cumsum(counts)))
        sets = [set(hv[starts[i] : starts[i + 1]].tolist()) for i in range(n)]
        exact = np.array([len(sets[x] & sets[y]) / len(sets[x] | sets[y]) for x, y in zip(a.tolist(), b.tolist())])
        a, b = a[exact >= params.threshold], b[exact >= params.threshold]
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    lengths = [len(t) for t in texts]
    rule = params.survivor
    cluster = {}
    for members in groups.values():
        if rule == "longest":
            best = min(members, key=lambda i: (-lengths[i], ids[i]))
        elif rule == "shortest":
            best = min(members, key=lambda i: (lengths[i], ids[i]))
        else:
            best = min(members, key=lambda i: ids[i])
        for i in members:
            cluster[ids[i]] = ids[best]
    return cluster, incidences, sum(1 for m in groups.values() if len(m) > 1)


def _collect(ds) -> pa.Table:
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables(tables) if tables else pa.table({})


def _run(ray_session, docs, params, **kw):
    from curate.cluster_dedup import run_cluster_dedup

    blocks = [docs.slice(i, 100) for i in range(0, docs.num_rows, 100)]
    kept, stats = run_cluster_dedup(ray_session.data.from_arrow(blocks), MinHashDedup(params), num_partitions=3, **kw)
    dropped = stats.pop("dropped")
    return _collect(kept), (_collect(dropped) if dropped is not None else None), stats


@pytest.mark.parametrize(
    "params,broadcast_rows",
    [
        (MinHashDedupParams(side_output=True), 1_000_000),  # the defaults (exact), broadcast lookups
        # every stage a hash join, another survivor rule
        (MinHashDedupParams(side_output=True, survivor="shortest"), 0),
        (MinHashDedupParams(side_output=True, verify="signature"), 0),
        (MinHashDedupParams(side_output=True, verify=False, survivor="smallest_id"), 1_000_000),
    ],
    ids=["exact-broadcast", "exact-shortest-joins", "signature-joins", "none-smallest-id"],
)
def test_pipeline_equals_independent_computation(ray_session, corpus, params, broadcast_rows):
    docs, truth, _ = corpus
    expected, incidences, n_clusters = independent_dedup(docs, params)
    phases: list[str] = []
    kept, dropped, stats = _run(ray_session, docs, params, broadcast_rows=broadcast_rows, on_phase=phases.append)

    assert kept.num_rows + dropped.num_rows == docs.num_rows
    assert set(kept.column_names) == set(docs.column_names) | {"cluster_id"}  # internals removed
    got = dict(zip(kept.column("id").to_pylist(), kept.column("cluster_id").to_pylist()))
    got.update(zip(dropped.column("id").to_pylist(), dropped.column("cluster_id").to_pylist()))
    assert got == expected
    survivors = {c for c in expected.values()}
    assert set(kept.column("id").to_pylist()) == survivors
    assert all(i == c for i, c in zip(kept.column("id").to_pylist(), kept.column("cluster_id").to_pylist()))

    c = stats["counters"]
    assert stats["drops"] == {"near_duplicate": docs.num_rows - len(survivors)}
    assert c["candidate_pairs"] == incidences
    assert c["clusters"] == n_clusters
    assert c["docs"] == docs.num_rows and c["kept"] == len(survivors)
    assert c["rounds"] >= 1 and c["edges"] >= n_clusters
    # progress: one line per phase, one per round of the components algorithm
    assert phases[0].startswith(f"signatures of {docs.num_rows:,} documents")
    assert sum(p.startswith("components round") for p in phases) == c["rounds"]
    assert phases[-1].startswith("survivors elected")
    if params.verify != "none":
        assert c["pairs_verified"] >= c["pairs_rejected"] > 0
    if params.verify == "exact":
        assert c["pairs_exact_checked"] >= c["pairs_exact_rejected"] > 0

    # and it finds what is there: planted pairs far above the threshold are (nearly) all caught
    same = [got[a] == got[b] for a, b, j in zip(*(truth.column(k).to_pylist() for k in ("id_a", "id_b", "jaccard"))) if j >= 0.9]
    assert len(same) > 20 and np.mean(same) >= 0.9


@pytest.mark.parametrize("broadcast_rows", [1_000_000, 0], ids=["broadcast", "joins"])
def test_one_or_two_documents_equal_independent_computation(ray_session, corpus, broadcast_rows):
    # One real document, then two: with no shared band the components step labels nothing and Ray
    # knows no schema for its empty output (this failed with "'NoneType' object has no attribute
    # 'base_schema'").
    docs = corpus[0]
    params = MinHashDedupParams(side_output=True)
    for one in (docs.slice(0, 1), pa.concat_tables([docs.slice(0, 1), docs.slice(docs.num_rows - 1, 1)])):
        expected, _, _ = independent_dedup(one, params)
        kept, dropped, stats = _run(ray_session, one, params, broadcast_rows=broadcast_rows)
        got = dict(zip(kept.column("id").to_pylist(), kept.column("cluster_id").to_pylist()))
        if dropped is not None and dropped.num_rows:
            got.update(zip(dropped.column("id").to_pylist(), dropped.column("cluster_id").to_pylist()))
        assert got == expected and len(got) == one.num_rows
        assert kept.num_rows == len(set(expected.values()))


def test_candidate_probability_curve():
    assert candidate_probability(0.8, 9, 13) == pytest.approx(0.3993, abs=1e-3)
    assert candidate_probability(1.0, 9, 13) == 1.0


def test_yaml_stage_through_the_runner_equals_independent_computation(ray_session, corpus, tmp_path):
    """`minhash_dedup` as a pipeline stage: Parquet parts in (several files, one read task
    each), kept parts + `_dropped/` side output + stage stats out; a rerun keeps the commit."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    from curate.config import pipeline_from_dict
    from curate.io import STATS_FILE
    from curate.runner import RunOptions, run_pipeline

    docs, _, _ = corpus
    # two sources, so that the per-source stats have something to split
    src = ["web" if i % 3 else "books" for i in range(docs.num_rows)]
    docs = docs.set_column(docs.column_names.index("source"), "source", pa.array(src))
    params = MinHashDedupParams(side_output=True)
    expected, _, _ = independent_dedup(docs, params)
    paths = []
    for k, start in enumerate(range(0, docs.num_rows, 150)):
        p = tmp_path / "in" / f"part-{k}.parquet"
        p.parent.mkdir(exist_ok=True)
        pq.write_table(docs.slice(start, 150), p, row_group_size=40)
        paths.append(str(p))
    cfg = pipeline_from_dict({"inputs": paths, "output": str(tmp_path / "out"),
                              "stages": [{"minhash_dedup": {"side_output": True}}]})
    run_pipeline(cfg, RunOptions(progress=False))
    stage_dir = next(p for p in (tmp_path / "out").iterdir() if p.is_dir() and "minhash" in p.name)
    kept = pads.dataset(str(stage_dir), format="parquet").to_table()
    dropped = pads.dataset(str(stage_dir / "_dropped"), format="parquet").to_table()
    got = dict(zip(kept.column("id").to_pylist(), kept.column("cluster_id").to_pylist()))
    got.update(zip(dropped.column("id").to_pylist(), dropped.column("cluster_id").to_pylist()))
    assert kept.num_rows + dropped.num_rows == docs.num_rows
    assert got == expected
    stats = json.loads((stage_dir / STATS_FILE).read_text())
    st = stats if "docs_in" in stats else next(iter(stats.values()))
    assert st["docs_in"] == docs.num_rows and st["docs_out"] == kept.num_rows
    assert st["drops"] == {"near_duplicate": dropped.num_rows} and dropped.num_rows > 50
    assert st["counters"]["candidate_pairs"] > st["counters"]["edges"] > 0 and st["counters"]["rounds"] >= 1
    assert st["bytes_out"] == sum(len(t.encode()) for t in kept.column("text").to_pylist())
    for name in ("web", "books"):
        n_in = src.count(name)
        n_out = sum(1 for i, s_ in zip(docs.column("id").to_pylist(), src) if s_ == name and expected[i] == i)
        assert st["by_source"][name] == {"applied": True, "docs_in": n_in, "docs_out": n_out,
                                         "drops": {"near_duplicate": n_in - n_out}}
    before = sorted(p.name for p in stage_dir.glob("*.parquet"))
    run_pipeline(cfg, RunOptions(progress=False))  # committed: nothing redone, nothing duplicated
    assert sorted(p.name for p in stage_dir.glob("*.parquet")) == before
    assert pads.dataset(str(stage_dir), format="parquet").count_rows() == kept.num_rows
    # a later pipeline given this folder reads the kept documents, not the `_dropped/` side output
    nxt = pipeline_from_dict({"inputs": [str(stage_dir)], "output": str(tmp_path / "next"),
                              "stages": [{"exact_dedup": {}}]})
    assert run_pipeline(nxt, RunOptions(progress=False)).stats[0].docs_in == kept.num_rows


def test_dedup_command_flags_equal_the_yaml_stage(ray_session, corpus, tmp_path):
    """`curate dedup --minhash --threshold 0.9 --side-output` builds the same stage as the YAML
    and gives the independent computation's clusters at that threshold."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from curate.cli import app

    docs, _, _ = corpus
    (tmp_path / "in").mkdir()
    pq.write_table(docs, tmp_path / "in" / "part-0.parquet")
    expected, _, _ = independent_dedup(docs, MinHashDedupParams(threshold=0.9))
    res = CliRunner().invoke(app, ["dedup", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--minhash",
                                   "--threshold", "0.9", "--side-output", "--no-progress"])
    assert res.exit_code == 0, res.output
    stage_dir = tmp_path / "out" / "minhash_dedup"
    kept = pads.dataset(str(stage_dir), format="parquet").to_table()
    dropped = pads.dataset(str(stage_dir / "_dropped"), format="parquet").to_table()
    got = dict(zip(kept.column("id").to_pylist(), kept.column("cluster_id").to_pylist()))
    got.update(zip(dropped.column("id").to_pylist(), dropped.column("cluster_id").to_pylist()))
    assert got == expected
    assert expected != independent_dedup(docs, MinHashDedupParams(threshold=0.8))[0]  # the flag mattered

    bad = CliRunner().invoke(app, ["dedup", str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "--exact",
                                   "--threshold", "0.9"])
    assert bad.exit_code == 2 and "--minhash option" in bad.output


def test_benchmark_corpus_is_reproducible_from_its_seed(pages, builder, corpus):
    """The corpus builder: the same seed gives the same documents and truth; another seed does not;
    the truth's Jaccard values are the exact ones of the shingle sets."""
    pool, boiler = builder.paragraph_pools(pages)
    docs, truth, _ = corpus  # seed 3
    again, truth_again, _ = builder.build_corpus(pool, boiler, 500, seed=3, random_pairs=2000, log=lambda *a: None)
    other, _, _ = builder.build_corpus(pool, boiler, 500, seed=4, random_pairs=2000, log=lambda *a: None)
    assert again.equals(docs) and truth_again.equals(truth)
    assert other.column("text").to_pylist() != docs.column("text").to_pylist()
    text = dict(zip(docs.column("id").to_pylist(), docs.column("text").to_pylist()))
    for a, b, j in list(zip(*(truth.column(k).to_pylist() for k in ("id_a", "id_b", "jaccard"))))[:50]:
        sa, sb = set(shingles_py(text[a])), set(shingles_py(text[b]))
        assert j == pytest.approx(len(sa & sb) / len(sa | sb), abs=1e-9)
