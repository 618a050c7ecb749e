"""PDF: the text layer of each page with pypdf, streamed page by page (pages numbered from 1).

Metadata is ``{"pages": N}``.  The title is the metadata /Title (unless it is the placeholder "untitled"), else the first heading-like line of the first page with text.
An encrypted PDF is read only when it opens with the empty user password (anyone's viewer would
open it) and its permissions allow text extraction; otherwise it is refused as "encrypted PDF".
A PDF with no text on any page is refused as needing OCR; a PDF pypdf cannot parse (or one that
ends without a ``%%EOF`` marker, i.e. truncated) as corrupt, with a short cause.  pypdf's warnings
are kept off the console (its logger is set to ERROR unless the application configured it).
This module must never run OCR, keep more than one page's text, or print.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from pypdf import PageObject, PdfReader
from pypdf.constants import UserAccessPermissions
from pypdf.generic import ArrayObject, IndirectObject

from milvus_ingest.readers.base import (
    SEPARATOR,
    Block,
    Budget,
    Document,
    Opener,
    ReaderLimits,
    UnreadableDocument,
    metered,
    plain_open,
    read_whole,
)

NO_TEXT = "no text layer (scanned PDF; needs OCR)"
#: How far from the end the ``%%EOF`` marker of a complete file is looked for.
EOF_WINDOW = 64 << 10
_TITLE_WORDS = re.compile(r"[^\W\d_]", re.UNICODE)

_pypdf_logger = logging.getLogger("pypdf")
if _pypdf_logger.level == logging.NOTSET:
    _pypdf_logger.setLevel(logging.ERROR)


def open_pdf(path: Path, limits: ReaderLimits, opener: Opener = plain_open) -> Document:
    """Open the PDF and extract pages up to the first with text (for the title and the OCR check).

    The file is read once into memory, as pypdf does with a path (it needs random access)."""
    budget = Budget(limits.max_seconds)
    budget.resume()
    raw = read_whole(path, limits, opener)
    _check_complete(raw)
    try:
        reader = PdfReader(io.BytesIO(raw))
        _decrypt(reader)
        count = len(reader.pages)
        title = str((reader.metadata or {}).get("/Title") or "").strip()
        title = "" if title.lower() == "untitled" else title  # a generator's placeholder (reportlab's)
    except UnreadableDocument:
        raise
    except Exception as exc:
        raise UnreadableDocument(f"corrupt PDF ({_cause(exc)})") from exc
    first = 0
    first_text = ""
    while first < count and not first_text:
        first_text = _page_text(reader, first)
        first += 1
        budget.check()
    if not first_text:
        raise UnreadableDocument(NO_TEXT)
    budget.pause()
    blocks = _blocks(reader, first, first_text, count)
    return Document("pdf", title or _heading_line(first_text), {"pages": count},
                    metered(blocks, budget, NO_TEXT))


def _check_complete(raw: bytes) -> None:
    if raw.rfind(b"%%EOF", max(0, len(raw) - EOF_WINDOW)) < 0:
        raise UnreadableDocument("corrupt PDF (truncated: no %%EOF marker at the end)")


def _decrypt(reader: PdfReader) -> None:
    if not reader.is_encrypted:
        return
    try:
        opened = reader.decrypt("")
    except Exception as exc:
        raise UnreadableDocument(f"encrypted PDF ({_cause(exc)})") from exc
    if not opened:
        raise UnreadableDocument("encrypted PDF")
    if UserAccessPermissions.EXTRACT not in reader.user_access_permissions:
        raise UnreadableDocument("encrypted PDF (text extraction not permitted)")


def _blocks(reader: PdfReader, first: int, first_text: str, count: int) -> Iterator[Block]:
    """The first text page (already extracted), then every later page as it is extracted."""
    yield Block(first_text + SEPARATOR, (), first)
    for index in range(first, count):
        text = _page_text(reader, index)
        if text:
            yield Block(text + SEPARATOR, (), index + 1)


def _page_text(reader: PdfReader, index: int) -> str:
    try:
        page = reader.pages[index]
        text = page.extract_text().strip()
    except Exception as exc:
        raise UnreadableDocument(f"corrupt PDF (page {index + 1}: {_cause(exc)})") from exc
    _release_contents(reader, page)
    return text


def _release_contents(reader: PdfReader, page: PageObject) -> None:
    """Drop the page's content streams from pypdf's object cache: it keeps every stream it
    resolved, with a decoded copy, so a long PDF would otherwise be held whole once it was read.
    Fonts and other shared resources stay cached (every page needs them again)."""
    contents = page.get("/Contents")
    for ref in contents if isinstance(contents, ArrayObject) else [contents]:
        if isinstance(ref, IndirectObject):
            reader.resolved_objects.pop((ref.generation, ref.idnum), None)


def _cause(exc: Exception) -> str:
    message = " ".join(str(exc).split())[:120]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _heading_line(text: str) -> str:
    """The first short line that has letters and does not end like a sentence."""
    for line in text.splitlines()[:20]:
        line = " ".join(line.split())
        if line and len(line) <= 120 and len(line.split()) <= 15 and _TITLE_WORDS.search(line) and line[-1] not in ".,;:":
            return line
    return ""
