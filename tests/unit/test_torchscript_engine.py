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
import threading
from pathlib import Path

import numpy as np
import pytest

from milvus_ingest.encoders import export, torch_export
from milvus_ingest.encoders.engines import build_engine, decide_engine
from milvus_ingest.encoders.torch_engine import TorchEngine
from milvus_ingest.encoders.torchscript_engine import TorchScriptEncoder, auto_workers, split_threads
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


# -- batches side by side (encoders/pool.py) ------------------------------------------------
F32 = float(np.finfo(np.float32).eps)


def _texts(n: int) -> list[str]:
    words = "harbour copper signal lantern river meadow quarry beacon".split()
    return [" ".join(words[(i + k) % len(words)] for k in range(1 + i % 13)) for i in range(n)]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_two_batches_at_a_time_give_the_vectors_of_one(tmp_path, precision):
    """Rows do not depend on which worker, or how many threads, encoded their batch."""
    texts = _texts(45)  # 23 batches of 2, the last short: enough for the pool
    one = TorchScriptEncoder(T5_MODEL, precision, batch_size=2, cache_dir=tmp_path, workers=1)
    two = TorchScriptEncoder(T5_MODEL, precision, batch_size=2, cache_dir=tmp_path, workers=2)
    assert one.workers == 1 and two.workers == 2
    a, b = one.encode_array(texts, "Represent the text:"), two.encode_array(texts, "Represent the text:")
    assert two._workers is not None  # it ran on the pool
    assert a.shape == b.shape == (45, one.dim)
    np.testing.assert_allclose(b, a, rtol=0, atol=16 * F32)


def test_each_worker_runs_on_its_share_and_the_process_setting_stays(tmp_path):
    """Workers set torch's threads for themselves only: the caller's thread and threads started
    later keep the process's setting (a QA app's own torch work is not slowed)."""
    import torch

    before = torch.get_num_threads()
    try:
        encoder = TorchScriptEncoder(T5_MODEL, "fp32", threads=3, batch_size=2, cache_dir=tmp_path, workers=2)
        assert encoder.worker_threads == [2, 1]
        encoder.encode_array(_texts(8), "")  # four batches: the pool starts
        meet = threading.Barrier(2, timeout=10)
        shares = encoder._batch_pool().map(lambda _: (meet.wait(), torch.get_num_threads())[1], range(2))
        assert sorted(shares) == [1, 2]
        assert torch.get_num_threads() == 3
        fresh: list[int] = []
        thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert fresh == [3]
    finally:
        torch.set_num_threads(before)


