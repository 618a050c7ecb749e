"""HTML: the main content of a page as text, sectioned by ``<h1>``–``<h6>``.

The text comes from ``<main>`` (else a lone ``<article>``, else ``<body>``), without navigation,
page headers and footers, sidebars, scripts, styles, forms, hidden elements and cookie/consent
banners (an element whose id, class, role or aria-label mentions cookie, consent, banner or gdpr),
elements with a landmark role of those (navigation, banner, contentinfo, complementary, search)
and elements whose class or id is a navigation token (nav, navbar, navheader, header, footer, menu, breadcrumb, sidebar..).
A ``<header>`` inside an ``<article>`` is kept: it holds the article's own heading.  Tables keep
their cells (" | " between cells, a line per row) and lists their items ("- " or "1. ").
Bytes are decoded by BOM, else the declared charset (``<meta charset>``, http-equiv, XML
declaration), else UTF-8, else windows-1252 (the HTML standard's fallback); bytes the chosen
encoding cannot decode become U+FFFD rather than failing the page.  This module must never
fetch anything a page refers to, run its scripts, or index boilerplate.
"""

from __future__ import annotations

import codecs
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag, XMLParsedAsHTMLWarning
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

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
    read_whole,
)

DROPPED_TAGS = (
    "nav", "header", "footer", "aside", "script", "style", "noscript", "template", "form", "button", "select",
    "input", "textarea", "iframe", "object", "embed", "svg", "canvas", "dialog",
)
BOILERPLATE = re.compile(r"cookie|consent|banner|gdpr", re.IGNORECASE)
#: ARIA landmark roles of the dropped tags (``<div role="navigation">`` is a ``<nav>``).
BOILERPLATE_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search"})
#: Whole class or id tokens of navigation blocks (DocBook's navheader/navfooter, texinfo's header).
NAVIGATION_TOKEN = re.compile(
    r"(?:nav(?:bar|header|footer|igation)?|(?:site-?)?(?:header|footer)|menu|breadcrumbs?|sidebar|skip-?link)",
    re.IGNORECASE,
)
BLOCK_TAGS = frozenset(
    ["address", "article", "blockquote", "center", "dd", "details", "div", "dl", "dt", "fieldset", "figcaption", "figure", "hr", "html", "body", "li", "main", "p", "section", "summary"]
)
HEADINGS = {f"h{n}": n for n in range(1, 7)}
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([-\w.:]+)|<\?xml[^>]+encoding\s*=\s*["']([-\w.:]+)""", re.IGNORECASE)
_SKIPPED_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)
_BR = "\x00"  # stands for <br> inside a paragraph until its whitespace is collapsed


def open_html(path: Path, limits: ReaderLimits, opener: Opener = plain_open) -> Document:
    """Parse the page now (lxml); its blocks are built as they are iterated."""
    budget = Budget(limits.max_seconds)
    budget.resume()
    raw = read_whole(path, limits, opener)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML is read as HTML on purpose
        soup = BeautifulSoup(decode_html(raw), "lxml")
    title = _collapse(soup.title.get_text(" ")) if soup.title else ""
    _drop_boilerplate(soup)
    root = _content_root(soup)
    if root is None:
        raise UnreadableDocument("no main text in HTML")
    if not title:
        h1 = root.find("h1")
        title = _collapse(h1.get_text(" ")) if h1 else ""
    budget.check()
    budget.pause()
    blocks = assemble(_Walker(budget).pieces(root), budget)
    return Document("html", title, {}, metered(blocks, budget, "no main text in HTML"))


