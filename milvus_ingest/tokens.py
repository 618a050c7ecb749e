"""Counting tokens the way the model will: the tokenizer's own counts, and the budget a chunk must fit.

Kept apart from ``chunking`` so the context block and the benchmarks can count tokens without the
chunker.  This module must never load a model: it needs only a fast tokenizer.
"""

from __future__ import annotations

from typing import Any

from milvus_ingest.errors import ConfigError


class TokenCounter:
    """Counts and locates tokens with a model's own (fast) tokenizer, never truncating.

    Takes a ``tokenizers.Tokenizer`` (the ONNX engine's) or the Rust one behind a Hugging Face
    fast tokenizer (the torch engine's), and works on a private copy with truncation and padding
    switched off (some ``tokenizer.json`` files ship with ``max_length`` 128 and padding on, and
    the ONNX engine truncates at the model's limit: either would make counts wrong).
    """

    def __init__(self, tokenizer: Any):
        from tokenizers import Tokenizer

        backend = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ConfigError(
                f"the model's tokenizer ({type(tokenizer).__name__}) is not a fast tokenizer; "
                "token-aware chunking needs one (a tokenizer.json in the model folder)"
            )
        # A private copy: the model's own tokenizer keeps its settings.
        self._tok = Tokenizer.from_str(backend.to_str())
        self._tok.no_truncation()
        self._tok.no_padding()

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def count_with_specials(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=True)]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self._tok.encode(text, add_special_tokens=False).offsets)

    def special_tokens(self) -> int:
        """Tokens the model adds around one text ([CLS] … [SEP] for BERT, </s> for T5)."""
        return len(self._tok.encode("a", add_special_tokens=True).ids) - len(
            self._tok.encode("a", add_special_tokens=False).ids
        )


def instruction_tokens(counter: TokenCounter, instruction: str) -> int:
    """Tokens the instruction takes before the text (as Instructor counts it: no specials)."""
    return counter.count([instruction])[0] if instruction else 0


def check_chunk_budget(
    counter: TokenCounter, chunk_tokens: int, instruction: str, max_seq_length: int, context_tokens: int = 0
) -> None:
    """Refuse a chunk size that could not be encoded whole, with the numbers to fix it."""
    prefix = instruction_tokens(counter, instruction)
    specials = counter.special_tokens()
    room = max_seq_length - prefix - specials - context_tokens
    if chunk_tokens > room:
        context = f" - context {context_tokens} tokens (chunking.context_tokens)" if context_tokens else ""
        raise ConfigError(
            f"chunking.chunk_tokens={chunk_tokens} does not fit the model: max_seq_length "
            f"{max_seq_length} - document instruction {prefix} tokens - {specials} special "
            f"tokens{context} leaves {room}; set chunking.chunk_tokens to at most {max(room, 0)}"
        )
