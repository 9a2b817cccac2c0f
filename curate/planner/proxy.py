"""Proxy runs: tiny decoder LMs trained on token samples of the pools (torch).

The shape follows RegMix's 1M proxy (2 layers, RoPE, RMSNorm, SwiGLU, no biases) with a small BPE
vocabulary trained on the pools themselves: on CPU the output projection dominates the cost, and
a 4k vocabulary trains ~20x faster than a 100k one (shared/MEASURED.md).

Determinism: one seed fixes the tokenizer input order, document shuffles, weight init and batch
order; on CPU torch runs with a fixed thread count so reductions add up in the same order.
A GPU is used when present (results then agree to float tolerance, not bit for bit).
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EOS = "<|eos|>"


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2):
    """A byte-level BPE trained on the pools' own text (a proxy needs a small vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def encode_docs(tok, texts: list[str]) -> list[np.ndarray]:
    """Token ids per document, each ending with EOS (documents are packed later)."""
    eos = tok.token_to_id(EOS)
    out = []
    for enc in tok.encode_batch(texts):
        ids = np.asarray(enc.ids + [eos], dtype=np.int32)
        out.append(ids)
    return out


@dataclass
class PoolTokens:
    """One pool's tokens: a training stream and a held-out validation stream (whole documents)."""

    name: str
    train: np.ndarray
    valid: np.ndarray


def split_pool(name: str, docs: list[np.ndarray], valid_tokens: int, seed: int) -> PoolTokens:
    """Shuffle documents (seeded), hold out whole documents for validation, pack the rest."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(docs))
    val, n = [], 0
    k = 0
    while k < len(order) and n < valid_tokens:
        val.append(docs[order[k]])
        n += len(docs[order[k]])
        k += 1
    train = [docs[i] for i in order[k:]]
    empty = np.zeros(0, dtype=np.int32)
    return PoolTokens(name, np.concatenate(train) if train else empty, np.concatenate(val) if val else empty)


# ----------------------------------------------------------------------------- model
@dataclass(frozen=True)
class ModelShape:
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    context: int = 128

    def non_embedding_params(self) -> int:
        """Parameters outside the (tied) embedding: what the fitted law calls N."""
        per_layer = 4 * self.d_model**2 + 3 * self.d_model * self.d_ff + 2 * self.d_model
        return self.n_layers * per_layer + self.d_model


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, s: ModelShape) -> None:
        super().__init__()
        self.h = s.n_heads
        self.n1, self.n2 = RMSNorm(s.d_model), RMSNorm(s.d_model)
        self.qkv = nn.Linear(s.d_model, 3 * s.d_model, bias=False)
        self.proj = nn.Linear(s.d_model, s.d_model, bias=False)
        self.w1 = nn.Linear(s.d_model, s.d_ff, bias=False)
        self.w3 = nn.Linear(s.d_model, s.d_ff, bias=False)
        self.w2 = nn.Linear(s.d_ff, s.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.n1(x)).view(B, T, 3, self.h, C // self.h).permute(2, 0, 3, 1, 4)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, C))
        h = self.n2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class TinyLM(nn.Module):
    def __init__(self, vocab: int, s: ModelShape) -> None:
        super().__init__()
        self.shape = s
        self.emb = nn.Embedding(vocab, s.d_model)
        self.blocks = nn.ModuleList(Block(s) for _ in range(s.n_layers))
        self.norm = RMSNorm(s.d_model)
        hd = s.d_model // s.n_heads
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(s.context).float(), inv)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T])
        return self.norm(x) @ self.emb.weight.T  # tied output projection


# ----------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class RunSpec:
    """One proxy run: a model shape, a token budget, and how many tokens come from each pool.

    unique[p] is the size of pool p's sample (the first unique[p] tokens of its training stream);
    weights[p] * tokens tokens are drawn from it, so the pool is repeated tokens*w/unique times.
    """

    name: str
    shape: ModelShape
    tokens: int
    weights: dict[str, float]
    unique: dict[str, int]
    seed: int = 0
    kind: str = "fit"  # fit | holdout | ci

    def epochs(self) -> dict[str, float]:
        return {p: self.tokens * w / self.unique[p] for p, w in self.weights.items() if w > 0}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["non_embedding_params"] = self.shape.non_embedding_params()
        return d


@dataclass
class TrainConfig:
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_frac: float = 0.1
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    threads: int = 1  # on busy shared cores two threads stall each other (measured 2-10x slower)
    device: str | None = None  # None: cuda if available, else cpu
    eval_batch: int = 64


@dataclass
class RunResult:
    spec: RunSpec
    val_loss: float
    val_loss_by_pool: dict[str, float]
    seconds: float
    device: str
    steps: int
    train_tokens: int = 0
    extra: dict = field(default_factory=dict)
    cpu_seconds: float = 0.0  # CPU time of the run's process: the cost figure on a shared, loaded machine

    def to_dict(self) -> dict:
        return {"spec": self.spec.to_dict(), "val_loss": self.val_loss, "val_loss_by_pool": self.val_loss_by_pool,
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "device": self.device, "steps": self.steps,
                "train_tokens": self.train_tokens}


def _windows(stream: np.ndarray, ctx: int) -> np.ndarray:
    """Non-overlapping (ctx+1)-token windows (inputs + shifted targets share ctx tokens)."""
    n = (len(stream) - 1) // ctx
    idx = np.arange(n)[:, None] * ctx + np.arange(ctx + 1)[None, :]
    return stream[idx]


def build_batches(spec: RunSpec, pools: dict[str, PoolTokens]) -> np.ndarray:
    """All training windows of a run, in training order.

    Pool p contributes round(w_p D / ctx) windows cut from its first unique[p] tokens; when that is
    more than one epoch, each further epoch is a fresh permutation of the same windows. The
    windows of all pools are then shuffled together (seeded): a mixture, not a curriculum.
    """
    ctx = spec.shape.context
    rng = np.random.default_rng(spec.seed + 1)
    chosen = []
    for p, w in sorted(spec.weights.items()):
        if w <= 0:
            continue
        u = spec.unique[p]
        if u > len(pools[p].train):
            raise ValueError(f"run {spec.name}: pool {p} has {len(pools[p].train)} training tokens, {u} requested")
        win = _windows(pools[p].train[:u], ctx)
        if len(win) == 0:
            raise ValueError(f"run {spec.name}: pool {p} sample of {u} tokens is shorter than one window")
        need = int(round(w * spec.tokens / ctx))
        if need <= 0:  # a weight too small to fill one window (e.g. 1e-5 of the run): the pool is absent
            continue
        parts, have = [], 0
        while have < need:
            parts.append(win[rng.permutation(len(win))])
            have += len(win)
        chosen.append(np.concatenate(parts)[:need])
    allw = np.concatenate(chosen)
    return allw[rng.permutation(len(allw))]


def pick_device(pref: str | None = None) -> str:
    """`cuda` when a GPU is visible (or asked for), else `cpu`."""
    if pref:
        return pref
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class EvalSet:
    """The target as token streams: name -> held-out stream, and each stream's weight (sum 1)."""

    streams: dict[str, np.ndarray]
    weights: dict[str, float]

    def tokens(self) -> int:
        return int(sum(len(s) for s in self.streams.values()))


