"""Shared fixtures: offline models, and one Milvus backend fixture parametrised over Lite and a server.

Integration tests take ``backend`` and run twice: on a fresh Milvus Lite folder, and on a real
Milvus 2.3.5 server process started once per session (skipped, with the reason, when the
``milvus`` package is missing).  Every test gets its own collection name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports Prefect or Hugging Face: offline, quiet, and an isolated Prefect home.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="flows-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_SESSION_TMP / "prefect"))
os.environ["HF_HUB_OFFLINE"] = "1"
# ONNX exports go to the session's own cache, never the user's ~/.cache (subprocesses inherit it).
os.environ["MILVUS_INGEST_CACHE"] = str(_SESSION_TMP / "onnx-cache")
from flows.cli import quiet_environment  # noqa: E402

quiet_environment(one_off=True)

from tests.support import milvus_server  # noqa: E402
from tests.support.backend import Backend  # noqa: E402
from tests.support.corpus import (  # noqa: E402
    MINILM_MODEL,
    T5_MODEL,
)


def pytest_sessionfinish(session, exitstatus) -> None:
    """Remove the session's folder (the server's data, the ONNX exports: ~0.5 GB a run).

    Session fixtures, the Milvus server's among them, are torn down before this hook, so nothing
    still writes there.  ``MILVUS_INGEST_KEEP_TEST_TMP=1`` keeps it for a post-mortem."""
    if os.environ.get("MILVUS_INGEST_KEEP_TEST_TMP") != "1":
        shutil.rmtree(_SESSION_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def t5_embedder():
    """The tiny T5 Instructor model (48-d, SentencePiece) on torch fp32: fast enough for every ingest test."""
    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    return InstructorEmbeddingFunction(str(T5_MODEL), batch_size=16, device="cpu", backend="torch", precision="fp32")


@pytest.fixture(scope="session")
def t5_onnx():
    """The tiny T5 on ONNX Runtime fp32: building it exports the model into the session's cache,
    so search subprocesses find the export and never import torch."""
    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    return InstructorEmbeddingFunction(str(T5_MODEL), batch_size=16, device="cpu", backend="onnx", precision="fp32")


@pytest.fixture(scope="session")
def minilm_embedder():
    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    return InstructorEmbeddingFunction(MINILM_MODEL, batch_size=16, device="cpu", backend="torch", precision="fp32")


@pytest.fixture(scope="session")
def milvus_server_process() -> Iterator[object]:
    if not milvus_server.is_available():
        pytest.skip(milvus_server.SKIP_REASON)
    # Authentication on: every server-backend test also proves the token path (root:Milvus).
    server = milvus_server.start_milvus_server(_SESSION_TMP / "milvus-server", auth_enabled=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["lite", "server"])
def backend(request, tmp_path) -> Backend:
    """A Milvus backend: a fresh Lite folder, or the session's real server."""
    if request.param == "lite":
        return Backend("lite", str(tmp_path / "milvus.db"))
    server = request.getfixturevalue("milvus_server_process")
    return Backend("server", server.uri, getattr(server, "token", "") or "", server)


@pytest.fixture
def lite(tmp_path) -> Backend:
    return Backend("lite", str(tmp_path / "milvus.db"))
