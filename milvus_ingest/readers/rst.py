"""reStructuredText: sections from underlined and overlined+underlined titles, streamed line by line.

Levels follow docutils: each adornment style (character, with or without overline) gets the next
level the first time it is seen.  A title is one line preceded by a blank line (or the start, or
another title); its underline starts in column 0, is one repeated punctuation character and is at
least as long as the title (an overline must equal the underline).  So indented text (``::``
literal blocks, directive bodies, block quotes), transitions, grid-table borders (``+---+``) and
simple-table borders (``===  ===``) are not titles.  The first title is the document's title.
This module must never run docutils (directives can include files) and never drop body text.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path

from milvus_ingest.readers.base import Budget, Document, Heading, Opener, ReaderLimits, assemble, metered, plain_open
from milvus_ingest.readers.text import iter_lines

ADORNMENT_CHARS = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def open_rst(path: Path, limits: ReaderLimits, opener: Opener = plain_open) -> Document:
    """Find the title with a pass that stops at the first heading (a whole pass when there is none:
    time, not memory); blocks are produced lazily by a second pass."""
    budget = Budget(limits.max_seconds)
    budget.resume()
    title = ""
    for count, piece in enumerate(parse_rst(iter_lines(path, opener))):
        if isinstance(piece, Heading):
            title = piece.text
            break
        if count % 256 == 0:
            budget.check()
    budget.pause()
    blocks = assemble(parse_rst(iter_lines(path, opener)), budget)
    return Document("rst", title, {}, metered(blocks, budget, "no text in reStructuredText"))


def _adornment(line: str) -> str | None:
    """The adornment character when ``line`` is one repeated punctuation character from column 0."""
    stripped = line.rstrip()
    if len(stripped) < 2 or stripped[0] not in ADORNMENT_CHARS or stripped.count(stripped[0]) != len(stripped):
        return None
    return stripped[0]


def parse_rst(lines: Iterator[str]) -> Iterator[str | Heading]:
    """Headings (levels in order of first appearance of each style) and the other lines verbatim."""
    styles: list[tuple[str, bool]] = []
    window: deque[str] = deque()
    after_break = True  # the previous line was blank, the start, or a title
    source = iter(lines)
    exhausted = False
    while True:
        while not exhausted and len(window) < 3:
            line = next(source, None)
            if line is None:
                exhausted = True
            else:
                window.append(line)
        if not window:
            return
        found = _title(window, after_break)
        if found is None:
            line = window.popleft()
            after_break = not line.strip()
            yield line
            continue
        text, style, used = found
        for _ in range(used):
            window.popleft()
        if style not in styles:
            styles.append(style)
        yield Heading(styles.index(style) + 1, text)
        after_break = True


def _title(window: deque[str], after_break: bool) -> tuple[str, tuple[str, bool], int] | None:
    """``(title, style, lines used)`` when the window starts with a section title."""
    if not after_break or len(window) < 2:
        return None
    first, second = window[0], window[1]
    over = _adornment(first)
    if over is not None and len(window) >= 3:
        title, under = second.strip(), window[2].rstrip()
        matching = _adornment(under) == over and len(under) == len(first.rstrip()) >= len(title)
        if title and matching and _adornment(second) is None:
            return title, (over, True), 3
    if over is None and first.strip() and not first[0].isspace():
        under = _adornment(second)
        if under is not None and len(second.rstrip()) >= len(first.rstrip()):
            return first.strip(), (under, False), 2
    return None
