"""A real Milvus server misbehaving: killed mid-ingest, restarted, unreachable, wrong token.

Uses its own server process (the session's shared one must not be killed under other tests).
"""

from __future__ import annotations

import socket
import time

import pytest

from milvus_ingest.errors import StoreError
from milvus_ingest.ingest import run_ingest
from milvus_ingest.store import MilvusStore
from tests.support import milvus_server
from tests.support.backend import Backend
from tests.support.corpus import sample_corpus, unique_name
from tests.support.snapshots import snapshot

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not milvus_server.is_available(), reason=milvus_server.SKIP_REASON),
]


@pytest.fixture
def own_server(tmp_path):
    server = milvus_server.start_milvus_server(tmp_path / "server")
    yield server
    server.stop()


def test_server_killed_mid_ingest_then_restarted_converges(own_server, tmp_path, t5_embedder, monkeypatch, capfd):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=10)
    backend = Backend("server", own_server.uri)
    settings = backend.settings(milvus__write_batch_rows=8, milvus__retries=2, milvus__retry_backoff_seconds=0.2,
                                milvus__timeout=10, model__batch_size=2)
    upserts = []
    original = MilvusStore.upsert

    def upsert_then_kill(self, rows):
        upserts.append(len(rows))
        result = original(self, rows)
        if len(upserts) == 2:
            own_server.kill()
        return result

    monkeypatch.setattr(MilvusStore, "upsert", upsert_then_kill)
    started = time.perf_counter()
    with pytest.raises(StoreError) as err:
        run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert time.perf_counter() - started < 120
    assert own_server.uri in str(err.value) and "\n" not in str(err.value)
    # pymilvus logs a traceback per failed RPC and retry; none of that reaches the output.
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out, captured.err[-2000:]
    monkeypatch.setattr(MilvusStore, "upsert", original)

    own_server.restart()
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert report.exit_code == 0 and report.rows > 0
    clean = settings.model_copy(deep=True)
    clean.milvus.collection = unique_name()
    run_ingest(clean, [str(corpus)], embedder=t5_embedder)
    assert snapshot(settings) == snapshot(clean)


def test_unreachable_uri_fails_fast_naming_it(t5_embedder):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        settings = Backend("server", f"http://127.0.0.1:{port}").settings()
        started = time.perf_counter()
        with pytest.raises(StoreError) as err:
            MilvusStore(settings.milvus)
        assert time.perf_counter() - started < 8
    assert f"127.0.0.1:{port}" in str(err.value) and "MILVUS_URI" in str(err.value)


def test_wrong_token_is_named_and_the_token_is_not_echoed(milvus_server_process, t5_embedder):
    settings = Backend("server", milvus_server_process.uri, "root:not-the-password").settings()
    with pytest.raises(StoreError) as err:
        MilvusStore(settings.milvus)
    message = str(err.value)
    assert "credentials" in message and "MILVUS_TOKEN" in message
    assert "not-the-password" not in message