def test_a_call_of_few_batches_runs_in_the_callers_thread_on_every_thread(tmp_path, monkeypatch):
    """A question, or a small re-run's window, is not handed to workers with half the cores each:
    one would idle while the other ends the last batch at half speed."""
    encoder = TorchScriptEncoder(T5_MODEL, "fp32", batch_size=2, cache_dir=tmp_path, workers=2)
    where: list[str] = []
    real_run = TorchScriptEncoder._run
    monkeypatch.setattr(
        TorchScriptEncoder, "_run", lambda self, feeds: (where.append(threading.current_thread().name), real_run(self, feeds))[1]
    )
    few = 2 * (encoder.POOL_MIN_BATCHES * 2 - 1)  # one batch short of the pool
    encoder.encode_array(_texts(few), "")
    assert where == [threading.current_thread().name] * (few // 2)
    where.clear()
    encoder.encode_array(_texts(few + 2), "")
    assert len(where) == few // 2 + 1 and set(where) <= {"torch-encoder-0", "torch-encoder-1"}


def test_a_small_call_goes_to_the_workers_when_another_follows_or_they_are_busy(tmp_path, monkeypatch):
    """A stream's first window (another follows, filling the workers' tail) and a call made while
    the workers are still on one (it would run on their cores beside them) go to the workers,
    a batch per worker at least; one chunk goes as one batch, never as an empty one."""
    encoder = TorchScriptEncoder(T5_MODEL, "fp32", batch_size=2, cache_dir=tmp_path, workers=2)
    alone = TorchScriptEncoder(T5_MODEL, "fp32", batch_size=2, cache_dir=tmp_path, workers=1)
    where: list[tuple[str, int]] = []
    real_run = TorchScriptEncoder._run
    release = threading.Event()

    def run(self, feeds):
        where.append((threading.current_thread().name, len(feeds["input_ids"])))
        if feeds["input_ids"].shape[1] > 40:  # the long text below: held until released
            release.wait(10)
        return real_run(self, feeds)

    monkeypatch.setattr(TorchScriptEncoder, "_run", run)
    workers = {"torch-encoder-0", "torch-encoder-1"}
    texts = _texts(4)
    got = encoder.submit_array(texts, "", followed=True).result()
    assert {name for name, _ in where} <= workers and sorted(n for _, n in where) == [2, 2]
    np.testing.assert_allclose(got, alone.encode_array(texts, ""), rtol=0, atol=16 * F32)
    where.clear()
    busy = encoder.submit_array(["word " * 60] * 8 + texts * 3, "")  # 10 batches, pooled; its long ones wait
    assert encoder._workers.busy()
    small = encoder.submit_array(texts[:1], "")  # one chunk, while the workers are busy
    release.set()
    assert busy.result().shape == (20, encoder.dim) and small.result().shape == (1, encoder.dim)
    assert {name for name, _ in where} <= workers and sorted(n for _, n in where)[0] == 1
    assert not encoder._workers.busy()
    where.clear()
    encoder.encode_array(texts, "")  # nothing follows, the workers idle: here, on every thread
    assert {name for name, _ in where} == {threading.current_thread().name}


def test_a_pooled_call_is_cut_into_batches_the_workers_share_evenly(tmp_path, monkeypatch):
    """Nine batches' worth on two workers goes as ten smaller batches, none over batch_size, so
    neither worker ends the call alone; the vectors are those of one batch at a time."""
    encoder = TorchScriptEncoder(T5_MODEL, "fp32", batch_size=2, cache_dir=tmp_path, workers=2)
    alone = TorchScriptEncoder(T5_MODEL, "fp32", batch_size=2, cache_dir=tmp_path, workers=1)
    texts = [f"passage {i} " + "word " * (i % 7) for i in range(17)]
    expected = alone.encode_array(texts, "Represent the passage: ")
    sizes: list[int] = []
    real_run = TorchScriptEncoder._run
    monkeypatch.setattr(
        TorchScriptEncoder, "_run", lambda self, feeds: (sizes.append(len(feeds["input_ids"])), real_run(self, feeds))[1]
    )
    got = encoder.encode_array(texts, "Represent the passage: ")
    assert sorted(sizes, reverse=True) == [2] * 7 + [1] * 3
    np.testing.assert_allclose(got, expected, rtol=0, atol=16 * F32)


def test_a_new_thread_count_is_shared_among_the_workers_again(tmp_path, request):
    import torch

    before = torch.get_num_threads()
    request.addfinalizer(lambda: torch.set_num_threads(before))
    encoder = TorchScriptEncoder(T5_MODEL, "fp32", threads=2, batch_size=2, cache_dir=tmp_path)
    expected = encoder.encode_array(_texts(8), "")
    encoder.set_threads(1)
    assert (encoder.workers, encoder.worker_threads) == (1, [1])
    np.testing.assert_allclose(encoder.encode_array(_texts(8), ""), expected, rtol=0, atol=16 * F32)
    encoder.set_threads(4)
    assert (encoder.workers, encoder.worker_threads) == (2, [2, 2])
    meet = threading.Barrier(2, timeout=10)
    assert encoder._batch_pool().map(lambda _: (meet.wait(), torch.get_num_threads())[1], range(2)) == [2, 2]


@pytest.mark.parametrize(
    ("threads", "workers", "shares"),
    [(1, 1, [1]), (2, 2, [1, 1]), (3, 2, [2, 1]), (16, 2, [8, 8]), (2, 4, [1, 1, 1, 1])],
)
def test_threads_are_shared_among_workers(threads, workers, shares):
    assert split_threads(threads, workers) == shares


def test_two_workers_from_two_threads_up():
    assert [auto_workers(n) for n in (1, 2, 3, 16)] == [1, 2, 2, 2]
