"""Bad input through the whole runner: every problem a counted skip, no good document lost."""
from __future__ import annotations

import os

import pyarrow.compute as pc
import pyarrow.dataset as pads

from curate.config import pipeline_from_dict
from curate.runner import RunOptions, run_pipeline
from warc_samples import html_page, page_record, write_warc

GOOD = [f"Paragraph {i}: the harbour committee met on Tuesday to discuss the new ferry timetable "
        "and the repairs to the old pier, which residents have asked about for years." for i in range(4)]


def _bad_inputs(tmp_path):
    files = []
    # gzip truncated mid-record: the first two pages survive
    recs = [page_record(f"http://ok.example/{i}", html_page(f"Page {i}", GOOD).encode()) for i in range(3)]
    path = tmp_path / "truncated.warc.gz"
    offsets = write_warc(path, recs)
    path.write_bytes(path.read_bytes()[: offsets[2] + 200])
    files.append(path)
    # random bytes
    junk = tmp_path / "random.warc.gz"
    junk.write_bytes(os.urandom(50_000))
    files.append(junk)
    # a non-HTML record, a 20 MB page and a page whose declared charset is wrong, beside a good one
    cp1251 = html_page("Новости", ["Городской совет обсудил новое расписание паромов и ремонт "
                                   "старого причала, о котором жители спрашивают годами."] * 3)
    mixed = [
        page_record("http://pdf.example/doc", b"%PDF-1.4 binary", content_type="application/pdf"),
        page_record("http://huge.example/", html_page("Huge", ["x " * 100] * 100_000).encode()),
        page_record("http://cyr.example/", cp1251.encode("cp1251"),
                    content_type="text/html; charset=utf-8"),  # declared utf-8, really cp1251
        page_record("http://fine.example/", html_page("Fine", GOOD).encode()),
    ]
    mixed_path = tmp_path / "mixed.warc.gz"
    write_warc(mixed_path, mixed)
    files.append(mixed_path)
    return files


def test_bad_inputs_are_counted_skips_and_good_documents_survive(ray_session, shared_data, tmp_path):
    edge = sorted(str(p) for p in (shared_data / "edge").iterdir())
    good_warc = str(shared_data / "web" / "pages-0003.warc.gz")
    inputs = edge + [str(p) for p in _bad_inputs(tmp_path)] + [good_warc]
    cfg = pipeline_from_dict({"output": str(tmp_path / "out"), "inputs": inputs,
                              "stages": [{"extract": {}}]})
    result = run_pipeline(cfg, RunOptions(progress=False))
    stats = result.stats[0]
    assert stats.drops["truncated_record"] >= 3  # clipped edge file, single-member tail, our cut
    assert stats.drops["input_not_warc"] == 1
    assert stats.drops["not_html"] >= 1
    assert stats.drops["page_too_large"] == 1
    table = pads.dataset(str(result.final_dir), format="parquet").to_table()
    urls = set(table["url"].to_pylist())
    assert {"http://ok.example/0", "http://ok.example/1", "http://fine.example/",
            "http://cyr.example/"} <= urls
    cyr = table.filter(pc.equal(table["url"], "http://cyr.example/"))["text"][0].as_py()
    assert "Городской совет" in cyr  # decoded despite the wrong declaration
    # No document of the good WARC is lost: same ids as reading it alone.
    alone = run_pipeline(pipeline_from_dict({"output": str(tmp_path / "alone"), "inputs": [good_warc],
                                             "stages": [{"extract": {}}]}), RunOptions(progress=False))
    ids_alone = set(pads.dataset(str(alone.final_dir), format="parquet").to_table()["id"].to_pylist())
    assert ids_alone and ids_alone <= set(table["id"].to_pylist())
    # The ClueWeb09 (WARC/0.18, EUC-JP) file gives its 29 pages.
    clue = table.filter(pc.match_substring(table["warc_file"], "clueweb09"))
    assert clue.num_rows == 29
    assert stats.docs_in == stats.docs_out + sum(stats.drops.values())
