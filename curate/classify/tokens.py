"""The pipeline's tokenizer, for counting tokens: a tiktoken encoding name or an HF tokenizer.json.

- `cl100k_base`, `o200k_base`, ... : tiktoken. Offline, tiktoken reads its BPE ranks from
  `TIKTOKEN_CACHE_DIR` (a folder holding the file named by the SHA-1 of the ranks URL, as
  ../shared/data/tokenizers/ does for cl100k_base); pass `cache_dir` to set it.
- a path to a `tokenizer.json`: Hugging Face `tokenizers`. Truncation and padding stored in the file
  are switched off (a BERT tokenizer.json often truncates at 128 or 512 tokens, which would make
  every long document count the same), and special tokens are not added: the count is of the text.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


class TokenCounter:
    """`count(texts)` -> number of tokens of each text. Loads lazily; picklable before loading."""

    def __init__(self, spec: str, cache_dir: str | None = None) -> None:
        self.spec = spec
        self.cache_dir = cache_dir
        self._encode = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_encode": None}

    @property
    def name(self) -> str:
        return Path(self.spec).name if self.is_file else self.spec

    @property
    def is_file(self) -> bool:
        return self.spec.endswith(".json") or os.sep in self.spec

    def load(self) -> None:
        if self._encode is not None:
            return
        if self.is_file:
            path = Path(self.spec).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"tokenizer file {str(path)!r} does not exist")
            os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one worker per core: no inner threads
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(path))
            tok.no_truncation()
            tok.no_padding()
            self._encode = lambda texts: [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]
        else:
            if self.cache_dir:
                os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(self.cache_dir).expanduser())
            import tiktoken

            try:
                enc = tiktoken.get_encoding(self.spec)
            except ValueError as e:
                raise ValueError(f"tokenizer {self.spec!r}: neither a tokenizer.json path nor a tiktoken "
                                 f"encoding ({e})") from e
            except Exception as e:  # noqa: BLE001 - a download attempt fails offline
                raise RuntimeError(
                    f"tiktoken could not load {self.spec!r} ({type(e).__name__}: {e}); offline it needs "
                    "TIKTOKEN_CACHE_DIR (or --tiktoken-cache) pointing at a folder with its BPE file, e.g. "
                    "../shared/data/tokenizers") from e
            self._encode = lambda texts: [len(t) for t in enc.encode_ordinary_batch(list(texts), num_threads=1)]

    def count(self, texts: Sequence[str]) -> list[int]:
        self.load()
        return self._encode(texts) if texts else []
