"""PDF: the text layer of each page with pypdf, streamed page by page (pages numbered from 1).

Metadata is ``{"pages": N}``.  The title is the metadata /Title (unless it is the placeholder "untitled"), else the first heading-like line of the first page with text.
The section path comes from the PDF's outline (bookmarks, as LaTeX, texinfo, Word and most
manual generators write them): a page's text is split where an outline entry's title appears on
the page the entry points to, and each part carries the path of the entry it falls under.  A PDF
without an outline (or with a broken one) has pages without sections, never a failure.
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
    outline = outline_by_page(reader)
    budget.pause()
    blocks = _blocks(reader, first, first_text, count, outline)
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


def _blocks(reader: PdfReader, first: int, first_text: str, count: int,
            outline: dict[int, list[tuple[str, ...]]]) -> Iterator[Block]:
    """The first text page (already extracted), then every later page as it is extracted, each
    split where the outline's entries for it begin."""
    section: tuple[str, ...] = ()
    for skipped in range(first - 1):  # entries on pages before the first with text still apply
        section = outline.get(skipped, [section])[-1]
    for index in range(first - 1, count):
        text = first_text if index == first - 1 else _page_text(reader, index)
        if not text:
            section = outline.get(index, [section])[-1]
            continue
        parts, section = split_at_headings(text + SEPARATOR, outline.get(index, []), section)
        for part_section, part in parts:
            yield Block(part, part_section, index + 1)


def split_at_headings(
    text: str, entries: list[tuple[str, ...]], section: tuple[str, ...]
) -> tuple[list[tuple[tuple[str, ...], str]], tuple[str, ...]]:
    """``text`` cut where each entry's last title is found (in order), as ``(path, part)`` pairs,
    and the path in force at the end of the page.  An entry whose title is not on the page starts
    at the page's top (or after the entry before it)."""
    parts: list[tuple[tuple[str, ...], str]] = []
    position = search_from = 0
    for path in entries:
        words = path[-1].split()
        found = re.compile(r"\s+".join(map(re.escape, words))).search(text, search_from) if words else None
        cut = found.start() if found else search_from
        head = text[position:cut]
        if head.strip():
            parts.append((section, head))
            position = cut
        elif parts:  # only whitespace before the heading: it stays with the part before
            parts[-1] = (parts[-1][0], parts[-1][1] + head)
            position = cut
        # else: leading whitespace goes with the next part, so no character is dropped
        search_from = found.end() if found else cut
        section = path
    if text[position:]:
        parts.append((section, text[position:]))
    return parts, section


def outline_by_page(reader: PdfReader) -> dict[int, list[tuple[str, ...]]]:
    """``{page index: [heading path, ...]}`` in outline order; ``{}`` when there is none or it
    cannot be read (an outline is a help for citations, never a reason to refuse a PDF)."""
    pages: dict[int, list[tuple[str, ...]]] = {}

    def walk(items: list, parents: tuple[str, ...]) -> None:
        path = parents
        for item in items:
            if isinstance(item, list):
                walk(item, path)
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            if not title:
                continue
            path = (*parents, title)
            page = reader.get_destination_page_number(item)
            if page is not None and page >= 0:
                pages.setdefault(page, []).append(path)

    try:
        walk(reader.outline, ())
    except Exception:
        return {}
    return pages


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
