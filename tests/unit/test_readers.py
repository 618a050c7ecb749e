"""Unit tests of milvus_ingest.readers: every fixture is built at test time (reportlab, pypdf,
python-docx, zipfile, plain strings), and every bad-document case must raise its reason."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import pytest

from milvus_ingest.readers import (
    Block,
    ReaderLimits,
    UndecodableError,
    UnreadableDocument,
    detect_format,
    open_document,
)
from milvus_ingest.readers.base import BLOCK_CHARS
from tests.support.documents import encrypt_pdf, make_docx, make_pdf, make_zip_bomb_docx, truncate

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- helpers


def read(path: Path, fmt: str | None = None, **limits: float) -> tuple[str, dict, list[Block]]:
    document = open_document(path, fmt or detect_format(path), limits=ReaderLimits(**limits))
    return document.title, document.metadata, list(document.blocks)


def text_of(blocks: list[Block]) -> str:
    return "".join(block.text for block in blocks)


def by_section(blocks: list[Block]) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    for block in blocks:
        out[block.section] = out.get(block.section, "") + block.text
    return out


def unreadable(path: Path, fmt: str | None = None, **limits: float) -> str:
    with pytest.raises(UnreadableDocument) as caught:
        read(path, fmt, **limits)
    return caught.value.reason


# ---------------------------------------------------------------- detect_format


def test_detect_format_by_suffix_and_suffix_map():
    cases = {
        "a.md": "markdown", "b.MARKDOWN": "markdown", "c.rst": "rst", "d.rst.txt": "rst", "e.html": "html",
        "f.htm": "html", "g.pdf": "pdf", "h.docx": "docx", "i.txt": "text", "j.csv": "text", "noext": "text",
    }
    assert {name: detect_format(name) for name in cases} == cases
    assert detect_format("notes.mdx", {".mdx": "markdown"}) == "markdown"
    assert detect_format("page.html", {".html": "text"}) == "text"
    with pytest.raises(ValueError):
        detect_format("x.foo", {".foo": "excel"})


def test_content_must_match_format(tmp_path):
    fake_pdf = tmp_path / "fake.pdf"
    fake_pdf.write_text("hello, I am not a PDF")
    assert unreadable(fake_pdf) == "not a PDF (no %PDF- header)"
    fake_docx = tmp_path / "fake.docx"
    fake_docx.write_text("hello, I am not a zip")
    assert unreadable(fake_docx) == "not a DOCX (not a zip package)"
    ole = tmp_path / "old.docx"
    ole.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    assert "OLE compound file" in unreadable(ole)
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    assert unreadable(empty) == "empty file"
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"abc\x00def")
    assert unreadable(binary) == "binary file (NUL bytes)"
    assert unreadable(tmp_path / "missing.txt").startswith("unreadable (")
    with pytest.raises(ValueError):
        open_document(binary, "excel")


# ---------------------------------------------------------------- plain text


def test_text_blocks_are_the_file_and_bom_is_dropped(tmp_path):
    path = tmp_path / "a.txt"
    body = ("paragraph " * 50 + "\n\n") * 8000  # ~4 MB: read 1 MiB at a time, cut at breaks
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    title, meta, blocks = read(path)
    assert (title, meta) == ("", {})
    assert len(blocks) >= 2
    assert text_of(blocks) == body
    assert all(b.section == () and b.page == 0 for b in blocks)
    assert all(b.text.endswith("\n\n") for b in blocks)  # cut at paragraph breaks


@pytest.mark.parametrize("fmt", ["text", "markdown", "rst"])
def test_non_utf8_is_refused_with_byte_offset(tmp_path, fmt):
    path = tmp_path / "latin1"
    path.write_bytes(b"# Title\n\ncaf\xe9\n")
    with pytest.raises(UndecodableError) as caught:
        read(path, fmt)
    assert caught.value.reason == "not valid UTF-8 (at byte 12); convert it to UTF-8"


# ---------------------------------------------------------------- Markdown

MARKDOWN = """\
---
title: Front Matter Title
date: 2024-03-05
tags: [alpha, beta]
draft: false
owner: {name: nested, dropped: true}
secret_front_matter_value: 42
---
Preamble paragraph.

