"""Token counts with the pipeline's tokenizer (processors/tokenizer.py), for pools.

The spec is what `curate shard` and the `tokenize` stage take: a tiktoken encoding name
(`cl100k_base`; offline it needs `TIKTOKEN_CACHE_DIR` / `tiktoken_cache`, e.g. ../shared/data/tokenizers),
a `tokenizer.json` path (or a folder holding one), or a Hub id. Truncation and padding in a
tokenizer.json are switched off and no special tokens are added: the count is of the text alone
(the shards add one EOS per document on top; the planner's budgets are in text tokens).
"""
from __future__ import annotations

from typing import Sequence


class TokenCounter:
    """`count(texts)` -> number of tokens of each text. Loads lazily; picklable before loading."""

    def __init__(self, spec: str, cache_dir: str | None = None) -> None:
        self.spec = spec
        self.cache_dir = cache_dir
        self._tok = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tok": None}

    def load(self):
        if self._tok is None:
            from processors.tokenizer import TokenizerSpec

            self._tok = TokenizerSpec(name=self.spec, tiktoken_cache=self.cache_dir, add_bos=False,
                                      add_eos=False).load()
        return self._tok

    @property
    def name(self) -> str:
        """What pools.json records: the encoding name, or the tokenizer file's name."""
        return str(self.load().identity()["name"])

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.load().encode_lists(list(texts))]
