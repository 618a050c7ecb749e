"""DOCX: body paragraphs and tables in reading order with python-docx, sectioned by Heading styles.

The zip is vetted before python-docx opens it: a file that is not a zip (an OLE file is an
encrypted or legacy Word document), lacks ``word/document.xml``, declares more uncompressed bytes
than ``ReaderLimits.max_expanded_bytes``, or has an entry over 1 MiB compressed better than
``max_compression_ratio``:1 is refused (zip reads stop at the declared sizes, so declared sizes
bound what is inflated).  "Heading 1".."Heading 9" (or a style based on one) open sections; the
title is core_properties.title, else the first "Title"-style paragraph.  Page headers, footers,
comments and footnotes are not read.  This module must never open a zip entry before vetting it.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import docx
from docx.document import Document as DocxDocument
from docx.table import Table
from docx.text.paragraph import Paragraph

from milvus_ingest.readers.base import (
    Budget,
    Document,
    Heading,
    Opener,
    ReaderLimits,
    UnreadableDocument,
    assemble,
    metered,
    plain_open,
)

#: Entries smaller than this are not checked for their compression ratio (tiny XML compresses well).
RATIO_MIN_BYTES = 1 << 20
_HEADING_STYLE = re.compile(r"heading ([1-9])$", re.IGNORECASE)


def open_docx(path: Path, limits: ReaderLimits, opener: Opener = plain_open) -> Document:
    """Vet the zip, parse it with python-docx (which loads every part of the package at once, so
    the file is closed before the first block); blocks are built from the body as they are iterated."""
    budget = Budget(limits.max_seconds)
    budget.resume()
    with opener(path) as handle:
        vet_zip(handle, limits)
        handle.seek(0)
        try:
            document = docx.Document(handle)
        except Exception as exc:
            cause = f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
            raise UnreadableDocument(f"corrupt DOCX ({cause})") from exc
    title = (document.core_properties.title or "").strip()
    if not title:
        title = next((p.text.strip() for p in document.paragraphs if _style_name(p) == "title" and p.text.strip()), "")
    budget.pause()
    blocks = assemble(_pieces(document, budget), budget)
    return Document("docx", title, {}, metered(blocks, budget, "no text in DOCX"))


def vet_zip(handle: BinaryIO, limits: ReaderLimits) -> None:
    """Refuse what is not a DOCX package or would inflate past the limits, reading only the zip
    directory (the OLE and zip magic bytes were checked by ``readers.check_content``)."""
    if not zipfile.is_zipfile(handle):
        raise UnreadableDocument("not a DOCX (not a zip package)")
    try:
        with zipfile.ZipFile(handle) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnreadableDocument(f"corrupt DOCX ({exc})") from exc
    names = {entry.filename for entry in entries}
    if "word/document.xml" not in names:
        raise UnreadableDocument("not a DOCX (no word/document.xml in the package)")
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_expanded_bytes:
        raise UnreadableDocument(f"DOCX expands past {limits.max_expanded_bytes >> 20} MB")
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > RATIO_MIN_BYTES and ratio > limits.max_compression_ratio:
            raise UnreadableDocument(f"DOCX entry {entry.filename} compresses {ratio:.0f}:1 (zip bomb?)")


def _style_name(paragraph: Paragraph) -> str:
    style = paragraph.style
    return (style.name or "").lower() if style is not None else ""


def _heading_level(paragraph: Paragraph) -> int:
    """1-9 for a Heading style (or a style based on one, up to 5 deep), else 0."""
    style = paragraph.style
    for _ in range(5):
        if style is None:
            return 0
        match = _HEADING_STYLE.match(style.name or "")
        if match:
            return int(match.group(1))
        style = style.base_style
    return 0


def _pieces(document: DocxDocument, budget: Budget) -> Iterator[str | Heading]:
    for count, item in enumerate(document.iter_inner_content()):
        if count % 256 == 0:
            budget.check()
        if isinstance(item, Table):
            text = table_text(item)
            if text:
                yield from (text, "")
            continue
        text = item.text.strip()
        level = _heading_level(item)
        if level and text:
            yield Heading(level, " ".join(text.split()))
        elif text:
            yield from (text, "")


def table_text(table: Table) -> str:
    """Rows on lines, cells joined by " | " (a merged cell once); nested tables inside their cell."""
    rows = []
    for row in table.rows:
        cells = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:
                continue
            previous = cell._tc
            parts = [table_text(c) if isinstance(c, Table) else c.text for c in cell.iter_inner_content()]
            cells.append(" ".join(" ".join(parts).split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
