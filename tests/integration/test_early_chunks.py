"""The first group of sources chunked in a child process while the model loads (``ingest.early``).

Each run here loads its model inside ``run_ingest`` (that is when the child is used) and is
compared with a run that chunks in the stream's thread: the rows, their vectors and the skips
must be the same, whatever happened to the child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from milvus_ingest.ingest import early as early_module
from milvus_ingest.ingest import run_ingest
from milvus_ingest.ingest.early import EarlyChunks
from milvus_ingest.store import MilvusStore
from tests.support.cli_support import cli_env, write_config
from tests.support.corpus import MINILM_MODEL, REPO, T5_MODEL, sample_corpus, unique_name, write_corpus
from tests.support.snapshots import snapshot


def _corpus(root: Path) -> Path:
    corpus = sample_corpus(root, paragraphs=8)
    write_corpus(corpus, {
        "guide.md": "# Guide\n\nIntro text about lanterns.\n\n## Install\n\n" + "Run the installer twice. " * 40
                    + "\n\n## Use\n\n" + "Open the harbour ledger and read it. " * 30,
        "page.html": "<html><head><title>Page</title></head><body><h1>Falcons</h1>"
                     + "<p>Falcons cross the glacier near the tower.</p>" * 25 + "</body></html>",
    })
    # A parser error, a skip: named to come after a readable source (a leading one is the probe's).
    (corpus / "zz_broken.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(2000))
    return corpus


def _vectors(settings) -> dict[str, np.ndarray]:
    with MilvusStore(settings.milvus) as store:
        return {r["id"]: np.asarray(r["vector"], dtype=np.float32) for r in store._iterate(["vector"])}


def _run(settings, corpus: Path, early: str, monkeypatch) -> tuple[object, dict, dict]:
    monkeypatch.setenv(early_module.ENV, early)
    report = run_ingest(settings, [str(corpus)])
    return report, snapshot(settings), _vectors(settings)


@pytest.fixture
def children(monkeypatch) -> list[EarlyChunks]:
    """Every ``EarlyChunks`` a run starts, with the sources taken from it counted."""
    started: list[EarlyChunks] = []
    real_init, real_take = EarlyChunks.__init__, EarlyChunks.take

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.taken = 0
        started.append(self)

    def take(self, source):
        got = real_take(self, source)
        self.taken += got is not None
        return got

    monkeypatch.setattr(EarlyChunks, "__init__", init)
    monkeypatch.setattr(EarlyChunks, "take", take)
    return started


def _same_rows(a, b) -> None:
    report_a, rows_a, vectors_a = a
    report_b, rows_b, vectors_b = b
    assert rows_a == rows_b and len(rows_a) == report_a.chunks > 10
    skips = [sorted((s.source, s.reason) for s in report.skipped) for report in (report_a, report_b)]
    assert skips[0] == skips[1]
    assert any(s.source.endswith("broken.pdf") for s in report_a.skipped)
    eps = np.finfo(np.float32).eps
    for key, vector in vectors_a.items():  # the same tokens, so the same vectors, to float32 resolution
        np.testing.assert_allclose(vector, vectors_b[key], rtol=0, atol=16 * eps)


@pytest.mark.parametrize("model", [str(T5_MODEL), MINILM_MODEL], ids=["t5-sentencepiece", "minilm-wordpiece"])
def test_a_run_chunks_ahead_in_a_child_while_its_model_loads_and_writes_the_same_rows(
    lite, tmp_path, monkeypatch, children, model
):
    corpus = _corpus(tmp_path / "corpus")
    overrides = {"model__name": model, "model__backend": "torch", "model__precision": "fp32"}
    ahead = _run(lite.settings(**overrides), corpus, "1", monkeypatch)
    assert len(children) == 1, "no child was started"
    child = children[0]
    # The prediction from the model's folder held (tokenizer and limits), and every source it
    # was given came from it: all written ones, and the one it could not read.
    assert child.taken == len(ahead[0].new) + 1
    assert child._proc.returncode is not None  # ended with its group
    inline = _run(lite.settings(**overrides), corpus, "0", monkeypatch)
    assert len(children) == 1
    _same_rows(ahead, inline)


def test_a_prediction_the_loaded_model_does_not_share_is_never_used(lite, tmp_path, monkeypatch, children):
    """The model's own chunker decides: a child chunking with other limits is ended unused."""
    corpus = _corpus(tmp_path / "corpus")
    real = early_module.predict_spec
    monkeypatch.setattr(early_module, "predict_spec",
                        lambda settings: real(settings).__class__(**{**vars(real(settings)), "chunk_tokens": 40}))
    ahead = _run(lite.settings(), corpus, "1", monkeypatch)
    assert len(children) == 1 and children[0].taken == 0 and children[0]._proc.returncode is not None
    _same_rows(ahead, _run(lite.settings(), corpus, "0", monkeypatch))


