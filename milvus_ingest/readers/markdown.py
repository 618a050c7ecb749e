"""Markdown (CommonMark-ish): sections from ATX and Setext headings, YAML front matter as metadata.

A streaming line parser, not a renderer: block text is the source verbatim (code, tables, links
as written) minus front matter and heading markers.  It knows enough CommonMark block structure
that ``#`` lines inside fenced code (```` ``` ```` / ``~~~``), indented code, HTML blocks and
comments are not headings, and that ``---`` under a list item or quote is a rule, not a Setext
underline.  Front matter (``---`` on the first line, closed by ``---`` or ``...``) is parsed with
``yaml.safe_load``; when it is not valid YAML (or not a mapping) the reader goes on with empty
metadata and the front matter is still left out of the text.  This module must never render
Markdown, execute anything in it, or index front matter.  Heading text (in section paths and the
title) loses its inline markup; in the block text the heading line is that plain text too.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from milvus_ingest.readers.base import Budget, Document, Heading, Opener, ReaderLimits, assemble, metered, plain_open
from milvus_ingest.readers.text import iter_lines

#: Front matter longer than this is not front matter (a ``---`` rule on line 1 of a long file).
FRONT_MATTER_MAX_LINES = 500
#: A paragraph this long is flushed; an underline after it is not taken as a Setext heading.
PARAGRAPH_MAX_LINES = 64

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)$")
_THEMATIC = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_NOT_PARAGRAPH_START = re.compile(r" {0,3}(?:[-+*][ \t]|[-+*]$|\d{1,9}[.)](?:[ \t]|$)|>|\|)")
_HTML_BLOCK = re.compile(
    r" {0,3}<(?:!--|/?(?:address|article|aside|blockquote|details|dialog|div|dl|fieldset|figcaption|figure"
    r"|footer|form|h[1-6]|header|hr|li|main|nav|ol|p|section|summary|table|tbody|td|tfoot|th|thead|tr|ul)"
    r"(?:[\s/>]|$))",
    re.IGNORECASE,
)
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(?<![\w\\])([*_]{1,3}|`+)(\S(?:.*?\S)?)\1(?!\w)")
_HTML_RAW = re.compile(r" {0,3}<(script|pre|style|textarea)(?:[\s>]|$)", re.IGNORECASE)


def open_markdown(path: Path, limits: ReaderLimits, opener: Opener = plain_open) -> Document:
    """Read the front matter now; the body's blocks are produced as they are iterated."""
    budget = Budget(limits.max_seconds)
    budget.resume()
    lines = iter_lines(path, opener)
    meta, first_body_lines = _front_matter(lines)
    title = str(meta.pop("title", "") or "").strip()
    if not title:
        title = _first_h1(path, budget, opener)
    budget.pause()
    body = _chain(first_body_lines, lines)
    blocks = assemble(parse_markdown(body), budget)
    return Document("markdown", title, meta, metered(blocks, budget, "no text in Markdown"))


