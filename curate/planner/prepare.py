"""From pools.json to what proxy runs train and are measured on.

1. Read each pool's documents (at most what the design can use), and the target's.
2. Train the proxy tokenizer on a sample of all of them; its vocabulary is scaled to the text
   there is (a few thousand characters cannot support a 2k-token BPE).
3. Hold out whole documents of the target's pools (target.py): they leave the pools' training
   streams. With an external target, candidate documents whose exact text is in it are dropped.
4. Pools too small to measure (fewer than `min_pool_tokens` training tokens) are merged into their
   nearest sibling: same source and domain, adjacent quality bucket (nearest mean classifier
   score, else nearest in pools.json order). A pool with no sibling is planned with an explicit
   prior (see `fit_pool_params`). Every merge and prior is reported, never an exception.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .errors import PlanInputError
from .pools import PoolsFile, iter_texts
from .proxy import EOS, EvalSet, PoolTokens, encode_docs, train_tokenizer
from .target import ResolvedTarget, TargetSpec, read_target_texts


@dataclass
class FitGroup:
    """What one fitted (q, R*) stands for: one pool, or a small pool merged into a sibling."""

    name: str
    members: list[str]
    train_tokens: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "members": self.members, "train_tokens": self.train_tokens}


@dataclass
class Prepared:
    tokenizer: object
    vocab: int
    groups: list[FitGroup]
    streams: dict[str, PoolTokens]  # group name -> training stream
    target: EvalSet
    resolved: ResolvedTarget
    unplaced: dict[str, str] = field(default_factory=dict)  # pool -> why it has no group (prior)
    notes: list[str] = field(default_factory=list)
    pool_tokens: dict[str, int] = field(default_factory=dict)  # proxy tokens read per pool
    excluded_docs: int = 0

    def group_of(self) -> dict[str, str]:
        return {m: g.name for g in self.groups for m in g.members}

    def to_dict(self) -> dict:
        return {"vocab": self.vocab, "groups": [g.to_dict() for g in self.groups], "unplaced": self.unplaced,
                "notes": self.notes, "pool_tokens": self.pool_tokens, "target": self.resolved.to_dict(),
                "target_tokens": self.target.tokens(), "excluded_docs": self.excluded_docs}


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def read_pool_texts(pf: PoolsFile, max_chars: int | None) -> dict[str, list[str]]:
    """Each pool's documents in file order, up to max_chars per pool (the design's needs)."""
    texts: dict[str, list[str]] = {}
    for p in pf.pools:
        out, n = [], 0
        for t in iter_texts(p):
            out.append(t)
            n += len(t)
            if max_chars and n >= max_chars:
                break
        texts[p.name] = out
    return texts


def scaled_vocab(chars: int, cap: int) -> int:
    """A BPE vocabulary the text can support: about one merge per 400 characters, 256..cap."""
    v = 256
    while v * 2 <= min(cap, max(256, chars // 400)):
        v *= 2
    return max(256, min(cap, v))


def _holdout(docs: list[np.ndarray], quota: float, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Whole documents for the target, in a seeded order, up to `quota` tokens and never more than
    half the pool (the pool must still have something to train on)."""
    total = sum(len(d) for d in docs)
    rng = np.random.default_rng(seed)
    held, n = set(), 0
    for i in rng.permutation(len(docs)):
        if n >= quota:
            break
        if n + len(docs[i]) > 0.5 * total:
            continue
        held.add(int(i))
        n += len(docs[i])
    return [d for i, d in enumerate(docs) if i not in held], [docs[i] for i in sorted(held)]


def _bucket_order(pf: PoolsFile) -> dict[str, int]:
    return {p.name: i for i, p in enumerate(pf.pools)}


def merge_small(pf: PoolsFile, sizes: dict[str, int], min_tokens: int) -> tuple[list[FitGroup], dict[str, str], list[str]]:
    """Groups of pools with at least min_tokens training tokens each.

    A small pool joins the group of its nearest sibling (same source and domain): by mean score
    when both have one, else by position in pools.json (the `pools` stage lists buckets in order).
    Repeats until every group is large enough or a small one has no sibling left: that one is
    returned in `unplaced` (planned with a prior)."""
    pools = {p.name: p for p in pf.pools}
    order = _bucket_order(pf)
    group_of = {n: n for n in pools}
    members: dict[str, list[str]] = {n: [n] for n in pools}
    notes: list[str] = []
    unplaced: dict[str, str] = {}

    def gsize(g: str) -> int:
        return sum(sizes.get(m, 0) for m in members[g])

    while True:
        small = sorted((g for g in members if gsize(g) < min_tokens and g not in unplaced), key=lambda g: (gsize(g), order[g]))
        if not small:
            break
        g = small[0]
        p = pools[g]
        sib = [h for h in members if h != g and pools[h].source == p.source and pools[h].domain == p.domain]
        if not sib:
            why = (f"pool {g!r} has {gsize(g)} proxy tokens (< {min_tokens} needed to measure it) and no sibling "
                   f"(same source {p.source!r} and domain {p.domain!r}): planned with a prior")
            unplaced[g] = why
            notes.append(why)
            continue

        def distance(h: str) -> tuple[float, int]:
            a, b = pools[g].score, pools[h].score
            by_score = abs(a - b) if a is not None and b is not None else float("inf")
            return by_score, abs(order[h] - order[g])

        h = min(sib, key=distance)
        notes.append(f"pool {g!r} ({gsize(g)} proxy tokens, < {min_tokens} needed to measure it) merged into "
                     f"sibling {h!r} for the fit: it gets {h!r}'s fitted q and R*")
        members[h] += members.pop(g)
        for m in members[h]:
            group_of[m] = h
    groups = [FitGroup(g, sorted(ms, key=order.get)) for g, ms in sorted(members.items(), key=lambda kv: order[kv[0]])
              if g not in unplaced]
    return groups, unplaced, notes


