"""Reading one source's bytes: opened safely, inspected in one pass, streamed as text blocks.

A file is opened without blocking (a FIFO never hangs a run) and without following a link that
discovery did not choose to follow.  ``inspect_source`` hashes and validates before anything is
written; ``iter_text_blocks`` streams bounded blocks.  Any failure is a ``SourceReadError`` with a
one-line reason — that source's skip, never the run's end.  This module must never hold more
than one block of one file in memory, and never touches the model or Milvus.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from milvus_ingest.sources import SourceFile, TextDocument, not_regular

#: Bytes read at a time.  Large files are decoded and chunked block by block.
BLOCK_BYTES = 1 << 20
#: Bytes sniffed for NUL characters to tell binary files from text.
SNIFF_BYTES = 8192


class SourceReadError(Exception):
    """One source could not be read, decoded or parsed: that source's skip, with the reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UndecodableError(SourceReadError):
    """Raised while reading blocks: the file is not valid UTF-8 at a byte offset."""

    def __init__(self, byte_offset: int):
        super().__init__(f"not valid UTF-8 (at byte {byte_offset}); convert it to UTF-8")
        self.byte_offset = byte_offset


def os_reason(exc: OSError) -> str:
    """A one-line reason for an OS error on one file."""
    if isinstance(exc, FileNotFoundError):
        return "file vanished during the run (deleted or moved); rerun to pick up the change"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "replaced by a symlink during the run; not followed"
    return f"unreadable ({exc.strerror or exc})"


def open_source(path: Path, linked: bool = False) -> BinaryIO:
    """Open a source for reading without blocking on a FIFO or following a swapped-in link.

    Raises ``SourceReadError`` when it cannot be opened or is no longer a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if linked else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SourceReadError(os_reason(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SourceReadError(not_regular(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_readable(path: Path, linked: bool = False) -> str | None:
    """Why the file cannot be ingested, or None; reads only its first block."""
    try:
        with open_source(path, linked) as handle:
            head = handle.read(SNIFF_BYTES)
    except SourceReadError as exc:
        return exc.reason
    except OSError as exc:
        return os_reason(exc)
    if not head:
        return "empty file"
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "binary file (NUL bytes)"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16 text; convert it to UTF-8"
    return None


def iter_text_blocks(
    path: Path, block_bytes: int = BLOCK_BYTES, digest: Any = None, linked: bool = False
) -> Iterator[tuple[int, str]]:
    """Yield ``(char_offset, text)`` blocks of a UTF-8 file (BOM dropped), cut at paragraph breaks.

    Blocks end at the last blank line (else line break, else whitespace) of what was read, so that
    chunking a block never cuts through a paragraph that fits in one.  Offsets count characters of
    the decoded text, so ``text[start:end]`` of the whole file equals a chunk.  ``digest`` (a
    hashlib object) is fed the raw bytes, so a caller can tell whether the file changed since it
    was inspected.  Failures raise ``SourceReadError`` with the reason.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    pending = ""
    offset = 0
    consumed_bytes = 0
    first = True
    with open_source(path, linked) as handle:
        while True:
            try:
                raw = handle.read(block_bytes)
            except OSError as exc:
                raise SourceReadError(os_reason(exc)) from None
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


@dataclass(frozen=True)
class Inspection:
    """One pass over a source's bytes: its hash, and why it cannot be used (or None)."""

    sha256: str
    size: int
    reason: str | None


def inspect_source(item: SourceFile | TextDocument) -> Inspection:
    """Hash the bytes and validate them as UTF-8 text in one streamed pass.

    Validating before anything is written means a file that turns out not to be UTF-8 halfway
    through never leaves half a new version in the store.
    """
    if isinstance(item, TextDocument):
        data = item.text.encode("utf-8", "surrogatepass")
        reason = None if item.text.strip() else "empty document"
        return Inspection(hashlib.sha256(data).hexdigest(), len(data), reason)
    reason = check_readable(item.path, item.linked)
    if reason:
        return Inspection("", 0, reason)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    size = 0
    seen_text = False
    try:
        with open_source(item.path, item.linked) as handle:
            while True:
                raw = handle.read(BLOCK_BYTES)
                try:
                    text = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as exc:
                    return Inspection("", size, UndecodableError(size + exc.start).args[0])
                digest.update(raw)
                size += len(raw)
                if not seen_text and text.lstrip("\ufeff").strip():
                    seen_text = True
                if not raw:
                    break
    except SourceReadError as exc:
        return Inspection("", size, exc.reason)
    except OSError as exc:
        return Inspection("", size, os_reason(exc))
    return Inspection(digest.hexdigest(), size, None if seen_text else "no text (only whitespace)")


def iter_blocks(item: SourceFile | TextDocument, digest: Any = None) -> Iterator[tuple[int, str]]:
    """``(char_offset, text)`` blocks of a file or a text document (``digest``: see iter_text_blocks)."""
    if isinstance(item, TextDocument):
        if digest is not None:
            digest.update(item.text.encode("utf-8", "surrogatepass"))
        yield 0, item.text
    else:
        yield from iter_text_blocks(item.path, digest=digest, linked=item.linked)
