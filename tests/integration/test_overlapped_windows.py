"""Windows handed to the encoder's workers one behind the other (``ingest.windows``, ``pool.submit``).

On 2 cores, a stream that took each window's rows before handing over the next left a worker
idle for 0.4-1 s at the end of every window while the other ended its last batch.
"""

from __future__ import annotations

import time

import numpy as np

from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction
from milvus_ingest.encoders.pool import Ready, finish
from milvus_ingest.ingest import run_ingest
from milvus_ingest.store import MilvusStore
from tests.support.corpus import T5_MODEL, sample_corpus
from tests.support.snapshots import snapshot


def _vectors(settings) -> dict[str, np.ndarray]:
    with MilvusStore(settings.milvus) as store:
        return {r["id"]: np.asarray(r["vector"], dtype=np.float32) for r in store._iterate(["vector"])}


def test_the_next_window_goes_to_the_workers_before_the_last_ones_rows_are_taken(lite, tmp_path, monkeypatch):
    ef = InstructorEmbeddingFunction(str(T5_MODEL), batch_size=2, device="cpu", backend="torch", precision="fp32",
                                     workers=2, cache_dir=tmp_path / "cache")
    engine_type = type(ef.engine)
    assert ef.engine.workers == 2, "not the TorchScript engine with two workers"
    real_submit = engine_type.submit_array
    events: list[tuple[str, int]] = []
    follows: list[bool] = []

    def logged(self, texts, instruction="", encodings=None, followed=False):
        n = sum(kind == "submit" for kind, _ in events)
        events.append(("submit", n))
        follows.append(followed)
        rows = real_submit(self, texts, instruction, encodings, followed)
        real_result = rows.result
        rows.result = lambda: (events.append(("result", n)), real_result())[1]
        return rows

    monkeypatch.setattr(engine_type, "submit_array", logged)
    real_batch = engine_type._encode_batch
    # A model slower than the chunker (as a real one is), so a window is still encoding when the next is ready.
    monkeypatch.setattr(engine_type, "_encode_batch", lambda self, *args: (time.sleep(0.02), real_batch(self, *args))[1])
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    # Fixed windows (no timing in their sizes): a batch per worker, then 16 chunks = 8 batches, pooled.
    overrides = {"model__batch_size": 2, "model__window_batches": 8, "model__window_seconds": 86400}
    overlapped = lite.settings(**overrides)
    report = run_ingest(overlapped, [str(corpus)], embedder=ef)
    windows = sum(kind == "submit" for kind, _ in events)
    assert report.rows == report.chunks and windows > 4
    assert all(("result", k) in events for k in range(windows))  # every window's rows were taken, once
    handed_early = [k for k in range(windows - 1) if events.index(("submit", k + 1)) < events.index(("result", k))]
    assert len(handed_early) >= windows - 3, events  # all but the first two (one batch per worker, here)
    # More than half the corpus still to come: even the small first window goes to the workers.
    assert follows[0] and not follows[-1] and follows == sorted(follows, reverse=True), follows

    # The same rows and vectors as a stream that waits for each window before the next.
    monkeypatch.setattr(engine_type, "submit_array",
                        lambda self, *args, **kwargs: Ready(finish(real_submit(self, *args, **kwargs)), 0.0))
    one_by_one = lite.settings(**overrides)
    again = run_ingest(one_by_one, [str(corpus)], embedder=ef)
    assert again.rows == report.rows and snapshot(overlapped) == snapshot(one_by_one)
    eps = np.finfo(np.float32).eps
    a, b = _vectors(overlapped), _vectors(one_by_one)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=16 * eps)
