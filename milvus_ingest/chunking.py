"""Token-aware, overlapping chunking with character offsets back into the source.

A chunk is a span ``text[start:end]`` of the source, cut at paragraph, then sentence, then line
boundaries where it can, and at token boundaries where it must.  Two limits are hard, because
breaking them loses text silently: the document instruction plus what is embedded (the chunk
after its context line) never exceeds the model's ``max_seq_length`` (the encoder would
truncate), and the chunk's UTF-8 bytes never exceed the collection's VARCHAR limit (Milvus would
refuse it).  A document is chunked block by block (``chunk_document``): a reader's block never
spans two sections or pages, so neither does a chunk.  The exact check's tokens go with each
chunk (``Chunk.encoding``), so the encoder need not tokenize it again.  This module must never
load a model or touch Milvus: it needs only the model's tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from milvus_ingest.boundaries import SPLITTERS, byte_windows, split_spans, strip_span, utf8_len
from milvus_ingest.errors import ConfigError
from milvus_ingest.readers import Block
from milvus_ingest.tokens import TokenCounter, TokenSpans, check_chunk_budget, instruction_tokens

__all__ = ["Chunk", "Chunker", "TokenCounter", "check_chunk_budget", "context_line", "instruction_tokens"]

#: Joins a block's heading path into the chunk's ``section`` ("Installation > On Linux").
SECTION_SEPARATOR = " > "



@dataclass(frozen=True)
class Chunk:
    """A piece of one source: ``text == source_text[start:end]`` in characters of the extracted
    text; ``section`` is its heading path ("" when none) and ``page`` its 1-based page (0: no pages)."""

    text: str
    start: int
    end: int
    section: str = ""
    page: int = 0
    #: The model's token count of the instruction + ``embedded`` with special tokens, as the
    #: chunker's exact check counted it (0: not counted).  Not part of the chunk's identity.
    tokens: int = field(default=0, compare=False)
    #: What the model embeds (and BM25 indexes): the chunk after its clipped context line, or the
    #: chunk alone ("" only on a chunk the chunker did not make).
    embedded: str = field(default="", compare=False)
    #: The exact check's tokens of instruction + ``embedded`` (a ``tokenizers.Encoding``), which an
    #: encoder tokenizing the same way can use instead of tokenizing again (None: not made).
    encoding: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int


def context_line(title: str, section: str) -> str:
    """A chunk's place in its document, for contextual embedding: ``Title > Section > Sub``
    (the title once, when the heading path already starts with it)."""
    title, section = " ".join(title.split()), " ".join(section.split())
    if not title or section == title or section.startswith(title + SECTION_SEPARATOR):
        return section
    return SECTION_SEPARATOR.join(part for part in (title, section) if part)


class Chunker:
    """Cuts text into chunks of at most ``chunk_tokens`` tokens and ``max_bytes`` UTF-8 bytes.

    ``instruction`` and ``max_seq_length`` make the final check exact: each chunk is tokenized
    once more *with* the instruction and the special tokens, and any that would overflow (token
    merges across the join can add a token or two) is cut again.
    """

    def __init__(
        self,
        counter: TokenCounter,
        chunk_tokens: int,
        overlap_tokens: int,
        max_bytes: int,
        instruction: str = "",
        max_seq_length: int | None = None,
        context_tokens: int = 0,
    ):
        if overlap_tokens >= chunk_tokens:
            raise ConfigError(
                f"chunking.overlap_tokens ({overlap_tokens}) must be smaller than chunk_tokens ({chunk_tokens})"
            )
        if max_seq_length is not None:
            check_chunk_budget(counter, chunk_tokens, instruction, max_seq_length, context_tokens)
        self.counter = counter
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.max_bytes = max_bytes
        self.instruction = instruction
        self.max_seq_length = max_seq_length
        #: Tokens of title and section path embedded before each chunk (0: the chunk alone).
        self.context_tokens = context_tokens

    def context_prefix(self, title: str, section: str) -> str:
        """The ``context_line`` of a title and section, clipped to ``context_tokens`` - 1 tokens
        ("" when contextual embedding is off or there is nothing to say)."""
        prefix = context_line(title, section) if self.context_tokens > 1 else ""
        if prefix:
            offsets = self.counter.offsets(prefix)
            if len(offsets) > self.context_tokens - 1:
                prefix = prefix[: offsets[self.context_tokens - 2][1]].rstrip()
        return prefix

    # -- public -------------------------------------------------------------------------
    def chunk_text(self, text: str, base_offset: int = 0, prefix: str = "") -> list[Chunk]:
        """Chunks of ``text``; offsets are shifted by ``base_offset`` (a block's place in a file).

        With ``prefix`` (a ``context_prefix``) each chunk's ``embedded`` text is the prefix, a
        blank line and the chunk, where that fits the model, else the chunk alone."""
        tokens = self.counter.spans(text, split_spans(text, 0, len(text), SPLITTERS[0]))
        units = self._units(text, tokens, 0, len(text), 0)
        spans = self._pack(text, tokens, units)
        return [
            Chunk(text[s:e], s + base_offset, e + base_offset, tokens=n, embedded=embedded, encoding=encoding)
            for (s, e), n, embedded, encoding in self._enforce_limits(text, tokens, spans, prefix)
        ]

    def chunk_document(self, blocks: Iterable[Block], title: str = "") -> Iterator[Chunk]:
        """Chunks of a document's blocks in order (offsets into their concatenated text), each with
        its block's section path and page, and embedded after its ``title``/section context.  A
        block holding only its heading (``# Guide`` right before ``## Install``) goes in front of
        the next block when that is a subsection of it on the same page, so the heading lands with
        the text it introduces rather than alone."""
        offset = 0
        held: tuple[Block, int] | None = None  # a heading-only block and its offset
        for block in blocks:
            start, offset = offset, offset + len(block.text)
            if held is not None:
                (parent, parent_start), held = held, None
                if block.section[: len(parent.section)] == parent.section and block.page == parent.page:
                    block, start = Block(parent.text + block.text, block.section, block.page), parent_start
                else:
                    yield from self._chunk_block(parent, parent_start, title)
            if block.section and block.text.strip() == block.section[-1]:
                held = (block, start)
            else:
                yield from self._chunk_block(block, start, title)
        if held is not None:
            yield from self._chunk_block(*held, title)

    def _chunk_block(self, block: Block, base_offset: int, title: str) -> list[Chunk]:
        section = SECTION_SEPARATOR.join(block.section)
        chunks = self.chunk_text(block.text, base_offset, self.context_prefix(title, section))
        return [replace(c, section=section, page=block.page) for c in chunks]

    def chunk_blocks(self, blocks: Iterable[tuple[int, str]]) -> Iterator[Chunk]:
        """Chunk a file given as ``(char_offset, text)`` blocks (see ``readers.text.iter_text_blocks``)."""
        for offset, block in blocks:
            yield from self.chunk_text(block, offset)

    # -- splitting ----------------------------------------------------------------------
    def _fits(self, text: str, start: int, end: int, tokens: int) -> bool:
        return tokens <= self.chunk_tokens and utf8_len(text, start, end) <= self.max_bytes

    def _units(self, text: str, tokens: TokenSpans, start: int, end: int, level: int) -> list[_Unit]:
        """Stripped spans within [start, end), each within both limits."""
        if level >= len(SPLITTERS):
            return self._token_windows(text, tokens, start, end)
        units: list[_Unit] = []
        for a, b in split_spans(text, start, end, SPLITTERS[level]):
            n = tokens.count(a, b)
            if self._fits(text, a, b, n):
                units.append(_Unit(a, b, n))
            else:
                units.extend(self._units(text, tokens, a, b, level + 1))
        return units

    def _token_windows(self, text: str, tokens: TokenSpans, start: int, end: int) -> list[_Unit]:
        """Last resort for a span with no usable boundary: windows of whole tokens, overlapping."""
        piece = text[start:end]
        offsets = [(a - start, b - start) for a, b in tokens.within(start, end)]
        if not offsets:
            return [_Unit(a, b, 1) for a, b in byte_windows(text, start, end, self.max_bytes)]
        units: list[_Unit] = []
        i = 0
        step_back = self.overlap_tokens
        while i < len(offsets):
            j = min(i + self.chunk_tokens, len(offsets))
            # Shrink until the bytes fit too (a single [UNK] token can cover a long word).
            while j > i + 1 and len(piece[offsets[i][0] : offsets[j - 1][1]].encode("utf-8")) > self.max_bytes:
                j = i + max(1, (j - i) // 2)
            a, b = start + offsets[i][0], start + offsets[j - 1][1]
            a, b = strip_span(text, a, b)
            if b > a:
                if utf8_len(text, a, b) > self.max_bytes:
                    units.extend(_Unit(s, e, 1) for s, e in byte_windows(text, a, b, self.max_bytes))
                else:
                    units.append(_Unit(a, b, j - i))
            if j >= len(offsets):
                break
            i = max(j - step_back, i + 1) if j - i > step_back else j
        return units

    # -- packing ------------------------------------------------------------------------
    def _pack(self, text: str, tokens: TokenSpans, units: list[_Unit]) -> list[tuple[int, int]]:
        """Greedily join units into chunks; each new chunk starts with an overlap tail."""
        spans: list[tuple[int, int]] = []
        current: list[_Unit] = []
        size = 0
        for unit in units:
            if current and (
                size + unit.tokens > self.chunk_tokens
                or utf8_len(text, current[0].start, unit.end) > self.max_bytes
            ):
                spans.append((current[0].start, current[-1].end))
                current = self._overlap_tail(text, tokens, current, unit)
                size = sum(u.tokens for u in current)
            current.append(unit)
            size += unit.tokens
        if current:
            spans.append((current[0].start, current[-1].end))
        return spans

    def _overlap_tail(self, text: str, tokens: TokenSpans, chunk: list[_Unit], following: _Unit) -> list[_Unit]:
        """The end of a finished chunk that the next chunk repeats, within the overlap budget."""
        if self.overlap_tokens <= 0:
            return []
        budget = min(self.overlap_tokens, self.chunk_tokens - following.tokens)
        tail: list[_Unit] = []
        used = 0
        for unit in reversed(chunk):
            if used + unit.tokens > budget or utf8_len(text, unit.start, following.end) > self.max_bytes:
                break
            tail.insert(0, unit)
            used += unit.tokens
        if len(tail) == len(chunk):
            tail = tail[1:]  # never repeat a whole chunk: the next one must move forward
        if tail or budget <= 0:
            return tail
        # No whole unit fits: repeat the last tokens of the last unit, from a token boundary.
        last = chunk[-1]
        offsets = tokens.within(last.start, last.end, last=budget + 1)
        if len(offsets) <= 1:
            return []
        take = min(budget, len(offsets) - 1)
        a = offsets[-take][0]
        if a > last.start and not text[a - 1].isspace() and " " in text[a : last.end]:
            a += text[a : last.end].index(" ")  # start the overlap at a word, not inside one
        a, b = strip_span(text, a, last.end)
        if b <= a or utf8_len(text, a, following.end) > self.max_bytes:
            return []
        return [_Unit(a, b, take)]

    def _enforce_limits(
        self, text: str, tokens: TokenSpans, spans: list[tuple[int, int]], prefix: str = ""
    ) -> list[tuple[tuple[int, int], int, str, Any]]:
        """Exact check of what is embedded, with the instruction and special tokens: the chunk
        after its context, else (should that overflow) the chunk alone; re-cut the rare chunk that
        overflows alone.  This is the one tokenization of each chunk on its own, so its tokens
        go with the chunk to the encoder.

        Returns each span with its exact count, embedded text and tokens (0 and None where no
        limit is set)."""
        embedded = [_join(prefix, text[a:b]) for a, b in spans]
        if self.max_seq_length is None:
            return [(span, 0, e, None) for span, e in zip(spans, embedded)]
        limit = self.max_seq_length
        encodings = self.counter.encode_with_specials([self.instruction + e for e in embedded])
        fixed: list[tuple[tuple[int, int], int, str, Any]] = []
        for (a, b), e, encoding in zip(spans, embedded, encodings):
            if len(encoding.ids) > limit and prefix:
                e, encoding = text[a:b], self.counter.encode_with_specials([self.instruction + text[a:b]])[0]
            n = len(encoding.ids)
            if n <= limit:
                fixed.append(((a, b), n, e, encoding))
                continue
            smaller = Chunker(
                self.counter,
                max(1, self.chunk_tokens - (n - limit) - 2),
                min(self.overlap_tokens, max(0, self.chunk_tokens // 4)),
                self.max_bytes,
                self.instruction,
                None,
            )
            inner = smaller._pack(text, tokens, smaller._units(text, tokens, a, b, 0))
            smaller.max_seq_length = limit
            fixed.extend(smaller._enforce_limits(text, tokens, inner, prefix))
        return fixed


def _join(prefix: str, text: str) -> str:
    """The embedded text: context line, blank line, chunk (the chunk alone without a context)."""
    return f"{prefix}\n\n{text}" if prefix else text
