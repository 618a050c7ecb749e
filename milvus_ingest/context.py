"""Turn one question's hits into a prompt-ready, citable context block within a token budget.

Hits of the same source whose character spans overlap or touch are merged into one passage (the
text is spliced from the hits' own texts, since ``hit.text == source[start:end]``; the source file
is never re-read: it may have changed or be gone).  Passages go in best-rank order, each under a
label such as ``[1] /path/file.md:120-940`` to cite (with the page and section path when the
document has them: ``[2] /path/manual.pdf:0-812 p.3 · Installation > On Linux``); whole passages are taken in score order while
they fit the budget, counted with the model's tokenizer (``milvus_ingest.chunking.TokenCounter``), and
the first one that does not fit is cut to fill what remains (better passages always come first).

This module must never cut a passage without marking it (a cut end ends with "…", a cut start
begins with one, and the label's offsets are exactly the text shown), never cut away the best hit
of a merged passage, and never exceed the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from milvus_ingest.errors import ConfigError
from milvus_ingest.retrieval import Hit, location

ELLIPSIS = "…"
SEPARATOR = "\n\n"
#: A cut passage shorter than this many tokens of text is left out rather than added as a stub.
MIN_CUT_TOKENS = 8


class Counter(Protocol):
    def count(self, texts: list[str]) -> list[int]: ...

    def offsets(self, text: str) -> list[tuple[int, int]]: ...


@dataclass(frozen=True)
class Passage:
    """A span of one source made of one or more hits; ``rank`` is its best hit's position."""

    source: str
    start: int
    end: int
    text: str
    score: float
    rank: int
    hit_ids: tuple[str, ...]
    #: The end was cut to fit the budget (the rendered text ends with "…").
    truncated: bool = False
    number: int = 0
    #: Where the best hit starts: a cut keeps the text from here on.
    focus: int = -1
    #: The start was cut to keep the best hit (the rendered text begins with "…").
    cut_before: bool = False
    #: The best hit's page and section path (hits merge only within one block: one page, one section).
    page: int = 0
    section: str = ""

    @property
    def label(self) -> str:
        where = location(self.page, self.section)
        return f"[{self.number}] {self.source}:{self.start}-{self.end}" + (f" {where}" if where else "")

    def render(self) -> str:
        before = ELLIPSIS if self.cut_before else ""
        return f"{self.label}\n{before}{self.text}{ELLIPSIS if self.truncated else ''}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 6),
            "truncated": self.truncated or self.cut_before,
            "hit_ids": list(self.hit_ids),
            "page": self.page,
            "section": self.section,
        }


@dataclass(frozen=True)
class Context:
    """The block (``text``), what it cites, its size, and how many passages the budget left out."""

    text: str
    passages: list[Passage]
    tokens: int
    budget: int
    omitted: int = 0
    omitted_sources: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "tokens": self.tokens,
            "budget": self.budget,
            "passages": [p.as_dict() for p in self.passages],
            "omitted": self.omitted,
        }


def _spliceable(hit: Hit) -> bool:
    """A hit whose text is exactly its span can be joined with its neighbours by offsets."""
    return hit.end > hit.start and len(hit.text) == hit.end - hit.start


def merge_hits(hits: Sequence[Hit]) -> list[Passage]:
    """Merge overlapping or touching hits of each source; passages in best-rank order, unnumbered."""
    by_source: dict[str, list[tuple[int, Hit]]] = {}
    seen: set[str] = set()
    for rank, hit in enumerate(hits):
        if hit.id not in seen:
            seen.add(hit.id)
            by_source.setdefault(hit.source, []).append((rank, hit))
    passages: list[Passage] = []
    for source, ranked in by_source.items():
        groups: list[list[tuple[int, Hit]]] = []
        reach: int | None = None  # end offset of the open group; None when nothing may join it
        for rank, hit in sorted(ranked, key=lambda item: (item[1].start, item[1].end)):
            if reach is not None and _spliceable(hit) and hit.start <= reach:
                groups[-1].append((rank, hit))
                reach = max(reach, hit.end)
            else:
                groups.append([(rank, hit)])
                reach = hit.end if _spliceable(hit) else None
        for group in groups:
            first = group[0][1]
            text, end = first.text, first.end
            for _, hit in group[1:]:
                if hit.end > end:
                    text += hit.text[end - hit.start :]
                    end = hit.end
            best_rank, best = min(group, key=lambda item: item[0])
            ids = tuple(hit.id for _, hit in sorted(group, key=lambda item: item[0]))
            passages.append(Passage(
                source, first.start, end, text, best.score, best_rank, ids, focus=best.start,
                page=best.page, section=best.section,
            ))
    return sorted(passages, key=lambda p: p.rank)


def _render(passages: Sequence[Passage]) -> str:
    numbered = [replace(p, number=i) for i, p in enumerate(sorted(passages, key=lambda p: p.rank), start=1)]
    return SEPARATOR.join(p.render() for p in numbered)


def _tokens(counter: Counter, text: str) -> int:
    return counter.count([text])[0] if text else 0


def _cut(passage: Passage, chosen: list[Passage], budget: int, counter: Counter) -> Passage | None:
    """The longest piece of ``passage`` from its best hit on (cut at a token, preferably a space) that fits.

    A merged passage can start with weaker hits; its best hit's text is what must survive a cut.
    """
    if passage.start < passage.focus < passage.end:
        skip = passage.focus - passage.start
        passage = replace(passage, text=passage.text[skip:], start=passage.focus, cut_before=True)
    offsets = counter.offsets(passage.text)
    if len(offsets) <= MIN_CUT_TOKENS:
        return None

    def at(k: int) -> Passage:
        text = passage.text[: offsets[k - 1][1]].rstrip()
        space = max(text.rfind(" "), text.rfind("\n"))
        if space > len(text) // 2:
            text = text[:space].rstrip()
        return replace(passage, text=text, end=passage.start + len(text), truncated=True)

    low, high, best = MIN_CUT_TOKENS, len(offsets), None
    while low <= high:
        mid = (low + high) // 2
        candidate = at(mid)
        if candidate.text == passage.text:  # nothing cut at the end: only the start was clipped
            candidate = replace(candidate, truncated=False)
        if _tokens(counter, _render([*chosen, candidate])) <= budget:
            best, low = candidate, mid + 1
        else:
            high = mid - 1
    return best


def build_context(hits: Sequence[Hit], budget_tokens: int, counter: Counter) -> Context:
    """A citable context block of at most ``budget_tokens`` tokens from one question's hits."""
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens < 1:
        raise ConfigError(f"the context budget must be a positive number of tokens, got {budget_tokens!r}")
    passages = merge_hits(hits)
    chosen: list[Passage] = []
    left_out: list[Passage] = []
    for index, passage in enumerate(passages):
        if _tokens(counter, _render([*chosen, passage])) <= budget_tokens:
            chosen.append(passage)
            continue
        # The first passage that does not fit whole is cut to the room left, and the rest wait.
        cut = _cut(passage, chosen, budget_tokens, counter)
        if cut is not None:
            chosen.append(cut)
        left_out = passages[index + (cut is not None) :]
        break
    ordered = [replace(p, number=i) for i, p in enumerate(sorted(chosen, key=lambda p: p.rank), start=1)]
    text = SEPARATOR.join(p.render() for p in ordered)
    return Context(
        text=text,
        passages=ordered,
        tokens=_tokens(counter, text),
        budget=budget_tokens,
        omitted=len(left_out),
        omitted_sources=[p.source for p in left_out],
    )


__all__ = ["Context", "Passage", "build_context", "merge_hits"]