# Installation

Install it.

On Linux
========

Use apt.

```bash
# not a heading
echo "$HOME"
```

~~~
## also not a heading
~~~

    # indented code, not a heading

Windows notes
-------------

- a list item
---

### Deep ###
deep text

## Usage
usage text
"""


def test_markdown_sections_front_matter_and_fences(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN)
    title, meta, blocks = read(path)
    assert title == "Front Matter Title"
    assert meta == {"date": "2024-03-05", "tags": ["alpha", "beta"], "draft": False, "secret_front_matter_value": 42}
    sections = by_section(blocks)
    assert list(sections) == [
        (), ("Installation",), ("On Linux",), ("On Linux", "Windows notes"),
        ("On Linux", "Windows notes", "Deep"), ("On Linux", "Usage"),
    ]
    assert sections[()] == "Preamble paragraph.\n\n"
    assert sections[("Installation",)] == "Installation\n\nInstall it.\n\n"
    on_linux = sections[("On Linux",)]
    assert '```bash\n# not a heading\necho "$HOME"\n```' in on_linux
    assert "~~~\n## also not a heading\n~~~" in on_linux
    assert "    # indented code, not a heading" in on_linux
    assert "- a list item\n---" in sections[("On Linux", "Windows notes")]  # a rule, not a Setext H2
    assert sections[("On Linux", "Windows notes", "Deep")] == "Deep\n\ndeep text\n\n"
    text = text_of(blocks)
    assert "secret_front_matter_value" not in text and "Front Matter Title" not in text
    assert "========" not in text and "-------------" not in text


def test_markdown_title_from_first_h1_and_bad_front_matter(tmp_path):
    path = tmp_path / "bad.md"
    path.write_text("---\ntitle: [unclosed\n---\nIntro.\n\n## Not the title\n\n# Real Title\n\nBody.\n")
    title, meta, blocks = read(path)
    assert (title, meta) == ("Real Title", {})  # bad YAML: no metadata, keep reading
    assert "unclosed" not in text_of(blocks)  # still front matter, still not indexed
    assert by_section(blocks)[("Real Title",)] == "Real Title\n\nBody.\n\n"


def test_markdown_rule_on_first_line_is_not_front_matter(tmp_path):
    path = tmp_path / "rule.md"
    path.write_text("---\nJust text after a rule.\n")
    _, meta, blocks = read(path)
    assert meta == {}
    assert text_of(blocks) == "---\nJust text after a rule.\n\n"


def test_markdown_headings_agree_with_markdown_it(tmp_path):
    markdown_it = pytest.importorskip("markdown_it")
    from milvus_ingest.readers.base import Heading
    from milvus_ingest.readers.markdown import parse_markdown

    source = MARKDOWN.split("---\n", 2)[2] + (
        "\n<!--\n# in a comment\n-->\n\n<div>\n# in html\n</div>\n\n> # quoted\n\nSetext\ntwo lines\n---\n"
        "#hashtag\n\n#\tTabbed\n\n* * *\n\nPara\n    # continuation\n"
    )
    expected = []
    tokens = markdown_it.MarkdownIt("commonmark").parse(source)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.level == 0:
            expected.append((int(token.tag[1]), tokens[index + 1].content.replace("\n", " ")))
    got = [(p.level, p.text) for p in parse_markdown(iter(source.split("\n"))) if isinstance(p, Heading)]
    assert got == expected


def test_markdown_heading_markup_is_dropped_from_sections(tmp_path):
    path = tmp_path / "readme.md"
    path.write_text("# ![logo](logo.png) The **Fast** `lib`\n\nIntro.\n\n## See [the docs](https://x.test/d) for snake_case_names\n\nMore.\n")
    title, _, blocks = read(path)
    assert title == "logo The Fast lib"
    assert [b.section for b in blocks] == [("logo The Fast lib",), ("logo The Fast lib", "See the docs for snake_case_names")]


def test_markdown_long_section_is_cut_in_blocks_that_stay_in_section(tmp_path):
    path = tmp_path / "long.md"
    paragraph = "word " * 200 + "\n\n"
    path.write_text("# Big\n\n" + paragraph * (2 * BLOCK_CHARS // len(paragraph) + 10))
    _, _, blocks = read(path)
    assert len(blocks) >= 2
    assert {b.section for b in blocks} == {("Big",)}
    assert all(len(b.text) <= 2 * BLOCK_CHARS for b in blocks)


# ---------------------------------------------------------------- reStructuredText

RST = """\
===============
 The Rst Guide
