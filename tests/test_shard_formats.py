"""Trainer formats: what `curate shard --format ...` writes, read back by the trainers' own readers.

One run on real text (tests/shard_corpus.py: a real WARC's pages and WikiText-2; the plan takes
about 40% of web, sampled, and 2.3 epochs of wiki) writes Parquet, Megatron, nanotron, MDS and LitData
plus the per-pool outputs. Then, in the readers' virtualenv (Makefile `readers`: megatron-core's
IndexedDataset, datatrove's DatatroveFolderDataset as nanotron's Nanosets use it, mosaicml-streaming's
StreamingDataset, litdata's StreamingDataset + TokensLoader), every format is compared token for
token with the Parquet rows of the same run; MDS and LitData bytes with their own writers' bytes;
the blend files' implied tokens per pool with the plan; and `curate shard verify` must catch a
corrupted .bin, a truncated .idx and a missing MDS shard.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

import shard_corpus
from curate.shard.config import ShardConfig
from curate.shard.engine import run_shard
from curate.shard.formats import Rows, write_mds
from processors.tokenizer import TokenizerSpec
from curate.shard.verify import verify_shards

REPO = Path(__file__).resolve().parents[1]
READERS = REPO / "benchmarks" / ".venvs" / "shard-readers" / "bin" / "python"
SEQ_LEN = 256
ALL = "parquet,megatron,nanotron,mds,litdata"


@pytest.fixture(scope="module")
def run(shared_data, ray_session, tmp_path_factory):
    os.environ["TIKTOKEN_CACHE_DIR"] = str(shared_data / "tokenizers")
    folder = tmp_path_factory.mktemp("fmt-pools")
    texts = shard_corpus.build(shared_data, folder, warcs=1, parts=2)
    tok = TokenizerSpec(name="cl100k_base").load()
    docs = {}
    for pool, t in texts.items():
        flat, lens = tok.encode(t)
        ends = np.cumsum(lens)
        docs[pool] = [flat[e - n: e] for n, e in zip(lens, ends)]
    unique = {p: sum(len(d) for d in ds) for p, ds in docs.items()}
    planned = {"web": int(unique["web"] * 0.4) + 7, "wiki": int(unique["wiki"] * 2.3) + 11}
    plan = shard_corpus.write_plan(folder, planned, unique)
    out = tmp_path_factory.mktemp("fmt") / "out"
    res = run_shard(ShardConfig(output=str(out), plan=str(plan), pools=str(folder / "pools.json"), seq_len=SEQ_LEN,
                                shard_size="128KB", provenance=True, tokenizer={"name": "cl100k_base"},
                                format=ALL, per_pool=True))
    return {"out": out, "manifest": res.manifest, "planned": planned, "docs": docs}


def _parquet(out: Path, manifest: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rows, segs = [], []
    for s in manifest["shards"]:
        t = pq.read_table(out / s["file"], columns=["input_ids", "segments"]).to_pylist()
        rows += [np.asarray(r["input_ids"], dtype=np.int64) for r in t]
        segs += [np.asarray([g["length"] for g in r["segments"]], dtype=np.int64) for r in t]
    return rows, segs


def _read(request: dict, tmp: Path) -> dict:
    if not READERS.is_file():
        pytest.skip("the trainers' readers venv is missing: run `make readers` (make test does)")
    (tmp / "req.json").write_text(json.dumps(request))
    proc = subprocess.run([str(READERS), "-W", "ignore", str(REPO / "tests" / "shard_readers.py"),
                           str(tmp / "req.json"), str(tmp / "got.npz")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    z = np.load(tmp / "got.npz")
    got = {k: z[k] for k in z.files if k != "info"}
    got["info"] = json.loads(z["info"].tobytes())
    return got


@pytest.fixture(scope="module")
def read(run, tmp_path_factory):
    """Everything the tests read, in one process of the readers' venv (its imports cost ~10 s)."""
    out, m = run["out"], run["manifest"]
    tmp = tmp_path_factory.mktemp("readers")
    s = m["shards"][3]
    t = pq.read_table(out / s["file"], columns=["input_ids", "segments"]).to_pylist()
    seg = [[g["length"] for g in r["segments"]] for r in t]
    np.savez(tmp / "rows.npz", values=np.concatenate([np.asarray(r["input_ids"], dtype=np.int32) for r in t]),
             row_lengths=[len(r["input_ids"]) for r in t], segment_lengths=np.concatenate(seg),
             segments_per_row=[len(x) for x in seg])
    po = m["pool_outputs"]
    got = _read({"megatron": [str(out / "megatron" / f"shard-{s['bucket']:05d}") for s in m["shards"]],
                 "megatron_pools": [str(out / "pools" / p / "megatron" / part["part"])
                                    for p in ("web", "wiki") for part in po[p]["parts"]],
                 "nanotron": {"folder": str(out / "nanotron"), "seq_len": SEQ_LEN, "token_size": 4},
                 "mds": {"folder": str(out / "mds")},
                 "litdata": {"folder": str(out / "litdata"), "block_size": SEQ_LEN + 1},
                 "mds_rewrite": [{"rows": str(tmp / "rows.npz"), "out": str(tmp / "mds")},
                                 {"rows": str(tmp / "rows.npz"), "out": str(tmp / "mds-small"), "size_limit": 1 << 16}],
                 "litdata_rewrite": {"rows": str(tmp / "rows.npz"), "out": str(tmp / "lit")}}, tmp)
    return {**got, "tmp": tmp, "shard": s}


