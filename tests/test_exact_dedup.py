"""Exact dedup identifies, then removes: only narrow rows (128-bit key, positional uid, `id`,
length) are shuffled; the text stays in the input parts, which removal streams once.

On real text: the 2,461 non-empty lines of WikiText-2 validation (`shared/data/reference`) as
documents, in three parts of unequal size. Section headings repeat across its articles (143
exact copies) and some lines differ only in spacing or punctuation (14 more, folded by the
normalised key). Ids are a permutation of the line numbers, so "smallest id" is not "first
seen", and lengths differ inside a key, so the two `keep` rules elect different survivors.
The expected result is computed here, independently (pandas, on the normalised text itself
rather than its hash), as the former in-process reduce chose: per key, the smallest id, or the
longest text then the smallest id.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from curate.cluster_dedup import KEEP, UID, assign_part, identify
from curate.config import pipeline_from_dict
from curate.io import STATS_FILE
from curate.runner import RunOptions, run_pipeline
from processors.exact_dedup import ExactDedup, ExactDedupParams
from processors.normalize import normalize_for_dedup

SIZES = (900, 900, 661)


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory) -> tuple[list[str], pa.Table]:
    path = shared_data / "reference" / "wikitext-2-valid.txt"
    lines = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    n = len(lines)
    assert n == sum(SIZES)
    table = pa.table({
        "id": [f"w{(i * 7919) % n:05d}" for i in range(n)],  # a permutation: id order != line order
        "source": ["cc" if i % 3 == 0 else "wiki" for i in range(n)],
        "url": [None] * n, "domain": [None] * n, "date": [None] * n,
        "text": lines,
    }, schema=pa.schema([("id", pa.string()), ("source", pa.string()), ("url", pa.string()),
                         ("domain", pa.string()), ("date", pa.string()), ("text", pa.string())]))
    folder = tmp_path_factory.mktemp("exact_in")
    parts, start = [], 0
    for k, size in enumerate(SIZES):
        p = folder / f"part-{k}.parquet"
        pq.write_table(table.slice(start, size), p)
        parts.append(str(p))
        start += size
    return parts, table


def _expected(table: pa.Table, keep: str) -> pd.DataFrame:
    df = table.to_pandas()
    df["key"] = [normalize_for_dedup(t or "") for t in df["text"]]
    df["length"] = df["text"].fillna("").str.len()  # characters, as the rule is stated
    if keep == "longest_then_smallest_id":
        df = df.sort_values(["key", "length", "id"], ascending=[True, False, True], kind="stable")
    else:
        df = df.sort_values(["key", "id"], kind="stable")
    return df.drop_duplicates("key", keep="first").sort_values("id")


def test_the_data_tells_the_rules_apart(corpus):
    _, table = corpus
    a, b = _expected(table, "smallest_id"), _expected(table, "longest_then_smallest_id")
    assert len(a) == len(b) == 2304  # 157 duplicates: 143 exact copies, 14 after normalisation
    assert set(a["id"]) != set(b["id"])


@pytest.mark.parametrize("keep", ["smallest_id", "longest_then_smallest_id"])
def test_output_and_stats_equal_the_independent_computation(ray_session, corpus, tmp_path, keep):
    parts, table = corpus
    out = tmp_path / "out"
    result = run_pipeline(pipeline_from_dict({"inputs": parts, "output": str(out),
                                              "stages": [{"exact_dedup": {"keep": keep}}]}),
                          RunOptions(progress=False))
    got = pads.dataset(str(result.final_dir), format="parquet").to_table().sort_by("id")
    exp = _expected(table, keep)
    # The same documents, whole, with the input's columns only (no cluster_id, no key).
    assert got.column_names == table.column_names
    assert got["id"].to_pylist() == exp["id"].tolist()
    assert got["text"].to_pylist() == exp["text"].tolist()
    assert got["source"].to_pylist() == exp["source"].tolist()
    stats = json.loads((out / "exact_dedup" / STATS_FILE).read_text())
    n, kept = table.num_rows, len(exp)
    assert (stats["docs_in"], stats["docs_out"], stats["drops"]) == (n, kept, {"exact_duplicate": n - kept})
    src_in = table.to_pandas()["source"].value_counts().to_dict()
    src_out = exp["source"].value_counts().to_dict()
    for src, n_in in src_in.items():
        entry = stats["by_source"][src]
        assert (entry["docs_in"], entry["docs_out"]) == (n_in, src_out[src])
        assert entry["drops"] == {"exact_duplicate": n_in - src_out[src]}
    assert stats["bytes_in"] == sum(len(t.encode()) for t in table["text"].to_pylist())
    assert stats["bytes_out"] == sum(len(t.encode()) for t in exp["text"])
    assert not (out / "_work" / "exact_dedup").exists()  # the phases are gone once parts are written


def test_only_narrow_rows_move_phases_resume_and_partitions_do_not_matter(ray_session, corpus, tmp_path):
    parts, table = corpus
    proc = ExactDedup(ExactDedupParams(keep="longest_then_smallest_id"))
    work = tmp_path / "work"
    ident = identify(parts, proc, work_dir=work, num_partitions=8)
    assert ident.resumed_at is None
    # Nothing the phases wrote holds text: the shuffle reads the signature files, uid, id, the
    # 16-byte key and the length, and routes (uid, survivor id, keep) rows back per part.
    written = sorted(work.rglob("*.parquet"))
    assert written
    for f in written:
        assert "text" not in pq.read_schema(f).names, f
    for f in (work / "signatures").glob("*.parquet"):
        schema = pq.read_schema(f)
        assert set(schema.names) == {UID, "id", "_exact_key", "_exact_len"}
        assert schema.field("_exact_key").type == pa.binary(16)
    assert not (work / "edges").exists() or not list((work / "edges").iterdir())  # no edges, no components
    survivors = _survivors(work)
    exp = _expected(table, "longest_then_smallest_id")
    n, kept = table.num_rows, len(exp)
    assert (~survivors[KEEP]).sum() == n - kept == ident.counters["dropped"]
    # Removal: each part streamed against its own survivors file only.
    out_ids = []
    for idx, path in enumerate(parts):
        for t in assign_part(path, idx, ident.survivors_dir, None):
            assert "cluster_id" not in t.column_names
            out_ids += t.filter(t.column(KEEP))["id"].to_pylist()
    assert sorted(out_ids) == exp["id"].tolist()
    # A driver stopped after signatures: the rerun reuses them and elects the same survivors.
    (work / "survivors" / "_COMMITTED").unlink()
    again = identify(parts, proc, work_dir=work, num_partitions=8)
    assert again.resumed_at == "survivors"
    assert _survivors(work).equals(survivors)
    # Any partition count elects the same survivors.
    one = identify(parts, proc, work_dir=tmp_path / "one", num_partitions=1)
    assert _survivors(one.work_dir).equals(survivors)
    assert one.stats("exact_duplicate")["drops"] == {"exact_duplicate": n - kept}


def _survivors(work: Path) -> pd.DataFrame:
    files = sorted((work / "survivors").glob("s-*.parquet"))
    df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    return df.sort_values(UID, ignore_index=True)


def test_parts_of_different_columns_come_out_in_one_schema(ray_session, corpus, tmp_path):
    """Input parts of different sources differ in columns (the crawl's `warc_file` is absent from
    code): every output part carries the union, so `pyarrow.dataset` reads every column whichever
    part it opens first (it takes the schema from one file)."""
    parts, _ = corpus
    crawl = pq.read_table(parts[0])
    crawl = crawl.append_column("warc_file", pa.array(["cc.warc.gz"] * crawl.num_rows))
    mixed = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    pq.write_table(crawl, mixed[0])
    pq.write_table(pq.read_table(parts[1]), mixed[1])
    result = run_pipeline(pipeline_from_dict({"inputs": [str(p) for p in mixed], "output": str(tmp_path / "out"),
                                              "stages": [{"exact_dedup": {}}]}), RunOptions(progress=False))
    written = sorted(result.final_dir.glob("part-*.parquet"))
    assert len(written) == 2
    schemas = {tuple(pq.read_schema(p).names) for p in written}
    assert schemas == {tuple(crawl.column_names)}, schemas
    for first in (written, written[::-1]):  # either part first: the same columns
        got = pads.dataset([str(p) for p in first], format="parquet").to_table()
        assert "warc_file" in got.column_names and got.num_rows == result.stats[-1].docs_out
