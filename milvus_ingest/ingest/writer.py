"""Writes applied in order in a thread behind the encoder, so the model never waits on Milvus.

The stream (``ingest.stream``) queues upserts and per-source finalisations (tail deletes, then
commit marks) here in the order its write protocol needs; this thread applies them one at a
time in that order, and hands the first failure back to the stream, which raises it.  The
queue is short (four operations), so a slow store slows the encoder instead of growing memory.
This module must never decide what to write.

On Milvus Lite it also flushes once a window's worth of rows has arrived since its last flush.
Lite defers building its data files and the HNSW index of what it holds in memory to a flush,
and without one that work waited for the store's close, after the last batch, on a core of its
own: 0.8-1.0 s for the 3,047 rows of the 2 MB benchmark corpus, where flushes behind the encoder
left 0.03 s (AMD EPYC, docs/engines.md).  Segments are then at least a window of rows, which
Lite's own compaction merges four at a time; a Milvus server is never flushed here (it persists
by itself and seals segments on its own terms).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from milvus_ingest.ingest.faults import fault_point
from milvus_ingest.ingest.report import StageTimes
from milvus_ingest.store import MilvusStore


class Writer(threading.Thread):
    """Applies upserts and per-source finalisation in order, behind the encoder."""

    def __init__(self, store: MilvusStore, times: StageTimes, threaded: bool = True, flush_rows: int = 0):
        super().__init__(name="milvus-writer", daemon=True)
        #: Rows after which Milvus Lite is flushed (0: never; a server never is).
        self.flush_rows = flush_rows if getattr(store, "backend", "") == "lite" else 0
        self._unflushed = 0
        #: False applies each write at once in the caller's thread (the benchmark's ablation).
        self.threaded = threaded
        self.store = store
        self.times = times
        self.ops: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            op = self.ops.get()
            if op is None:
                return
            if self.error is not None:
                continue  # drain: the main thread will raise
            kind, payload = op
            started = time.perf_counter()
            try:
                if kind == "upsert":
                    self.store.upsert(payload)
                    fault_point("after_upsert")
                    self._unflushed += len(payload)
                    if self.flush_rows and self._unflushed >= self.flush_rows:
                        self.store.flush()
                        self._unflushed = 0
                elif kind == "finalize":
                    tails, commit_rows = payload
                    if tails:
                        self.store.delete_tails(tails)
                        fault_point("after_delete")
                    if commit_rows:
                        self.store.upsert(commit_rows)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.error = exc
            finally:
                self.times.write += time.perf_counter() - started

    def start(self) -> None:
        if self.threaded:
            super().start()

    def put(self, op: tuple[str, Any]) -> None:
        self.raise_if_failed()
        self.ops.put(op)
        if not self.threaded:
            self.ops.put(None)
            self.run()
            self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self.threaded:
            self.ops.put(None)
            self.join()
        self.raise_if_failed()
