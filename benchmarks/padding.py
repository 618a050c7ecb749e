"""Padding waste of a batching policy, computed from exact token counts (no model run).

A batch is padded to its longest item, so a batch of one 200-token chunk and thirty-one
20-token tails pays for 6,400 token slots to encode 820 tokens.  sentence-transformers sorts the
texts of one ``encode`` call by character length before cutting batches; the pipeline hands it a
window of up to ``batch_size * window_batches`` chunks per call (``model.window_batches``; a slow model
stops short of it at ``model.window_seconds``, which this replay, timing nothing, leaves out; it
doubles windows from the first, where a fast model jumps to the widest, so it pads no less).  This module replays those policies on
the real token counts.  It must never run the model: it is a pure function of the counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PaddingReport:
    policy: str
    batches: int
    tokens: int
    slots: int

    @property
    def waste(self) -> float:
        """Fraction of the token slots the model computes that are padding."""
        return 1 - self.tokens / self.slots if self.slots else 0.0

    def as_dict(self) -> dict[str, object]:
        return {"policy": self.policy, "batches": self.batches, "tokens": self.tokens, "slots": self.slots,
                "padding_waste": round(self.waste, 4)}


def _batches(order: Sequence[int], batch_size: int) -> list[list[int]]:
    return [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]


def _sorted_like_st(indices: Sequence[int], char_lengths: Sequence[int]) -> list[int]:
    """sentence-transformers' order: longest text (in characters) first, ties in input order."""
    return sorted(indices, key=lambda i: -char_lengths[i])


def padding_report(
    policy: str, token_counts: Sequence[int], char_lengths: Sequence[int], batch_size: int, window: int | None,
    first_window: int = 0,
) -> PaddingReport:
    """Replay one policy.

    ``window`` None: batches in arrival order (a plain loop of ``encode(batch)`` calls, where
    sorting inside one batch changes nothing).  ``window`` N: each run of N chunks is sorted by
    character length and cut into batches (the pipeline, whose windows grow from ``first_window``
    by doubling up to N, as ``ingest.stream`` cuts them).  ``window`` 0: the whole corpus in one
    call (the ceiling).
    """
    n = len(token_counts)
    if window is None:
        batches = _batches(range(n), batch_size)
    else:
        limit = window or n or 1
        size = min(limit, first_window) if first_window > 0 else limit
        batches = []
        start = 0
        while start < n:
            batches += _batches(_sorted_like_st(range(start, min(n, start + size)), char_lengths), batch_size)
            start, size = start + size, min(limit, size * 2)
    tokens = sum(token_counts)
    slots = sum(max(token_counts[i] for i in b) * len(b) for b in batches if b)
    return PaddingReport(policy, len(batches), tokens, slots)


def padding_reports(
    token_counts: Sequence[int], char_lengths: Sequence[int], batch_size: int, window: int, workers: int = 1
) -> list[PaddingReport]:
    """The three policies the benchmark compares: plain loop, the pipeline's windows (from a batch
    per worker), one call."""
    first = min(window, batch_size * workers)
    return [
        padding_report(f"arrival order, batches of {batch_size} (plain loop)", token_counts, char_lengths, batch_size, None),
        padding_report(f"sorted windows of {window}, from {first} (pipeline)", token_counts, char_lengths,
                       batch_size, window, first_window=first),
        padding_report("whole corpus sorted (ceiling)", token_counts, char_lengths, batch_size, 0),
    ]
