"""Counting tokens the way the model will: the tokenizer's own counts, and the budget a chunk must fit.

Kept apart from ``chunking`` so the context block and the benchmarks can count tokens without the
chunker.  This module must never load a model: it needs only a fast tokenizer.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from milvus_ingest.errors import ConfigError


class TokenSpans:
    """The tokens of one text, located once, so that any span's count is a lookup.

    Chunking asks for the count of every paragraph, then of the sentences of the long ones, then
    for the last tokens of a unit (the overlap): tokenizing each piece on its own re-reads the same
    text up to three times.  One pass over the text with offsets answers all of them.  A span
    holds the tokens that *end* inside it, because SentencePiece and byte-level BPE tokens start
    at the space before their word (``▁word``), which a stripped span leaves out; a token of
    whitespace alone counts with the word after it.  For a span cut at whitespace or punctuation
    this is the span's own count with WordPiece and with whitespace-split SentencePiece; a cut
    inside a word can move a token or two, which is why the chunker's final, exact check
    tokenizes each chunk on its own.
    """

    def __init__(self, offsets: Sequence[tuple[int, int]], text: str):
        self._offsets = list(offsets)
        # A token of whitespace alone (SentencePiece's lone ``▁`` before a digit or a rare word)
        # belongs to the word after it, as it does when that word is tokenized on its own.
        ends = [b for _, b in self._offsets]
        for i in range(len(ends) - 2, -1, -1):
            a, b = self._offsets[i]
            if not text[a:b].strip():
                ends[i] = ends[i + 1]
        self._ends = ends

    def count(self, start: int, end: int) -> int:
        """Tokens ending in ``(start, end]``."""
        return bisect_right(self._ends, end) - bisect_right(self._ends, start)

    def within(self, start: int, end: int, last: int = 0) -> list[tuple[int, int]]:
        """Offsets of the tokens ending in ``(start, end]``, clipped to the span, empty ones left
        out; with ``last``, only (at most) the last ``last`` of them."""
        first, stop = bisect_right(self._ends, start), bisect_right(self._ends, end)
        if last > 0:
            first = max(first, stop - 2 * last)  # room for a few empty tokens
        found = [(max(a, start), b) for a, b in self._offsets[first:stop] if b > max(a, start)]
        return found[-last:] if last > 0 else found


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

    def fingerprint(self) -> str:
        """SHA-256 of this counter's tokenizer (its JSON): two counters with the same one tokenize alike."""
        return hashlib.sha256(self._tok.to_str().encode("utf-8")).hexdigest()

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]

    def count_with_specials(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.encode_with_specials(texts)]

    def encode_with_specials(self, texts: list[str]) -> list[Any]:
        """The model's input tokens of each text (``tokenizers.Encoding``: ids, type ids; no
        offsets), as the encoder would make them were it not truncating."""
        return self._tok.encode_batch_fast(texts, add_special_tokens=True) if texts else []

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self._tok.encode(text, add_special_tokens=False).offsets)

    def spans(self, text: str, pieces: Sequence[tuple[int, int]] | None = None) -> TokenSpans:
        """``text`` tokenized once (no special tokens), for counting its spans by lookup.

        ``pieces`` (its paragraphs, say) are tokenized as a batch, which the tokenizer spreads
        over the cores: the encoder beside it loses a core for half as long."""
        pieces = [(0, len(text))] if pieces is None else pieces
        encodings = self._tok.encode_batch([text[a:b] for a, b in pieces], add_special_tokens=False)
        offsets = [(a + s, a + e) for (a, _), encoding in zip(pieces, encodings) for s, e in encoding.offsets]
        return TokenSpans(offsets, text)

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
