"""kill -9 at any moment of an ingest, then the same command again, equals a clean ingest.

The kills are real SIGKILLs of a real ``python -m flows.ingest`` process, delivered at named
points of the pipeline (``FLOWS_CRASH_AT=point:N``): in the middle of the embedding phase,
between batches, right after an upsert, and right after stale rows were deleted.  The rerun is
the same command; the result is compared row by row with a clean ingest of the same sources.
"""

from __future__ import annotations

import signal

import pytest

from milvus_ingest.config import load_settings
from milvus_ingest.ingest import run_ingest
from tests.support.backend import Backend
from tests.support.cli_support import run_module, write_config
from tests.support.corpus import mutate_corpus, sample_corpus
from tests.support.snapshots import snapshot

SMALL_BATCHES = {"model": {"batch_size": 2, "window_batches": 8}, "milvus": {"write_batch_rows": 4}}


@pytest.mark.parametrize(
    "initial,point",
    [
        (False, "after_upsert:2"),
        (True, "encode:2"),
        (True, "between_batches:1"),
        (True, "after_upsert:1"),
        (True, "after_upsert:3"),
        (True, "after_delete:1"),
    ],
)
def test_kill_9_then_rerun_equals_a_clean_ingest(tmp_path, t5_embedder, initial, point):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    db = str(tmp_path / "milvus.db")
    config = write_config(tmp_path / "c.yaml", db, **SMALL_BATCHES)
    settings = load_settings(config)
    if initial:
        run_ingest(settings, [str(corpus)], embedder=t5_embedder)
        mutate_corpus(corpus)

    crashed = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", FLOWS_CRASH_AT=point)
    assert crashed.returncode == -signal.SIGKILL, (point, crashed.returncode, crashed.stderr[-500:])

    rerun = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert rerun.exit_code == 0
    again = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert again.chunks == 0 and len(again.unchanged) == (6 if initial else 5)

    clean = Backend("lite", str(tmp_path / "clean.db")).settings(collection=settings.milvus.collection)
    clean.model, clean.chunking, clean.milvus.write_batch_rows = settings.model, settings.chunking, 4
    run_ingest(clean, [str(corpus)], embedder=t5_embedder)
    assert snapshot(settings) == snapshot(clean)
    assert rerun.rows == len(snapshot(clean))


def test_a_second_writer_on_the_same_lite_folder_fails_at_once(tmp_path, t5_embedder):
    from milvus_ingest.store import MilvusStore

    corpus = sample_corpus(tmp_path / "corpus")
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "milvus.db"))
    settings = load_settings(config)
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    before = snapshot(settings)
    with MilvusStore(settings.milvus):  # this process now holds the Lite folder
        second = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--full")
        assert second.returncode == 2
        assert "in use by another process" in second.stderr and "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    assert snapshot(settings) == before
