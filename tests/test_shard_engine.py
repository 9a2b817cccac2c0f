"""`curate shard` end to end on real text: exact per-pool tokens, every token traced back to its
document, copies kept apart, determinism, resume, verify, and the loaders.

Corpus (tests/shard_corpus.py): `web` = main text of the pages of one real WARC file (fastwarc +
resiliparse), `wiki` = WikiText-2 de-tokenised; a plan.json in the planner's schema asks for about
40% of web (so it is sampled) and about 2.3 epochs of wiki.
"""
from __future__ import annotations

import collections
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import shard_corpus
from curate.shard import mixer
from curate.shard.config import ShardConfig
from curate.shard.engine import ShardError, ShardRun, run_shard
from curate.shard.manifest import read_manifest
from processors.tokenizer import TokenizerSpec
from curate.shard.verify import verify_shards

SEQ_LEN = 256


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    os.environ["TIKTOKEN_CACHE_DIR"] = str(shared_data / "tokenizers")
    folder = tmp_path_factory.mktemp("pools")
    texts = shard_corpus.build(shared_data, folder, warcs=1, parts=2)
    tok = TokenizerSpec(name="cl100k_base").load()
    unique = {}
    encoded = {}
    for pool, docs in texts.items():
        flat, lens = tok.encode(docs)
        unique[pool] = int(lens.sum())
        ends = np.cumsum(lens)
        for i, (s, e) in enumerate(zip(ends - lens, ends)):
            h = int(mixer.doc_hashes(pool, [f"{pool}-{i}"], 0, 0, 1)[0])
            encoded[(pool, h)] = flat[s:e]
    # pools.json's own counts (the producer's) are characters / 4: only a hint for sampling.
    plan_tokens = {"web": int(unique["web"] * 0.4) + 7, "wiki": int(unique["wiki"] * 2.3) + 11}
    plan = shard_corpus.write_plan(folder, plan_tokens, unique)
    return {"folder": folder, "plan": plan, "pools": folder / "pools.json", "unique": unique,
            "planned": plan_tokens, "encoded": encoded}


def _cfg(corpus, out: Path, **kw) -> ShardConfig:
    base = dict(output=str(out), plan=str(corpus["plan"]), pools=str(corpus["pools"]), seq_len=SEQ_LEN,
                shard_size="96KB", provenance=True, tokenizer={"name": "cl100k_base"})
    base.update(kw)
    return ShardConfig(**base)


