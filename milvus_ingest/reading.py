"""Reading one source's bytes: opened safely, inspected in one pass, then read as its format.

A file is opened without blocking (a FIFO never hangs a run) and without following a link that
discovery did not choose to follow, by every reader (``safe_opener``).  ``inspect_source`` runs at
planning time: for text formats (plain text, Markdown, rst) it hashes and validates UTF-8 in one
streamed pass; for PDF, DOCX and HTML it hashes and sniffs the content (a ``.pdf`` must start like
a PDF) without parsing, so an unchanged document costs one hash.  ``read_source`` opens the
document as its format (``milvus_ingest.readers``) for the stream's producer thread, with a
function that then says which bytes were read.  Any failure is a ``SourceReadError`` (an
``UnreadableDocument``) with a one-line reason — that source's skip, never the run's end.  This
module must never hold more than one block of a text file in memory, and never touches the model
or Milvus.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from milvus_ingest.readers import (
    SNIFF_BYTES,
    WHOLE_FILE_FORMATS,
    Block,
    Document,
    Opener,
    ReaderLimits,
    UndecodableError,
    UnreadableDocument,
    check_content,
    check_size,
    detect_format,
    open_document,
)
from milvus_ingest.readers.base import NO_TEXT, is_blank
from milvus_ingest.readers.text import open_text
from milvus_ingest.sources import SourceFile, TextDocument, not_regular

#: Bytes read at a time while hashing.
BLOCK_BYTES = 1 << 20
#: Bounds on one document's reading (time, size, zip expansion); see ``ReaderLimits``.
DEFAULT_LIMITS = ReaderLimits()


class SourceReadError(UnreadableDocument):
    """One source could not be read, decoded or parsed: that source's skip, with the reason."""


def os_reason(exc: OSError) -> str:
    """A one-line reason for an OS error on one file."""
    if isinstance(exc, FileNotFoundError):
        return "file vanished during the run (deleted or moved); rerun to pick up the change"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "replaced by a symlink during the run; not followed"
    return f"unreadable ({exc.strerror or exc})"


def read_failure_reason(exc: Exception) -> str:
    """One line for a source that failed while being read (never a traceback)."""
    if isinstance(exc, UnreadableDocument):
        return exc.reason
    if isinstance(exc, OSError):
        return os_reason(exc)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"could not be read ({type(exc).__name__}{': ' + text if text else ''})"


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


def safe_opener(linked: bool) -> Opener:
    """The ``Opener`` every reader uses on a discovered file (see ``open_source``)."""
    return lambda path: open_source(path, linked)


def source_format(item: SourceFile | TextDocument, formats: dict[str, str] | None = None) -> str:
    """The format a source is read as: by suffix (``sources.formats`` adds suffixes); text for a document."""
    return "text" if isinstance(item, TextDocument) else detect_format(item.path, formats)


@dataclass(frozen=True)
class Inspection:
    """One pass over a source's bytes: its hash, size, modification time, and why it cannot be used (or None)."""

    sha256: str
    size: int
    reason: str | None
    #: Modification time (whole seconds since the epoch); 0 for a document given as text.
    mtime: int = 0


def inspect_source(
    item: SourceFile | TextDocument, fmt: str | None = None, limits: ReaderLimits = DEFAULT_LIMITS
) -> Inspection:
    """Hash the bytes and check them for ``fmt`` (by suffix when None) in one streamed pass.

    Text formats are validated as UTF-8 to the end, so a file that turns out not to be UTF-8
    halfway through never leaves half a new version in the store; PDF, DOCX and HTML are only
    sniffed (their parse is the producer's, and an unchanged one is never parsed).
    """
    if isinstance(item, TextDocument):
        data = item.identity()
        reason = "empty document" if is_blank(item.text) else None
        return Inspection(hashlib.sha256(data).hexdigest(), len(data), reason)
    fmt = fmt or source_format(item)
    digest = hashlib.sha256()
    decoder = None if fmt in WHOLE_FILE_FORMATS else codecs.getincrementaldecoder("utf-8")(errors="strict")
    size = mtime = 0
    seen_text = decoder is None
    try:
        with open_source(item.path, item.linked) as handle:
            mtime = int(os.fstat(handle.fileno()).st_mtime)
            if fmt in WHOLE_FILE_FORMATS:
                check_size(os.fstat(handle.fileno()).st_size, limits)
            head = handle.read(SNIFF_BYTES)
            check_content(head, fmt)
            raw = head
            while True:
                if decoder is not None:
                    try:
                        text = decoder.decode(raw, final=not raw)
                    except UnicodeDecodeError as exc:
                        return Inspection("", size, UndecodableError(size + exc.start).reason, mtime)
                    seen_text = seen_text or not is_blank(text)
                digest.update(raw)
                size += len(raw)
                if not raw:
                    break
                raw = handle.read(BLOCK_BYTES)
    except UnreadableDocument as exc:
        return Inspection("", size, exc.reason, mtime)
    except OSError as exc:
        return Inspection("", size, os_reason(exc), mtime)
    return Inspection(digest.hexdigest(), size, None if seen_text else NO_TEXT, mtime)


def read_source(
    item: SourceFile | TextDocument, fmt: str, limits: ReaderLimits = DEFAULT_LIMITS
) -> tuple[Document, Callable[[], str]]:
    """The source opened as ``fmt``, and a function that gives the SHA-256 of the bytes it was read from.

    Call that function only once the blocks are exhausted.  Plain text is hashed while it is
    read (one pass, as inspected); other formats are hashed again after parsing, so a file that
    changed after it was inspected is caught either way.  ``Document.blocks`` may raise
    ``UnreadableDocument`` (a corrupt page 200): nothing of a source is committed before its end.
    """
    if isinstance(item, TextDocument):
        data = item.identity()
        return Document("text", item.title, {}, iter([Block(item.text)])), lambda: hashlib.sha256(data).hexdigest()
    opener = safe_opener(item.linked)
    if fmt == "text":  # no sniff: bytes that differ from the inspected ones must say "changed"
        digest = hashlib.sha256()
        return open_text(item.path, limits, opener, digest), digest.hexdigest
    document = open_document(item.path, fmt, limits=limits, opener=opener)
    return document, lambda: hash_file(item.path, item.linked)


def hash_file(path: Path, linked: bool = False) -> str:
    """SHA-256 of a file's bytes, streamed (``SourceReadError`` when it cannot be read)."""
    digest = hashlib.sha256()
    try:
        with open_source(path, linked) as handle:
            while raw := handle.read(BLOCK_BYTES):
                digest.update(raw)
    except OSError as exc:
        raise SourceReadError(os_reason(exc)) from None
    return digest.hexdigest()