def prepare(pf: PoolsFile, target: TargetSpec, *, vocab_cap: int, target_tokens: int, min_pool_tokens: int,
            max_chars_per_pool: int | None, tokenizer_chars: int, seed: int, log=print) -> Prepared:
    """Steps 1-4 of the module docstring."""
    resolved = target.resolve(pf)
    texts = read_pool_texts(pf, max_chars_per_pool)
    excluded = 0
    ext_texts: list[str] = []
    if resolved.kind == "path":
        ext_texts = read_target_texts(resolved.path, resolved.text_field)
        seen = {_digest(t) for t in ext_texts}
        for name, docs in texts.items():
            keep = [t for t in docs if _digest(t) not in seen]
            excluded += len(docs) - len(keep)
            texts[name] = keep
        if excluded:
            log(f"target: {excluded} candidate document(s) are also in the target; left out of training")
    empty = [n for n, d in texts.items() if not d]
    # Tokenizer: a per-pool slice of the text (small pools whole), target included. Order is fixed.
    per = max(1, tokenizer_chars // max(1, len(texts) + bool(ext_texts)))
    sample: list[str] = []
    for docs in list(texts.values()) + ([ext_texts] if ext_texts else []):
        n = 0
        for t in docs:
            sample.append(t[: per - n])
            n += min(len(t), per - n)
            if n >= per:
                break
    chars = sum(len(t) for t in sample)
    if chars == 0:
        raise PlanInputError("no pool has any text: nothing to train proxies on")
    tok = train_tokenizer(sample, scaled_vocab(chars, vocab_cap))
    vocab = tok.get_vocab_size()
    encoded = {n: encode_docs(tok, docs) if docs else [] for n, docs in texts.items()}
    streams_t: dict[str, np.ndarray] = {}
    weights_t: dict[str, float] = {}
    train_docs: dict[str, list[np.ndarray]] = dict(encoded)
    if resolved.kind == "path":
        ids = np.concatenate(encode_docs(tok, ext_texts))
        streams_t["target"] = ids[: target_tokens + 1] if target_tokens else ids
        weights_t["target"] = 1.0
    else:
        for i, (name, w) in enumerate(sorted(resolved.pool_weights.items())):
            train, held = _holdout(encoded[name], w * target_tokens, seed + 101 + i)
            train_docs[name] = train
            if held:  # whole documents leave training; the target reads at most its quota of them
                streams_t[name] = np.concatenate(held)[: max(int(w * target_tokens), 1024) + 1]
                weights_t[name] = w
        if not streams_t:
            raise PlanInputError(f"target ({resolved.description}): its pools are too small to hold out any "
                                 "whole document and still train on the rest; name other sources/pools or a --target file")
    wsum = sum(weights_t.values())
    target_set = EvalSet(streams_t, {k: v / wsum for k, v in weights_t.items()})
    sizes = {n: int(sum(len(d) for d in docs)) for n, docs in train_docs.items()}
    groups, unplaced, notes = merge_small(pf, sizes, min_pool_tokens)
    for n in empty:
        if n in unplaced:
            unplaced[n] += " (no documents could be read)"
    streams: dict[str, PoolTokens] = {}
    for g in groups:
        docs = [d for m in g.members for d in train_docs[m]]
        rng = np.random.default_rng(seed + 7)
        order = rng.permutation(len(docs)) if len(g.members) > 1 else np.arange(len(docs))
        arr = np.concatenate([docs[i] for i in order]) if docs else np.zeros(0, np.int32)
        g.train_tokens = int(len(arr))
        streams[g.name] = PoolTokens(g.name, arr, np.zeros(0, np.int32))
    for n in notes:
        log(n)
    return Prepared(tok, vocab, groups, streams, target_set, resolved, unplaced, notes, sizes, excluded)


__all__ = ["EOS", "FitGroup", "Prepared", "merge_small", "prepare", "read_pool_texts", "scaled_vocab"]