===============

Intro text.

Installing
==========

Run this::

    Not a heading
    =============

Grid:

+------+------+
| a    | b    |
+======+======+
| 1    | 2    |
+------+------+

On Linux
--------

apt text

=====  =====
col    col2
=====  =====
x      y
=====  =====

----------

After a transition.

Using
=====

use text

Short
===

too-short underline above, no heading
"""


def test_rst_levels_by_first_appearance(tmp_path):
    path = tmp_path / "guide.rst.txt"
    path.write_text(RST)
    title, _, blocks = read(path)
    assert title == "The Rst Guide"
    sections = by_section(blocks)
    assert list(sections) == [
        ("The Rst Guide",), ("The Rst Guide", "Installing"), ("The Rst Guide", "Installing", "On Linux"),
        ("The Rst Guide", "Using"),
    ]
    installing = sections[("The Rst Guide", "Installing")]
    assert "    Not a heading\n    =============" in installing
    assert "+======+======+" in installing
    on_linux = sections[("The Rst Guide", "Installing", "On Linux")]
    assert "=====  =====\ncol    col2" in on_linux and "After a transition." in on_linux
    assert "Short\n===\n\ntoo-short" in sections[("The Rst Guide", "Using")]


# ---------------------------------------------------------------- HTML

HTML = """<!DOCTYPE html>
<html><head><meta charset="windows-1252"><title>Caf\xe9 Guide</title>
<style>.x { color: red } STYLETEXT</style><script>var SCRIPTTEXT = 1;</script></head>
<body>
<header><a href="/">HEADERTEXT</a></header>
<nav><ul><li>NAVTEXT</li></ul></nav>
<div id="cookie-consent">COOKIETEXT <button>Accept</button></div>
<div class="gdpr-notice">GDPRTEXT</div>
<aside>ASIDETEXT</aside>
<div class="navheader"><table><tr><td>PREVTEXT</td></tr></table></div>
<div class="header">Next: TEXINFONAVTEXT</div>
<div role="navigation">ROLENAVTEXT</div>
<div class="content-header-image-banner">BANNERTEXT</div>
<main>
  <h1>Welcome</h1>
  <p>Intro about caf\xe9 culture.</p>
  <h2>Tables</h2>
  <table><tr><th>Name</th><th>Price</th></tr><tr><td>Espresso</td><td>2</td></tr></table>
  <h3>Deeper</h3>
  <p>Deep text.<br>Second line.</p>
  <h2>Lists</h2>
  <ul><li>first item</li><li>second item<ol><li>nested one</li></ol></li></ul>
  <form><label>FORMTEXT</label><input value="x"></form>
  <noscript>NOSCRIPTTEXT</noscript>
  <p hidden>HIDDENTEXT</p>
