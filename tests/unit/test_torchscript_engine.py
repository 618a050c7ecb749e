"""The torch engine's CPU runtime: a TorchScript trace in the export cache.

Parity with the reference vectors and with sentence-transformers is in test_engines.py (behind
``InstructorEmbeddingFunction``); here: the cache entries the traces live in (reused, one per
precision, rebuilt when damaged or when the model changes) and the fall-back to
sentence-transformers when a model cannot be traced.  Model: the tiny T5 Instructor.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from milvus_ingest.encoders import export, torch_export
from milvus_ingest.encoders.engines import build_engine, decide_engine
from milvus_ingest.encoders.torch_engine import TorchEngine
from milvus_ingest.encoders.torchscript_engine import TorchScriptEncoder
from milvus_ingest.errors import ModelError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T5_MODEL = FIXTURES / "tiny-instructor-t5"
PARITY = 1e-5


def _reference() -> tuple[list[list[str]], np.ndarray]:
    data = json.loads((FIXTURES / "tiny-instructor-t5.json").read_text(encoding="utf-8"))
    return data["pairs"], np.asarray(data["embeddings"], dtype=np.float32)


def _first_row(encoder: TorchScriptEncoder) -> np.ndarray:
    pairs, _ = _reference()
    return encoder.encode_array([pairs[0][1]], pairs[0][0])[0]


class _BuildCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[str] = []
        self._real = export.build_entry
        monkeypatch.setattr(export, "build_entry", self)

    def __call__(self, layout, precision, *args, **kwargs):
        self.calls.append(precision)
        return self._real(layout, precision, *args, **kwargs)


def test_one_entry_per_precision_reused_by_the_next_start(tmp_path, monkeypatch):
    counter = _BuildCounter(monkeypatch)
    fp32 = TorchScriptEncoder(T5_MODEL, "fp32", cache_dir=tmp_path)
    bf16 = TorchScriptEncoder(T5_MODEL, "bf16", cache_dir=tmp_path)
    assert counter.calls == ["torchscript-fp32", "torchscript-bf16"]
    assert fp32.entry.folder != bf16.entry.folder and fp32.entry.model_file.name == "model.pt"
    again = TorchScriptEncoder(T5_MODEL, "fp32", cache_dir=tmp_path)
    assert counter.calls == ["torchscript-fp32", "torchscript-bf16"]  # no new export
    assert again.entry.folder == fp32.entry.folder
    _, reference = _reference()
    assert np.abs(_first_row(again) - reference[0]).max() <= PARITY
    cosine = float(_first_row(bf16) @ reference[0])
    assert cosine >= 0.999, cosine


@pytest.mark.parametrize("damage", ["truncated", "garbage", "manifest"])
def test_a_damaged_trace_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    entry = TorchScriptEncoder(T5_MODEL, "fp32", cache_dir=tmp_path).entry
    graph = entry.model_file
    if damage == "truncated":
        graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    elif damage == "garbage":
        graph.write_bytes(os.urandom(graph.stat().st_size))  # same size: only loading it can tell
    else:
        (entry.folder / export.MANIFEST).write_text("{", encoding="utf-8")
    caplog.set_level(logging.WARNING, logger="milvus_ingest")
    rebuilt = TorchScriptEncoder(T5_MODEL, "fp32", cache_dir=tmp_path)
    assert any("rebuilding" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    _, reference = _reference()
    assert np.abs(_first_row(rebuilt) - reference[0]).max() <= PARITY


def test_a_changed_model_gets_a_new_trace(tmp_path):
    from safetensors.numpy import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(T5_MODEL, model)
    for path in model.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    before = TorchScriptEncoder(model, "fp32", cache_dir=tmp_path / "cache")
    row = _first_row(before)
    weights = model / "model.safetensors"
    save_file({name: array * 1.5 for name, array in load_file(str(weights)).items()}, str(weights))
    after = TorchScriptEncoder(model, "fp32", cache_dir=tmp_path / "cache")
    assert after.entry.folder != before.entry.folder
    assert not np.array_equal(_first_row(after), row)


def test_a_model_the_tracer_cannot_handle_runs_on_sentence_transformers(tmp_path, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise RuntimeError("tracer says no")

    monkeypatch.setattr(torch_export, "export_torchscript", refuse)
    caplog.set_level(logging.WARNING, logger="milvus_ingest")
    choice = decide_engine(str(T5_MODEL), "torch", "fp32", "cpu")
    engine = build_engine(choice, str(T5_MODEL), device="cpu", cache_dir=tmp_path)
    assert isinstance(engine, TorchEngine)
    assert any("could not be traced" in r.getMessage() and "tracer says no" in r.getMessage() for r in caplog.records)
    _, reference = _reference()
    pairs, _ = _reference()
    assert np.abs(engine.encode_array([pairs[0][1]], pairs[0][0])[0] - reference[0]).max() <= PARITY
    assert not list(tmp_path.glob(".tmp-*"))  # the failed export left no staging folder


def test_precisions_the_trace_does_not_run_are_one_line():
    with pytest.raises(ModelError, match="TorchScript precision 'fp16'"):
        TorchScriptEncoder(T5_MODEL, "fp16")


def test_the_profiling_calls_run_at_load_not_on_the_first_batch(tmp_path, monkeypatch):
    """TorchScript optimises a graph after its first calls; those run at load on a few tokens."""
    shapes: list[tuple[int, ...]] = []
    real_run = TorchScriptEncoder._run

    def spy(self, feeds):
        shapes.append(feeds["input_ids"].shape)
        return real_run(self, feeds)

    monkeypatch.setattr(TorchScriptEncoder, "_run", spy)
    encoder = TorchScriptEncoder(T5_MODEL, "fp32", cache_dir=tmp_path)
    warm_up = list(shapes)
    assert len(warm_up) == TorchScriptEncoder.WARM_UP_CALLS >= 2
    assert all(shape[0] == 1 and shape[1] <= 8 for shape in warm_up), warm_up
    _, reference = _reference()
    assert np.abs(_first_row(encoder) - reference[0]).max() <= PARITY  # warming up changes nothing
    assert len(shapes) == len(warm_up) + 1
