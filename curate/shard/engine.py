"""The sharding run on Ray: tokenise → mix statistics → scatter → pack → manifest.

1. Tokenise (actor pool, the tokenizer loaded once per actor): each task is a row range of one pool
   file, written to the token cache. A pool planned below one epoch is, with `sample`, tokenised
   only for documents whose epoch-0 position falls below an estimate of the cut (widened in further
   rounds until it holds the plan), so a big pool used at 5% costs about 5% of its tokenisation.
2. Mix statistics (tasks reading two narrow columns): per pool with a partial epoch, a histogram of
   token mass over the positions, then the documents of the one bin where the budget runs out; the
   driver cuts there exactly (mixer.py).
3. Scatter: every selected copy of every document goes, with its key, to one of B buckets
   (contiguous key ranges, so bucket order is run order), sorted, plus each bucket's head.
4. Pack: each bucket is sorted, cut into sequences (borrowing the next buckets' heads to end
   its last one), shuffled with `seed`, and written as one shard with its SHA-256 — in every
   format asked for (Parquet, Megatron, nanotron, MDS, LitData: formats.py), the same rows.
4b. With `per_pool`: each token-cache file's documents that the plan's first pass over its pool
   takes, once, in the trainer formats (pools/<pool>/), for the trainer's own blend.
5. The merged MDS/LitData indexes, blend/ (the plan as each trainer's weights: trainers.py), and
   manifest.json, written last.

Every step's tasks run on the same pool of Ray actors (one per worker slot), started once per run.

Memory stays bounded as input grows: a worker holds one task's input (a token-cache file, or one
bucket of about `shard_size` bytes plus heads of at most seq_len tokens per scatter file), never
the corpus; the driver holds per-file and per-bucket counts, one histogram per sampled pool (parts'
histograms are added as they arrive) and the documents of each pool's boundary bin (about
1/HIST_BINS of the pool). Never the scatter index (tasks x buckets rows): it stays in one file per
scatter task, sorted, and each pack task looks up its own bucket there.

Resume: every task writes a marker after its output; a rerun with the same settings skips finished
tasks (token-cache tasks are keyed by content, so they survive a change of seed or sequence length),
and a finished run (manifest with the same fingerprint) is left as it is.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow.parquet as pq

from curate.io import read_json, write_json_atomic

from . import mixer
from .config import ShardConfig
from .formats import FORMAT_DIRS
from .inputs import MixTargets, mix_targets
from .manifest import FORMAT, MANIFEST, read_manifest, write_manifest
from .tasks import load_marker
from processors.tokenizer import Tokenizer, worker_env
from .trainers import merge_indexes, write_blends
from .writer import bucket_tokens, index_path

WORK = "_work"
RUNNING = "_RUNNING"
SAMPLE_BELOW = 0.9  # sample pools planned below this many epochs (by the producer's token count)


class ShardError(RuntimeError):
    """A run that cannot proceed; the message says what to change."""


@dataclass
class ShardResult:
    output: Path
    manifest: dict[str, Any]
    resumed: bool = False
    timing: dict[str, float] = field(default_factory=dict)


Log = Callable[[str], None]


def _default_log(msg: str) -> None:
    print(f"[shard] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- Ray plumbing
class _Ray:
    def __init__(self, cfg: ShardConfig) -> None:
        from curate.ray_session import ensure_ray

        self.started = ensure_ray(cfg.address, cfg.num_cpus)
        import ray

        self.ray = ray
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.cpus = max(1, cpus)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


class _Worker:
    """One Ray actor per worker slot, kept for the whole run: it loads the tokenizer once and then
    runs every step's tasks, so no step pays for starting processes again."""

    def __init__(self, spec: dict, kwargs: dict, env: dict) -> None:
        # Thread settings before the tokenizer library starts its pool. Set here rather than as a
        # Ray runtime_env, which would start fresh worker processes instead of reusing idle ones.
        os.environ.update(env)
        from processors.tokenizer import TokenizerSpec

        self.tok = TokenizerSpec(**spec).load()
        self.kwargs = kwargs

    def tokenize(self, task: dict, kill_marker: str | None = None) -> dict:
        from .tasks import tokenize_task

        result = tokenize_task(self.tok, task, **self.kwargs)
        _die_once(kill_marker)
        return result

    def call(self, name: str, args: tuple, kwargs: dict, kill_marker: str | None = None) -> Any:
        from . import tasks

        result = getattr(tasks, name)(*args, **kwargs)
        _die_once(kill_marker)
        return result


