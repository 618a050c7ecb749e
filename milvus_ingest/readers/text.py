"""Plain text: a UTF-8 file (BOM dropped) streamed in bounded blocks cut at paragraph breaks.

Also the line reader under the Markdown and rst parsers.  The blocks of a text file are contiguous
slices of its decoded text, so their concatenation is the file and chunk offsets index into it
(no separators are added).  This module must never hold more than about one block of a file in
memory, and never guess an encoding: text that is not UTF-8 is refused with the byte offset.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from milvus_ingest.readers.base import (
    NO_TEXT,
    Block,
    Budget,
    Document,
    Opener,
    ReaderLimits,
    UnreadableDocument,
    metered,
    plain_open,
)

#: Bytes read at a time.  Large files are decoded and chunked block by block.
BLOCK_BYTES = 1 << 20


class UndecodableError(UnreadableDocument):
    """Raised while reading blocks: the file is not valid UTF-8 at a byte offset."""

    def __init__(self, byte_offset: int):
        super().__init__(f"not valid UTF-8 (at byte {byte_offset}); convert it to UTF-8")
        self.byte_offset = byte_offset


def iter_text_blocks(
    path: Path, block_bytes: int = BLOCK_BYTES, digest: Any = None, opener: Opener = plain_open
) -> Iterator[tuple[int, str]]:
    """Yield ``(char_offset, text)`` blocks of a UTF-8 file (BOM dropped), cut at paragraph breaks.

    Blocks end at the last blank line (else line break, else whitespace) of what was read, so that
    chunking a block never cuts through a paragraph that fits in one.  Offsets count characters of
    the decoded text, so ``text[start:end]`` of the whole file equals a chunk.  ``digest`` (a
    hashlib object) is fed the raw bytes, so a caller can tell whether the file changed since it
    was inspected; ``opener`` opens the file (see ``Opener``).
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    pending = ""
    offset = 0
    consumed_bytes = 0
    first = True
    with opener(path) as handle:
        while True:
            raw = handle.read(block_bytes)
            if digest is not None:
                digest.update(raw)
            final = not raw
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as exc:
                raise UndecodableError(consumed_bytes + exc.start) from None
            consumed_bytes += len(raw)
            if first and text.startswith("\ufeff"):
                text = text[1:]
            if text:
                first = False
            pending += text
            if final:
                if pending:
                    yield offset, pending
                return
            if len(pending) < block_bytes:
                continue
            cut = _cut_point(pending)
            if cut <= 0:
                if len(pending) < 4 * block_bytes:
                    continue
                cut = block_bytes  # no whitespace at all: a hard cut keeps memory bounded
            yield offset, pending[:cut]
            offset += cut
            pending = pending[cut:]


def _cut_point(text: str) -> int:
    """Where to end a block: after the last paragraph break, else line break, else whitespace."""
    for separator in ("\n\n", "\n", " "):
        index = text.rfind(separator, len(text) // 2)
        if index > 0:
            return index + len(separator)
    return -1


def iter_lines(path: Path, opener: Opener = plain_open) -> Iterator[str]:
    """The lines of a UTF-8 file without their line endings (``\\n``, ``\\r\\n``), streamed."""
    carry = ""
    for _, text in iter_text_blocks(path, opener=opener):
        lines = (carry + text).split("\n")
        carry = lines.pop()
        for line in lines:
            yield line.removesuffix("\r")
    if carry:
        yield carry.removesuffix("\r")


def open_text(path: Path, limits: ReaderLimits, opener: Opener = plain_open, digest: Any = None) -> Document:
    """A plain-text document: no title, no sections, page 0 (``digest``: see ``iter_text_blocks``)."""
    blocks = (Block(text) for _, text in iter_text_blocks(path, digest=digest, opener=opener))
    return Document("text", "", {}, metered(blocks, Budget(limits.max_seconds), NO_TEXT))
