"""`tokenize`: a pipeline stage adding each document's token ids (`input_ids`) and count (`n_tokens`).

For pipelines that want tokens per document (counting, per-document training data, inspection) in
the ordinary stage flow. The mixed, packed, globally shuffled shards come from `curate shard`, which
uses the same tokenizer code (processors/tokenizer.py): a tiktoken encoding name, a
tokenizer.json path or a Hub id; BOS/EOS as configured; truncation and padding off.

    stages:
      - tokenize: {tokenizer: cl100k_base, tiktoken_cache: ../shared/data/tokenizers, add_eos: true}

The tokenizer loads once per worker (`setup`). A null or empty text gets only its BOS/EOS.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from processors.base import Mapper, Params, ProcessorError


class TokenizeParams(Params):
    tokenizer: str = Field("cl100k_base", description="tiktoken encoding, tokenizer.json path or Hub id")
    tiktoken_cache: str | None = Field(None, description="folder of tiktoken BPE files (offline)")
    add_bos: bool = Field(False, description="prepend BOS")
    add_eos: bool = Field(True, description="append EOS")
    bos_token: str | int | None = Field(None, description="BOS token text or id (default: the tokenizer's)")
    eos_token: str | int | None = Field(None, description="EOS token text or id (default: the tokenizer's)")
    threads: int = Field(1, ge=1, description="encode_batch threads")


class Tokenize(Mapper):
    kind: ClassVar[str] = "tokenize"
    Params: ClassVar[type[Params]] = TokenizeParams
    requires: ClassVar[tuple[str, ...]] = ("text",)
    provides: ClassVar[tuple[str, ...]] = ("input_ids", "n_tokens")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._tok = None

    def setup(self) -> None:
        if self._tok is not None:
            return
        from processors.tokenizer import TokenizerError, TokenizerSpec

        p = self.params
        spec = TokenizerSpec(name=p.tokenizer, tiktoken_cache=p.tiktoken_cache, add_bos=p.add_bos,
                             add_eos=p.add_eos, bos_token=p.bos_token, eos_token=p.eos_token, threads=p.threads)
        try:
            self._tok = spec.load()
        except TokenizerError as e:
            raise ProcessorError(str(e)) from None

    def map(self, batch: pa.Table) -> pa.Table:
        self.setup()
        texts = [t or "" for t in batch["text"].to_pylist()]
        flat, lens = self._tok.encode(texts)
        offsets = np.zeros(len(lens) + 1, dtype=np.int32)
        np.cumsum(lens, out=offsets[1:])
        ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.int32()))
        for name, col in (("input_ids", ids), ("n_tokens", pa.array(lens.astype(np.int32)))):
            if name in batch.column_names:
                batch = batch.set_column(batch.schema.get_field_index(name), name, col)
            else:
                batch = batch.append_column(name, col)
        return batch