def _die_once(marker: str | None) -> None:
    """Tests: the worker process dies (SIGKILL, no cleanup) after its task wrote its outputs and
    before it reports, once per marker file -- the worst moment for double counting."""
    if marker and not os.path.exists(marker):
        import signal

        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


# A worker that dies (node lost, out of memory, killed) is restarted and its task run again, like
# every other Ray task: every task writes its outputs atomically and its marker last, so a
# repeated task overwrites the same files with the same bytes and is counted once.
WORKER_RESTARTS = 3
TASK_RETRIES = 3


def _on_actors(ray, actors: list, calls: list[tuple[str, tuple, dict]], log: Log | None = None,
               label: str = "", per_actor: int = 2, kill: tuple[str, str] | None = None,
               on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Run calls (method, args, kwargs) on the actors, `per_actor` in flight each; results in order.

    `on_result(i, result)`: called once per call as its result arrives, which is then not kept (the
    list returned holds None): a caller folding results (histograms) holds its fold and the calls in
    flight, not every result. Ray returns one result per call, retries included, so each is folded once.
    `kill` (tests): (method, marker): the first such call's worker dies after doing its work."""
    results: list[Any] = [None] * len(calls)
    free = [a for _ in range(per_actor) for a in actors]  # one task per actor first, then queue a second
    pending: dict[Any, tuple[Any, int]] = {}
    nxt = done = 0
    last = time.monotonic()
    while nxt < len(calls) or pending:
        while nxt < len(calls) and free:
            a = free.pop(0)
            method, args, kw = calls[nxt]
            die = kill[1] if kill and kill[0] == method else None
            ref = a.tokenize.remote(*args, die) if method == "tokenize" else a.call.remote(method, args, kw, die)
            pending[ref] = (a, nxt)
            nxt += 1
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            a, i = pending.pop(ref)
            free.append(a)
            try:
                result = ray.get(ref)
                if on_result is None:
                    results[i] = result
                else:
                    on_result(i, result)
                    del result
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None) or e
                raise ShardError(f"{label or calls[i][0]} task failed: {type(cause).__name__}: {cause}") from e
            except ray.exceptions.RayActorError as e:  # retries spent: the worker kept dying
                raise ShardError(f"{label or calls[i][0]} task failed: its worker died "
                                 f"{TASK_RETRIES + 1} times ({type(e).__name__})") from e
            done += 1
        if log and len(calls) > 1 and (time.monotonic() - last > 30 or done == len(calls)):
            last = time.monotonic()
            log(f"{label}: {done}/{len(calls)} tasks")
    return results


def add_histogram(total: np.ndarray, part: np.ndarray) -> None:
    """Fold one part's histogram into its pool's, in place (the driver's whole state for it)."""
    if part.shape != total.shape:
        raise ShardError(f"mix statistics: a histogram of {part.shape} bins, {total.shape} expected")
    total += part


