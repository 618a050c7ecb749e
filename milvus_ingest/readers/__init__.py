"""Document readers: one file in, a ``Document`` with its title, metadata and streamed ``Block``s out.

    fmt = detect_format(path)                      # by suffix: "markdown", "pdf", ...
    document = open_document(path, fmt)            # raises UnreadableDocument(reason)
    for block in document.blocks:                  # may raise UnreadableDocument too
        block.text, block.section, block.page

``open_document`` first checks that the content is what the format says (a ``.pdf`` must start
with ``%PDF-``, a ``.docx`` must be a zip, text must not be binary or UTF-16), then hands the file to
the format's module.  Offsets of chunks index into the concatenation of the blocks' text.
``opener`` says how the file is opened (the pipeline passes one that never blocks on a FIFO nor
follows a link swapped in mid-run); every read of the file goes through it.  A format's parser
library is imported when a file of that format is first opened, so importing this package is
cheap (the config validates format names against ``FORMATS``).  This package must never embed,
chunk or write anything, and never let one bad file raise anything but ``UnreadableDocument``.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path

from milvus_ingest.readers.base import (
    Block,
    Document,
    Opener,
    ReaderLimits,
    UnreadableDocument,
    check_size,
    plain_open,
)
from milvus_ingest.readers.text import UndecodableError, open_text

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "WHOLE_FILE_FORMATS",
    "Block",
    "Document",
    "Opener",
    "ReaderLimits",
    "UndecodableError",
    "UnreadableDocument",
    "check_content",
    "check_size",
    "detect_format",
    "open_document",
]

Reader = Callable[[Path, ReaderLimits, Opener], Document]
FORMATS = ("text", "markdown", "rst", "html", "pdf", "docx")
#: Formats whose reader reads the whole file at once (bounded by ``ReaderLimits.max_file_bytes``).
WHOLE_FILE_FORMATS = ("html", "pdf", "docx")
#: Suffix (lower case, longest match wins) -> format; anything else is "text".
SUFFIXES: dict[str, str] = {
    ".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".rst.txt": "rst", ".html": "html",
    ".htm": "html", ".pdf": "pdf", ".docx": "docx", ".txt": "text",
}
DEFAULT_LIMITS = ReaderLimits()
#: Bytes sniffed from the start of a file to check its content against its format.
SNIFF_BYTES = 8192
#: The first bytes of an OLE compound file (a legacy .doc, or an encrypted Office document).
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def detect_format(path: str | Path, suffix_map: dict[str, str] | None = None) -> str:
    """The format of ``path`` from its suffix; ``suffix_map`` adds or overrides suffixes (".mdx": "markdown")."""
    mapping = {**SUFFIXES, **{key.lower(): value for key, value in (suffix_map or {}).items()}}
    for fmt in mapping.values():
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} in suffix_map (known: {', '.join(FORMATS)})")
    name = Path(path).name.lower()
    matches = [suffix for suffix in mapping if name.endswith(suffix) and len(name) > len(suffix)]
    return mapping[max(matches, key=len)] if matches else "text"


def open_document(
    path: Path, fmt: str, *, limits: ReaderLimits = DEFAULT_LIMITS, opener: Opener = plain_open
) -> Document:
    """Open ``path`` as ``fmt`` (one of ``FORMATS``); raises ``UnreadableDocument`` with a one-line reason."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    path = Path(path)
    try:
        with opener(path) as handle:
            head = handle.read(SNIFF_BYTES)
            size = handle.seek(0, 2)
    except PermissionError:
        raise UnreadableDocument("permission denied") from None
    except OSError as exc:
        raise UnreadableDocument(f"unreadable ({exc.strerror or exc})") from None
    check_content(head, fmt)
    if fmt in WHOLE_FILE_FORMATS:
        check_size(size, limits)
    try:
        return _reader(fmt)(path, limits, opener)
    except OSError as exc:
        raise UnreadableDocument(f"unreadable ({exc.strerror or exc})") from None


def _reader(fmt: str) -> Reader:
    """The format's reader; its parser library is imported here, on first use."""
    if fmt == "markdown":
        from milvus_ingest.readers.markdown import open_markdown

        return open_markdown
    if fmt == "rst":
        from milvus_ingest.readers.rst import open_rst

        return open_rst
    if fmt == "html":
        from milvus_ingest.readers.html import open_html

        return open_html
    if fmt == "pdf":
        from milvus_ingest.readers.pdf import open_pdf

        return open_pdf
    if fmt == "docx":
        from milvus_ingest.readers.docx import open_docx

        return open_docx
    return open_text


def check_content(head: bytes, fmt: str) -> None:
    """Refuse a file whose first bytes are not what ``fmt`` says (no PDF header, NUL bytes in text, ...)."""
    if not head:
        raise UnreadableDocument("empty file")
    if fmt == "pdf":
        if b"%PDF-" not in head[:1024]:
            raise UnreadableDocument("not a PDF (no %PDF- header)")
    elif fmt == "docx":
        if head.startswith(OLE_MAGIC):
            raise UnreadableDocument("not a DOCX (OLE compound file: an encrypted or legacy .doc document)")
        if not head.startswith(b"PK"):
            raise UnreadableDocument("not a DOCX (not a zip package)")
        # the zip directory checks live with the DOCX reader, which reads the directory anyway
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        if fmt != "html":
            raise UnreadableDocument("UTF-16 text; convert it to UTF-8")
    elif b"\x00" in head:
        raise UnreadableDocument("binary file (NUL bytes)")
