"""The stream's windows: chunks on their way to the encoder, and their rows on the way out.

``submit_window`` hands a window's chunks to the encoder (``submit_array``: queued behind the
window before it, so the workers go from one to the next without waiting); ``Written.finish``
takes its rows, in window order, and queues them and its sources' commit marks to the writer
(the protocol is ``ingest.stream``'s).  ``next_window`` sizes the windows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from milvus_ingest.chunking import Chunk
from milvus_ingest.encoders.pool import Ready
from milvus_ingest.ingest.plan import SourcePlan
from milvus_ingest.ingest.report import StageTimes
from milvus_ingest.ingest.writer import Writer
from milvus_ingest.store import DocumentFields, chunk_row


@dataclass
class ChunkItem:
    plan_index: int
    index: int
    chunk: Chunk
    document: DocumentFields


@dataclass
class EndItem:
    plan_index: int
    n_chunks: int


@dataclass
class FailedItem:
    plan_index: int
    reason: str


def next_window(size: int, seconds: float, most: int, least: int, budget: float) -> int:
    """The next window's size in chunks, after one of ``size`` chunks encoded in ``seconds``:
    doubled as many times as still encodes within ``budget`` at that pace (a fast model goes
    from its first window to the widest at once: a narrow window pads more, because it sorts
    fewer chunks), kept, or halved past twice the budget."""
    if budget <= 0:
        return min(most, size * 2)
    if seconds > budget * 2:
        return max(least or 1, size // 2)
    grown = size
    while grown < most and (grown * 2) * seconds <= budget * size:
        grown *= 2
    return min(most, grown)


@dataclass
class Window:
    """A window handed to the encoder: its chunks, the sources that end in it, its rows to come."""

    chunks: list[ChunkItem]
    ends: dict[int, int]
    rows: Any  # ``submit_array``'s handle: result(), stop(), cancel(), started, ended


def submit_window(window: list[ChunkItem | EndItem], ef: Any, same_tokens: bool, followed: bool = False) -> Window:
    """Hand the window's chunks to the encoder; the chunker's exact-check tokens go along
    (``Chunk.encoding``) to an encoder that takes them, so each chunk is tokenized once.
    ``followed``: another window comes after this one (its workers take even a small one)."""
    chunks = [w for w in window if isinstance(w, ChunkItem)]
    ends = {w.plan_index: w.n_chunks for w in window if isinstance(w, EndItem)}
    texts = [c.chunk.embedded for c in chunks]  # the chunk after its context: what is embedded
    encodings = [c.chunk.encoding for c in chunks] if same_tokens and getattr(ef, "takes_encodings", False) else None
    started = time.perf_counter()
    if not chunks:
        return Window(chunks, ends, Ready([], started))
    if not hasattr(ef, "submit_array"):  # another embedder: encoded here, now
        extra = [encodings] if encodings is not None else []
        return Window(chunks, ends, Ready(ef.encode_array(texts, ef.doc_instruction, *extra), started))
    rows = ef.submit_array(texts, ef.doc_instruction, encodings, followed=followed)
    if rows.ended is not None:  # encoded here, now: the whole call was encoding
        rows = Ready(rows.result(), started)
    return Window(chunks, ends, rows)


@dataclass
class Written:
    """What the stream has written so far, and the state that a source's commit mark needs."""

    counts: dict[str, int]
    #: Chunk 0's row of each source being written: rewritten with ``n_chunks`` as its commit mark.
    first_rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Sources that failed while being read: rows of theirs still being encoded are dropped.
    failed: set[int] = field(default_factory=set)
    bytes: int = 0
    chunks: int = 0
    windows: int = 0
    _last_end: float = 0.0

    def finish(self, window: Window, plans: Sequence[SourcePlan], writer: Writer, times: StageTimes) -> float:
        """Queue the window's rows once encoded, then finalise the sources that ended in it;
        returns the seconds its encoding added (not counting its overlap with the one before).

        Chunk 0 is written with ``n_chunks=0`` and kept; the sources that end in this window get
        their tails deleted and their chunk 0 written again with the count, in one request each.
        """
        vectors = window.rows.result()
        ended = window.rows.ended if window.rows.ended is not None else time.perf_counter()
        seconds = max(0.0, ended - max(window.rows.started or ended, self._last_end))
        self._last_end = ended
        times.encode += seconds
        rows = []
        for item, vector in zip(window.chunks, vectors):
            if item.plan_index in self.failed:
                continue
            plan = plans[item.plan_index]
            row = chunk_row(
                plan.item.source, item.index, item.chunk, vector, plan.source_hash, 0, item.document, item.chunk.embedded
            )
            if item.index == 0:
                self.first_rows[item.plan_index] = row
            rows.append(row)
        if rows:
            writer.put(("upsert", rows))
        tails: dict[str, int] = {}
        commits: list[dict[str, Any]] = []
        for plan_index, n in window.ends.items():
            plan = plans[plan_index]
            if plan.has_stale_tail(n):
                tails[plan.item.source] = n
            first = self.first_rows.pop(plan_index, None)
            if first is not None:
                commits.append(dict(first, n_chunks=n))
            self.counts[plan.item.source] = n
        if window.ends:
            writer.put(("finalize", (tails, commits)))
        self.chunks += len(rows)
        self.windows += 1
        self.bytes += sum(plans[i].size for i in window.ends)
        return seconds
