"""A retrieved chunk as QA code receives it: ``Hit``, and its citation label (``location``).

Kept apart from ``retrieval`` (which finds hits) so the context block and the command lines can
format hits without the search machinery.  This module must never import pymilvus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: ``text == source_text[start:end]``; ``score`` is Milvus's distance.

    For COSINE and IP a higher score is closer, for L2 a lower one; hits always come best first.
    """

    id: str
    score: float
    source: str
    start: int
    end: int
    text: str
    chunk_index: int = -1
    #: Values of any extra ``output_fields`` asked for.
    fields: dict[str, Any] = field(default_factory=dict)
    #: The document's title, the chunk's heading path ("A > B"), its page (1-based; 0 when the
    #: format has none) and the source's format; empty on a collection written before them.
    title: str = ""
    section: str = ""
    page: int = 0
    format: str = ""

    @property
    def location(self) -> str:
        """Page and section for a citation, e.g. ``p.3 · Installation > On Linux`` ("" when neither)."""
        return location(self.page, self.section)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "score": round(self.score, 6),
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "title": self.title,
            "section": self.section,
            "page": self.page,
            "format": self.format,
        }
        if self.fields:
            data["fields"] = dict(self.fields)
        return data


def location(page: int, section: str) -> str:
    """``p.3 · Installation > On Linux``, ``p.3``, ``Installation`` or "" (no page, no section)."""
    return " · ".join(part for part in (f"p.{page}" if page else "", section) if part)


def to_hit(raw: Any, extra: Sequence[str]) -> Hit:
    entity = raw.get("entity") or {}

    def value(name: str, default: Any = None) -> Any:
        return entity.get(name, raw.get(name, default))

    return Hit(
        id=str(raw.get("id", value("id", ""))),
        score=float(raw.get("distance", raw.get("score", 0.0))),
        source=str(value("source", "")),
        start=int(value("start_char", 0)),
        end=int(value("end_char", 0)),
        text=str(value("text", "")),
        chunk_index=int(value("chunk_index", -1)),
        fields={name: value(name) for name in extra},
        title=str(value("title", "") or ""),
        section=str(value("section", "") or ""),
        page=int(value("page", 0) or 0),
        format=str(value("format", "") or ""),
    )
