"""Encoding a call's batches side by side, each on its own share of the cores.

On a 2-core AMD EPYC (AVX512-BF16) torch ran the same 3,047 sorted batches of the 2 MB benchmark
corpus 7-10% faster as two batches at a time on one intra-op thread each than as one batch on two
threads (bf16 and fp32 alike, identical vectors): each op of a small batch split over two threads
waits at a barrier for the slower half, and a core lent to the chunker or Milvus Lite for a
moment stalls both halves, where it stalls one of two independent batches.  ONNX Runtime gained
nothing (its own pool does not wait like that), so its engine keeps one batch at a time
(docs/engines.md).  A call of few batches runs in the caller's thread instead, and a pooled
call is cut into a batch count the workers share evenly (``ExportedEncoder.POOL_MIN_BATCHES``):
else a worker idles while another ends the last batch.

The threads are daemons and take batches one by one from the call: when the caller is
interrupted (Ctrl-C) no batch starts after it, and the interruption is raised once the ones in
flight end, as it was when the caller's own thread ran the batch (this module never queues a
call's batches to a pool that would run them all before exiting).

``submit`` lets a caller hand over its next call before the last one ends: a worker that finds
no batch left in one call starts on the next while the other ends its last batch.  On the same
box (2 MB corpus, whole-process ingest), one call at a time left a worker at 0-0.3 of a core for
0.2-0.8 s at some of the ~8 s window ends; handing the next window over first took 0.4-1.1 s
off the run in 4 of 4 interleaved pairs (docs/engines.md).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Call(Generic[T, R]):
    """One ``submit``: its items, their results, and how many workers are still on it.

    ``started`` and ``ended`` (``time.perf_counter``) bound the time its batches ran: from the
    first batch taken to the last worker leaving."""

    def __init__(self, fn: Callable[[T], R], items: Sequence[T], workers: int):
        self.fn = fn
        self.items = items
        self.results: list[Any] = [None] * len(items)
        self.error: BaseException | None = None
        self.stopped = False
        self.started: float | None = None
        self.ended: float | None = None
        self._next = 0
        self._active = workers
        self._lock = threading.Lock()
        self.done = threading.Event()

    def take(self) -> int | None:
        with self._lock:
            if self.stopped or self._next >= len(self.items):
                return None
            if self._next == 0:
                self.started = time.perf_counter()
            self._next += 1
            return self._next - 1

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            self.error = self.error or exc
            self.stopped = True

    def leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self.ended = time.perf_counter()
                self.done.set()

    def result(self) -> list[R]:
        """The results in the items' order, once every batch ended; the first error is raised
        here.  An interruption of this wait starts no further item and is raised at once: the
        caller waits for those in flight with ``cancel()`` (``finish`` does both)."""
        try:
            while not self.done.wait(0.5):
                pass
        except BaseException:
            self.stopped = True
            raise
        if self.error is not None:
            raise self.error
        return self.results

    def stop(self) -> None:
        """Start no further item (those running go on)."""
        self.stopped = True

    def cancel(self) -> None:
        """Start no further item; return once those in flight end.

        They end first, as a batch in the caller's thread would have: the process never exits
        (and tears torch down) under a batch still running.  A second Ctrl-C ends this wait."""
        self.stopped = True
        self.done.wait()


def finish(call: Any) -> Any:
    """``call.result()``; interrupted or failed, the batches in flight end before it raises."""
    try:
        return call.result()
    except BaseException:
        call.cancel()
        raise


class BatchPool:
    """``workers`` daemon threads; ``map(fn, items)`` runs ``fn`` on the items, at most
    ``workers`` at a time, and returns the results in the items' order.

    ``setup(i)`` runs once in thread ``i`` before any item (the torch engine sets that thread's
    intra-op threads there); ``start`` returns once every thread has run it, after calling
    ``started()`` in the caller's thread (where the torch engine puts the process's setting back).
    """

    def __init__(
        self,
        workers: int,
        setup: Callable[[int], None] | None = None,
        started: Callable[[], None] | None = None,
        name: str = "encoder",
    ):
        if workers < 1:
            raise ValueError(f"workers must be >= 1 (got {workers})")
        self.workers = workers
        self._setup = setup
        self._started = started
        self._name = name
        self._inboxes: list[list[Call[Any, Any] | None]] = []
        self._wake: list[threading.Condition] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._setup_error: BaseException | None = None
        self._pid = os.getpid()
        self._last: Call[Any, Any] | None = None

    def start(self) -> BatchPool:
        """Start the threads (again in a forked child, which inherits the pool but not its
        threads: a QA server that loads the model before forking its workers)."""
        with self._lock:
            if self._threads and self._pid == os.getpid():
                return self
            self._inboxes, self._wake, self._threads = [], [], []
            self._pid = os.getpid()
            ready = threading.Barrier(self.workers + 1)
            for i in range(self.workers):
                inbox: list[Call[Any, Any] | None] = []
                wake = threading.Condition()
                thread = threading.Thread(
                    target=self._serve, args=(i, inbox, wake, ready), name=f"{self._name}-{i}", daemon=True
                )
                self._inboxes.append(inbox)
                self._wake.append(wake)
                self._threads.append(thread)
                thread.start()
            ready.wait()
            if self._started is not None:
                self._started()
        if self._setup_error is not None:
            raise self._setup_error
        return self

    def _serve(
        self, index: int, inbox: list[Call[Any, Any] | None], wake: threading.Condition, ready: threading.Barrier
    ) -> None:
        try:
            if self._setup is not None:
                self._setup(index)
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._setup_error = exc
        finally:
            ready.wait()
        while True:
            with wake:
                while not inbox:
                    wake.wait()
                call = inbox.pop(0)
            if call is None:  # close()
                return
            try:
                while (item := call.take()) is not None:
                    call.results[item] = call.fn(call.items[item])
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                call.fail(exc)
            finally:
                call.leave()

    def close(self) -> None:
        """Stop the threads once they have finished the calls they hold."""
        for inbox, wake in zip(self._inboxes, self._wake):
            with wake:
                inbox.append(None)
                wake.notify()
        self._inboxes, self._wake, self._threads = [], [], []

    def submit(self, fn: Callable[[T], R], items: Iterable[T]) -> Call[T, R]:
        """Queue ``fn`` over ``items`` behind the calls already queued; ``result()`` waits.

        Each worker takes the next item of the oldest call that has one, so consecutive calls
        keep every worker busy across the boundary between them."""
        items = list(items)
        call: Call[T, R] = Call(fn, items, self.workers)
        if not items:
            call.ended = time.perf_counter()
            call.done.set()
            return call
        self.start()
        for inbox, wake in zip(self._inboxes, self._wake):
            with wake:
                inbox.append(call)
                wake.notify()
        self._last = call
        return call

    def busy(self) -> bool:
        """Whether the last call submitted is still running (and so every one before it)."""
        return self._last is not None and not self._last.done.is_set()

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(x) for x in items]``, ``workers`` at a time; the first error is raised here after
        the batches in flight end, and an interruption of the caller starts no further item and
        is raised once those in flight end."""
        return finish(self.submit(fn, items))


class Ready(Generic[R]):
    """A result already in hand, with a ``Call``'s face: what ``submit`` gives back for work
    that was done at once (a call too small for the workers, an engine without them)."""

    def __init__(self, value: R, started: float, ended: float | None = None):
        self.value = value
        self.started: float | None = started
        self.ended: float | None = time.perf_counter() if ended is None else ended

    def result(self) -> R:
        return self.value

    def stop(self) -> None:
        """Nothing is running."""

    def cancel(self) -> None:
        """Nothing is running."""
