"""The reader interface: what every format module returns, its limits, and the shared block builder.

A reader turns one file into a ``Document`` whose ``blocks`` are produced lazily: a reader must never
hold a document's whole extracted text at once (one page, one parsed tree or one block at a time),
never print, and never raise anything but ``UnreadableDocument`` for a bad file.  Offsets of chunks
index into the concatenation of the blocks' ``text`` in order, so a block never spans two sections
or two pages.  This module must never import a format's parser library.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

#: A block is cut (at a blank line, else a line break) once it holds about this many characters.
BLOCK_CHARS = 1 << 20
#: Separator that ends every block of a structured format, so the concatenation stays readable.
SEPARATOR = "\n\n"


#: What a document with nothing to embed or find is skipped as.
NO_TEXT = "no text (only whitespace or invisible characters)"


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: whitespace and invisible format characters only (zero-width
    spaces and joiners, soft hyphens, byte-order marks, direction marks: Unicode category Cf).

    A file of zero-width spaces is as empty as one of spaces, yet ``str.strip`` keeps it; stored,
    it would be a chunk that every tokenizer reads as nothing and every search can match."""
    stripped = text.strip()
    return not stripped or all(c.isspace() or unicodedata.category(c) == "Cf" for c in stripped)


#: How a reader opens its file: a binary handle, used as a context manager (``open(path, "rb")``).
Opener = Callable[[Path], BinaryIO]


def plain_open(path: Path) -> BinaryIO:
    """The default ``Opener``."""
    return open(path, "rb")


@dataclass(frozen=True)
class Block:
    """A run of text from one section and one page."""

    text: str
    section: tuple[str, ...] = ()
    page: int = 0


@dataclass
class Document:
    """One opened document.  ``blocks`` may raise ``UnreadableDocument`` while it is iterated (a
    corrupt page 200, a bad UTF-8 byte near the end), so a consumer must not commit a document's
    chunks before its iterator is exhausted."""

    format: str
    title: str
    metadata: dict[str, Any]
    blocks: Iterator[Block]


class UnreadableDocument(Exception):
    """The file cannot be read as its format; ``reason`` is one line meant for a person."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ReaderLimits:
    """Bounds on one document's cost.

    ``max_seconds`` counts time spent inside the reader (opening plus producing blocks, not the
    consumer's time between blocks); it is checked between pages, lines and elements, so one parser
    call that never returns is not interrupted (run readers in a subprocess to bound that too).
    ``max_file_bytes`` applies to formats read whole (PDF, DOCX, HTML); text, Markdown and rst are
    streamed.  A DOCX whose zip entries declare more than ``max_expanded_bytes`` in total, or an
    entry over 1 MiB that compresses better than ``max_compression_ratio``:1, is refused unopened.
    """

    max_seconds: float = 120.0
    max_file_bytes: int = 512 << 20
    max_expanded_bytes: int = 256 << 20
    max_compression_ratio: float = 200.0


def check_size(size: int, limits: ReaderLimits) -> None:
    """Refuse a file read whole (PDF, DOCX, HTML) that is larger than ``limits.max_file_bytes``."""
    if size > limits.max_file_bytes:
        raise UnreadableDocument(f"file larger than {limits.max_file_bytes >> 20} MB (ReaderLimits.max_file_bytes)")


def read_whole(path: Path, limits: ReaderLimits, opener: Opener) -> bytes:
    """The file's bytes, read once through ``opener``; refused past ``limits.max_file_bytes``."""
    with opener(path) as handle:
        raw = handle.read(limits.max_file_bytes + 1)
    check_size(len(raw), limits)
    return raw


@dataclass
class Budget:
    """Time spent inside one document's reader, against ``ReaderLimits.max_seconds``."""

    seconds: float
    spent: float = 0.0
    _since: float | None = field(default=None, repr=False)

    def resume(self) -> None:
        self._since = time.monotonic()

    def pause(self) -> None:
        if self._since is not None:
            self.spent += time.monotonic() - self._since
            self._since = None

    def check(self) -> None:
        """Raise once the reader has used up its time (call between pages or elements)."""
        running = time.monotonic() - self._since if self._since is not None else 0.0
        if self.spent + running > self.seconds:
            raise UnreadableDocument(f"reading took longer than {self.seconds:g} s (ReaderLimits.max_seconds)")


def metered(blocks: Iterator[Block], budget: Budget, empty_reason: str) -> Iterator[Block]:
    """``blocks`` with the time spent producing each one charged to ``budget``; raises
    ``UnreadableDocument(empty_reason)`` at the end when every block was blank (``is_blank``)."""
    seen_text = False
    while True:
        budget.resume()
        try:
            block = next(blocks, None)
            budget.check()
        except OSError as exc:
            raise UnreadableDocument(f"unreadable ({exc.strerror or exc})") from None
        finally:
            budget.pause()
        if block is None:
            break
        seen_text = seen_text or not is_blank(block.text)
        yield block
    if not seen_text:
        raise UnreadableDocument(empty_reason)


@dataclass(frozen=True)
class Heading:
    """A heading met by a structured parser: it opens a section at ``level`` (1 = top)."""

    level: int
    text: str


def assemble(pieces: Iterable[str | Heading], budget: Budget, page: int = 0) -> Iterator[Block]:
    """Blocks from a stream of text lines and headings.

    Lines are joined with ``\\n``; a heading closes the current block and starts a section whose
    first line is the heading's text.  The section path keeps the headings of lower levels still
    open (an h2 under an h1 gives (h1, h2); the next h2 replaces it).  A block is cut at a blank
    line once it reaches ``BLOCK_CHARS`` (at any line past twice that), staying in its section.
    Every block ends with ``SEPARATOR``; blank lines at a block's edges are dropped.
    """
    path: list[Heading] = []
    lines: list[str] = []
    size = 0
    section: tuple[str, ...] = ()
    after_heading = False  # blank lines right after a heading are dropped (it brings its own)
    for count, piece in enumerate(pieces):
        if count % 256 == 0:
            budget.check()
        if isinstance(piece, Heading):
            yield from _flush(lines, section, page)
            while path and path[-1].level >= piece.level:
                path.pop()
            path.append(piece)
            section = tuple(h.text for h in path)
            lines, size = [piece.text, ""], len(piece.text) + 1
            after_heading = True
            continue
        if after_heading and not piece.strip():
            continue
        after_heading = False
        lines.append(piece)
        size += len(piece) + 1
        if size >= BLOCK_CHARS and (not piece.strip() or size >= 2 * BLOCK_CHARS):
            yield from _flush(lines, section, page)
            lines, size = [], 0
    yield from _flush(lines, section, page)


def _flush(lines: list[str], section: tuple[str, ...], page: int) -> Iterator[Block]:
    text = "\n".join(lines).strip("\n")
    if text.strip():
        yield Block(text + SEPARATOR, section, page)