# ---------------------------------------------------------------- planning helpers
def _file_identity(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _text_bytes(path: str, text_column: str) -> int:
    meta = pq.ParquetFile(path).metadata
    total = 0
    for j in range(meta.num_columns):
        if meta.schema.column(j).path.split(".")[0] == text_column:
            total += sum(meta.row_group(i).column(j).total_uncompressed_size for i in range(meta.num_row_groups))
    return total


def _auto_task_bytes(targets: MixTargets, text_column: str) -> int:
    """About 64 tasks for small inputs (so every worker stays busy), 64 MB of text for big ones.
    A function of the input only, so reruns split alike and reuse the token cache."""
    total = sum(_text_bytes(f, text_column) for p in targets.pools for f in p.files)
    return int(min(64 << 20, max(1 << 20, total // 64)))


def _split_rows(path: str, text_column: str, task_bytes: int) -> list[tuple[int, int]]:
    """Row ranges of about `task_bytes` of text each (from the row groups' uncompressed sizes)."""
    meta = pq.ParquetFile(path).metadata
    schema = meta.schema.to_arrow_schema()
    if text_column not in schema.names:
        raise ShardError(f"{path}: no {text_column!r} column (columns: {schema.names})")
    col = None
    for j in range(meta.num_columns):
        if meta.schema.column(j).path.split(".")[0] == text_column:
            col = j
            break
    ranges: list[tuple[int, int]] = []
    start, acc, row = 0, 0.0, 0
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        rows = rg.num_rows
        size = rg.column(col).total_uncompressed_size if col is not None else rg.total_byte_size
        per_row = size / max(rows, 1)
        r = 0
        while r < rows:
            room = task_bytes - acc
            fit = max(1, int(math.ceil(room / per_row))) if per_row > 0 else rows - r
            if fit <= rows - r:
                r += fit
                ranges.append((start, row + r))
                start, acc = row + r, 0.0
            else:
                acc += per_row * (rows - r)
                r = rows
        row += rows
    if start < row:
        ranges.append((start, row))
    return ranges


def _same_size(path: str, size: int | None) -> bool:
    """A finished task's output is still there, whole (a marker records its size)."""
    try:
        return size is not None and os.path.getsize(path) == size
    except OSError:
        return False


def _outputs_intact(out: Path, rec: dict[str, Any]) -> bool:
    """Every file a finished task recorded is still there at its size."""
    files = [(rec["file"], rec["bytes"])] if rec.get("file") else []
    for f in (rec.get("formats") or {}).values():
        files += [(x["file"], x["bytes"]) for x in f["files"]]
    return all(_same_size(str(out / name), size) for name, size in files)


def _task_id(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _buckets(cfg: ShardConfig, total: int, docs_estimate: int) -> int:
    b = max(1, math.ceil(total * 4 / cfg.shard_size))
    if cfg.mode == "packed":
        return max(1, min(b, total // (4 * cfg.row_len)))
    return max(1, min(b, docs_estimate // 4))


def bucket_plans(size: np.ndarray, mode: str, seq_len: int) -> list[dict[str, Any]]:
    """What each bucket writes, from the tokens per bucket (see pack.py).

    Packed: a sequence belongs to the bucket it starts in; bucket b skips the tokens before its
    first sequence start and borrows from the following buckets to finish its last sequence. A
    bucket in which no sequence starts writes nothing (an earlier bucket holds all its tokens).
    """
    total = int(size.sum())
    offsets = np.concatenate([[0], np.cumsum(size)])
    plans: list[dict[str, Any]] = []
    L = seq_len
    for b in range(len(size)):
        ob, oe = int(offsets[b]), int(offsets[b + 1])
        if oe <= ob:
            continue
        if mode == "documents":
            plans.append({"bucket": b, "skip": 0, "follow": [], "total": oe - ob, "last": oe == total})
            continue
        first = -(-ob // L) * L
        if first >= oe:
            continue
        end = min(((oe - 1) // L) * L + L, total)
        need = end - oe
        follow, nb = [], b + 1
        while need > 0:
            take = min(need, int(size[nb]))
            if take:
                follow.append((nb, take))
            need -= take
            nb += 1
        plans.append({"bucket": b, "skip": first - ob, "follow": follow, "total": end - first, "last": end == total})
    return plans


# ---------------------------------------------------------------- the run
class ShardRun:
    def __init__(self, cfg: ShardConfig, *, resume: bool = True, force: bool = False, log: Log | None = None,
                 fail_after: str | None = None, kill_worker: tuple[str, str] | None = None) -> None:
        self.cfg = cfg
        self.fail_after = fail_after  # tests: raise after this step, as a crash would
        self.kill_worker = kill_worker  # tests: (task name, marker): one worker dies after such a task
        self.resume = resume
        self.force = force
        self.log = log or _default_log
        self.out = Path(cfg.output)
        self.work = self.out / WORK
        self.timing: dict[str, float] = {}

    # -------------------------------------------------------------- setup
    def targets(self) -> MixTargets:
        cfg = self.cfg
        try:
            return mix_targets(cfg.plan, cfg.pools, cfg.weights, cfg.total_tokens)
        except ValueError as e:
            raise ShardError(str(e)) from None

    def identify(self, targets: MixTargets) -> tuple[Tokenizer, str]:
        """Load the tokenizer on the driver (a bad name fails here, clearly) and fingerprint the run."""
        cfg = self.cfg
        if cfg.tokenizer.tiktoken_cache:
            os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(cfg.tokenizer.tiktoken_cache).expanduser().resolve())
        tok = cfg.tokenizer.load()
        inputs = {"pools": [{"name": p.name, "planned_tokens": p.planned_tokens,
                             "files": [_file_identity(f) for f in p.files]} for p in targets.pools],
                  "plan_sha256": targets.plan_sha256, "tokenizer": tok.identity()}
        return tok, cfg.content_fingerprint(inputs)

    def _clean_outputs(self) -> None:
        for p in self.out.glob("shard-*.parquet"):
            p.unlink()
        (self.out / MANIFEST).unlink(missing_ok=True)
        for sub in (*FORMAT_DIRS.values(), "pools", "blend"):
            shutil.rmtree(self.out / sub, ignore_errors=True)
        for sub in ("scatter", "pack", "mix", "pool_out"):
            shutil.rmtree(self.work / sub, ignore_errors=True)

    def run(self) -> ShardResult:
        t_start = time.monotonic()
        targets = self.targets()
        manifest_path = self.out / MANIFEST
        if manifest_path.is_file() and not self.force:
            tok, fp = self.identify(targets)
            try:
                old = read_manifest(self.out)
            except ValueError:
                old = {}
            if old.get("fingerprint") != fp:
                raise ShardError(f"{self.out} holds shards written with other settings or inputs; rerun with "
                                 "--force to replace them, or choose another --output")
            if self.resume:
                self.log(f"{self.out}: already complete (same settings and inputs); nothing to do")
                return ShardResult(self.out, old, resumed=True)
        ray_ctx = _Ray(self.cfg)
        ray = ray_ctx.ray
        self.actors: list = []
        try:
            self.workers = self.cfg.workers or max(1, ray_ctx.cpus // self.cfg.tokenizer.threads)
            # Workers start (and load the tokenizer) while the driver loads its own copy.
            self._ensure_actors(ray)
            tok, fp = self.identify(targets)
            running = self.work / RUNNING
            same = running.is_file() and read_json(running).get("fingerprint") == fp
            if self.force or not self.resume or not same:
                self._clean_outputs()
            self.out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(running, {"fingerprint": fp, "pid": os.getpid(),
                                        "started_at": datetime.now(timezone.utc).isoformat()})
            pools, tok_records = self._tokenize(ray, targets, tok)
            self._maybe_fail("tokenize")
            pool_mix = self._mix(ray, targets, pools, tok_records)
            buckets, scatter = self._scatter(ray, targets, pool_mix, tok_records, pools, fp)
            self._maybe_fail("scatter")
            records = self._pack(ray, targets, buckets, scatter, tok)
            self._maybe_fail("pack")
            pool_out = self._pool_outputs(ray, targets, pool_mix, tok_records, tok) if self.cfg.per_pool else {}
        finally:
            for a in self.actors:
                ray.kill(a)
            ray_ctx.close()
        self.timing["total_s"] = time.monotonic() - t_start
        manifest = self._manifest(targets, tok, fp, pools, pool_mix, records, buckets)
        manifest["formats"] = merge_indexes(self.out, "", manifest["shards"], self.cfg.format, tok.vocab_size)
        if pool_out:
            manifest["pool_outputs"] = pool_out
        manifest["blend"] = write_blends(self.out, manifest)
        write_manifest(self.out, manifest)
        running.unlink(missing_ok=True)
        for sub in ("scatter", "pack", "mix", "pool_out"):
            shutil.rmtree(self.work / sub, ignore_errors=True)
        if not self.cfg.keep_cache:
            shutil.rmtree(self.work, ignore_errors=True)
        return ShardResult(self.out, manifest, timing=dict(self.timing))

    def _calls(self, ray, actors: list, calls: list, log: Log | None = None, label: str = "",
               on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        return _on_actors(ray, actors, calls, log, label, kill=self.kill_worker, on_result=on_result)

    def _maybe_fail(self, step: str) -> None:
        if self.fail_after == step:
            raise RuntimeError(f"injected failure after {step}")

    # -------------------------------------------------------------- 1. tokenise
    def _tokenize_tasks(self, targets: MixTargets, tok: Tokenizer, ranges: dict[str, tuple[float, float]],
                        ) -> list[dict[str, Any]]:
        cfg = self.cfg
        ident = tok.identity()
        task_bytes = cfg.task_bytes or _auto_task_bytes(targets, cfg.text_column)
        tasks = []
        for pi, pool in enumerate(targets.pools):
            if pool.name not in ranges:
                continue
            lo, hi = ranges[pool.name]
            for fi, f in enumerate(pool.files):
                fid = _file_identity(f)
                for rs, re_ in _split_rows(f, cfg.text_column, task_bytes):
                    tid = _task_id("tokenize/v1", ident, cfg.text_column, cfg.id_column, pool.name, fi, fid, rs, re_,
                                   lo, hi, cfg.mix_seed if (lo > 0 or hi < 1) else None)
                    tasks.append({"id": tid, "pool": pool.name, "pool_index": pi, "file": f, "file_index": fi,
                                  "row_start": rs, "row_end": re_, "u_lo": lo, "u_hi": hi,
                                  "out": str(self.work / "tokens" / f"{tid}.arrow"),
                                  "marker": str(self.work / "tokens" / "_tasks" / f"{tid}.json")})
        return tasks

    def _first_ranges(self, targets: MixTargets) -> dict[str, tuple[float, float]]:
        ranges = {}
        for p in targets.pools:
            hi = 1.0
            if self.cfg.sample and p.unique_tokens_hint:
                est = p.planned_tokens / p.unique_tokens_hint
                if est < SAMPLE_BELOW:
                    hi = min(1.0, est * 1.15 + 0.01)
            ranges[p.name] = (0.0, hi)
        return ranges

    def _ensure_actors(self, ray) -> list:
        if not self.actors:
            cfg = self.cfg
            kwargs = dict(text_column=cfg.text_column, id_column=cfg.id_column, batch_docs=cfg.batch_docs,
                          mix_seed=cfg.mix_seed, compression=cfg.scratch_compression)
            opts: dict[str, Any] = {"num_cpus": cfg.tokenizer.threads, "max_restarts": WORKER_RESTARTS,
                                    "max_task_retries": TASK_RETRIES}
            if cfg.memory:
                opts["memory"] = cfg.memory
            Actor = ray.remote(_Worker).options(**opts)
            t0 = time.monotonic()
            env = worker_env(cfg.tokenizer)
            self.actors = [Actor.remote(cfg.tokenizer.model_dump(), kwargs, env) for _ in range(self.workers)]
            self.timing["workers_start_s"] = time.monotonic() - t0
        return self.actors

    def _tokenize(self, ray, targets: MixTargets, tok: Tokenizer):
        t0 = time.monotonic()
        covered = {p.name: 0.0 for p in targets.pools}  # sampled up to this epoch-0 position
        pools = {p.name: {"tokens": 0, "documents": 0, "documents_read": 0, "documents_empty": 0, "chars": 0,
                          "sampled_to": 0.0} for p in targets.pools}
        records: list[dict] = []
        ranges = self._first_ranges(targets)
        encode_s = 0.0
        round_ = 0
        while ranges:
            round_ += 1
            tasks = self._tokenize_tasks(targets, tok, ranges)
            todo = []
            for t in tasks:
                rec = load_marker(t["marker"]) if self.resume else None
                if rec is not None and _same_size(t["out"], rec.get("cache_bytes")):
                    records.append(rec)
                else:
                    todo.append(t)
            if todo:
                actors = self._ensure_actors(ray)
                self.log(f"tokenize: {len(todo)} tasks on {len(actors)} workers"
                         + (f" ({len(tasks) - len(todo)} done before)" if len(tasks) > len(todo) else "")
                         + (f", round {round_}" if round_ > 1 else ""))
                todo.sort(key=lambda t: -(t["row_end"] - t["row_start"]))
                records.extend(self._calls(ray, actors, [("tokenize", (t,), {}) for t in todo],
                                          self.log, "tokenize"))
            for name, (lo, hi) in ranges.items():
                covered[name] = hi
            # Which sampled pools still hold fewer tokens than planned?
            mass = {p.name: 0 for p in targets.pools}
            for r in records:
                mass[r["pool"]] += r["tokens"]
            ranges = {}
            for p in targets.pools:
                if covered[p.name] < 1.0 and mass[p.name] < p.planned_tokens:
                    hi = covered[p.name]
                    grow = (p.planned_tokens / mass[p.name] * 1.15) if mass[p.name] else 4.0
                    ranges[p.name] = (hi, min(1.0, hi * grow + 0.01))
        for r in records:
            s = pools[r["pool"]]
            for k in ("tokens", "documents", "chars"):
                s[k] += r[k]
            if r["u_lo"] == 0.0:  # documents of the pool: counted in the first sampling round only
                s["documents_read"] += r["documents_read"]
                s["documents_empty"] += r["documents_empty"]
            encode_s += r.get("encode_s", 0.0)
        for name, s in pools.items():
            s["sampled_to"] = covered[name]
            s["complete"] = covered[name] >= 1.0
        self.timing["tokenize_s"] = time.monotonic() - t0
        self.timing["encode_busy_s"] = encode_s
        return pools, records

    # -------------------------------------------------------------- 2. mix statistics
    def _mix(self, ray, targets: MixTargets, pools: dict, records: list[dict]) -> list[mixer.PoolMix]:
        t0 = time.monotonic()

        result = []
        for i, p in enumerate(targets.pools):
            st = pools[p.name]
            if st["tokens"] <= 0:
                raise ShardError(f"pool {p.name!r} has no tokens (documents read: {st['documents_read']}, "
                                 f"empty: {st['documents_empty']}) but the plan takes {p.planned_tokens:,}")
            full, rem = mixer.split_budget(p.planned_tokens, st["tokens"], st["complete"])
            result.append(mixer.PoolMix(p.name, i, p.planned_tokens, st["tokens"], full, rem))
        need = [pm for pm in result if pm.remainder > 0]
        if need:
            actors = self._ensure_actors(ray)
            caches = {pm.name: [r["cache"] for r in records if r["pool"] == pm.name and r["documents"]] for pm in need}
            owner = [pm.name for pm in need for _ in caches[pm.name]]
            calls = [("mix_stats_task", (c, pm.to_dict(), self.cfg.mix_seed, self.cfg.min_copy_gap, "hist"), {})
                     for pm in need for c in caches[pm.name]]
            # Each part's histogram (HIST_BINS counts) is added to its pool's as it arrives: the driver
            # holds one histogram per pool, not one per token-cache file (integer sums: any order gives
            # the same counts).
            hist = {pm.name: np.zeros(mixer.HIST_BINS, dtype=np.int64) for pm in need}
            self._calls(ray, actors, calls, label="mix statistics",
                        on_result=lambda i, h: add_histogram(hist[owner[i]], h))
            for pm in need:
                pm.boundary_bin, pm.mass_before_bin = mixer.boundary_bin(hist[pm.name], pm.remainder)
            del hist
            calls = [("mix_stats_task", (c, pm.to_dict(), self.cfg.mix_seed, self.cfg.min_copy_gap, "bin",
                                         pm.boundary_bin), {}) for pm in need for c in caches[pm.name]]
            # The documents of each pool's boundary bin (about 1/HIST_BINS of the pool), kept by call
            # index so they are concatenated in the same order whatever order they arrive in.
            parts: dict[int, dict] = {}

            def keep_bin(i: int, d: dict | None) -> None:
                if d is not None:
                    parts[i] = d

            self._calls(ray, actors, calls, label="mix statistics", on_result=keep_bin)
            for pm in need:
                mine = [parts[i] for i in sorted(parts) if owner[i] == pm.name]
                cat = {f: np.concatenate([d[f] for d in mine]) for f in ("u", "h", "ref", "n")}
                pm.boundary = mixer.resolve_boundary(cat["u"], cat["h"], cat["ref"], cat["n"],
                                                     pm.remainder - pm.mass_before_bin)
        self.timing["mix_s"] = time.monotonic() - t0
        return result

    # -------------------------------------------------------------- 3. scatter
    def _scatter(self, ray, targets: MixTargets, pool_mix: list[mixer.PoolMix], records: list[dict], pools: dict,
                 fp: str):
        t0 = time.monotonic()

        cfg = self.cfg
        total = targets.total_tokens
        docs_est = sum(int(pm.planned_tokens / max(1, pools[pm.name]["tokens"]) * pools[pm.name]["documents"])
                       for pm in pool_mix)
        B = _buckets(cfg, total, docs_est)
        by_name = {pm.name: pm for pm in pool_mix}
        seq_len = cfg.row_len if cfg.mode == "packed" else None
        calls, tasks, done = [], [], []
        for r in records:
            if not r["documents"]:
                continue
            pm = by_name[r["pool"]]
            # v2: indexes sorted by (bucket, kind), which pack tasks binary-search (v1 files are not).
            tid = _task_id("scatter/v2", fp, r["id"], B)
            task = {"id": tid, "cache": r["cache"], "out": str(self.work / "scatter" / f"{tid}.bin"),
                    "marker": str(self.work / "scatter" / "_tasks" / f"{tid}.json")}
            rec = load_marker(task["marker"]) if self.resume else None
            if rec is not None and _same_size(task["out"], rec.get("scatter_bytes")) and \
                    index_path(Path(task["out"])).is_file():
                done.append(rec)
                continue
            tasks.append(task)
            calls.append(("scatter_task", (task, pm.to_dict()), dict(mix_seed=cfg.mix_seed, gap=cfg.min_copy_gap, buckets=B,
                                                    seq_len=seq_len, compression=cfg.scratch_compression)))
        self.log(f"scatter: {len(calls)} tasks into {B} buckets"
                 + (f" ({len(done)} done before)" if done else ""))
        results = done + (self._calls(ray, self._ensure_actors(ray), calls, self.log, "scatter") if calls else [])
        self.timing["scatter_s"] = time.monotonic() - t0
        return B, results

    # -------------------------------------------------------------- 4. pack
    def _pack(self, ray, targets: MixTargets, B: int, scatter: list[dict], tok: Tokenizer) -> list[dict]:
        t0 = time.monotonic()

        cfg = self.cfg
        files = [r["scatter"] for r in scatter]
        # Tokens per bucket, one scatter index at a time; each pack task then looks its own blobs up
        # in the (sorted) indexes. The driver holds per-bucket counts, never the tasks x buckets index
        # rows of the run (at 250M documents per TB: thousands of tasks times thousands of buckets).
        size = bucket_tokens(files, B)
        total = int(size.sum())
        if total != targets.total_tokens:
            raise ShardError(f"scatter wrote {total:,} tokens, the plan wants {targets.total_tokens:,} "
                             "(stale work files? rerun with --force)")
        scatter_list = self.work / "pack" / "_scatter_files.json"
        write_json_atomic(scatter_list, files)

        plans = bucket_plans(size, cfg.mode, cfg.row_len)
        pool_names = [p.name for p in targets.pools]
        calls, done = [], []
        for p in plans:
            marker = self.work / "pack" / f"{p['bucket']:05d}.json"
            rec = load_marker(marker) if self.resume else None
            if rec is not None and _outputs_intact(self.out, rec):
                done.append(rec)
                continue
            calls.append(("pack_task", (p, str(scatter_list)),
                          dict(mode=cfg.mode, seq_len=cfg.row_len, seed=cfg.seed, pool_names=pool_names,
                               provenance=cfg.provenance, out_dir=str(self.out), marker=str(marker),
                               compression=cfg.compression, compression_level=cfg.compression_level,
                               formats=tuple(cfg.format), vocab_size=tok.vocab_size,
                               tokenizer_name=str(tok.identity().get("name")))))
        self.log(f"pack: {len(calls)} shards" + (f" ({len(done)} done before)" if done else ""))
        results = done + (self._calls(ray, self._ensure_actors(ray), calls, self.log, "pack") if calls else [])
        self.timing["pack_s"] = time.monotonic() - t0
        return sorted(results, key=lambda r: r["bucket"])

    # -------------------------------------------------------------- 4b. each pool once (per_pool)
    def _pool_outputs(self, ray, targets: MixTargets, pool_mix: list[mixer.PoolMix], records: list[dict],
                      tok: Tokenizer) -> dict[str, Any]:
        t0 = time.monotonic()
        cfg = self.cfg
        by_name = {pm.name: pm for pm in pool_mix}
        calls, done, parts = [], [], {}
        for r in sorted((r for r in records if r["documents"]), key=lambda r: (r["pool"], r["file"], r["row_start"],
                                                                             r["u_lo"])):
            k = parts.setdefault(r["pool"], [])
            part = f"part-{len(k):05d}"
            k.append(part)
            marker = self.work / "pool_out" / f"{_task_id('pool_out/v1', r['id'], r['pool'], part)}.json"
            rec = load_marker(marker) if self.resume else None
            if rec is not None and _outputs_intact(self.out, rec):
                done.append(rec)
                continue
            calls.append(("pool_output_task", (r["cache"], by_name[r["pool"]].to_dict(), part),
                          dict(mix_seed=cfg.mix_seed, gap=cfg.min_copy_gap, row_len=cfg.row_len,
                               formats=list(cfg.format), out_dir=str(self.out), vocab_size=tok.vocab_size,
                               tokenizer_name=str(tok.identity().get("name")), marker=str(marker))))
        self.log(f"per-pool outputs: {len(calls)} tasks" + (f" ({len(done)} done before)" if done else ""))
        results = done + (self._calls(ray, self._ensure_actors(ray), calls, self.log, "per-pool") if calls else [])
        out: dict[str, Any] = {}
        for p in targets.pools:
            recs = sorted((r for r in results if r["pool"] == p.name), key=lambda r: r["part"])
            tokens = sum(r["tokens"] for r in recs)
            out[p.name] = {"tokens": tokens, "documents": sum(r["documents"] for r in recs),
                           "planned_tokens": p.planned_tokens,
                           "epochs": p.planned_tokens / tokens if tokens else None,
                           "parts": [{"part": r["part"], "tokens": r["tokens"], "documents": r["documents"],
                                      "formats": r["formats"]} for r in recs],
                           "formats": merge_indexes(self.out, f"pools/{p.name}/",
                                                    [{"formats": r["formats"], "tokens": r["tokens"]} for r in recs],
                                                    [f for f in cfg.format if f != "parquet"], tok.vocab_size)}
        self.timing["per_pool_s"] = time.monotonic() - t0
        return out

    # -------------------------------------------------------------- 5. manifest
    def _manifest(self, targets: MixTargets, tok: Tokenizer, fp: str, pools: dict, pool_mix: list[mixer.PoolMix],
                  records: list[dict], B: int) -> dict[str, Any]:
        cfg = self.cfg
        realised = {p.name: 0 for p in targets.pools}
        for r in records:
            for k, v in r["pool_tokens"].items():
                realised[k] += v
        pool_rows = []
        for p, pm in zip(targets.pools, pool_mix):
            st = pools[p.name]
            real = realised[p.name]
            pool_rows.append({
                "name": p.name, "planned_tokens": p.planned_tokens, "realised_tokens": real,
                "difference": real - p.planned_tokens,
                "relative_difference": (real - p.planned_tokens) / p.planned_tokens,
                "tokenized_tokens": st["tokens"], "tokenized_documents": st["documents"],
                "documents_read": st["documents_read"], "documents_empty": st["documents_empty"],
                "complete": st["complete"], "sampled_to": st["sampled_to"],
                "full_epochs": pm.full_epochs, "partial_epoch_tokens": pm.remainder,
                "key_epochs": pm.key_epochs,
                "planned_epochs": p.planned_epochs,
                "realised_epochs": (real / st["tokens"]) if st["complete"] else None,
                "weight": p.weight, "realised_weight": real / max(1, targets.total_tokens),
                "files": len(p.files),
            })
        shards = [{k: r.get(k) for k in ("bucket", "file", "rows", "tokens", "bytes", "sha256", "row_groups",
                                     "pool_tokens", "partial_rows", "formats")} for r in records]
        cols = {"input_ids": "list<int32>"}
        if cfg.provenance:
            cols.update({"segments": "list<struct<pool, doc, epoch, offset, length>>"} if cfg.mode == "packed"
                        else {"pool": "dictionary<string>", "doc": "uint64", "epoch": "uint16"})
        try:
            from importlib.metadata import version

            curate_version = version("curate")
        except Exception:  # noqa: BLE001
            curate_version = None
        return {
            "format": FORMAT, "created_at": datetime.now(timezone.utc).isoformat(),
            "curate_version": curate_version, "fingerprint": fp,
            "mode": cfg.mode, "seq_len": cfg.seq_len if cfg.mode == "packed" else None,
            "row_tokens": cfg.row_len if cfg.mode == "packed" else None,
            "seed": cfg.seed, "mix_seed": cfg.mix_seed, "min_copy_gap": cfg.min_copy_gap,
            "buckets": B, "tokenizer": tok.identity(), "columns": cols,
            "plan": {"path": targets.plan_path, "sha256": targets.plan_sha256, "content": targets.plan,
                     "pools_not_taken": targets.skipped},
            "pools": pool_rows,
            "totals": {"tokens": sum(r["tokens"] for r in records), "rows": sum(r["rows"] for r in records),
                       "shards": len(records), "bytes": sum(r["bytes"] for r in records),
                       "partial_rows": sum(r["partial_rows"] for r in records)},
            "shards": shards,
            "params": cfg.model_dump(mode="json", exclude={"workers", "num_cpus", "address"}),
            "timing": {k: round(v, 3) for k, v in self.timing.items()},
            "workers": {"count": self.workers,
                        "peak_rss_mb": {"pack": max((r.get("rss_mb", 0) for r in records), default=0)}},
        }


def run_shard(cfg: ShardConfig, *, resume: bool = True, force: bool = False, log: Log | None = None) -> ShardResult:
    """Mix, tokenise, pack and write shards as `cfg` says; returns the manifest."""
    return ShardRun(cfg, resume=resume, force=force, log=log).run()
