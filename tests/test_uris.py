"""Input listing: a stage's output folder lists its data parts only; a code folder lists its files."""
from __future__ import annotations

from pathlib import Path

import pytest

from processors.uris import DATASET_IGNORE, expand_all, expand_glob


def _touch(root: Path, *names: str) -> None:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_stage_folder_lists_parts_not_side_outputs(tmp_path):
    stage = tmp_path / "minhash_dedup"
    _touch(stage, "part-a.parquet", "part-b.parquet", "_dropped/part-c.parquet", "_tasks/t.json",
           "_stats.json", ".part-d.parquet.tmp", "sub/part-e.parquet")
    got = [Path(p).relative_to(stage).as_posix() for p in expand_glob(str(stage), (".parquet",), DATASET_IGNORE)]
    assert got == ["part-a.parquet", "part-b.parquet", "sub/part-e.parquet"]
    # the default (source folders) keeps underscore names but never hidden ones
    got = [Path(p).relative_to(stage).as_posix() for p in expand_glob(str(stage), (".parquet",))]
    assert got == ["_dropped/part-c.parquet", "part-a.parquet", "part-b.parquet", "sub/part-e.parquet"]


def test_code_folder_keeps_dunder_files_and_skips_hidden_folders(tmp_path):
    _touch(tmp_path, "pkg/__init__.py", "pkg/_impl.py", "pkg/.git/hooks/x.py", "pkg/.hidden.py")
    got = [Path(p).relative_to(tmp_path).as_posix() for p in expand_all([str(tmp_path / "pkg")], (".py",))]
    assert got == ["pkg/__init__.py", "pkg/_impl.py"]


def test_a_glob_that_matches_nothing_names_itself(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        expand_glob(str(tmp_path / "nope*"))
