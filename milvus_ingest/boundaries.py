"""Where a text may be cut: paragraph, sentence, line and word boundaries, and byte windows.

Spans are ``(start, end)`` character offsets, stripped of surrounding whitespace.  Kept apart
from ``chunking`` so that what counts as a boundary is one small table, and the chunker only
decides which boundaries to use.  This module must never tokenize.
"""

from __future__ import annotations

import re

#: Boundaries tried in order, coarsest first.  Sentence ends include CJK full stops, which are
#: not followed by a space.
SPLITTERS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\n[ \t\r\f\v]*\n\s*"),
    re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？；])\s*"),
    re.compile(r"\n\s*"),
    re.compile(r"(?<=[,;:、，])\s*|\s+"),
)


def utf8_len(text: str, start: int, end: int) -> int:
    """UTF-8 bytes of ``text[start:end]`` (what Milvus counts a VARCHAR in)."""
    return len(text[start:end].encode("utf-8", "surrogatepass"))


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` narrowed past whitespace at both ends."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_spans(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Stripped, non-empty spans of text[start:end] between matches of ``pattern``."""
    spans = []
    position = start
    for match in pattern.finditer(text, start, end):
        if match.end() == match.start() and match.start() == position:
            continue
        spans.append(strip_span(text, position, match.start()))
        position = match.end()
    spans.append(strip_span(text, position, end))
    return [(a, b) for a, b in spans if b > a]


def byte_windows(text: str, start: int, end: int, max_bytes: int) -> list[tuple[int, int]]:
    """Cut a span into stripped pieces of at most ``max_bytes`` UTF-8 bytes at character boundaries."""
    spans: list[tuple[int, int]] = []
    a = start
    while a < end:
        b, size = a, 0
        while b < end:
            width = len(text[b].encode("utf-8", "surrogatepass"))
            if size + width > max_bytes:
                break
            size += width
            b += 1
        s, e = strip_span(text, a, max(b, a + 1))
        if e > s:
            spans.append((s, e))
        a = max(b, a + 1)
    return spans
