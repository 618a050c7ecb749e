"""A stand-in encoder for memory runs: the pipeline's encoder interface at almost no CPU cost.

The memory benchmark asks whether the *pipeline* holds more memory for a bigger corpus.  A real
model makes a 200 MB run take hours on a 2-core box (the tiny T5 fixture encodes ~30-100 chunks
a second there) and its memory depends on batch and sequence length, never on corpus size.  So
``StubEmbedder`` keeps everything else real (files, chunker, queues, threads, Milvus writes) and
replaces the forward pass with a hash: deterministic unit vectors, one word = one token.  This
module must never be used to report a throughput: it only ever stands in for the model.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np


def whitespace_tokenizer() -> Any:
    """A fast Hugging Face tokenizer that counts whitespace-separated words (no specials)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")


class StubEmbedder:
    """``dim``, ``tokenizer``, ``doc_instruction``, ``max_seq_length`` and ``encode_array``."""

    def __init__(self, dim: int = 48, max_seq_length: int = 512, doc_instruction: str = "Represent the document:"):
        self.dim = dim
        self.max_seq_length = max_seq_length
        self.doc_instruction = doc_instruction
        self.query_instruction = doc_instruction
        self.tokenizer = whitespace_tokenizer()

    def encode_array(self, texts: list[str], instruction: str) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = zlib.crc32((instruction + text).encode("utf-8", "surrogatepass"))
            out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out