</main>
<footer>FOOTERTEXT</footer>
</body></html>
"""


def test_html_main_content_sections_tables_lists(tmp_path):
    path = tmp_path / "page.htm"
    path.write_bytes(HTML.encode("cp1252"))
    title, _, blocks = read(path)
    assert title == "Café Guide"
    text = text_of(blocks)
    for boilerplate in ("HEADER", "NAV", "COOKIE", "GDPR", "ASIDE", "STYLE", "SCRIPT", "FORM", "NOSCRIPT",
                        "HIDDEN", "FOOTER", "Accept", "PREV", "TEXINFONAV", "ROLENAV", "BANNER"):
        assert boilerplate not in text
    sections = by_section(blocks)
    assert list(sections) == [("Welcome",), ("Welcome", "Tables"), ("Welcome", "Tables", "Deeper"), ("Welcome", "Lists")]
    assert sections[("Welcome",)] == "Welcome\n\nIntro about café culture.\n\n"
    assert "Name | Price\nEspresso | 2" in sections[("Welcome", "Tables")]
    assert "Deep text.\nSecond line." in sections[("Welcome", "Tables", "Deeper")]
    assert "- first item\n- second item\n  1. nested one" in sections[("Welcome", "Lists")]


def test_html_title_from_h1_body_without_main_and_utf8_default(tmp_path):
    path = tmp_path / "plain.html"
    path.write_bytes("<html><body><h1>Só UTF-8</h1><p>text</p><article>a</article><article>b</article></body></html>".encode())
    title, _, blocks = read(path)
    assert title == "Só UTF-8"
    assert "a" in text_of(blocks) and "b" in text_of(blocks)  # two articles: the body is the content


def test_xhtml_is_read_without_warnings(tmp_path):
    path = tmp_path / "page.html"
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>X</title>'
                    "</head><body><p>xhtml text</p></body></html>")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, blocks = read(path)
    assert text_of(blocks) == "xhtml text\n\n"
    assert caught == []


def test_html_without_main_text_is_refused(tmp_path):
    path = tmp_path / "empty.html"
    path.write_text("<html><head><title>T</title></head><body><nav>only nav</nav><script>x()</script></body></html>")
    assert unreadable(path) == "no main text in HTML"


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("zw.html", "<html><body><p>\u200b\u200b</p><p>&#8203;&shy;</p></body></html>", "no main text in HTML"),
        ("zw.md", "# \u200b\n\n\u200d\u2060\n", "no text in Markdown"),
        ("zw.txt", "\u200b \u200c\n" * 100, "no text (only whitespace or invisible characters)"),
    ],
)
def test_documents_of_invisible_characters_only_are_refused(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert unreadable(path) == reason


# ---------------------------------------------------------------- PDF


def test_pdf_pages_title_and_image_only_page(tmp_path):
    path = make_pdf(tmp_path / "doc.pdf", [["Alpha page one", "more alpha"], [], ["Gamma page three"]], title="Meta Title")
    title, meta, blocks = read(path)
    assert title == "Meta Title"
    assert meta == {"pages": 3}
    assert [(b.page, b.section) for b in blocks] == [(1, ()), (3, ())]
    assert "Alpha page one" in blocks[0].text and "Gamma page three" in blocks[1].text


def test_pdf_title_from_first_heading_like_line(tmp_path):
    path = make_pdf(tmp_path / "untitled.pdf", [[], ["12", "Quarterly Report", "This is a sentence."]])
    title, _, blocks = read(path)
    assert title == "Quarterly Report"
    assert blocks[0].page == 2


def test_pdf_outline_gives_sections_split_where_headings_start(tmp_path):
    pages = [
        ["Manual", "Preface text before any chapter."],
        ["Installation", "Install it with pip.", "On Linux", "Use the package manager."],
        [],  # an image-only page: its entry still carries over
        ["Linux continued here.", "Usage", "Run the command."],
    ]
    outline = [(1, 0, 0, "Installation"), (1, 2, 1, "On Linux"), (2, 0, 1, "Scanned figure"), (3, 1, 0, "Usage")]
    path = make_pdf(tmp_path / "manual.pdf", pages, title="Manual", outline=outline)
    _, _, blocks = read(path)
    got = [(b.page, b.section, " ".join(b.text.split())) for b in blocks]
    assert got == [
        (1, (), "Manual Preface text before any chapter."),
        (2, ("Installation",), "Installation Install it with pip."),
        (2, ("Installation", "On Linux"), "On Linux Use the package manager."),
        (4, ("Installation", "Scanned figure"), "Linux continued here."),
        (4, ("Usage",), "Usage Run the command."),
    ]
    # the blocks still concatenate to exactly the extracted text (offsets index into it)
    from pypdf import PdfReader

    extracted = [page.extract_text().strip() for page in PdfReader(path).pages]
    assert "".join(b.text for b in blocks) == "".join(t + "\n\n" for t in extracted if t)


def test_pdf_outline_title_missing_from_page_or_broken_outline(tmp_path, monkeypatch):
    path = make_pdf(tmp_path / "odd.pdf", [["First page."], ["Body without its heading."]],
                    outline=[(1, 0, 0, "Not On The Page")])
    _, _, blocks = read(path)
    assert [(b.page, b.section) for b in blocks] == [(1, ()), (2, ("Not On The Page",))]
    import pypdf

    monkeypatch.setattr(pypdf.PdfReader, "outline", property(lambda self: 1 / 0))
    _, _, blocks = read(path)
    assert [(b.page, b.section) for b in blocks] == [(1, ()), (2, ())]


def test_pdf_bad_documents(tmp_path):
    scanned = make_pdf(tmp_path / "scan.pdf", [[], []])
    assert unreadable(scanned) == "no text layer (scanned PDF; needs OCR)"
    good = make_pdf(tmp_path / "good.pdf", [["some text"] * 20] * 3)
    data = good.read_bytes()
    truncated = truncate(good, tmp_path / "truncated.pdf")
    assert unreadable(truncated).startswith("corrupt PDF (")
    garbled = tmp_path / "garbled.pdf"
    garbled.write_bytes(data[:20] + b"\x00garbage" * 100 + data[-200:])
    assert unreadable(garbled).startswith("corrupt PDF (")


def test_pdf_encryption(tmp_path):
    from pypdf.constants import UserAccessPermissions

    source = make_pdf(tmp_path / "plain.pdf", [["Confidential text"]])

    def encrypted(name: str, user: str, **options) -> Path:
        return encrypt_pdf(source, tmp_path / name, user, **options)

    assert unreadable(encrypted("locked.pdf", "user-secret")) == "encrypted PDF"
    no_copy = encrypted("nocopy.pdf", "", permissions_flag=UserAccessPermissions.PRINT)
    assert unreadable(no_copy) == "encrypted PDF (text extraction not permitted)"
    _, _, blocks = read(encrypted("open.pdf", ""))
    assert "Confidential text" in text_of(blocks)


def test_pdf_warnings_stay_off_the_console(tmp_path):
    # A wrong startxref offset: pypdf recovers, logging warnings that reach stderr unless the reader
    # quiets its logger.  A subprocess, because pytest's log capture would hide them either way.
    path = make_pdf(tmp_path / "doc.pdf", [["recovered text"]])
    path.write_bytes(re.sub(rb"startxref\s+(\d+)", lambda m: b"startxref\n" + str(int(m.group(1)) + 7).encode(),
                            path.read_bytes()))
    script = (
        "import sys; from pathlib import Path; from milvus_ingest.readers import open_document; "
        "print(''.join(b.text for b in open_document(Path(sys.argv[1]), 'pdf').blocks).strip())"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=True)
    assert (done.stdout, done.stderr) == ("recovered text\n", "")


def test_large_pdf_streams_page_by_page(tmp_path, monkeypatch):
    pages = 320
    path = make_pdf(tmp_path / "big.pdf", [[f"Page {n} line {i} of the big document" for i in range(12)]
                                           for n in range(1, pages + 1)])
    from pypdf import PageObject

    calls = []
    original = PageObject.extract_text

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", counting)
    document = open_document(path, "pdf")
    assert len(calls) == 1  # the title needs page 1 only
    blocks = iter(document.blocks)
    first = [next(blocks) for _ in range(5)]
    assert len(calls) == 5  # one page extracted per block asked for, nothing ahead
    assert [b.page for b in first] == [1, 2, 3, 4, 5]
    rest = list(blocks)
    assert [b.page for b in first + rest] == list(range(1, pages + 1))
    assert all(f"Page {b.page} line 11" in b.text for b in first + rest)


def test_large_pdf_memory_does_not_grow_with_pages(tmp_path):
    # A reader that kept pages (a list of texts, one joined string) retains about the text it read.
    path = make_pdf(tmp_path / "big.pdf", [[f"Page {n} line {i} " + "lorem ipsum dolor " * 5 for i in range(40)]
                                           for n in range(1, 71)])
    blocks = iter(open_document(path, "pdf").blocks)
    tracemalloc.start()
    try:
        for _ in range(20):
            next(blocks)
        gc.collect()  # pypdf's font objects are cyclic garbage; count only what is still held
        retained_at_20, _ = tracemalloc.get_traced_memory()
        later_text = sum(len(block.text) for block in blocks)
        gc.collect()
        retained_at_end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert later_text > 200_000
    assert retained_at_end - retained_at_20 < later_text * 0.1


def test_time_budget_is_enforced(tmp_path, monkeypatch):
    path = make_pdf(tmp_path / "slow.pdf", [["page text"]] * 40)
    ticks = iter(range(0, 10_000, 1))
    monkeypatch.setattr("milvus_ingest.readers.base.time.monotonic", lambda: float(next(ticks)))
    reason = unreadable(path, max_seconds=10)
    assert reason == "reading took longer than 10 s (ReaderLimits.max_seconds)"


def test_time_budget_ignores_the_consumer(tmp_path, monkeypatch):
    path = make_pdf(tmp_path / "doc.pdf", [["page text"]] * 3)
    document = open_document(path, "pdf", limits=ReaderLimits(max_seconds=5))
    now = [0.0]
    monkeypatch.setattr("milvus_ingest.readers.base.time.monotonic", lambda: now[0])
    pages = []
    for block in document.blocks:
        pages.append(block.page)
        now[0] += 100.0  # a slow consumer (embedding) between blocks
    assert pages == [1, 2, 3]


# ---------------------------------------------------------------- DOCX


def test_docx_sections_and_table_in_reading_order(tmp_path):
    title, _, blocks = read(make_docx(tmp_path / "doc.docx"))
    assert title == "The Docx Title"
    sections = by_section(blocks)
    assert list(sections) == [(), ("Chapter One",), ("Chapter One", "Section 1.1"), ("Chapter One", "Section 1.2"),
                              ("Chapter Two",)]
    assert sections[("Chapter One",)] == (
        "Chapter One\n\nFirst paragraph.\n\nKey | Value\nspeed | fast\n\nAfter the table.\n\n"
    )
    assert sections[("Chapter One", "Section 1.2")] == "Section 1.2\n\nSibling text.\n\nwide cell\nx | y | z\n\n"
    assert all(b.page == 0 for b in blocks)


def test_docx_core_title_wins(tmp_path):
    import docx

    path = make_docx(tmp_path / "doc.docx")
    document = docx.Document(str(path))
    document.core_properties.title = "Core Title"
    document.save(path)
    assert read(path)[0] == "Core Title"


def test_docx_zip_bomb_refused_before_parsing(tmp_path):
    path = make_zip_bomb_docx(tmp_path / "bomb.docx", megabytes=40)
    assert path.stat().st_size < 1 << 20
    assert unreadable(path, max_expanded_bytes=32 << 20) == "DOCX expands past 32 MB"
    ratio = unreadable(path)  # under the default 256 MB, but 40 MB from a few KB
    assert ratio.startswith("DOCX entry word/document.xml compresses") and ratio.endswith("(zip bomb?)")


def test_docx_other_bad_packages(tmp_path):
    import docx

    not_word = tmp_path / "other.docx"
    with zipfile.ZipFile(not_word, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert unreadable(not_word) == "not a DOCX (no word/document.xml in the package)"
    empty = tmp_path / "empty.docx"
    docx.Document().save(empty)
    assert unreadable(empty) == "no text in DOCX"
    broken = tmp_path / "broken.docx"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<not-closed")
    assert unreadable(broken).startswith("corrupt DOCX (")