def _split(values: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []


def test_every_format_reads_back_token_for_token_with_its_own_reader(run, read):
    out, m, got = run["out"], run["manifest"], read
    rows, segs = _parquet(out, m)
    assert m["row_tokens"] == SEQ_LEN + 1 and all(len(r) == SEQ_LEN + 1 for r in rows[:-1])
    stream = np.concatenate(rows)
    assert set(got["info"]["versions"]) == {"megatron-core", "datatrove", "mosaicml-streaming", "litdata"}
    # Megatron: one sequence per document piece, the pieces of the Parquet rows in order.
    assert np.array_equal(got["megatron_values"], stream)
    assert np.array_equal(got["megatron_lengths"], np.concatenate(segs))
    assert all(d == list(range(len(d))) for d in got["info"]["megatron"]["document_indices"])
    # nanotron: windows of seq_len + 1 = the Parquet rows (the run's last, short row is not a window).
    full = [r for r in rows if len(r) == SEQ_LEN + 1]
    assert np.array_equal(got["nanotron_lengths"], np.full(len(full), SEQ_LEN + 1))
    assert np.array_equal(got["nanotron_values"], np.concatenate(full))
    # MDS: every row, with its document pieces.
    assert np.array_equal(got["mds_values"], stream)
    assert np.array_equal(got["mds_lengths"], [len(r) for r in rows])
    assert np.array_equal(got["mds_segments"], np.concatenate(segs))
    # LitData (TokensLoader): blocks of seq_len + 1 = the rows.
    assert np.array_equal(got["litdata_values"], np.concatenate(full))


def test_mds_and_litdata_bytes_equal_their_own_writers(run, read):
    out, s, tmp_path = run["out"], read["shard"], read["tmp"]
    stem = f"shard-{s['bucket']:05d}"
    for name in ("shard.00000.mds", "index.json"):
        assert (tmp_path / "mds" / name).read_bytes() == (out / "mds" / stem / name).read_bytes(), name
    # MDSWriter's split into files of at most size_limit bytes, reproduced byte for byte.
    z = np.load(tmp_path / "rows.npz")
    rows = Rows(z["values"], z["row_lengths"], z["segment_lengths"], z["segments_per_row"])
    recs, _ = write_mds(tmp_path / "ours", "small", rows, m_vocab := run["manifest"]["tokenizer"]["vocab_size"],
                        size_limit=1 << 16)
    theirs = sorted(p.name for p in (tmp_path / "mds-small").iterdir())
    assert len(theirs) > 3 and theirs == sorted(Path(r.file).name for r in recs) and m_vocab > 65500
    for name in theirs:
        assert (tmp_path / "mds-small" / name).read_bytes() == (tmp_path / "ours" / "small" / name).read_bytes()
    ours = out / "litdata" / f"chunk-{s['bucket']}-0.bin"
    assert (tmp_path / "lit" / "chunk-0-0.bin").read_bytes() == ours.read_bytes()
    ref = json.loads((tmp_path / "lit" / "index.json").read_text())
    ours_index = json.loads((out / "litdata" / "index.json").read_text())
    ref.pop("updated_at", None)  # a timestamp; curate's bytes are reproducible
    assert ref["config"] == ours_index["config"]
    mine = next(c for c in ours_index["chunks"] if c["filename"] == ours.name)
    assert {**ref["chunks"][0], "filename": ours.name} == mine


def test_per_pool_outputs_and_blends_realise_the_plan(run, read):
    out, m, planned = run["out"], run["manifest"], run["planned"]
    po = m["pool_outputs"]
    docs = _split(read["megatron_pools_values"], read["megatron_pools_lengths"])
    n_web = po["web"]["documents"]
    # wiki is planned for 2.3 epochs: its output is every document once (EOS appended), as encoded here.
    C = collections.Counter
    assert C(tuple(d) for d in docs[n_web:]) == C(tuple(d) for d in run["docs"]["wiki"])
    # web is planned below one epoch: its output is the plan's sample, whole documents but one cut.
    web = {tuple(d) for d in run["docs"]["web"]}
    cut = sum(tuple(d) not in web for d in docs[:n_web])
    assert cut <= 1 and sum(map(len, docs[:n_web])) == planned["web"] == po["web"]["tokens"]
    # Megatron --data-path: weight x train_samples x seq_length per pool = the plan, within a sequence.
    words = (out / "blend" / "megatron-data-args.pools.txt").read_text().split()
    line = (out / "blend" / "megatron-data-path.pools.txt").read_text()
    samples = int(line.split("--train-samples")[1].split()[0])
    implied = collections.defaultdict(float)
    for w, prefix in zip(words[::2], words[1::2]):
        implied[Path(prefix).parts[-3]] += float(w) * samples * SEQ_LEN
    assert line.startswith("--data-path ") and set(implied) == set(planned)
    assert all(abs(implied[p] - planned[p]) <= SEQ_LEN for p in planned), (dict(implied), planned)
    # nanotron: weights x the run's tokens; MDS: repeat (the plan's epochs) x the pool's stream.
    nano = yaml.safe_load((out / "blend" / "nanotron.pools.yaml").read_text())["data_stages"][0]["data"]["dataset"]
    total = sum(planned.values())
    for folder, w in zip(nano["dataset_folder"], nano["dataset_weights"]):
        assert abs(w * total - planned[Path(folder).parts[-2]]) < 1
    streams = yaml.safe_load((out / "blend" / "mds-streams.pools.yaml").read_text())["train_loader"]["dataset"]["streams"]
    for pool, s in streams.items():
        assert abs(s["repeat"] * po[pool]["formats"]["mds"]["tokens"] - planned[pool]) < 1
    assert abs(streams["wiki"]["repeat"] - 2.3) < 0.01 and streams["web"]["repeat"] == 1.0


def test_verify_catches_corrupt_bin_truncated_idx_and_missing_mds_shard(run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    ok = verify_shards(out)
    assert ok.ok, ok.problems[:5]
    assert ok.format_files > 4 * len(run["manifest"]["shards"])
    shards = [f"shard-{s['bucket']:05d}" for s in run["manifest"]["shards"]]
    binf = out / "megatron" / f"{shards[1]}.bin"
    data = bytearray(binf.read_bytes())
    data[100:104] = b"\xff\xff\xff\x7f"  # a token id far outside the vocabulary
    binf.write_bytes(bytes(data))
    idx = out / "megatron" / f"{shards[2]}.idx"
    idx.write_bytes(idx.read_bytes()[:-9])
    (out / "mds" / shards[3] / "shard.00000.mds").unlink()
    text = "\n".join(verify_shards(out).problems)
    assert f"megatron/{shards[1]}.bin: SHA-256 mismatch" in text
    assert f"{shards[1]}.bin: token ids span" in text and "outside the vocabulary" in text
    assert f"megatron/{shards[2]}.idx: size" in text and "truncated" in text
    assert f"megatron/{shards[2]}.idx: unreadable Megatron index" in text
    assert f"mds/{shards[3]}/shard.00000.mds: missing" in text
    assert not any(s in text for s in (shards[0], shards[4]))  # untouched shards are not blamed


def test_format_choice_from_flags_and_yaml(tmp_path):
    from curate.shard.config import load_shard_config

    y = tmp_path / "shard.yaml"
    y.write_text("shard:\n  output: out\n  weights: {a: 1}\n  total_tokens: 10\n  format: [megatron, mds]\n")
    cfg = load_shard_config(y)
    assert cfg.format == ["megatron", "mds"] and cfg.row_len == 2048  # no seq_len + 1 reader asked for
    cfg = load_shard_config(y, {"format": "parquet, litdata"})
    assert cfg.format == ["parquet", "litdata"] and cfg.row_len == 2049
    assert load_shard_config(y, {"format": "nanotron", "shifted_targets": False}).row_len == 2048
    res = subprocess.run([str(Path(sys.executable).parent / "curate"), "shard", "--format", "parquet,megatorn",
                          "--weights", "a=1", "--total-tokens", "10", "--pools", str(y), "-o", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "megatorn" in res.stderr and "'megatron'" in res.stderr
