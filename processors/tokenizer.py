"""Tokenizers for sharding: Hugging Face `tokenizers` files and tiktoken encodings.

`TokenizerSpec.name` is one of
- a tiktoken encoding name (`cl100k_base`, `o200k_base`, ...). Offline, tiktoken reads its BPE
  ranks from `TIKTOKEN_CACHE_DIR` (a folder holding the file named by the SHA-1 of the ranks URL,
  as ../shared/data/tokenizers does for cl100k_base); `tiktoken_cache` sets it;
- a path to a `tokenizer.json` (or a folder holding one): Hugging Face `tokenizers`;
- a Hugging Face Hub repository id (`org/name`), fetched with `Tokenizer.from_pretrained`: needs the
  network (or a filled HF cache).

Whatever the file says, truncation and padding are switched off and the tokenizer's own special
tokens are not added (a BERT tokenizer.json truncates at 128 or 512 tokens and wraps every text in
[CLS] ... [SEP]): documents are encoded as plain text and BOS/EOS are added here, as configured, so
that every backend behaves the same. EOS defaults to on: packed sequences need a separator between
documents. BOS/EOS ids come from `bos_token`/`eos_token` (a string or an id), else from
`tokenizer_config.json` beside a tokenizer.json, else from the usual names (`<|endoftext|>`, `</s>`,
...); tiktoken's EOS is its `eot_token`.

`identity()` is what the manifest records: backend, name, a SHA-256 of the vocabulary, the vocab
size, the special ids and the library version; two runs with equal identities tokenise alike.

Threads: `encode` runs `encode_batch` (HF, Rayon threads: set `RAYON_NUM_THREADS` before the first
use, which the sharding engine does per Ray worker) or `encode_ordinary_batch` (tiktoken,
`num_threads`). One worker per core with one thread each is the default and measured best here.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

EOS_NAMES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<eos>", "<|eot_id|>",
             "[SEP]")
BOS_NAMES = ("<|begin_of_text|>", "<s>", "<｜begin▁of▁sentence｜>", "<bos>", "<|startoftext|>", "[CLS]")


class TokenizerError(RuntimeError):
    """A tokenizer that cannot be loaded or lacks a requested special token; the message says why."""


class TokenizerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("cl100k_base", description="tiktoken encoding, tokenizer.json path or Hub id")
    tiktoken_cache: str | None = Field(None, description="folder with tiktoken BPE files (TIKTOKEN_CACHE_DIR)")
    add_bos: bool = Field(False, description="prepend a BOS token to every document")
    add_eos: bool = Field(True, description="append an EOS token to every document")
    bos_token: str | int | None = Field(None, description="BOS token (text or id); default: the tokenizer's")
    eos_token: str | int | None = Field(None, description="EOS token (text or id); default: the tokenizer's")
    threads: int = Field(1, ge=1, description="threads per worker for encode_batch")

    @property
    def backend(self) -> str:
        if self.name.endswith(".json") or Path(self.name).expanduser().is_dir():
            return "hf"
        if Path(self.name).expanduser().is_file():
            return "hf"
        try:
            import tiktoken

            if self.name in tiktoken.list_encoding_names():
                return "tiktoken"
        except ImportError:  # pragma: no cover - tiktoken is a dependency
            pass
        return "hf-hub"

    def load(self) -> "Tokenizer":
        return Tokenizer(self)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks (tokenizer identity, shard checksums)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class Tokenizer:
    """A loaded tokenizer: `encode(texts)` → (flat int32 ids, int64 lengths), BOS/EOS included."""

    def __init__(self, spec: TokenizerSpec) -> None:
        self.spec = spec
        self.backend = spec.backend
        self._hf = None
        self._tt = None
        self._id: dict[str, Any] = {"backend": self.backend, "name": spec.name}
        if self.backend == "tiktoken":
            self._load_tiktoken()
        else:
            self._load_hf()
        self.bos_id = self._special("bos", spec.bos_token, BOS_NAMES, required=spec.add_bos)
        self.eos_id = self._special("eos", spec.eos_token, EOS_NAMES, required=spec.add_eos)
        self._id.update(vocab_size=self.vocab_size, bos_id=self.bos_id, eos_id=self.eos_id,
                        add_bos=spec.add_bos, add_eos=spec.add_eos)

    # ------------------------------------------------------------------ loading
    def _load_tiktoken(self) -> None:
        if self.spec.tiktoken_cache:
            os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(self.spec.tiktoken_cache).expanduser().resolve())
        import tiktoken

        try:
            enc = tiktoken.get_encoding(self.spec.name)
        except ValueError as e:
            raise TokenizerError(f"tokenizer {self.spec.name!r}: neither a tokenizer.json path nor a "
                                 f"tiktoken encoding ({e})") from None
        except Exception as e:  # noqa: BLE001 - offline, tiktoken fails inside its download code
            raise TokenizerError(
                f"tiktoken could not load {self.spec.name!r} ({type(e).__name__}: {e}); offline it needs "
                "TIKTOKEN_CACHE_DIR (or --tiktoken-cache) pointing at a folder holding its BPE file, "
                "e.g. ../shared/data/tokenizers") from None
        self._tt = enc
        h = hashlib.sha256()
        for token, rank in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1]):  # noqa: SLF001
            h.update(rank.to_bytes(4, "little") + len(token).to_bytes(2, "little") + token)
        h.update(json.dumps(sorted(enc._special_tokens.items())).encode())  # noqa: SLF001
        self._id.update(sha256=h.hexdigest(), library=f"tiktoken {tiktoken.__version__}")
        self.vocab_size = int(enc.n_vocab)

    def _load_hf(self) -> None:
        import tokenizers
        from tokenizers import Tokenizer as HFTokenizer

        if self.backend == "hf-hub":
            try:
                tok = HFTokenizer.from_pretrained(self.spec.name)
            except Exception as e:  # noqa: BLE001 - network or missing repo
                try:
                    import tiktoken

                    known = ", ".join(tiktoken.list_encoding_names())
                except ImportError:  # pragma: no cover
                    known = "none installed"
                raise TokenizerError(
                    f"tokenizer {self.spec.name!r} is not a tokenizer.json path nor a tiktoken encoding "
                    f"({known}), and fetching it from the Hugging Face Hub failed ({type(e).__name__}: "
                    f"{str(e)[:200]}); offline, pass the path of its tokenizer.json") from None
            self._id.update(sha256=hashlib.sha256(tok.to_str().encode()).hexdigest())
            self._config_dir = None
        else:
            path = Path(self.spec.name).expanduser()
            if path.is_dir():
                path = path / "tokenizer.json"
            if not path.is_file():
                raise TokenizerError(f"tokenizer file {str(path)!r} does not exist")
            try:
                tok = HFTokenizer.from_file(str(path))
            except Exception as e:  # noqa: BLE001
                raise TokenizerError(f"{path}: not a tokenizers tokenizer.json ({e})") from None
            self._id.update(name=path.name, path=str(path.resolve()), sha256=sha256_file(path))
            self._config_dir = path.parent
        tok.no_truncation()
        tok.no_padding()
        self._hf = tok
        self._id["library"] = f"tokenizers {tokenizers.__version__}"
        self.vocab_size = int(tok.get_vocab_size(with_added_tokens=True))
        self._fast = hasattr(tok, "encode_batch_fast")

    def _token_id(self, text: str) -> int | None:
        if self._tt is not None:
            special = self._tt._special_tokens  # noqa: SLF001
            if text in special:
                return int(special[text])
            ids = self._tt.encode_ordinary(text)
            return int(ids[0]) if len(ids) == 1 else None
        tid = self._hf.token_to_id(text)
        return None if tid is None else int(tid)

    def _config_token(self, which: str) -> str | None:
        if getattr(self, "_config_dir", None) is None:
            return None
        cfg = self._config_dir / "tokenizer_config.json"
        if not cfg.is_file():
            return None
        try:
            value = json.loads(cfg.read_text(encoding="utf-8")).get(f"{which}_token")
        except (OSError, ValueError):
            return None
        if isinstance(value, dict):
            value = value.get("content")
        return value if isinstance(value, str) else None

    def _special(self, which: str, given: str | int | None, names: Sequence[str], required: bool) -> int | None:
        if given is not None:
            if isinstance(given, int):
                if not 0 <= given < self.vocab_size:
                    raise TokenizerError(f"{which}_token id {given} is outside the vocabulary (0..{self.vocab_size - 1})")
                self._id[f"{which}_token"] = given
                return given
            tid = self._token_id(given)
            if tid is None:
                raise TokenizerError(f"{which}_token {given!r} is not a single token of {self.spec.name!r}")
            self._id[f"{which}_token"] = given
            return tid
        if self._tt is not None:
            found = self._tt.eot_token if which == "eos" else None
            if found is not None:
                self._id[f"{which}_token"] = "<|endoftext|>"
                return int(found)
        else:
            cand = [c for c in [self._config_token(which)] if c] + list(names)
            for name in cand:
                tid = self._token_id(name)
                if tid is not None:
                    self._id[f"{which}_token"] = name
                    return tid
        if required:
            raise TokenizerError(
                f"{self.spec.name!r} has no {which.upper()} token this program recognises; pass "
                f"--{which}-token TEXT or ID, or switch it off with --no-{which}")
        return None

    # ------------------------------------------------------------------ encoding
    def identity(self) -> dict[str, Any]:
        return dict(self._id)

    def encode_lists(self, texts: list[str]) -> list[list[int]]:
        """Raw ids of each text (no BOS/EOS), as the library returns them."""
        if self._tt is not None:
            return self._tt.encode_ordinary_batch(texts, num_threads=self.spec.threads)
        if self._fast:
            encs = self._hf.encode_batch_fast(texts, add_special_tokens=False)
        else:  # pragma: no cover - tokenizers < 0.21
            encs = self._hf.encode_batch(texts, add_special_tokens=False)
        return [e.ids for e in encs]

    def _encode_arrays(self, texts: list[str]) -> list[np.ndarray]:
        if self._tt is not None and self.spec.threads == 1:
            # One thread: tiktoken's buffer API, no thread pool and no Python int per token (about
            # 20% less CPU than encode_ordinary_batch(num_threads=1), identical ids: special-token
            # text is ordinary text with allowed_special=set(), disallowed_special=()).
            enc = self._tt
            return [enc.encode_to_numpy(t, allowed_special=set(), disallowed_special=()) for t in texts]
        return [np.asarray(x, dtype=np.int32) for x in self.encode_lists(texts)]

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(flat ids as int32, length of each document as int64), with BOS/EOS added per document."""
        arrays = self._encode_arrays(texts) if texts else []
        lens = np.fromiter((len(x) for x in arrays), dtype=np.int64, count=len(arrays))
        body = (np.concatenate(arrays).astype(np.int32, copy=False) if int(lens.sum())
                else np.empty(0, dtype=np.int32))
        bos = self.spec.add_bos and self.bos_id is not None
        eos = self.spec.add_eos and self.eos_id is not None
        if not (bos or eos):
            return body, lens
        out_lens = lens + int(bos) + int(eos)
        out = np.empty(int(out_lens.sum()), dtype=np.int32)
        starts = np.cumsum(out_lens) - out_lens
        mask = np.ones(len(out), dtype=bool)
        if bos:
            out[starts] = self.bos_id
            mask[starts] = False
        if eos:
            ends = starts + out_lens - 1
            out[ends] = self.eos_id
            mask[ends] = False
        out[mask] = body
        return out, out_lens

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if self._tt is not None:
            return self._tt.decode(ids)
        return self._hf.decode(ids, skip_special_tokens=False)


def worker_env(spec: TokenizerSpec) -> dict[str, str]:
    """Environment a tokenising worker needs before it loads the library (threads, tiktoken cache)."""
    env = {"RAYON_NUM_THREADS": str(spec.threads),
           "TOKENIZERS_PARALLELISM": "true" if spec.threads > 1 else "false"}
    cache = spec.tiktoken_cache or os.environ.get("TIKTOKEN_CACHE_DIR")
    if cache:
        env["TIKTOKEN_CACHE_DIR"] = str(Path(cache).expanduser().resolve())
    return env