def test_a_child_that_dies_leaves_the_rest_to_the_stream(lite, tmp_path, monkeypatch, children):
    """Killed after its first source (as an OOM kill would), the child's other sources are read
    and chunked in the stream's thread: none lost, none twice."""
    corpus = _corpus(tmp_path / "corpus")
    real_take = EarlyChunks.take  # the counting one

    def take_then_die(self, source):
        got = real_take(self, source)
        if self.taken == 1:  # killed, and its pipe gone with whatever it still said on it
            self._proc.kill()
            self._proc.wait()
            self._proc.stdout.close()
        return got

    monkeypatch.setattr(EarlyChunks, "take", take_then_die)
    ahead = _run(lite.settings(), corpus, "1", monkeypatch)
    assert len(children) == 1 and children[0].taken == 1
    _same_rows(ahead, _run(lite.settings(), corpus, "0", monkeypatch))


def test_no_child_where_it_cannot_help_and_an_idle_one_is_ended(lite, tmp_path, monkeypatch, children, t5_embedder):
    """No child for a loaded model (no load to hide), texts already in memory, one core (no idle
    one), or when turned off; a re-run with nothing to write ends the one it started."""
    from milvus_ingest.sources import TextDocument

    corpus = sample_corpus(tmp_path / "corpus")
    settings = lite.settings()
    monkeypatch.delenv(early_module.ENV, raising=False)
    assert run_ingest(settings, [str(corpus)], embedder=t5_embedder).chunks > 0
    docs = [TextDocument(source=f"mem/{i}", text="Lanterns by the harbour. " * 50) for i in range(3)]
    assert run_ingest(lite.settings(), documents=docs).chunks > 0
    monkeypatch.setenv(early_module.ENV, "0")
    assert run_ingest(lite.settings(), [str(corpus)]).chunks > 0
    monkeypatch.delenv(early_module.ENV)
    monkeypatch.setattr(early_module, "_cores", lambda: 1)
    assert run_ingest(lite.settings(), [str(corpus)]).chunks > 0
    assert children == []
    monkeypatch.setattr(early_module, "_cores", lambda: 2)
    report = run_ingest(settings, [str(corpus)])  # unchanged: nothing to chunk
    assert report.chunks == 0 and report.unchanged
    assert len(children) == 1 and children[0].taken == 0 and children[0]._proc.returncode is not None
    assert run_ingest(lite.settings(), [str(corpus)]).chunks > 0  # a small first run: it is used
    assert len(children) == 2 and children[1].taken == 5


def _children_marked(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"milvus_ingest.chunk_worker" in (entry / "cmdline").read_bytes() and \
                    marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_ingest_leaves_no_chunking_child_behind(tmp_path):
    """``kill -9`` of the ingest (here at its first encode) ends its child too, even one busy
    with a long source (it would otherwise chunk on for seconds before it noticed)."""
    corpus = _corpus(tmp_path / "corpus")
    words = "harbour lantern ledger falcon glacier compass tower meadow copper signal".split()
    paragraphs = (" ".join(words[(i + k) % 10] for k in range(40)) + "." for i in range(20000))
    (corpus / "zz_long.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")  # ~6 MB: ~8 s of chunking
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "m.db"), unique_name())
    marker = f"EARLY_TEST_{uuid.uuid4().hex}"
    proc = subprocess.run(
        [sys.executable, "-m", "flows.ingest", str(corpus), "--config", str(config), "--no-flow"],
        cwd=REPO, env=cli_env(FLOWS_CRASH_AT="encode:1", MILVUS_INGEST_EARLY_CHUNKING="1", **{marker: "1"}),
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-500:]
    deadline = time.monotonic() + 5
    while _children_marked(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _children_marked(marker) == []
