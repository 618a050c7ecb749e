"""Documents built at test time: PDFs (reportlab, pypdf for encryption), DOCX (python-docx) and
the bad cases (scanned, truncated, encrypted, not a zip, zip bomb).  Nothing here is committed
as a binary file; every builder writes ``path`` and returns it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path


def make_pdf(
    path: Path,
    pages: list[list[str]],
    title: str | None = None,
    outline: list[tuple[int, int, int, str]] = (),  # type: ignore[assignment]
) -> Path:
    """One PDF page per list of lines; an empty list is a page with only a drawn image (no text).

    ``outline`` entries ``(page index, line number, level, title)`` become bookmarks pointing at
    that line, nested by level (0 = top), in the order given."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    drawing = canvas.Canvas(buffer)
    if title:
        drawing.setTitle(title)
    for index, lines in enumerate(pages):
        if not lines:
            drawing.rect(100, 100, 300, 300, fill=1)  # an "image": marks, no text layer
        for number, line in enumerate(lines):
            drawing.drawString(50, 780 - 14 * number, line)
        for n, (page, line, level, heading) in enumerate(outline):
            if page == index:
                key = f"o{n}"
                drawing.bookmarkHorizontal(key, 0, 794 - 14 * line)
                drawing.addOutlineEntry(heading, key, level=level)
        drawing.showPage()
    drawing.save()
    path.write_bytes(buffer.getvalue())
    return path


def encrypt_pdf(source: Path, path: Path, user_password: str, **options: object) -> Path:
    """``source`` encrypted with ``user_password`` (empty: anyone may open it) and an owner password."""
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=str(source))
    writer.encrypt(user_password, "owner-secret", **options)
    writer.write(path)
    return path


def truncate(source: Path, path: Path) -> Path:
    """The first half of ``source``'s bytes (a download cut short)."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_docx(path: Path) -> Path:
    """A DOCX with a Title paragraph, two chapters, nested sections, a custom heading style and tables."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    document = docx.Document()
    document.core_properties.title = ""
    document.add_paragraph("The Docx Title", style="Title")
    document.add_paragraph("Before any heading.")
    document.add_heading("Chapter One", level=1)
    document.add_paragraph("First paragraph.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("Key", "Value"), ("speed", "fast")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("After the table.")
    document.add_heading("Section 1.1", level=2)
    document.add_paragraph("Nested text.")
    custom = document.styles.add_style("Custom Heading", WD_STYLE_TYPE.PARAGRAPH)
    custom.base_style = document.styles["Heading 2"]
    document.add_paragraph("Section 1.2", style="Custom Heading")
    document.add_paragraph("Sibling text.")
    merged = document.add_table(rows=2, cols=3)
    merged.cell(0, 0).merge(merged.cell(0, 2)).text = "wide cell"
    for c, value in enumerate(("x", "y", "z")):
        merged.cell(1, c).text = value
    document.add_heading("Chapter Two", level=1)
    document.add_paragraph("Second chapter.")
    document.save(path)
    return path


def make_zip_bomb_docx(path: Path, megabytes: int = 40) -> Path:
    """A few KB on disk whose word/document.xml inflates to ``megabytes`` MB of NUL bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as entry:
            chunk = b"\0" * (1 << 20)
            for _ in range(megabytes):
                entry.write(chunk)
    return path