def _chain(head: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from head
    yield from rest


def _front_matter(lines: Iterator[str]) -> tuple[dict[str, Any], list[str]]:
    """``(metadata, lines read past it)``: the lines that turn out not to be front matter come back."""
    first = next(lines, None)
    if first is None:
        return {}, []
    if first.rstrip() != "---":
        return {}, [first]
    taken = [first]
    for line in lines:
        taken.append(line)
        if line.rstrip() in ("---", "..."):
            return _metadata("\n".join(taken[1:-1])), []
        if len(taken) > FRONT_MATTER_MAX_LINES:
            break
    return {}, taken


def _metadata(source: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(source)
    except yaml.YAMLError:
        return {}
    if not isinstance(loaded, dict):
        return {}
    meta: dict[str, Any] = {}
    for key, value in loaded.items():
        value = _json_value(value)
        if value is not None:
            meta[str(key)] = value
    return meta


def _json_value(value: Any) -> Any:
    """A scalar or a list of scalars as JSON can hold it (dates as ISO strings); else None."""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list):
        items = [_json_value(item) for item in value]
        if all(item is not None and not isinstance(item, list) for item in items):
            return items
    return None


def _first_h1(path: Path, budget: Budget, opener: Opener) -> str:
    """The first level-1 heading's text, from a streamed pass that stops there (a whole pass when
    there is none: time, not memory)."""
    lines = iter_lines(path, opener)
    _, head = _front_matter(lines)
    for count, piece in enumerate(parse_markdown(_chain(head, lines))):
        if isinstance(piece, Heading) and piece.level == 1:
            return piece.text
        if count % 256 == 0:
            budget.check()
    return ""


def parse_markdown(lines: Iterator[str]) -> Iterator[str | Heading]:
    """Headings and verbatim lines of a Markdown body, in order."""
    paragraph: list[str] = []
    setext_ok = False  # the open paragraph may still become a Setext heading
    fence: tuple[str, int] | None = None  # (fence character, length) while inside fenced code
    html_end: str | None = None  # what closes the open HTML block ("" = a blank line)
    for line in lines:
        if fence is not None:
            yield line
            close = _FENCE.match(line)
            if close and close.group(2)[0] == fence[0] and len(close.group(2)) >= fence[1] and not close.group(3).strip():
                fence = None
            continue
        if html_end is not None:
            yield line
            if (html_end and html_end in line.lower()) or (not html_end and not line.strip()):
                html_end = None
            continue
        blank = not line.strip()
        if paragraph and not blank:
            underline = _SETEXT.match(line)
            if underline and setext_ok:
                yield Heading(1 if underline.group(1)[0] == "=" else 2, plain_heading(" ".join(paragraph)))
                paragraph, setext_ok = [], False
                continue
            if not _interrupts(line):
                paragraph.append(line)
                if len(paragraph) > PARAGRAPH_MAX_LINES:
                    yield from paragraph
                    paragraph, setext_ok = [], False
                continue
        if paragraph:
            yield from paragraph
            paragraph, setext_ok = [], False
        if blank:
            yield line
            continue
        atx = _ATX.match(line)
        opening = _FENCE.match(line)
        if atx:
            yield Heading(len(atx.group(1)), plain_heading(atx.group(2) or ""))
        elif opening and not (opening.group(2)[0] == "`" and "`" in opening.group(3)):
            fence = (opening.group(2)[0], len(opening.group(2)))
            yield line
        elif _indent(line) >= 4 or _THEMATIC.match(line):
            yield line
        elif raw := _HTML_RAW.match(line):
            html_end = f"</{raw.group(1).lower()}>"
            yield line
            if html_end in line.lower():
                html_end = None
        elif _HTML_BLOCK.match(line):
            comment = line.lstrip().startswith("<!--")
            html_end = "-->" if comment else ""
            yield line
            if comment and "-->" in line.split("<!--", 1)[1]:
                html_end = None
        else:
            paragraph, setext_ok = [line], not _NOT_PARAGRAPH_START.match(line)
    yield from paragraph


def plain_heading(text: str) -> str:
    """Heading text without inline markup: links and images become their text, emphasis and code
    lose their markers (section paths and titles are read by people and stored as metadata)."""
    text = _IMAGE_OR_LINK.sub(r"\1", text)
    for _ in range(3):  # nested emphasis, e.g. **`code`**
        text = _EMPHASIS.sub(r"\2", text)
    return " ".join(text.split())


def _interrupts(line: str) -> bool:
    """Whether a line ends an open paragraph instead of continuing it."""
    return bool(
        _ATX.match(line) or _FENCE.match(line) or _THEMATIC.match(line) or _HTML_BLOCK.match(line)
        or _HTML_RAW.match(line) or line.lstrip().startswith(">")
    )


def _indent(line: str) -> int:
    stripped = line.lstrip(" \t")
    return len(line[: len(line) - len(stripped)].expandtabs(4))
