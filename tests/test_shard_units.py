"""Sharding building blocks without Ray: the mixer's keys and cut, packing, tokenizers, inputs."""
from __future__ import annotations

import collections
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.shard import mixer
from curate.shard.inputs import InputError, _round_to_total, mix_targets, read_plan
from curate.shard.pack import BucketPlan, pack_bucket, sort_rows
from processors.tokenizer import TokenizerError, TokenizerSpec
from curate.shard.writer import SCATTER_SCHEMA, list_array


@pytest.fixture(scope="module")
def tiktoken_cache(shared_data):
    os.environ["TIKTOKEN_CACHE_DIR"] = str(shared_data / "tokenizers")
    return str(shared_data / "tokenizers")


# ---------------------------------------------------------------- mixer
def test_epoch_positions_are_uniform_fresh_and_keep_copies_apart():
    h = mixer.doc_hashes("pool", [f"d{i}" for i in range(200_000)], 0, 0, 200_000)
    gap = 0.2
    pos = mixer.epoch_positions(h, 3, mix_seed=7, pool="pool", gap=gap)
    # Each epoch is uniform on [0, 1): deciles hold 10% each (binomial sd ~0.07% here).
    for k in range(4):
        counts = np.histogram(pos[k], bins=10, range=(0, 1))[0] / len(h)
        assert np.all(np.abs(counts - 0.1) < 0.004), (k, counts)
    # Fresh permutations: only the gap^2 of documents near an epoch boundary are moved, so
    # consecutive epochs' orders are nearly uncorrelated.
    r = np.corrcoef(pos[0], pos[1])[0, 1]
    assert abs(r) < 0.06
    # The guarantee: copy k+1 sits at least `gap` epochs after copy k, for every document.
    steps = (np.arange(1, 4)[:, None] + pos[1:]) - (np.arange(0, 3)[:, None] + pos[:-1])
    assert steps.min() >= gap - 1e-12
    assert steps.max() < 2.0
    # Without the gap the same hashes do put copies closer than that.
    free = mixer.epoch_positions(h, 1, mix_seed=7, pool="pool", gap=0.0)
    assert ((1 + free[1] - free[0]) < gap).mean() > 0.01


def test_positions_depend_on_seed_pool_and_document_only():
    h = mixer.doc_hashes("web", ["a", "b", "c"], 0, 0, 3)
    a = mixer.epoch_positions(h, 2, 1, "web", 0.2)
    assert np.array_equal(a, mixer.epoch_positions(h, 2, 1, "web", 0.2))
    assert not np.array_equal(a, mixer.epoch_positions(h, 2, 2, "web", 0.2))
    assert not np.array_equal(a, mixer.epoch_positions(h, 2, 1, "wiki", 0.2))
    # Documents identified by id: position in the files does not matter.
    assert np.array_equal(h[[2, 0]], mixer.doc_hashes("web", ["c", "a"], 5, 100, 2))