def decode_html(raw: bytes) -> str:
    """Text of an HTML file: BOM, else declared charset, else UTF-8, else windows-1252."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if raw.startswith(bom):
            return raw[len(bom):].decode(encoding, errors="replace")
    declared = _CHARSET.search(raw[:8192])
    if declared:
        name = (declared.group(1) or declared.group(2)).decode("ascii", "replace").lower()
        if name in ("iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"):
            name = "windows-1252"  # what browsers do, per the HTML standard
        try:
            return raw.decode(codecs.lookup(name).name, errors="replace")
        except LookupError:
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("windows-1252", errors="replace")


def _drop_boilerplate(soup: BeautifulSoup) -> None:
    for tag in soup.find_all(DROPPED_TAGS):
        if tag.name == "header" and tag.find_parent("article") is not None:
            continue
        tag.decompose()
    for tag in soup.find_all(True):
        if tag.decomposed or tag.name in ("html", "body", "main", "article"):
            continue
        if _is_boilerplate(tag):
            tag.decompose()


def _is_boilerplate(tag: Tag) -> bool:
    attrs = tag.attrs
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    if re.search(r"display\s*:\s*none", str(attrs.get("style", ""))):
        return True
    if str(attrs.get("role", "")).lower() in BOILERPLATE_ROLES:
        return True
    classes = attrs.get("class", [])
    tokens = [str(attrs.get("id", "")), *(classes if isinstance(classes, list) else str(classes).split())]
    if any(NAVIGATION_TOKEN.fullmatch(token) for token in tokens):
        return True
    labels = [*tokens, attrs.get("role", ""), attrs.get("aria-label", "")]
    return any(BOILERPLATE.search(str(label)) for label in labels if label)


def _content_root(soup: BeautifulSoup) -> Tag | None:
    """``<main>``, else the only ``<article>``, else ``<body>`` (the first that has text)."""
    articles = soup.find_all("article")
    candidates = [soup.find("main"), articles[0] if len(articles) == 1 else None, soup.body]
    for candidate in candidates:
        if candidate is not None and next(candidate.stripped_strings, None) is not None:
            return candidate
    return None


def _collapse(text: str) -> str:
    return " ".join(text.split())


class _Walker:
    """Walks a tree in document order, turning it into lines and headings for ``assemble``."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.inline: list[str] = []
        self.prefix = ""
        self.list_depth = 0
        self.elements = 0

    def pieces(self, root: Tag) -> Iterator[str | Heading]:
        try:
            yield from self._children(root)
            yield from self._flush()
        except RecursionError:
            raise UnreadableDocument("HTML nested too deeply") from None

    def _flush(self) -> Iterator[str]:
        text = "\n".join(_collapse(part) for part in "".join(self.inline).split(_BR)).strip()
        self.inline = []
        if text:
            yield self.prefix + text
            self.prefix = ""
            if not self.list_depth:
                yield ""

    def _children(self, node: Tag) -> Iterator[str | Heading]:
        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, _SKIPPED_STRINGS):
                    self.inline.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            self.elements += 1
            if self.elements % 256 == 0:
                self.budget.check()
            yield from self._element(child)

    def _element(self, tag: Tag) -> Iterator[str | Heading]:
        name = tag.name
        if name in HEADINGS:
            yield from self._flush()
            text = _collapse(tag.get_text(" "))
            if text:
                yield Heading(HEADINGS[name], text)
        elif name == "br":
            self.inline.append(_BR)
        elif name == "pre":
            yield from self._flush()
            text = tag.get_text().strip("\n")
            if text.strip():
                yield from (text, "")
        elif name == "table":
            yield from self._flush()
            yield from self._table(tag)
        elif name in ("ul", "ol"):
            yield from self._list(tag)
        elif name in BLOCK_TAGS:
            yield from self._flush()
            yield from self._children(tag)
            yield from self._flush()
        else:
            yield from self._children(tag)

    def _list(self, tag: Tag) -> Iterator[str | Heading]:
        yield from self._flush()
        self.list_depth += 1
        indent = "  " * (self.list_depth - 1)
        for number, item in enumerate(tag.find_all("li", recursive=False), start=1):
            self.prefix = indent + (f"{number}. " if tag.name == "ol" else "- ")
            yield from self._children(item)
            yield from self._flush()
            self.prefix = ""
        self.list_depth -= 1
        if not self.list_depth:
            yield ""

    def _table(self, table: Tag) -> Iterator[str]:
        rows = []
        if table.caption:
            rows.append(_collapse(table.caption.get_text(" ")))
        for row in table.find_all("tr"):
            if row.find_parent("table") is not table:
                continue
            cells = [_collapse(cell.get_text(" ")) for cell in row.find_all(("td", "th"), recursive=False)]
            if any(cells):
                rows.append(" | ".join(cells))
        if rows:
            yield from ("\n".join(rows), "")
