"""The `read` source (JSONL, Parquet, text and code folders) and the code filter."""
from __future__ import annotations

import gzip
import json
import os
import sysconfig
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from processors.code_quality import CodeQuality
from processors.read import Read


def _read_all(source: Read, uris: list[str]) -> tuple[pa.Table, Counter]:
    tables, drops = [], Counter()
    for uri in uris:
        for r in source.read(uri):
            tables.append(r.table)
            drops.update(r.drops)
    return pa.concat_tables(tables), drops


def test_jsonl_malformed_line_is_counted_and_rest_read(tmp_path):
    lines = [json.dumps({"text": f"document {i}", "id": f"x{i}"}) for i in range(5)]
    lines.insert(2, '{"text": "broken"')  # malformed
    lines.insert(4, json.dumps({"body": "no text field"}))
    p = tmp_path / "c.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write("\n".join(lines) + "\n")
    src = Read(Read.Params(source_name="books", id_field="id"))
    table, drops = _read_all(src, src.list_inputs([str(p)]))
    assert table["id"].to_pylist() == [f"x{i}" for i in range(5)]
    assert set(table["source"].to_pylist()) == {"books"}
    assert drops == {"malformed_json": 1, "missing_text": 1}


def test_jsonl_zstd(tmp_path):
    import zstandard

    p = tmp_path / "c.jsonl.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "a"}\n{"text": "b"}\n'))
    src = Read(Read.Params(source_name="z"))
    table, drops = _read_all(src, [str(p)])
    assert table["text"].to_pylist() == ["a", "b"] and not drops


def test_parquet_field_mapping(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"content": ["alpha", None, "gamma"], "key": ["k1", "k2", "k3"],
                             "link": ["u1", "u2", "u3"]}), p)
    src = Read(Read.Params(source_name="pq", text_field="content", id_field="key", url_field="link"))
    table, drops = _read_all(src, [str(p)])
    assert table["id"].to_pylist() == ["k1", "k3"]
    assert table["url"].to_pylist() == ["u1", "u3"]
    assert drops == {"missing_text": 1}



def test_folder_with_binary_unreadable_and_oversized_files(tmp_path, monkeypatch):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.py").write_text("def f(x):\n    return x + 1\n")
    (folder / "b.py").write_text("import os\nprint(os.getcwd())\n")
    (folder / "blob.py").write_bytes(b"\x00\x01\x02binary\x00" * 50)
    (folder / "latin.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (folder / "huge.py").write_text("x = 1\n" * 400_000)
    (folder / "gone.py").write_text("y = 2\n")
    src = Read(Read.Params(source_name="code", format="code", suffixes=[".py"]))
    uris = src.list_inputs([str(folder)])
    assert len(uris) == 6
    os.remove(folder / "gone.py")  # disappears between listing and reading
    real_open = Read._text

    def unreadable(self, uri, code):  # a file the OS refuses to read (root ignores chmod)
        if uri.endswith("/b.py"):
            raise PermissionError(13, "Permission denied", uri)
        return real_open(self, uri, code)

    monkeypatch.setattr(Read, "_text", unreadable)
    table, drops = _read_all(src, uris)
    assert [Path(p).name for p in table["path"].to_pylist()] == ["a.py"]
    assert table["domain"].to_pylist() == ["python"]
    assert drops == {"binary_file": 1, "not_utf8": 1, "file_too_large": 1, "input_missing": 1,
                     "unreadable_file": 1}


def test_wikitext_articles_split(shared_data):
    src = Read(Read.Params(source_name="wiki", split="wikitext_articles", max_file_bytes=5_000_000))
    table, drops = _read_all(src, [str(shared_data / "reference" / "wikitext-2-valid.txt")])
    # Independent count: top-level headings are lines ' = Title = ' with one '=' on each side.
    raw = (shared_data / "reference" / "wikitext-2-valid.txt").read_text(encoding="utf-8")
    titles = [l for l in raw.splitlines() if l.startswith(" = ") and not l.startswith(" = = ")]
    assert table.num_rows == len(titles) == 60
    assert not drops
    assert all(t.lstrip().startswith("= ") for t in table["text"].to_pylist())


def test_stdlib_code_and_code_filter_on_real_files():
    stdlib = Path(sysconfig.get_path("stdlib"))
    src = Read(Read.Params(source_name="code", format="code", suffixes=[".py"]))
    uris = src.list_inputs([str(stdlib / "json"), str(stdlib / "email")])
    table, drops = _read_all(src, uris)
    assert table.num_rows + sum(drops.values()) == len(uris)
    assert table.num_rows > 30
    texts = table["text"].to_pylist()
    assert texts[0] == Path(table["path"][0].as_py()).read_text(encoding="utf-8")
    result = CodeQuality().process(table)
    # Independent check of the line-length rule on the same files.
    too_long = sum(1 for t in texts if max(len(l) for l in (t.splitlines() or [""])) > 1000)
    assert result.drops.get("code_quality:max_line_length", 0) == too_long
    assert result.table.num_rows >= table.num_rows - 5


def test_code_filter_rules():
    texts = ["x = 1\n" * 10, "a" * 1200, "# Code generated by protoc. DO NOT EDIT.\nx = 1\n",
             "=" * 60 + "\n" + "-" * 60 + "\n"]
    table = pa.table({"id": list("abcd"), "text": texts})
    result = CodeQuality().process(table)
    assert result.table["id"].to_pylist() == ["a"]
    assert result.drops == {"code_quality:max_line_length": 1, "code_quality:generated": 1,
                            "code_quality:alnum_fraction": 1}
