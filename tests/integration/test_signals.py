"""SIGINT and SIGTERM at any stage: one line, exit 130/143 within seconds, no process left, no row lost.

The signals are real, delivered to a real ``python -m flows.ingest`` at named points of the
pipeline (``FLOWS_SIGNAL_AT=point:N:SIG``) or from outside (to the process, or to its whole
process group as a terminal's Ctrl-C does).  The rerun is compared row by row with a clean
ingest; in flow mode no process started by the run (the temporary Prefect server) may outlive it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from milvus_ingest.config import load_settings
from milvus_ingest.ingest import run_ingest
from tests.support.backend import Backend
from tests.support.cli_support import cli_env, run_module, write_config
from tests.support.corpus import REPO, mutate_corpus, sample_corpus
from tests.support.snapshots import snapshot

SMALL_BATCHES = {"model": {"batch_size": 2, "window_batches": 8}, "milvus": {"write_batch_rows": 4}}


def _interrupted_line(result, code: int) -> None:
    assert result.returncode == code, (result.returncode, result.stderr[-800:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), result.stderr
    assert "rerun to finish; nothing is lost" in lines[0] and "Traceback" not in result.stderr


def _equals_clean_after_rerun(tmp_path, settings, corpus, t5_embedder) -> None:
    assert run_ingest(settings, [str(corpus)], embedder=t5_embedder).exit_code == 0
    clean = Backend("lite", str(tmp_path / "clean.db")).settings(collection=settings.milvus.collection)
    clean.model, clean.chunking, clean.milvus.write_batch_rows = settings.model, settings.chunking, 4
    run_ingest(clean, [str(corpus)], embedder=t5_embedder)
    assert snapshot(settings) == snapshot(clean)


@pytest.mark.parametrize(
    "point,code",
    [
        ("planned:1:SIGTERM", 143),
        ("encode:1:SIGINT", 130),
        ("between_batches:1:SIGTERM", 143),
        ("after_upsert:2:SIGTERM", 143),
        ("after_delete:1:SIGINT", 130),
    ],
)
def test_a_signal_at_any_stage_stops_cleanly_and_a_rerun_converges(tmp_path, t5_embedder, point, code):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "milvus.db"), **SMALL_BATCHES)
    settings = load_settings(config)
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    mutate_corpus(corpus)

    stopped = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", FLOWS_SIGNAL_AT=point)
    _interrupted_line(stopped, code)
    _equals_clean_after_rerun(tmp_path, settings, corpus, t5_embedder)


def _left_running(marker: str) -> list[int]:
    """Processes whose environment carries ``marker`` (this test's own PREFECT_HOME)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes() and int(environ.parent.name) != os.getpid():
                found.append(int(environ.parent.name))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.prefect
@pytest.mark.parametrize("to_group,signum", [(False, signal.SIGTERM), (True, signal.SIGINT)])
def test_a_flow_run_interrupted_ends_its_temporary_server(tmp_path, t5_embedder, to_group, signum):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=30)
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "milvus.db"), **SMALL_BATCHES)
    marker = str(tmp_path / "prefect-home-under-test")
    env = cli_env(PREFECT_HOME=marker)
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.ingest", str(corpus), "--config", str(config), "--flow"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _left_running(marker)[1:]:
            time.sleep(0.2)  # wait until the temporary Prefect server (a child) is up
        time.sleep(3)
        sent = time.monotonic()
        if to_group:
            os.killpg(process.pid, signum)  # a terminal's Ctrl-C reaches the whole group
        else:
            process.send_signal(signum)
        out, err = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signum, err[-800:]
    assert "interrupted: " in err and "Traceback" not in err
    assert took < 8, took
    time.sleep(0.5)
    assert _left_running(marker) == []
    settings = load_settings(config)
    _equals_clean_after_rerun(tmp_path, settings, corpus, t5_embedder)
