"""The writer thread's order of operations, and when it flushes Milvus Lite (``ingest.writer``)."""

from __future__ import annotations

import pytest

from milvus_ingest.ingest.report import StageTimes
from milvus_ingest.ingest.writer import Writer


class RecordingStore:
    def __init__(self, backend: str):
        self.backend = backend
        self.calls: list[tuple[str, int]] = []

    def upsert(self, rows):
        self.calls.append(("upsert", len(rows)))
        return 1

    def delete_tails(self, tails):
        self.calls.append(("delete_tails", len(tails)))

    def flush(self):
        self.calls.append(("flush", 0))


def _write(store: RecordingStore, flush_rows: int, threaded: bool = True) -> list[tuple[str, int]]:
    writer = Writer(store, StageTimes(), threaded=threaded, flush_rows=flush_rows)
    writer.start()
    for n in (4, 4, 4, 1, 9):
        writer.put(("upsert", [{}] * n))
    writer.put(("finalize", ({"a.md": 3}, [{}])))
    writer.close()
    return store.calls


@pytest.mark.parametrize("threaded", [True, False])
def test_lite_is_flushed_after_each_window_of_rows_behind_the_encoder(threaded):
    """Lite's deferred data files and index builds happen during the run, not at its close."""
    calls = _write(RecordingStore("lite"), flush_rows=8, threaded=threaded)
    assert calls == [
        ("upsert", 4), ("upsert", 4), ("flush", 0), ("upsert", 4), ("upsert", 1), ("upsert", 9), ("flush", 0),
        ("delete_tails", 1), ("upsert", 1),
    ]


def test_a_server_is_never_flushed_and_nothing_is_without_flush_rows():
    assert ("flush", 0) not in _write(RecordingStore("server"), flush_rows=8)
    assert ("flush", 0) not in _write(RecordingStore("lite"), flush_rows=0)
