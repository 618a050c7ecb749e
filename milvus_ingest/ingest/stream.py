"""Streaming one group of sources: read and chunk ahead, encode in windows, write behind.

Reading and chunking run in a thread ahead of the encoder, and writes run in a thread behind it,
so the model is never kept waiting; queues are bounded, so memory is too.

The write protocol per source, on which a re-run's plan from commit marks rests (the invariant
is stated in ``store.state``):

1. chunk 0 goes first, with ``n_chunks=0`` ("being written"), in the first request that holds
   any row of the source (rows go out in order, so no later chunk can land before it);
2. then every other chunk;
3. then, if the stored mark says rows past the new end may exist, the tail is deleted by
   expression: ``source == "…" and chunk_index >= n``;
4. and last chunk 0 again, now with ``n_chunks=n``: the commit mark.

Killed anywhere before 4, the source's chunk 0 says "being written" (or still names the old
version, when killed before 1's request landed, and then the old rows are untouched), so the
next run redoes it and deletes any tail; killed after 4, it is complete.  Marks and tail
deletes are batched per window of chunks, so a source costs no request of its own.  This module
must never decide *what* to ingest (``plan`` does) or import Prefect.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from milvus_ingest.chunking import Chunker
from milvus_ingest.ingest.early import EarlyChunks
from milvus_ingest.ingest.faults import fault_point
from milvus_ingest.ingest.plan import SourcePlan
from milvus_ingest.ingest.report import StageTimes
from milvus_ingest.ingest.windows import ChunkItem, EndItem, FailedItem, Window, Written, next_window, submit_window
from milvus_ingest.ingest.writer import Writer
from milvus_ingest.readers import Block, Document
from milvus_ingest.reading import SourceReadError, read_failure_reason, read_source
from milvus_ingest.sources import Skipped
from milvus_ingest.store import DocumentFields, MilvusStore

ProgressCallback = Callable[[int, int, int], None]  # (bytes done, bytes total, chunks done)
#: A source already opened: ``read_source``'s answer (the document, the hash of its bytes read).
Opened = tuple[Document, Callable[[], str]]


def _produce(
    plans: Sequence[SourcePlan],
    chunker: Chunker,
    out: queue.Queue[Any],
    times: StageTimes,
    stop: threading.Event,
    opened: Opened | None = None,
    early: EarlyChunks | None = None,
) -> None:
    """Read (as its format: a PDF is parsed here) and chunk sources in order, ahead of the encoder
    (bounded queue: bounded memory); sources ``early`` chunked in its process come from there.

    A source that fails to read, decode or parse — or whose bytes differ from what was inspected
    (changed mid-run) — ends with a ``FailedItem`` instead of an ``EndItem``: that source is
    skipped with the reason and the run goes on.  ``opened`` is the first source already opened
    (``probe``).
    """
    try:
        for plan_index, plan in enumerate(plans):
            got = early.take(plan.item.source) if early is not None else None
            if got is not None:
                if not _put_early(got, plan_index, plan, out, times, stop):
                    return
                continue
            early = None  # the child ended short (or never had this source): chunked here from now on
            n = 0
            try:
                started = time.perf_counter()
                document, bytes_read = opened if plan_index == 0 and opened else read_source(plan.item, plan.format)
                times.read += time.perf_counter() - started
                fields = DocumentFields(document.title, document.format, plan.mtime, document.metadata)
                chunks = chunker.chunk_document(timed_blocks(document.blocks, times), fields.title)
                while True:
                    started, read_before = time.perf_counter(), times.read
                    chunk = next(chunks, None)
                    times.chunk += time.perf_counter() - started - (times.read - read_before)
                    if chunk is None:
                        break
                    if stop.is_set():
                        return
                    out.put(ChunkItem(plan_index, n, chunk, fields))
                    n += 1
                if plan.sha256 and bytes_read() != plan.sha256:
                    raise SourceReadError("changed while being read; rerun to pick up the new version")
            except Exception as exc:  # noqa: BLE001 - one source's failure is that source's skip
                out.put(FailedItem(plan_index, read_failure_reason(exc)))
                continue
            out.put(EndItem(plan_index, n))
        out.put(None)
    except BaseException as exc:  # noqa: BLE001 - re-raised by the consumer
        out.put(exc)


def _put_early(
    got: tuple[Any, ...], plan_index: int, plan: SourcePlan, out: queue.Queue[Any], times: StageTimes,
    stop: threading.Event,
) -> bool:
    """Queue a source as ``chunk_worker`` sent it: its chunks and end, or its failure (False: stopped)."""
    if got[0] == "failed":
        out.put(FailedItem(plan_index, got[2]))
        return True
    _, _, title, fmt, metadata, chunks, read_s, chunk_s = got
    times.read += read_s
    times.chunk += chunk_s
    fields = DocumentFields(title, fmt, plan.mtime, metadata)
    for n, chunk in enumerate(chunks):
        if stop.is_set():
            return False
        out.put(ChunkItem(plan_index, n, chunk, fields))
    out.put(EndItem(plan_index, len(chunks)))
    return True


def timed_blocks(blocks: Iterator[Block], times: StageTimes) -> Iterator[Block]:
    """``blocks``, with the time spent producing them (parsing, decoding) charged to ``times.read``."""
    while True:
        started = time.perf_counter()
        block = next(blocks, None)
        times.read += time.perf_counter() - started
        if block is None:
            return
        yield block


@dataclass
class WriteResult:
    """What one write step did: chunks per source written, and sources that failed to read."""

    counts: dict[str, int] = field(default_factory=dict)
    failed: list[Skipped] = field(default_factory=list)


def write_stream(
    plans: Sequence[SourcePlan],
    chunker: Chunker,
    ef: Any,
    store: MilvusStore,
    times: StageTimes,
    window_size: int,
    progress: ProgressCallback | None = None,
    overlap_writes: bool = True,
    first_window: int = 0,
    opened: Opened | None = None,
    window_seconds: float = 0.0,
    early: EarlyChunks | None = None,
) -> WriteResult:
    """Chunk, encode and write these sources; returns chunks per source and the failures.

    Windows grow from ``first_window`` chunks (a batch per worker; 0: ``window_size``) up to
    ``window_size``, so the model starts once those are chunked instead of a whole window; with
    ``window_seconds`` (0: no limit, doubling each time) they double as often as the next would
    still encode in that time at the last one's pace, and halve (not below ``first_window``)
    after one took twice it.

    A window goes to the encoder before the last one's rows are taken (``windows``), so its
    workers never wait between them; rows are still written window by window, in order.

    Each source ends with its stale tail deleted and then its commit mark (chunk 0's
    ``n_chunks``) written, in that order (see the module docstring), so a crash anywhere leaves
    it visibly incomplete.  A source that fails while being read gets no commit mark (its old
    rows stay if none of it was written yet; else it stays visibly incomplete and is redone by
    the next run).
    """
    result = WriteResult()
    total_bytes = sum(p.size for p in plans)
    target = min(window_size, first_window) if first_window > 0 else window_size
    # The chunker keeps the next window ready, no more: at the start it would otherwise chunk
    # two windows' worth at once beside the first, narrow windows, which run on every core.
    items = _Lead(maxsize=2 * target)
    stop = threading.Event()
    producer = threading.Thread(
        target=_produce, args=(plans, chunker, items, times, stop, opened, early), name="chunker", daemon=True
    )
    writer = Writer(store, times, threaded=overlap_writes, flush_rows=window_size)
    producer.start()
    writer.start()
    done = Written(result.counts)
    window: list[ChunkItem | EndItem] = []
    in_window = 0
    #: Windows handed to the encoder, oldest first: at most one is left in flight while the
    #: next is gathered, so the workers go from one to the next without waiting (``pool``).
    encoding: deque[Window] = deque()

    def sizing(size: int, seconds: float) -> int:
        return next_window(max(size, 1), seconds, window_size, first_window, window_seconds)

    #: The chunker's tokens are the encoder's only when both put the same instruction first.
    same_tokens = chunker.instruction == getattr(ef, "doc_instruction", None)
    try:
        finished = False
        while not finished:
            item = items.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                finished = True
            elif isinstance(item, FailedItem):
                result.failed.append(Skipped(plans[item.plan_index].item.source, item.reason))
                done.failed.add(item.plan_index)
                done.first_rows.pop(item.plan_index, None)
                window = [w for w in window if w.plan_index != item.plan_index]
                in_window = sum(isinstance(w, ChunkItem) for w in window)
                done.bytes += plans[item.plan_index].size
            else:
                window.append(item)
                in_window += isinstance(item, ChunkItem)
            if window and not finished and in_window >= target and encoding and done.windows == 0:
                while encoding:  # the first window's pace sizes the rest: taken before the second is cut
                    target = _finish_oldest(encoding, done, plans, writer, times, progress, total_bytes, sizing)
                items.widen(2 * target)
            if window and (finished or in_window >= target):
                fault_point("encode")
                # While at least as much source is left as has been taken, more windows follow:
                # the workers then take even a small one (a small run's stays on every core).
                taken = done.bytes + sum(plans[i].size for w in (*encoding, window) for i in _ends(w))
                followed = not finished and total_bytes - taken >= taken
                encoding.append(submit_window(window, ef, same_tokens, followed))
                window, in_window = [], 0
            while encoding and (finished or len(encoding) > 1 or encoding[0].rows.ended is not None):
                target = _finish_oldest(encoding, done, plans, writer, times, progress, total_bytes, sizing)
                items.widen(2 * target)
        writer.close()
    except BaseException:
        stop.set()
        for pending in encoding:
            pending.rows.stop()  # no batch starts after this ...
        for pending in encoding:
            pending.rows.cancel()  # ... and those running end first
        _drain(items)
        _drain(writer.ops)  # queued writes are dropped (the commit marks keep the store consistent)
        writer.ops.put(None)
        if writer.threaded and writer.is_alive():
            writer.join(timeout=3)  # let an in-flight write finish before the store is closed
        raise
    finally:
        if early is not None:
            early.close()
    return result


def _finish_oldest(
    encoding: deque[Window], done: Written, plans: Sequence[SourcePlan], writer: Writer, times: StageTimes,
    progress: ProgressCallback | None, total_bytes: int, sizing: Callable[[int, float], int],
) -> int:
    """Write the oldest window handed to the encoder (waiting for its rows); the next window's size."""
    window = encoding.popleft()
    seconds = done.finish(window, plans, writer, times)
    if progress:
        progress(done.bytes, total_bytes, done.chunks)
    fault_point("between_batches")
    return sizing(len(window.chunks), seconds)


def _ends(window: Window | list[ChunkItem | EndItem]) -> list[int]:
    """The sources that end in a window, handed over or still being gathered."""
    if isinstance(window, Window):
        return list(window.ends)
    return [w.plan_index for w in window if isinstance(w, EndItem)]


class _Lead(queue.Queue):  # type: ignore[type-arg]
    """The chunker's queue: bounded to what the encoder will take next, the bound only growing.

    Measured on 2 cores (2 MB corpus, bf16): with a fixed bound of two full windows the first
    window of 64 chunks took 2.1-2.9 s against 1.1 s with the bound following the windows
    (docs/engines.md): chunking ran on the cores that window was using."""

    def widen(self, maxsize: int) -> None:
        with self.not_full:
            if maxsize > self.maxsize:
                self.maxsize = maxsize
                self.not_full.notify_all()


def _drain(items: queue.Queue[Any]) -> None:
    try:
        while True:
            items.get_nowait()
    except queue.Empty:
        pass
