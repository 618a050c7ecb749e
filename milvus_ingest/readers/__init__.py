"""Document readers: one file in, a ``Document`` with its title, metadata and streamed ``Block``s out.

    fmt = detect_format(path)                      # by suffix: "markdown", "pdf", ...
    document = open_document(path, fmt)            # raises UnreadableDocument(reason)
    for block in document.blocks:                  # may raise UnreadableDocument too
        block.text, block.section, block.page

``open_document`` first checks that the content is what the format says (a ``.pdf`` must start
with ``%PDF-``, a ``.docx`` must be a zip, text must not be binary or UTF-16), then hands the file to
the format's module.  Offsets of chunks index into the concatenation of the blocks' text.  This
package must never embed, chunk or write anything, and never let one bad file raise anything but
``UnreadableDocument``.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path

from milvus_ingest.readers.base import Block, Document, ReaderLimits, UnreadableDocument
from milvus_ingest.readers.docx import open_docx
from milvus_ingest.readers.html import open_html
from milvus_ingest.readers.markdown import open_markdown
from milvus_ingest.readers.pdf import open_pdf
from milvus_ingest.readers.rst import open_rst
from milvus_ingest.readers.text import UndecodableError, open_text

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "Block",
    "Document",
    "ReaderLimits",
    "UndecodableError",
    "UnreadableDocument",
    "detect_format",
    "open_document",
]

READERS: dict[str, Callable[[Path, ReaderLimits], Document]] = {
    "text": open_text,
    "markdown": open_markdown,
    "rst": open_rst,
    "html": open_html,
    "pdf": open_pdf,
    "docx": open_docx,
}
FORMATS = tuple(READERS)
#: Suffix (lower case, longest match wins) -> format; anything else is "text".
SUFFIXES: dict[str, str] = {
    ".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".rst.txt": "rst", ".html": "html",
    ".htm": "html", ".pdf": "pdf", ".docx": "docx", ".txt": "text",
}
DEFAULT_LIMITS = ReaderLimits()
#: Bytes sniffed from the start of a file to check its content against its format.
SNIFF_BYTES = 8192


def detect_format(path: str | Path, suffix_map: dict[str, str] | None = None) -> str:
    """The format of ``path`` from its suffix; ``suffix_map`` adds or overrides suffixes (".mdx": "markdown")."""
    mapping = {**SUFFIXES, **{key.lower(): value for key, value in (suffix_map or {}).items()}}
    for fmt in mapping.values():
        if fmt not in READERS:
            raise ValueError(f"unknown format {fmt!r} in suffix_map (known: {', '.join(FORMATS)})")
    name = Path(path).name.lower()
    matches = [suffix for suffix in mapping if name.endswith(suffix) and len(name) > len(suffix)]
    return mapping[max(matches, key=len)] if matches else "text"


def open_document(path: Path, fmt: str, *, limits: ReaderLimits = DEFAULT_LIMITS) -> Document:
    """Open ``path`` as ``fmt`` (one of ``FORMATS``); raises ``UnreadableDocument`` with a one-line reason."""
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except PermissionError:
        raise UnreadableDocument("permission denied") from None
    except OSError as exc:
        raise UnreadableDocument(f"unreadable ({exc.strerror or exc})") from None
    _check_content(head, fmt)
    if fmt in ("pdf", "docx", "html") and size > limits.max_file_bytes:
        raise UnreadableDocument(f"file larger than {limits.max_file_bytes >> 20} MB (ReaderLimits.max_file_bytes)")
    try:
        return READERS[fmt](path, limits)
    except OSError as exc:
        raise UnreadableDocument(f"unreadable ({exc.strerror or exc})") from None


def _check_content(head: bytes, fmt: str) -> None:
    if not head:
        raise UnreadableDocument("empty file")
    if fmt == "pdf":
        if b"%PDF-" not in head[:1024]:
            raise UnreadableDocument("not a PDF (no %PDF- header)")
    elif fmt == "docx":
        return  # the zip checks live with the DOCX reader, which reads the zip directory anyway
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        if fmt != "html":
            raise UnreadableDocument("UTF-16 text; convert it to UTF-8")
    elif b"\x00" in head:
        raise UnreadableDocument("binary file (NUL bytes)")
