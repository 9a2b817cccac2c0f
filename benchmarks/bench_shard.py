"""`curate shard` throughput against the raw tokenizer, and peak memory as the input grows 4x.

Corpus: real text. `web` = main text of the 1,153 pages of ../shared/data/web (fastwarc +
trafilatura), `wiki` = WikiText-2 de-tokenised. Scaled up by resampling paragraphs: each
synthetic document joins 3-30 random paragraphs of its pool (seeded), so the text is real prose in
realistic document lengths while the size is whatever the run needs. Written in the `curate pools`
layout (8 Parquet parts per pool) with pools.json; the 1x corpus for the memory figure is the first
2 of the 8 parts of each pool (the 4x one is all 8).

Throughput, each measure in its own process, Ray started before the clock (as on a cluster):
- raw: the tokenizer alone on the same texts, in batches of 256 documents — tiktoken
  `encode_ordinary_batch(num_threads=N)`; HF `encode_batch` (and `encode_batch_fast`) with
  RAYON_NUM_THREADS=N;
- curate: `run_shard` (tokenise + mix + scatter + pack + write zstd Parquet + SHA-256 + manifest)
  with N Ray workers of one thread each, a plan of exactly one epoch of each pool.
Both count the same tokens (the pipeline's EOS per document excluded from its count).

Peak memory: while the 2-CPU runs go, a thread samples (every 0.1 s) the RSS of the driver and of
every Ray worker process (`ray::*`); reported: the driver's peak, the largest worker's peak, and the
peak of their sum.

    .venv/bin/python benchmarks/bench_shard.py [--tokens 20M] [--hf-tokens 2M] [--cpus 1 2] [--skip-hf]

Per trainer format (`--formats parquet megatron nanotron mds litdata`, instead of the above): one
run of tokenize + mix + pack + write of each format on the whole corpus against the raw tokenizer
on the same texts (ratio), and the peak memory per worker on a quarter of the corpus (1x) and on
all of it (4x), shards of 1M tokens:

    .venv/bin/python benchmarks/bench_shard.py --formats parquet megatron nanotron mds litdata --work /tmp/b
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
TOKENIZERS = SHARED / "tokenizers"
WORK = REPO / "out" / "bench_shard"
RESULTS = REPO / "benchmarks" / "results"
PARTS = 8
BATCH = 256


def count(text: str) -> int:
    m = {"k": 1e3, "m": 1e6, "b": 1e9}
    t = text.strip().lower()
    return int(float(t[:-1]) * m[t[-1]]) if t[-1] in m else int(float(t))


# ---------------------------------------------------------------- corpus
def source_texts() -> dict[str, list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cache = WORK / "source_texts.parquet"
    if cache.is_file():
        t = pq.read_table(cache)
        out: dict[str, list[str]] = {}
        for pool, text in zip(t["pool"].to_pylist(), t["text"].to_pylist()):
            out.setdefault(pool, []).append(text)
        return out
    from curate.planner.demo_pools import warc_main_texts, wikitext_articles

    t0 = time.time()
    web = warc_main_texts(sorted((SHARED / "web").glob("*.warc.gz")), fast=True)
    wiki = wikitext_articles([SHARED / "reference" / "wikitext-2-valid.txt",
                              SHARED / "reference" / "wikitext-2-test.txt"])
    print(f"extracted {len(web)} web pages (trafilatura) and {len(wiki)} wiki articles in {time.time() - t0:.0f} s")
    WORK.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"pool": ["web"] * len(web) + ["wiki"] * len(wiki), "text": web + wiki}), cache)
    return {"web": web, "wiki": wiki}


def build_corpus(tokens: int) -> Path:
    """Pools of about `tokens` cl100k tokens in all (about 4.2 characters per token)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = WORK / f"corpus-{tokens}"
    if (folder / "pools.json").is_file():
        return folder
    src = source_texts()
    rng = np.random.default_rng(0)
    entries = []
    for pool, texts in src.items():
        paras = [p.strip() for t in texts for p in t.split("\n") if len(p.strip()) > 40]
        want_chars = tokens // 2 * 4.2
        docs, chars = [], 0
        while chars < want_chars:
            k = int(rng.integers(3, 31))
            doc = "\n".join(paras[i] for i in rng.integers(0, len(paras), k))
            docs.append(doc)
            chars += len(doc)
        per = -(-len(docs) // PARTS)
        (folder / pool).mkdir(parents=True, exist_ok=True)
        for i in range(PARTS):
            chunk = docs[i * per: (i + 1) * per]
            pq.write_table(pa.table({"id": [f"{pool}-{i}-{j}" for j in range(len(chunk))], "text": chunk}),
                           folder / pool / f"part-{i:05d}.parquet", row_group_size=BATCH * 4)
        # A quarter of the corpus (parts 0-1) for the 1x memory run, an eighth for the slow HF runs.
        for sub, n in (("quarter", PARTS // 4), ("eighth", PARTS // 8)):
            q = folder / sub / pool
            q.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                os.link(folder / pool / f"part-{i:05d}.parquet", q / f"part-{i:05d}.parquet")
        entries.append({"name": pool, "source": "bench", "domain": pool, "quality_bucket": "0",
                        "documents": len(docs), "characters": chars, "unique_tokens": int(chars / 4.2),
                        "path": pool})
    (folder / "pools.json").write_text(json.dumps({"version": 1, "pools": entries}, indent=1))
    for sub in ("quarter", "eighth"):
        (folder / sub / "pools.json").write_text(json.dumps({"version": 1, "pools": entries}, indent=1))
    return folder


def pool_texts(pools_json: Path) -> dict[str, list[str]]:
    import pyarrow.parquet as pq

    from curate.shard.inputs import read_pools

    return {name: [t for f in files for t in pq.read_table(f, columns=["text"])["text"].to_pylist()]
            for name, (files, _) in read_pools(pools_json).items()}


# ---------------------------------------------------------------- measures (each in its own process)
def raw(pools_json: Path, tokenizer: str, threads: int) -> dict:
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(TOKENIZERS)
    pools = {name: [t for t in ts if t] for name, ts in pool_texts(pools_json).items()}
    out: dict = {"pools": {name: {"documents": len(ts)} for name, ts in pools.items()}}
    if tokenizer.endswith(".json"):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(tokenizer)
        tok.no_truncation()
        tok.no_padding()
        fns = {"encode_batch": lambda b: [len(e.ids) for e in tok.encode_batch(b, add_special_tokens=False)],
               "encode_batch_fast": lambda b: [len(e.ids) for e in tok.encode_batch_fast(b, add_special_tokens=False)]}
    else:
        import tiktoken

        enc = tiktoken.get_encoding(tokenizer)
        fns = {"encode_ordinary_batch": lambda b: list(map(len, enc.encode_ordinary_batch(b, num_threads=threads)))}
    for name, fn in fns.items():
        total, t0, c0 = 0, time.perf_counter(), time.process_time()
        for pool, texts in pools.items():
            n = 0
            for i in range(0, len(texts), BATCH):
                n += sum(fn(texts[i: i + BATCH]))
            out["pools"][pool]["tokens"] = n
            total += n
        out[name] = {"tokens": total, "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    return out


class MemorySampler:
    """Peak RSS of this process and of every Ray worker process, sampled every 0.1 s."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.driver = self.worker = self.total = 0
        self.cpu: dict[int, float] = {}  # pid -> user + system seconds, last seen
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.thread_time()
        try:
            self._loop()
        finally:
            self.own_cpu = time.thread_time() - t0  # the sampler's own CPU: not the pipeline's

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                d = self.me.memory_info().rss
                ws = []
                for p in self.me.children(recursive=True):
                    try:
                        ct = p.cpu_times()
                        self.cpu[p.pid] = ct.user + ct.system
                        if p.name().startswith("ray::") or "ray::" in " ".join(p.cmdline()[:1]):
                            ws.append(p.memory_info().rss)
                    except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                        pass
                self.driver = max(self.driver, d)
                self.worker = max([self.worker] + ws)
                self.total = max(self.total, d + sum(ws))
            except Exception:  # noqa: BLE001
                pass
            self._stop.wait(0.1)

    def __enter__(self) -> "MemorySampler":
        self._run_once_cpu()
        self.cpu0 = dict(self.cpu)
        ct = self.me.cpu_times()
        self.me0 = ct.user + ct.system
        self._t.start()
        return self

    def _run_once_cpu(self) -> None:
        for p in self.me.children(recursive=True):
            try:
                ct = p.cpu_times()
                self.cpu[p.pid] = ct.user + ct.system
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                pass

    def cpu_seconds(self) -> float:
        """CPU time of the driver and every process under it (Ray's included) since __enter__."""
        ct = self.me.cpu_times()
        return (ct.user + ct.system - self.me0 - getattr(self, "own_cpu", 0.0)) + \
            sum(v - self.cpu0.get(pid, 0.0) for pid, v in self.cpu.items())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def pipeline(pools_json: Path, plan: Path, tokenizer: str, cpus: int, out: Path, shard_size: str = "16MB",
             fmt: str = "parquet") -> dict:
    import shutil

    import ray

    from curate.shard.config import ShardConfig
    from curate.shard.engine import run_shard

    os.environ["TIKTOKEN_CACHE_DIR"] = str(TOKENIZERS)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    ray_init = time.perf_counter() - t0
    cfg = ShardConfig(output=str(out), plan=str(plan), pools=str(pools_json), tokenizer={"name": tokenizer},
                      seq_len=2048, shard_size=shard_size, workers=cpus, sample=False, format=fmt)
    with MemorySampler() as mem:
        t0 = time.perf_counter()
        res = run_shard(cfg, force=True, log=lambda m: None)
        wall = time.perf_counter() - t0
    ray.shutdown()
    m = res.manifest
    docs = sum(p["tokenized_documents"] for p in m["pools"])
    return {"seconds": wall, "cpu_s": mem.cpu_seconds(), "ray_init_s": ray_init, "tokens_written": m["totals"]["tokens"],
            "tokens_without_eos": m["totals"]["tokens"] - docs, "shards": m["totals"]["shards"],
            "bytes": m["totals"]["bytes"], "timing": m["timing"], "format": fmt,
            "peak_rss_mb": {"driver": mem.driver / 2**20, "largest_worker": mem.worker / 2**20,
                            "driver_plus_workers": mem.total / 2**20},
            "pack_task_rss_mb": m["workers"]["peak_rss_mb"]["pack"]}


def one_epoch_plan(raw_result: dict, path: Path) -> Path:
    """A plan taking every pool exactly once: its tokens plus one EOS per document."""
    pools = [{"name": n, "tokens": float(p["tokens"] + p["documents"]), "epochs": 1.0}
             for n, p in raw_result["pools"].items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": "curate.plan/v1", "pools": pools}))
    return path


def _sub(*args: str) -> dict:
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    if r.returncode:
        raise SystemExit(f"{args} failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    global WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", default="20M", help="cl100k tokens of the throughput corpus (4x the memory 1x)")
    ap.add_argument("--cpus", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="alternating raw/curate runs; the best of each counts")
    ap.add_argument("--_raw", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--_pipe", nargs=7, help=argparse.SUPPRESS)
    ap.add_argument("--formats", nargs="+", help="per-format table instead (parquet megatron nanotron mds litdata)")
    ap.add_argument("--work", help="scratch folder (default out/bench_shard)")
    a = ap.parse_args()
    if a.work:
        WORK = Path(a.work)
    if a._raw:
        print(json.dumps(raw(Path(a._raw[0]), a._raw[1], int(a._raw[2]))))
        return
    if a._pipe:
        print(json.dumps(pipeline(Path(a._pipe[0]), Path(a._pipe[1]), a._pipe[2], int(a._pipe[3]), Path(a._pipe[4]),
                                  a._pipe[5], a._pipe[6])))
        return
    if a.formats:
        formats_table(build_corpus(count(a.tokens)), max(a.cpus), a.formats)
        return

    folder = build_corpus(count(a.tokens))
    results: dict = {"corpus": str(folder), "cpus": a.cpus, "runs": {}}
    rows = []

    def measure(label: str, pools_json: Path, tokenizer: str, raw_key: str, cpus_list: list[int]) -> None:
        for cpus in cpus_list:
            # Alternate raw and curate runs and keep the best of each: other work on the machine
            # slows single runs by up to 2x, and the best run is the one least disturbed.
            raws, pipes = [], []
            for rep in range(a.repeat):
                raws.append(_sub("--_raw", str(pools_json), tokenizer, str(cpus)))
                plan = one_epoch_plan(raws[0], WORK / f"plan-{label}.json")
                pipes.append(_sub("--_pipe", str(pools_json), str(plan), tokenizer, str(cpus),
                                  str(WORK / f"shards-{label}-{cpus}"), "16MB", "parquet"))
            r = dict(raws[0])
            for key in ("encode_batch", "encode_batch_fast", "encode_ordinary_batch"):
                if key in r:
                    r[key] = min((x[key] for x in raws), key=lambda v: v["seconds"])
            p = min(pipes, key=lambda v: v["seconds"])
            results["runs"][f"{label}/{cpus}"] = {"raw": r, "curate": p, "raw_all": raws,
                                                  "curate_seconds_all": [x["seconds"] for x in pipes]}
            base = r[raw_key]
            raw_tps = base["tokens"] / base["seconds"]
            cur_tps = p["tokens_without_eos"] / p["seconds"]
            raw_cpu = min(x[raw_key]["cpu_s"] for x in raws)
            cur_cpu = min(x["cpu_s"] for x in pipes)
            extra = ""
            if "encode_batch_fast" in r:
                fast = r["encode_batch_fast"]["tokens"] / r["encode_batch_fast"]["seconds"]
                extra = f" ({cur_tps / fast:.2f}x of encode_batch_fast, {fast:,.0f})"
            assert base["tokens"] == p["tokens_without_eos"], (base["tokens"], p["tokens_without_eos"])
            rows.append([label, cpus, f"{base['tokens']:,}", f"{raw_tps:,.0f}", f"{cur_tps:,.0f}",
                         f"{cur_tps / raw_tps:.2f}x" + extra,
                         f"{base['tokens'] / raw_cpu:,.0f}", f"{p['tokens_without_eos'] / cur_cpu:,.0f}",
                         f"{raw_cpu / cur_cpu:.2f}x", f"{p['ray_init_s']:.1f}"])
            print(rows[-1], flush=True)

    measure("cl100k_base", folder / "pools.json", "cl100k_base", "encode_ordinary_batch", a.cpus)
    if not a.skip_hf:
        hf_pools = folder / "quarter" / "pools.json"
        measure("bpe-129k", hf_pools, str(TOKENIZERS / "bpe-129k-tokenizer.json"), "encode_batch", a.cpus)
    # Peak memory as the input grows 4x: the same stage on a quarter of the corpus and on all of it,
    # shards of 1M tokens (4 MB) so that both sizes fill their buckets.
    cpus = max(a.cpus)
    mem_runs = {}
    for label, pools_json in (("1x", folder / "quarter" / "pools.json"), ("4x", folder / "pools.json")):
        plan = one_epoch_plan(_sub("--_raw", str(pools_json), "cl100k_base", str(cpus)), WORK / f"plan-mem-{label}.json")
        runs = [_sub("--_pipe", str(pools_json), str(plan), "cl100k_base", str(cpus),
                     str(WORK / f"shards-mem-{label}"), "4MB", "parquet") for _ in range(a.repeat)]
        best = dict(min(runs, key=lambda v: v["seconds"]))
        best["cpu_s"] = min(v["cpu_s"] for v in runs)
        # Memory: the worst of the runs, so a lucky sample cannot hide a peak.
        best["peak_rss_mb"] = {k: max(v["peak_rss_mb"][k] for v in runs) for k in runs[0]["peak_rss_mb"]}
        best["pack_task_rss_mb"] = max(v["pack_task_rss_mb"] for v in runs)
        mem_runs[label] = best
    small, big = mem_runs["1x"], mem_runs["4x"]
    results["memory"] = mem_runs
    # Steady state: the extra tokens of the 4x run over the extra time (start-up costs cancel out).
    dt = big["tokens_without_eos"] - small["tokens_without_eos"]
    raw2 = results["runs"].get(f"cl100k_base/{cpus}", {}).get("raw", {}).get("encode_ordinary_batch")
    raw_cpu = min(x["encode_ordinary_batch"]["cpu_s"] for r in results["runs"].values() for x in r["raw_all"]
                  if "encode_ordinary_batch" in x) / raw2["tokens"] if raw2 else None
    results["marginal"] = {"tokens_per_s": dt / (big["seconds"] - small["seconds"]),
                           "tokens_per_cpu_s": dt / (big["cpu_s"] - small["cpu_s"]),
                           "raw_tokens_per_s": raw2["tokens"] / raw2["seconds"] if raw2 else None,
                           "raw_tokens_per_cpu_s": 1 / raw_cpu if raw_cpu else None}

    print()
    print("throughput: tokens/s (same texts, same tokens; curate = tokenize + mix + pack + write + checksums)")
    hdr = ["tokenizer", "CPUs", "tokens", "raw tok/s", "curate tok/s", "curate / raw (wall)",
           "raw tok/CPU-s", "curate tok/CPU-s", "curate / raw (CPU)", "ray.init s"]
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    for r in [hdr] + rows:
        print(" | ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    print()
    print(f"peak memory of the shard stage, {cpus} CPUs (MB)")
    for label, run in (("1x", small), ("4x", big)):
        pk = run["peak_rss_mb"]
        print(f"  {label}: {run['tokens_written']:>12,} tokens  driver {pk['driver']:6.0f}  largest worker "
              f"{pk['largest_worker']:6.0f}  driver+workers {pk['driver_plus_workers']:6.0f}  "
              f"(pack task {run['pack_task_rss_mb']:.0f})  {run['shards']} shards")
    mg = results["marginal"]
    if mg["raw_tokens_per_s"]:
        print(f"steady state (1x -> 4x, cl100k_base, {cpus} CPUs): {mg['tokens_per_s']:,.0f} tok/s "
              f"({mg['tokens_per_s'] / mg['raw_tokens_per_s']:.2f}x raw), {mg['tokens_per_cpu_s']:,.0f} tok/CPU-s "
              f"({mg['tokens_per_cpu_s'] / mg['raw_tokens_per_cpu_s']:.2f}x raw)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shard.json").write_text(json.dumps(results, indent=1))
    print(f"\nresults: {RESULTS / 'shard.json'}")


def formats_table(folder: Path, cpus: int, formats: list[str]) -> None:
    """One run per format on all of the corpus (throughput, 4x memory) and one on a quarter (1x)."""
    sizes = {"1x": folder / "quarter" / "pools.json", "4x": folder / "pools.json"}
    raws = {k: _sub("--_raw", str(p), "cl100k_base", str(cpus)) for k, p in sizes.items()}
    plans = {k: one_epoch_plan(r, WORK / f"plan-formats-{k}.json") for k, r in raws.items()}
    base = raws["4x"]["encode_ordinary_batch"]
    raw_tps = base["tokens"] / base["seconds"]
    hdr = ["format", "tokens", "raw tok/s", "curate tok/s", "curate / raw (wall)", "curate / raw (CPU)",
           "tokenize s", "pack+write s", "output MB", "worker MB 1x", "worker MB 4x", "driver MB 1x", "driver MB 4x"]
    rows, out = [], {"raw": raws, "cpus": cpus, "formats": {}}
    for f in formats:
        runs = {k: _sub("--_pipe", str(sizes[k]), str(plans[k]), "cl100k_base", str(cpus),
                        str(WORK / f"shards-format-{f}-{k}"), "4MB", f) for k in sizes}
        big, small = runs["4x"], runs["1x"]
        assert big["tokens_without_eos"] == base["tokens"], (f, big["tokens_without_eos"], base["tokens"])
        tps = big["tokens_without_eos"] / big["seconds"]
        mb = sum(p.stat().st_size for p in (WORK / f"shards-format-{f}-4x").rglob("*") if p.is_file()) / 2**20
        out["formats"][f] = {**runs, "output_mb": mb}
        rows.append([f, f"{base['tokens']:,}", f"{raw_tps:,.0f}", f"{tps:,.0f}", f"{tps / raw_tps:.2f}x",
                     f"{base['cpu_s'] / big['cpu_s']:.2f}x", f"{big['timing'].get('tokenize_s', 0):.1f}",
                     f"{big['timing'].get('pack_s', 0):.1f}", f"{mb:,.0f}",
                     f"{small['peak_rss_mb']['largest_worker']:.0f}", f"{big['peak_rss_mb']['largest_worker']:.0f}",
                     f"{small['peak_rss_mb']['driver']:.0f}", f"{big['peak_rss_mb']['driver']:.0f}"])
        print(rows[-1], flush=True)
    print(f"\nper format, {cpus} CPUs, one run each (raw = tiktoken encode_ordinary_batch on the same texts; "
          "curate = tokenize + mix + pack + write the format + checksums + manifest)")
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    for r in [hdr] + rows:
        print(" | ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shard-formats.json").write_text(json.dumps(out, indent=1))
    print(f"\nresults: {RESULTS / 'shard-formats.json'}")


if __name__ == "__main__":
    main()
