"""Preloading the question encoder on a thread: only from a cached export, never importing there.

Model: the tiny T5 Instructor in tests/fixtures, exported once per module into a temporary cache.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from milvus_ingest.config import ModelSettings
from milvus_ingest.encoders import preload
from milvus_ingest.encoders.onnx_engine import OnnxEncoder
from milvus_ingest.errors import ModelError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = FIXTURES.parents[1]
T5_MODEL = FIXTURES / "tiny-instructor-t5"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the T5 model's fp32 export."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    OnnxEncoder(T5_MODEL, cache_dir=cache)
    return cache


@pytest.fixture
def cache(exported: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MILVUS_INGEST_CACHE", str(exported))
    return exported


def _model(**changes) -> ModelSettings:
    return ModelSettings(name=str(T5_MODEL), query_instruction="Represent the question:", **changes)


def test_a_cached_export_is_preloaded_and_encodes_as_a_load_on_the_spot(cache):
    model = _model()
    folder = preload.cached_query_export(model)
    assert folder is not None and folder.parent == cache
    job = preload.QueryEncoderPreload(model)
    assert job.started
    encoder = job.result()
    assert (encoder.backend, encoder.precision, encoder.query_instruction) == ("onnx", "fp32", "Represent the question:")
    direct = OnnxEncoder(T5_MODEL, cache_dir=cache)
    questions = ["Where is the copper engine?", "Which glacier?"]
    np.testing.assert_array_equal(encoder.encode_array(questions, "Q: "), direct.encode_array(questions, "Q: "))
    encoder.set_query_instruction("Represent the collection's question:")  # what the Searcher does
    assert encoder.query_instruction == encoder.instructions.query == "Represent the collection's question:"


@pytest.mark.parametrize(
    "changes",
    [
        {"backend": "torch"},  # questions on torch: loading imports it
        {"device": "cuda"},  # a GPU device: questions may run on torch there
        {"precision": "int8"},  # an int8 export that is not in the cache yet: its first use makes it
    ],
)
def test_no_preload_where_loading_would_import_or_export(cache, changes):
    job = preload.QueryEncoderPreload(_model(**changes))
    assert not job.started and job.result() is None


def test_no_preload_without_the_export_or_the_model_at_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("MILVUS_INGEST_CACHE", str(tmp_path / "empty"))
    assert preload.cached_query_export(_model()) is None  # the first search exports it, on the spot
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert preload.cached_query_export(ModelSettings(name="nobody-here/no-such-model")) is None  # no download


def test_a_broken_cache_entry_is_left_to_the_load_on_the_spot(cache, tmp_path, monkeypatch):
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    monkeypatch.setenv("MILVUS_INGEST_CACHE", str(copy))
    folder = preload.cached_query_export(_model())
    (folder / "model.onnx").write_bytes(b"truncated")  # the size no longer matches the manifest
    assert preload.cached_query_export(_model()) is None


def test_an_error_on_the_thread_is_raised_to_the_caller(cache, monkeypatch):
    def broken(*args, **kwargs):
        raise ModelError("the model folder went away")

    monkeypatch.setattr(preload.InstructorEmbeddingFunction, "from_settings", broken)
    job = preload.QueryEncoderPreload(_model())
    assert job.started
    with pytest.raises(ModelError, match="went away"):
        job.result()
    assert job.result() is None  # raised once; a second ask loads on the spot (the caller's path)


def test_the_loader_thread_imports_nothing(cache):
    """Everything the load needs is imported before the thread starts (audit hook on imports)."""
    script = (
        "import sys, threading\n"
        "seen = []\n"
        "sys.addaudithook(lambda event, args: event == 'import' and threading.current_thread().name"
        " == 'query-encoder-preload' and seen.append(args[0]))\n"
        "from milvus_ingest.config import ModelSettings\n"
        "from milvus_ingest.encoders.preload import QueryEncoderPreload\n"
        f"job = QueryEncoderPreload(ModelSettings(name={str(T5_MODEL)!r}))\n"
        "assert job.started and job.result().encode_array(['a question'], 'Q: ').shape == (1, 48)\n"
        "print(sorted(seen))\n"
    )
    env = {"MILVUS_INGEST_CACHE": str(cache), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