@pytest.fixture(scope="module")
def base_run(corpus, ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "base"
    res = run_shard(_cfg(corpus, out))
    return res


def _rows(folder: Path, columns=("input_ids", "segments")) -> list[dict]:
    m = read_manifest(folder)
    rows = []
    for s in m["shards"]:
        rows.extend(pq.read_table(folder / s["file"], columns=list(columns)).to_pylist())
    return rows


def test_plan_is_realised_exactly_and_every_token_traces_back(corpus, base_run):
    m = base_run.manifest
    out = base_run.output
    by = {p["name"]: p for p in m["pools"]}
    for name, planned in corpus["planned"].items():
        assert by[name]["planned_tokens"] == planned
        assert by[name]["realised_tokens"] == planned, by[name]  # exact, so within 1% too
    assert by["web"]["complete"] is False and by["web"]["sampled_to"] < 0.8, "web should be sampled"
    assert by["wiki"]["complete"] and by["wiki"]["full_epochs"] == 2
    assert abs(by["wiki"]["realised_epochs"] - 2.3) < 0.01
    total = sum(corpus["planned"].values())
    assert m["totals"]["tokens"] == total and m["totals"]["rows"] == -(-total // SEQ_LEN)
    assert m["plan"]["sha256"] == hashlib.sha256(corpus["plan"].read_bytes()).hexdigest()
    assert m["tokenizer"]["name"] == "cl100k_base" and m["tokenizer"]["eos_id"] == 100257
    assert m["totals"]["shards"] > 20  # a real spread over many shards
    assert verify_shards(out).ok

    rows = _rows(out)
    per_pool = collections.Counter()
    where = collections.defaultdict(list)  # (pool, doc, epoch) -> row indices
    taken = collections.defaultdict(int)
    pieces = collections.defaultdict(list)  # (pool, doc, epoch) -> [(offset, length)]
    for i, row in enumerate(rows):
        ids = np.asarray(row["input_ids"])
        assert len(ids) == SEQ_LEN or i == len(rows) - 1
        at = 0
        for sg in row["segments"]:
            ref = corpus["encoded"][(sg["pool"], sg["doc"])]
            piece = ids[at: at + sg["length"]]
            assert np.array_equal(piece, ref[sg["offset"]: sg["offset"] + sg["length"]]), (i, sg)
            at += sg["length"]
            per_pool[sg["pool"]] += sg["length"]
            where[(sg["pool"], sg["doc"], sg["epoch"])].append(i)
            taken[(sg["pool"], sg["doc"], sg["epoch"])] += sg["length"]
            pieces[(sg["pool"], sg["doc"], sg["epoch"])].append((sg["offset"], sg["length"]))
        assert at == len(ids)
    assert dict(per_pool) == corpus["planned"]
    # Every copy is whole (one copy per pool may be cut to make the count exact): its pieces tile
    # [0, n) of the document's tokens exactly once.
    cut = collections.Counter()
    for key, n in taken.items():
        full = len(corpus["encoded"][key[:2]])
        assert n <= full
        if n < full:
            cut[key[0]] += 1
        ps = sorted(pieces[key])
        assert ps[0][0] == 0 and all(a + la == b for (a, la), (b, _) in zip(ps, ps[1:])), (key, ps)
    assert all(v <= 1 for v in cut.values()), cut
    # Fresh permutation per epoch: documents do not come in the same order in epochs 0 and 1.
    first = {}
    for (pool, doc, epoch), rs in where.items():
        if pool == "wiki" and epoch in (0, 1):
            first[(doc, epoch)] = min(rs)
    docs = [d for (d, e) in first if e == 0 and (d, 1) in first]
    r0 = np.argsort(np.argsort([first[(d, 0)] for d in docs]))
    r1 = np.argsort(np.argsort([first[(d, 1)] for d in docs]))
    assert abs(np.corrcoef(r0, r1)[0, 1]) < 0.5
    # Copies of one document are kept apart: at least min_copy_gap / E of the run between them
    # (up to the within-shard shuffle and the unevenness of document lengths; half the bound).
    E = {p["name"]: p["key_epochs"] for p in m["pools"]}
    n_rows, n_shards = len(rows), m["buckets"]
    for pool in ("wiki",):
        bound = (m["min_copy_gap"] / E[pool] - 2.0 / n_shards) * n_rows
        gaps = []
        for (p, doc, epoch), rs in where.items():
            if p == pool and (p, doc, epoch + 1) in where:
                gaps.append(min(abs(a - b) for a in rs for b in where[(p, doc, epoch + 1)]))
        assert min(gaps) >= 0.5 * bound > 10, (min(gaps), bound)


def test_resume_after_a_crash_gives_the_same_bytes(corpus, base_run, ray_session, tmp_path):
    out = tmp_path / "crash"
    cfg = _cfg(corpus, out, keep_cache=True)
    with pytest.raises(RuntimeError, match="injected failure after scatter"):
        ShardRun(cfg, fail_after="scatter").run()
    assert not (out / "manifest.json").exists()
    tok_markers = sorted((out / "_work" / "tokens" / "_tasks").glob("*.json"))
    scatter_markers = sorted((out / "_work" / "scatter" / "_tasks").glob("*.json"))
    assert tok_markers and scatter_markers
    stamp = {p: p.stat().st_mtime_ns for p in tok_markers}
    logs: list[str] = []
    res = run_shard(cfg, log=logs.append)
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items()), "finished tasks were redone"
    assert not (out / "_work" / "scatter").exists()  # scratch removed once the manifest is written
    assert not any(line.startswith("tokenize:") for line in logs), logs
    assert any("scatter: 0 tasks" in line for line in logs), logs
    # Same settings, same seed: byte-identical shards, whatever the history of the run.
    a = [(s["file"], s["sha256"]) for s in base_run.manifest["shards"]]
    b = [(s["file"], s["sha256"]) for s in res.manifest["shards"]]
    assert a == b
    for f, _ in a[:3]:
        assert (base_run.output / f).read_bytes() == (out / f).read_bytes()
    # A finished folder is left alone; other settings need --force.
    mtime = (out / "manifest.json").stat().st_mtime_ns
    assert run_shard(cfg).resumed and (out / "manifest.json").stat().st_mtime_ns == mtime
    with pytest.raises(ShardError, match="--force"):
        run_shard(_cfg(corpus, out, seed=5))


def test_shuffle_seed_reorders_the_same_sequences(corpus, base_run, ray_session, tmp_path):
    other = run_shard(_cfg(corpus, tmp_path / "seed1", seed=1, provenance=False, sample=True))
    a = _rows(base_run.output, ("input_ids",))
    b = _rows(other.output, ("input_ids",))
    key = lambda r: hashlib.sha1(np.asarray(r["input_ids"], dtype=np.int32).tobytes()).hexdigest()  # noqa: E731
    ka, kb = [key(r) for r in a], [key(r) for r in b]
    assert ka != kb, "another seed must change the order"
    assert collections.Counter(ka) == collections.Counter(kb), "...but not the sequences"
    moved = sum(x != y for x, y in zip(ka, kb)) / len(ka)
    assert moved > 0.9
    # Another mix seed draws other permutations and samples: other sequences, same token budget.
    mixed = run_shard(_cfg(corpus, tmp_path / "mix1", mix_seed=1, provenance=False))
    kc = [key(r) for r in _rows(mixed.output, ("input_ids",))]
    assert len(set(kc) & set(ka)) < 0.2 * len(ka)
    assert [p["realised_tokens"] for p in mixed.manifest["pools"]] == list(corpus["planned"].values())


def test_verify_reports_corrupted_truncated_missing_and_stray_shards(base_run, tmp_path):
    from typer.testing import CliRunner

    from curate.cli import app  # the real CLI: its error path turns "not a shard folder" into exit 2

    out = tmp_path / "copy"
    shutil.copytree(base_run.output, out)
    shards = [s["file"] for s in base_run.manifest["shards"]]

    ok = CliRunner().invoke(app, ["shard", "verify", str(out)])
    assert ok.exit_code == 0 and "OK" in ok.output and "checksums match" in ok.output

    flipped = out / shards[1]
    data = bytearray(flipped.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 4] = bytes(x ^ 0xFF for x in data[mid: mid + 4])
    flipped.write_bytes(bytes(data))
    truncated = out / shards[2]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (out / shards[3]).unlink()
    shutil.copy(out / shards[4], out / "shard-99999.parquet")

    report = verify_shards(out)
    text = "\n".join(report.problems)
    assert f"{shards[1]}: SHA-256 mismatch" in text
    assert f"{shards[2]}: size" in text and "truncated" in text and f"{shards[2]}: unreadable as Parquet" in text
    assert f"{shards[3]}: missing" in text
    assert "shard-99999.parquet: on disk but not in the manifest" in text
    assert not any(s in text for s in (shards[0], shards[5]))  # untouched shards are not blamed
    res = CliRunner().invoke(app, ["shard", "verify", str(out)])
    assert res.exit_code == 1 and "SHA-256 mismatch" in res.output and "missing" in res.output
    gone = tmp_path / "empty"
    gone.mkdir()
    res = CliRunner().invoke(app, ["shard", "verify", str(gone)])
    assert res.exit_code == 2 and "no manifest" in res.output  # not a shard folder: a user error


def test_documents_mode_with_fixed_weights_and_cli(corpus, ray_session, tmp_path):
    from typer.testing import CliRunner
    import typer

    from curate.shard.cli import shard_app

    app = typer.Typer()
    app.add_typer(shard_app, name="shard")

    @app.command()
    def noop() -> None:
        pass

    out = tmp_path / "docs"
    res = CliRunner().invoke(app, [
        "shard", "--pools", str(corpus["pools"]), "--weights", "web=1,wiki=3", "--total-tokens", "400K",
        "--documents", "--provenance", "-o", str(out), "--shard-size", "256KB", "--tokenizer", "cl100k_base",
        "--tiktoken-cache", os.environ["TIKTOKEN_CACHE_DIR"]])
    assert res.exit_code == 0, res.output
    assert "100,000" in res.output and "300,000" in res.output  # the planned-vs-realised table
    m = read_manifest(out)
    assert [(p["name"], p["realised_tokens"]) for p in m["pools"]] == [("web", 100_000), ("wiki", 300_000)]
    assert m["mode"] == "documents" and m["plan"]["content"]["schema"] == "curate.shard/weights"
    rows = _rows(out, ("input_ids", "pool", "doc", "epoch"))
    cut = 0
    for r in rows:
        ref = corpus["encoded"][(r["pool"], r["doc"])]
        ids = np.asarray(r["input_ids"])
        assert np.array_equal(ids, ref[: len(ids)])  # a whole document, EOS included...
        cut += len(ids) < len(ref)  # ...but for the one cut per pool to make the count exact
    assert cut <= 2
    assert verify_shards(out).ok


def test_loaders_split_rows_across_ranks_and_workers(base_run):
    import torch
    from torch.utils.data import DataLoader

    from curate.shard.loaders import ShardDataset, hf_data_files

    out = base_run.output
    rows = [r["input_ids"] for r in _rows(out, ("input_ids",))]
    full = [r for r in rows if len(r) == SEQ_LEN]
    seen = []
    for rank in range(2):
        ds = ShardDataset(out, rank=rank, world_size=2)
        batches = list(DataLoader(ds, batch_size=16, num_workers=2))
        got = torch.cat([b["input_ids"] for b in batches]).tolist()
        assert len(got) == len(full) // 2 == len(ds)
        seen.append(got)
    # The two ranks read disjoint halves: together, every full row once (the odd one out not read;
    # rows are compared as a multiset: a document repeated in the same alignment repeats rows).
    # (DataLoader interleaves its workers' batches, so compare each rank's rows as a multiset.)
    half = len(full) // 2
    C = collections.Counter
    assert C(map(tuple, seen[0])) == C(map(tuple, full[:half]))
    assert C(map(tuple, seen[1])) == C(map(tuple, full[half: 2 * half]))
    assert batches[0]["input_ids"].dtype == torch.int64 and batches[0]["input_ids"].shape[1] == SEQ_LEN
    # Shuffling reorders within a reader, per epoch, and keeps the rows.
    ds = ShardDataset(out, rank=0, world_size=1, shuffle=True, shuffle_buffer=64)
    ds.set_epoch(1)
    e1 = [tuple(x["input_ids"].tolist()) for x in ds]
    ds.set_epoch(2)
    e2 = [tuple(x["input_ids"].tolist()) for x in ds]
    assert e1 != e2 and sorted(e1) == sorted(e2) == sorted(map(tuple, full))

    datasets = pytest.importorskip("datasets")
    hf = datasets.load_dataset("parquet", data_files=hf_data_files(out), split="train",
                               cache_dir=str(out.parent / "hf-cache"))
    assert hf.num_rows == len(rows)
    assert hf[0]["input_ids"] == rows[0] and hf[len(rows) - 1]["input_ids"] == rows[-1]
    t = hf.with_format("torch")[:4]["input_ids"]
    assert t.shape == (4, SEQ_LEN)


@pytest.mark.parametrize("task", ["tokenize", "pack_task"])
def test_worker_killed_while_sharding_counts_once(corpus, base_run, ray_session, tmp_path, task):
    """A worker dies (SIGKILL) after a task wrote its outputs, before reporting: Ray restarts it and
    runs the task again, which overwrites the same files; totals and shards equal an undisturbed run's."""
    marker = tmp_path / "killed"
    res = ShardRun(_cfg(corpus, tmp_path / "k"), kill_worker=(task, str(marker)), log=lambda m: None).run()
    assert marker.exists()  # the kill happened
    assert res.manifest["totals"] == base_run.manifest["totals"]
    keys = ("realised_tokens", "tokenized_tokens", "tokenized_documents", "documents_read", "documents_empty")
    assert [{k: p[k] for k in keys} for p in res.manifest["pools"]] == \
        [{k: p[k] for k in keys} for p in base_run.manifest["pools"]]
    assert [(s["file"], s["sha256"]) for s in res.manifest["shards"]] == \
        [(s["file"], s["sha256"]) for s in base_run.manifest["shards"]]
    report = verify_shards(tmp_path / "k")
    assert report.ok, report.problems