@torch.no_grad()
def evaluate(model: TinyLM, target: EvalSet, ctx: int, device: str, batch: int = 64) -> tuple[float, dict[str, float]]:
    """Mean token cross-entropy on each target stream; the loss is their weighted mean."""
    model.eval()
    by = {}
    for p in sorted(target.streams):
        win = torch.from_numpy(_windows(target.streams[p], ctx).astype(np.int64))
        tot, cnt = 0.0, 0
        for i in range(0, len(win), batch):
            x = win[i : i + batch].to(device)
            logits = model(x[:, :-1])
            tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum").item()
            cnt += x[:, 1:].numel()
        by[p] = tot / max(cnt, 1)
    wsum = sum(target.weights[p] for p in by)
    model.train()
    return sum(target.weights[p] * by[p] for p in by) / wsum, by


def train_run(spec: RunSpec, pools: dict[str, PoolTokens], vocab: int, target: EvalSet,
              cfg: TrainConfig | None = None) -> RunResult:
    """Train one proxy model from scratch (AdamW, warmup + cosine to min_lr) and evaluate it on
    the target (documents no pool trains on)."""
    cfg = cfg or TrainConfig()
    device = pick_device(cfg.device)
    if device == "cpu":
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(spec.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    data = build_batches(spec, pools)
    model = TinyLM(vocab, spec.shape).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    steps = max(1, math.ceil(len(data) / cfg.batch_size))
    warm = max(1, int(cfg.warmup_frac * steps))

    def lr_at(s: int) -> float:
        if s < warm:
            return cfg.lr * (s + 1) / warm
        prog = (s - warm) / max(1, steps - warm)
        return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * prog)))

    model.train()
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        xb = torch.from_numpy(data[s * cfg.batch_size : (s + 1) * cfg.batch_size].astype(np.int64)).to(device)
        logits = model(xb[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xb[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    val, by_pool = evaluate(model, target, spec.shape.context, device, cfg.eval_batch)
    return RunResult(spec, float(val), by_pool, time.perf_counter() - t0, device, steps,
                     train_tokens=int(len(data) * spec.shape.context), cpu_seconds=time.process_time() - c0)