def test_histogram_cut_matches_a_full_sort():
    rng = np.random.default_rng(0)
    n = 50_000
    u = rng.random(n)
    u[:50] = u[50:100]  # ties in u, broken by hash then ref
    h = rng.integers(0, 2**63, n, dtype=np.uint64)
    ref = np.arange(n, dtype=np.uint64)
    tok = rng.integers(1, 3000, n)
    for need in (1, 17, int(tok.sum() // 3), int(tok.sum()) - 5, int(tok.sum())):
        hist = np.bincount(mixer.hist_bins(u), weights=tok, minlength=mixer.HIST_BINS).astype(np.int64)
        b, before = mixer.boundary_bin(hist, need)
        sel = mixer.hist_bins(u) == b
        bd = mixer.resolve_boundary(u[sel], h[sel], ref[sel], tok[sel], need - before)
        order = np.lexsort((ref, h, u))
        cum = np.cumsum(tok[order])
        i = int(np.searchsorted(cum, need))
        assert (bd.doc_ref, bd.keep) == (int(ref[order[i]]), int(need - (cum[i] - tok[order[i]])))
        less, equal = mixer.before_boundary(u, h, ref, bd)
        assert int(tok[less].sum()) + bd.keep == need and equal.sum() == 1


def test_select_copies_takes_exactly_the_plan():
    rng = np.random.default_rng(1)
    n = 30_000
    h = mixer.doc_hashes("p", [str(i) for i in range(n)], 0, 0, n)
    ref = mixer.doc_refs(0, 0, n)
    tok = rng.integers(5, 900, n)
    U = int(tok.sum())
    for planned in (U // 7, U, 3 * U + 12345):
        full, rem = mixer.split_budget(planned, U, True)
        pm = mixer.PoolMix("p", 0, planned, U, full, rem)
        if rem:
            k = full
            u = mixer.epoch_positions(h, k, 3, "p", 0.2)[k]
            hist = np.bincount(mixer.hist_bins(u), weights=tok, minlength=mixer.HIST_BINS)
            pm.boundary_bin, pm.mass_before_bin = mixer.boundary_bin(hist.astype(np.int64), rem)
            sel = mixer.hist_bins(u) == pm.boundary_bin
            pm.boundary = mixer.resolve_boundary(u[sel], h[sel], ref[sel], tok[sel], rem - pm.mass_before_bin)
        copies = mixer.select_copies(pm, h, ref, tok, 3, 0.2)
        assert sum(int(kept.sum()) for _, _, _, kept in copies) == planned
        keys = np.concatenate([g for _, _, g, _ in copies])
        assert keys.min() >= 0 and keys.max() <= 1.0
        # Keys spread the pool over the whole run: a quarter of the copies in each quarter.
        q = np.histogram(keys, bins=4, range=(0, 1))[0] / len(keys)
        assert np.all(np.abs(q - 0.25) < 0.025), q


# ---------------------------------------------------------------- packing
def _scatter_table(rows: list[tuple[float, int, list[int]]]) -> pa.Table:
    lens = np.array([len(r[2]) for r in rows])
    flat = np.concatenate([np.asarray(r[2], dtype=np.int32) for r in rows])
    return pa.table({"key": [r[0] for r in rows], "pool": np.array([r[1] for r in rows], dtype=np.uint16),
                     "doc_hash": np.arange(len(rows), dtype=np.uint64), "doc_ref": np.zeros(len(rows), np.uint64),
                     "epoch": np.zeros(len(rows), np.uint16), "tokens": list_array(flat, lens)}, schema=SCATTER_SCHEMA)


def test_pack_bucket_skips_borrows_and_shuffles():
    # Bucket 0 holds global stream positions [3, 20): doc A (pool x, 100..109) then doc B (pool y,
    # 110..116); the next bucket starts with doc C (pool x, 200..212). seq_len 6: sequences start
    # at 6, 12, 18, so this bucket skips 3 tokens (the previous bucket's last sequence holds them)
    # and borrows 4 from the next bucket's head to finish the sequence starting at 18.
    a, b, c = list(range(100, 110)), list(range(110, 117)), list(range(200, 213))
    own = sort_rows([_scatter_table([(0.3, 1, b), (0.1, 0, a)])])  # given out of order
    head = sort_rows([_scatter_table([(0.6, 0, c[:6])])])
    plan = BucketPlan(bucket=0, skip=3, follow=[(1, 4)], total=18, last=False)
    packed = pack_bucket(own, [(4, head)], plan, 6, seed=0, pool_names=["x", "y"], provenance=True)
    rows = packed.table["input_ids"].to_pylist()
    want = [list(range(103, 109)), list(range(109, 115)), [115, 116, 200, 201, 202, 203]]
    assert sorted(rows) == sorted(want)
    assert packed.pool_tokens.tolist() == [7 + 4, 7] and packed.tokens == 18
    seg = {tuple(r): s for r, s in zip(rows, packed.table["segments"].to_pylist())}
    assert [(x["pool"], x["offset"], x["length"]) for x in seg[tuple(want[1])]] == [("x", 9, 1), ("y", 0, 5)]
    assert [(x["pool"], x["offset"], x["length"]) for x in seg[tuple(want[2])]] == [("y", 5, 2), ("x", 0, 4)]
    # Another shuffle seed: the same sequences in another order.
    orders = {tuple(map(tuple, pack_bucket(own, [(4, head)], plan, 6, seed=s, pool_names=["x", "y"])
                        .table["input_ids"].to_pylist())) for s in range(8)}
    assert len(orders) > 1 and all(sorted(o) == sorted(map(tuple, want)) for o in orders)
    # Only the run's very last sequence may be short.
    with pytest.raises(ValueError, match="whole number"):
        pack_bucket(own, [], BucketPlan(0, 3, [], 14, False), 6, 0, ["x", "y"])
    last = pack_bucket(own, [], BucketPlan(0, 3, [], 14, True), 6, 0, ["x", "y"])
    assert last.partial == 1 and last.table["input_ids"].to_pylist()[-1] == [115, 116]


def test_pack_bucket_borrows_from_the_next_bucket():
    own = sort_rows([_scatter_table([(0.1, 0, [1, 2, 3, 4, 5])])])
    head = sort_rows([_scatter_table([(0.7, 1, [6, 7, 8])])])
    plan = BucketPlan(bucket=2, skip=0, follow=[(3, 3)], total=8, last=False)
    packed = pack_bucket(own, [(3, head)], plan, 4, seed=0, pool_names=["x", "y"], provenance=True)
    assert sorted(map(tuple, packed.table["input_ids"].to_pylist())) == [(1, 2, 3, 4), (5, 6, 7, 8)]
    assert packed.pool_tokens.tolist() == [5, 3]
    seg = {tuple(r): s for r, s in zip(packed.table["input_ids"].to_pylist(), packed.table["segments"].to_pylist())}
    assert [(x["pool"], x["offset"], x["length"]) for x in seg[(5, 6, 7, 8)]] == [("x", 4, 1), ("y", 0, 3)]
    # A plan that disagrees with the data is an error, not a silent short shard.
    with pytest.raises(ValueError, match="tokens gathered"):
        pack_bucket(own, [(3, head)], BucketPlan(2, 0, [(3, 3)], 12, False), 4, 0, ["x", "y"])


# ---------------------------------------------------------------- tokenizers
def test_tiktoken_and_hf_tokenizers_with_bos_eos(shared_data, tiktoken_cache):
    text = "The quick brown fox jumps over the lazy dog. " * 60  # > 512 BERT tokens
    cl = TokenizerSpec(name="cl100k_base", tiktoken_cache=tiktoken_cache).load()
    flat, lens = cl.encode([text, "a <|endoftext|> b"])
    assert cl.eos_id == 100257 and flat[lens[0] - 1] == 100257
    # Special-token text inside a document is plain text, never a real EOS.
    second = flat[lens[0]:]
    assert list(second).count(100257) == 1 and second[-1] == 100257
    assert cl.identity()["sha256"] and cl.identity()["vocab_size"] == 100277
    # The same ids as tiktoken's own encode_ordinary (whichever API the tokenizer uses inside).
    import tiktoken

    docs = [text, "Ünïcödé — 中文 text\n\n  spaces  ", "a <|endoftext|> b", "x" * 5000]
    flat, lens = cl.encode(docs)
    want = [tiktoken.get_encoding("cl100k_base").encode_ordinary(d) + [100257] for d in docs]
    assert flat.tolist() == [i for w in want for i in w] and lens.tolist() == [len(w) for w in want]

    bert = TokenizerSpec(name=str(shared_data / "tokenizers" / "bert-wordpiece-tokenizer.json"), add_bos=True).load()
    flat, lens = bert.encode([text])
    assert lens[0] > 512, "tokenizer.json truncation (max_length 128) must be switched off"
    assert flat[0] == bert.bos_id == 101 and flat[-1] == bert.eos_id == 102
    assert list(flat[1:-1]).count(101) == 0  # no [CLS]/[SEP] added by the file's post-processor
    bpe = TokenizerSpec(name=str(shared_data / "tokenizers" / "bpe-129k-tokenizer.json"), add_bos=True).load()
    flat, lens = bpe.encode(["hello", "world"])
    assert flat[0] == bpe.bos_id and flat[lens[0] - 1] == bpe.eos_id and lens.sum() == len(flat)
    assert bpe.decode(flat[1:lens[0] - 1]) == "hello"
    assert bpe.identity()["sha256"] != bert.identity()["sha256"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network in a test
    with pytest.raises(TokenizerError, match="nor a tiktoken encoding .*cl100k_base"):
        TokenizerSpec(name="cl100k").load()  # a typo: not a path, not an encoding, not on the Hub
    with pytest.raises(TokenizerError, match="no BOS"):
        TokenizerSpec(name="cl100k_base", add_bos=True).load()
    with pytest.raises(TokenizerError, match="not a single token"):
        TokenizerSpec(name="cl100k_base", eos_token="two words").load()


# ---------------------------------------------------------------- inputs
def test_plan_schema_and_rounding(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    pq.write_table(pa.table({"text": ["x"]}), d / "part-0.parquet")
    plan = {"schema": "curate.plan/v1", "model": {"tokens": 1000.0},
            "pools": [{"name": "a", "kept": True, "tokens": 333.4, "path": str(d)},
                      {"name": "b", "kept": True, "weight": 0.6666, "path": str(d)},
                      {"name": "c", "kept": False, "tokens": 10.0}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    pools, raw, sha = read_plan(tmp_path / "plan.json")
    assert pools["b"]["tokens"] == pytest.approx(666.6) and pools["c"]["tokens"] == 0.0
    t = mix_targets(tmp_path / "plan.json")
    assert {p.name: p.planned_tokens for p in t.pools} == {"a": 333, "b": 667} and t.skipped == ["c"]
    assert sum(_round_to_total({"x": 1.5, "y": 1.5, "z": 1.0}, 4).values()) == 4
    (tmp_path / "pools.json").write_text(json.dumps({"pools": [{"name": "a", "path": "p"}]}))
    plan["pools"][1].pop("path")
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(InputError, match="'b' is not in the pools file"):
        mix_targets(tmp_path / "plan.json", tmp_path / "pools.json")
    w = mix_targets(None, tmp_path / "pools.json", {"a": 1.0}, 50)
    assert w.total_tokens == 50 and w.plan["schema"] == "curate.shard/weights"


def test_tokenize_stage_and_task_splitting(tmp_path, tiktoken_cache):
    from curate.registry import registry
    from curate.shard.engine import ShardError, _split_rows

    stage = registry()["tokenize"]
    proc = stage(stage.Params(tokenizer="cl100k_base", tiktoken_cache=tiktoken_cache))
    out = proc.process(pa.table({"id": ["a", "b", "c"], "text": ["Hello world", None, ""]})).table
    assert out["input_ids"].to_pylist() == [[9906, 1917, 100257], [100257], [100257]]
    assert out["n_tokens"].to_pylist() == [3, 1, 1] and out["id"].to_pylist() == ["a", "b", "c"]
    # Tokenisation tasks cover every row exactly once, about `task_bytes` of text each.
    texts = [("word " * int(n)).strip() for n in np.random.default_rng(0).integers(1, 400, 1000)]
    pq.write_table(pa.table({"text": texts}), tmp_path / "p.parquet", row_group_size=97)
    ranges = _split_rows(str(tmp_path / "p.parquet"), "text", 40_000)
    assert ranges[0][0] == 0 and ranges[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [sum(len(t) for t in texts[a:b]) for a, b in ranges]
    assert 20 <= len(ranges) <= 30 and max(sizes[:-1]) < 60_000, sizes
    with pytest.raises(ShardError, match="no 'body' column"):
        _split_rows(str(tmp_path / "p.parquet"), "body", 1000)


def test_bucket_plans_cover_every_token_once_even_with_tiny_buckets():
    from curate.shard.engine import bucket_plans

    # Buckets of 10, 3, 2 and 20 tokens, seq_len 8: the sequence starting at 8 runs through
    # buckets 1 and 2 into 3; buckets 1 and 2 start no sequence; the run ends with a short one.
    plans = bucket_plans(np.array([10, 3, 2, 20]), "packed", 8)
    assert plans == [
        {"bucket": 0, "skip": 0, "follow": [(1, 3), (2, 2), (3, 1)], "total": 16, "last": False},
        {"bucket": 3, "skip": 1, "follow": [], "total": 19, "last": True},
    ]
    rng = np.random.default_rng(5)
    for _ in range(200):
        size = rng.integers(0, 40, rng.integers(1, 12))
        if size.sum() == 0:
            continue
        L = int(rng.integers(2, 30))
        plans = bucket_plans(size, "packed", L)
        assert sum(p["total"] for p in plans) == size.sum()
        # What a bucket skips is exactly what earlier buckets borrowed from it.
        borrowed = collections.Counter()
        for p in plans:
            for nb, take in p["follow"]:
                borrowed[nb] += take
            assert p["total"] % L == 0 or p["last"]
        for b in range(len(size)):
            skip = next((p["skip"] for p in plans if p["bucket"] == b), size[b])
            assert borrowed[b] == skip, (size, L, plans)
    docs = bucket_plans(np.array([5, 0, 7]), "documents", 8)
    assert [(p["bucket"], p["total"], p["last"]) for p in docs] == [(0, 5, False), (2, 7, True)]


# ---------------------------------------------------------------- bounded driver (issue 13)
def _scatter_rows(tag: int, n: int) -> pa.Table:
    """n scatter rows whose doc_ref is `tag` (which write they came from), 2 tokens each."""
    return pa.table({"key": pa.array(np.zeros(n)), "pool": pa.array(np.zeros(n, np.uint16)),
                     "doc_hash": pa.array(np.arange(n, dtype=np.uint64)),
                     "doc_ref": pa.array(np.full(n, tag, np.uint64)), "epoch": pa.array(np.zeros(n, np.uint16)),
                     "tokens": list_array(np.ones(2 * n, np.int32), np.full(n, 2))}, schema=SCATTER_SCHEMA)


def test_pack_tasks_find_their_blobs_in_the_sorted_scatter_indexes(tmp_path):
    """Each pack task looks up its bucket in every scatter file's index (sorted by bucket and
    kind, binary-searched): the same blobs, in the same order per file, as a scan of the index in
    write order; per-bucket tokens (the driver's only per-bucket state) match too."""
    from curate.shard.writer import BODY, HEAD, ScatterWriter, bucket_refs, bucket_tokens, read_blobs

    rng = np.random.default_rng(11)
    B = 9
    files, written, tag = [], [], 0  # written: (file, bucket, kind, tag, tokens) in write order
    for t in range(4):
        path = tmp_path / f"s{t}.bin"
        w = ScatterWriter(path)
        # Two epochs, each writing its buckets in order: the file as a whole is not in bucket order.
        for _epoch in range(2 if t else 0):  # file 0 holds no blob at all
            for b in sorted(rng.choice(B, size=5, replace=False).tolist()):
                for kind in (BODY, HEAD):
                    n = int(rng.integers(1, 4))
                    tag += 1
                    w.write(b, kind, _scatter_rows(tag, n), 2 * n)
                    written.append((str(path), b, kind, tag, 2 * n))
        w.close()
        files.append(str(path))
    for b in range(B + 1):  # bucket B is empty everywhere
        for kind in (BODY, HEAD):
            refs = bucket_refs(files, b, kind)
            got = [(f, int(tb["doc_ref"][0].as_py())) for f, rows in refs for tb in read_blobs(f, rows)]
            want = [(f, tg) for f, bb, k, tg, _ in written if bb == b and k == kind]
            assert got == sorted(want, key=lambda x: files.index(x[0]))  # file order, write order within
    want_size = np.zeros(B, np.int64)
    for _, b, kind, _, tokens in written:
        if kind == BODY:
            want_size[b] += tokens
    assert np.array_equal(bucket_tokens(files, B), want_size)


def test_driver_state_for_pack_does_not_grow_with_the_number_of_tasks(tmp_path):
    """The driver reads the scatter indexes one at a time: its peak memory for 80 tasks is about
    that for 5 (at 250M documents per TB the full table would be thousands x thousands of rows)."""
    import tracemalloc

    from curate.shard.writer import bucket_tokens, index_path

    B = 4000
    rows = np.zeros((2 * B, 6), np.int64)
    rows[:, 0] = np.repeat(np.arange(B), 2)
    rows[:, 1] = np.tile([0, 1], B)
    rows[:, 5] = 3
    files = []
    for t in range(80):
        f = tmp_path / f"t{t}.bin"
        np.save(index_path(f), rows)
        files.append(str(f))

    def peak(fs):
        tracemalloc.start()
        size = bucket_tokens(fs, B)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert np.array_equal(size, np.full(B, 3 * len(fs)))
        return top

    one_index = rows.nbytes
    small, big = peak(files[:5]), peak(files)
    assert big < small * 1.5 + (64 << 10), (small, big)
    assert big < 4 * one_index, (big, one_index)  # never all 80 indexes (80 x one_index) at once


class _FakeRef:
    def __init__(self, value):
        self.value = value


class _FakeActor:
    def __init__(self):
        self.call = self
        self.tokenize = self

    def remote(self, method, args, kw=None, die=None):
        return _FakeRef(np.full(mixer.HIST_BINS, args[0], np.int64))


class _FakeRay:
    class exceptions:
        class RayTaskError(Exception):
            pass

        class RayActorError(Exception):
            pass

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.value


def test_mix_histograms_are_folded_as_they_arrive():
    """`_on_actors(on_result=...)` hands each result over once and keeps none: the mixer's driver
    state is one histogram per pool whatever the number of token-cache files."""
    from curate.shard.engine import _on_actors, add_histogram

    calls = [("mix_stats_task", (i,), {}) for i in range(1, 301)]
    total = np.zeros(mixer.HIST_BINS, np.int64)
    seen = []

    def fold(i, h):
        seen.append(i)
        add_histogram(total, h)

    kept = _on_actors(_FakeRay(), [_FakeActor(), _FakeActor()], calls, on_result=fold)
    assert kept == [None] * len(calls)
    assert sorted(seen) == list(range(len(calls)))
    assert np.all(total == sum(range(1, 301)))
    with pytest.raises(Exception, match="bins"):
        add_histogram(total, np.zeros(3, np.int64))
