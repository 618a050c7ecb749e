"""Search: typed hits, the collection's query instruction, filters, top-k, refusals, and the CLI.

Search-function tests run on both backends (``conftest.backend``); the command line runs as a
real subprocess on Milvus Lite, against a collection a fixture ingested with the tiny T5 model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from milvus_ingest.errors import BadFilterError, CollectionMismatchError, ConfigError, StoreError
from milvus_ingest.ingest import collection_meta, run_ingest
from milvus_ingest.retrieval import Hit, Searcher, search_params_for, search_questions
from milvus_ingest.store import MilvusStore, escape_string
from tests.support.backend import Backend
from tests.support.cli_support import run_module, write_config
from tests.support.corpus import MINILM_MODEL, T5_MODEL, sample_corpus, unique_name, write_corpus

QUESTIONS = ["Which part speaks of the copper engine?", "Where is the glacier near the harbour?"]


class SpyEncoder:
    """Wraps an embedder and records the instruction of every call."""

    def __init__(self, inner):
        self.inner = inner
        self.model_name = inner.model_name
        self.dim = inner.dim
        self.tokenizer = inner.tokenizer
        self.instructions: list[str] = []

    def encode_array(self, texts, instruction):
        self.instructions.append(instruction)
        return self.inner.encode_array(texts, instruction)


@pytest.fixture
def ingested(backend, tmp_path, t5_embedder):
    corpus = sample_corpus(tmp_path / "corpus")
    settings = backend.settings(model__query_instruction="Represent the sample question for retrieval:")
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    return settings, corpus


def _source_text(source: str) -> str:
    return Path(source).read_text(encoding="utf-8")


def test_hits_are_typed_ranked_and_point_into_their_source(ingested, t5_embedder):
    settings, _ = ingested
    results = search_questions(settings, QUESTIONS, top_k=4, encoder=t5_embedder)
    assert len(results) == 2
    for hits in results:
        assert len(hits) == 4 and all(isinstance(h, Hit) for h in hits)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)  # COSINE: best first
        assert len({h.id for h in hits}) == 4
        for hit in hits:
            assert _source_text(hit.source)[hit.start : hit.end] == hit.text
            assert set(hit.as_dict()) == {"id", "score", "source", "start", "end", "text", "title", "section", "page", "format"}


def test_questions_use_the_query_instruction_recorded_on_the_collection(ingested, t5_embedder):
    settings, _ = ingested
    other = settings.model_copy(deep=True)
    other.model.query_instruction = "Represent a different question:"
    spy = SpyEncoder(t5_embedder)
    with Searcher(other, encoder=spy) as searcher:
        assert searcher.query_instruction == "Represent the sample question for retrieval:"
        hits = searcher.search(QUESTIONS, top_k=2, mode="dense")  # compared with a direct dense search
    assert spy.instructions == ["Represent the sample question for retrieval:"]  # both questions, one batch
    # The same vectors searched directly give the same hits: nothing else was mixed in.
    vectors = t5_embedder.encode_array(QUESTIONS, "Represent the sample question for retrieval:")
    with MilvusStore(settings.milvus) as store:
        direct = store.search(vectors, top_k=2)
    assert [[h.id for h in row] for row in hits] == [[d["id"] for d in row] for row in direct]


def test_a_source_filter_returns_only_that_source(ingested, t5_embedder):
    settings, corpus = ingested
    hostile = write_corpus(corpus, {'odd "name" \\ here.txt': "Copper engines and glaciers, a hostile name."})
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    for path in [corpus / "doc1.md", hostile / 'odd "name" \\ here.txt']:
        source = str(path.resolve())
        with MilvusStore(settings.milvus) as store:
            stored = len(store.query_source(source))
        hits = search_questions(
            settings, QUESTIONS[:1], top_k=50, filter_expr=f"source == {escape_string(source)}", encoder=t5_embedder
        )[0]
        assert hits and {h.source for h in hits} == {source}
        assert len(hits) == stored  # everything of that source, nothing else


def test_top_k_and_extra_output_fields(ingested, t5_embedder):
    settings, _ = ingested
    with Searcher(settings, encoder=t5_embedder) as searcher:
        total = searcher.store.count()
        assert [len(r) for r in searcher.search(QUESTIONS, top_k=1)] == [1, 1]
        assert [len(r) for r in searcher.search(QUESTIONS, top_k=3)] == [3, 3]
        assert [len(r) for r in searcher.search(QUESTIONS, top_k=total + 50)] == [total, total]
        hit = searcher.search(QUESTIONS[:1], top_k=1, output_fields=["source_hash", "n_chunks"])[0][0]
        assert set(hit.fields) == {"source_hash", "n_chunks"} and len(hit.fields["source_hash"]) == 64
        with pytest.raises(ConfigError, match="--top-k"):
            searcher.search(QUESTIONS, top_k=0)
        with pytest.raises(ConfigError, match="unknown output field"):
            searcher.search(QUESTIONS, top_k=1, output_fields=["vector"])
        with pytest.raises(ConfigError, match="question 2 is empty"):
            searcher.search(["fine", "  "], top_k=1)


def test_a_question_longer_than_the_model_reads_is_searched_with_a_warning(ingested, t5_embedder, caplog):
    settings, _ = ingested
    limit = t5_embedder.max_seq_length
    long_question = " ".join(["copper engine"] * limit)  # well over the limit in any tokenizer
    caplog.set_level(logging.WARNING, logger="milvus_ingest")
    results = search_questions(settings, [QUESTIONS[0], long_question], top_k=2, encoder=t5_embedder)
    assert [len(hits) for hits in results] == [2, 2]  # still answered, from its first tokens
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("question 2 is ")
    assert f"reads its first {limit}" in warnings[0]
    caplog.clear()
    search_questions(settings, QUESTIONS, top_k=2, encoder=t5_embedder)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_another_model_is_refused_before_it_is_loaded(ingested, t5_embedder, monkeypatch):
    settings, _ = ingested
    other = settings.model_copy(deep=True)
    other.model.name = MINILM_MODEL

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded for a collection it cannot search")

    monkeypatch.setattr("milvus_ingest.retrieval.load_query_encoder", no_model)
    with pytest.raises(CollectionMismatchError) as err:
        search_questions(other, QUESTIONS, top_k=2)
    message = str(err.value)
    assert str(T5_MODEL) in message and MINILM_MODEL in message and "48-d" in message

    class WrongDim:  # same name, other dimension: refused as well
        model_name = str(T5_MODEL)
        dim = 384

    with pytest.raises(CollectionMismatchError, match="384-d"):
        search_questions(settings, QUESTIONS, top_k=2, encoder=WrongDim())


def test_missing_and_empty_collections_and_bad_filters_are_clear_errors(backend, t5_embedder):
    settings = backend.settings()
    with pytest.raises(StoreError, match="does not exist"):
        search_questions(settings, QUESTIONS, encoder=t5_embedder)
    with MilvusStore(settings.milvus) as store:
        store.ensure_collection(collection_meta(settings, t5_embedder.dim))
    with pytest.raises(StoreError, match="is empty"):
        search_questions(settings, QUESTIONS, encoder=t5_embedder)

    run_ingest(settings, documents=_docs(), embedder=t5_embedder)
    for bad in ['sourc == "x"', "source ==", 'start_char > "a"']:
        with pytest.raises(BadFilterError) as err:
            search_questions(settings, QUESTIONS, filter_expr=bad, encoder=t5_embedder)
        assert str(err.value).startswith(f"bad --filter expression {bad!r}: ")
        assert "\n" not in str(err.value)


def _docs():
    from milvus_ingest.sources import TextDocument

    return [TextDocument("a", "Copper engines hum in the harbour."), TextDocument("b", "Glaciers move slowly.")]


def test_questions_encoded_on_onnx_match_the_ingest_vectors(ingested, t5_embedder):
    """The search's own encoder (ONNX Runtime) and the torch fp32 ingest agree to float32 resolution."""
    settings, _ = ingested
    with Searcher(settings) as searcher:  # no encoder given: the search loads its own
        assert (searcher.encoder.backend, searcher.encoder.precision) == ("onnx", "fp32")
        got = searcher.encode(QUESTIONS)
        hits = searcher.search(QUESTIONS, top_k=3)
    want = t5_embedder.encode_array(QUESTIONS, "Represent the sample question for retrieval:")
    assert got.dtype == np.float32 and np.abs(got - want).max() <= 1e-5
    expected = search_questions(settings, QUESTIONS, top_k=3, encoder=t5_embedder)
    assert [[h.id for h in row] for row in hits] == [[h.id for h in row] for row in expected]


def test_the_question_encoder_loads_on_a_thread_while_milvus_is_checked(ingested, t5_onnx, monkeypatch):
    """With the export cached, the encoder is loaded beside the connection, then set to the
    collection's query instruction; the hits are those of an encoder loaded on the spot."""
    import threading

    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    settings, _ = ingested
    other = settings.model_copy(deep=True)
    other.model.query_instruction = "Represent a different question:"
    loads: list[str] = []
    original = InstructorEmbeddingFunction.from_settings.__func__

    def spy(cls, *args, **kwargs):
        loads.append(threading.current_thread().name)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(InstructorEmbeddingFunction, "from_settings", classmethod(spy))
    with Searcher(other) as searcher:
        hits = searcher.search(QUESTIONS, top_k=3, mode="dense")
        assert searcher.encoder.query_instruction == "Represent the sample question for retrieval:"
    with Searcher(other, preload=False) as searcher:
        on_the_spot = searcher.search(QUESTIONS, top_k=3, mode="dense")
    assert loads == ["query-encoder-preload", "MainThread"]
    assert [[h.id for h in row] for row in hits] == [[h.id for h in row] for row in on_the_spot]
    for row, same in zip(hits, on_the_spot):
        assert [h.score for h in row] == pytest.approx([h.score for h in same], rel=1e-6)
    if settings.milvus.is_lite:  # Lite has BM25; BM25 needs no model: none is loaded, on a thread or otherwise
        loads.clear()
        assert search_questions(settings, QUESTIONS, top_k=1, mode="bm25")[0]
        from flows.search import answer_questions

        assert answer_questions(settings, QUESTIONS, top_k=1, mode="bm25")[0].hits
        assert loads == []


def test_a_collection_written_in_fp32_takes_int8_rows_and_int8_questions(backend, tmp_path):
    """The collection records the model and instructions, not the precision: engines mix freely."""
    corpus = sample_corpus(tmp_path / "corpus")
    fp32 = backend.settings(model__backend="torch", model__precision="fp32")
    first = run_ingest(fp32, [str(corpus)])
    assert (first.engine["backend"], first.engine["precision"]) == ("torch", "fp32")
    more = write_corpus(tmp_path / "more", {"violin.md": "A violin in the granite tower. " * 6})
    int8 = backend.settings(fp32.milvus.collection, model__backend="onnx", model__precision="int8")
    second = run_ingest(int8, [str(more)])  # appended, not refused
    assert (second.engine["backend"], second.engine["precision"]) == ("onnx", "int8")
    assert second.chunks > 0 and second.rows == first.rows + second.chunks
    with MilvusStore(fp32.milvus) as store:
        meta = json.loads(store.read_meta().to_json())
        rows = store.query_source(str((corpus / "doc1.md").resolve()), fields=("id", "text"))
    assert "precision" not in meta and "backend" not in meta
    with Searcher(int8) as searcher:
        assert (searcher.encoder.backend, searcher.encoder.precision) == ("onnx", "int8")
        texts = [r["text"] for r in rows[:4]]
        own = searcher.search_vectors(searcher.encoder.encode_array(texts, fp32.model.instructions.doc), top_k=1)
        assert [row[0].id for row in own] == [r["id"] for r in rows[:4]]  # int8 question, fp32 document
        violin = "A violin in the granite tower. " * 6  # the tiny T5 is random: search a row's own text
        vector = searcher.encoder.encode_array([violin.strip()], int8.model.instructions.doc)
        hit = searcher.search_vectors(vector, top_k=1)[0][0]  # int8 question, int8 document
    assert hit.source == str((more / "violin.md").resolve())


def test_the_first_search_exports_once_and_later_ones_import_no_torch(cli_collection, tmp_path):
    config, _, _ = cli_collection
    cache = tmp_path / "fresh-cache"
    imported = []
    for _ in range(2):
        result = run_module("flows.search", QUESTIONS[0], "--config", str(config), "--json",
                            MILVUS_INGEST_CACHE=str(cache), PYTHONPROFILEIMPORTTIME="1")
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)["hits"]) == 5
        imported.append({line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                         if line.startswith("import time:")})
    assert "torch" in imported[0]  # the export
    assert len(list(cache.iterdir())) == 1  # one entry: the fp32 export
    assert not imported[1] & {"torch", "transformers", "sentence_transformers", "onnx", "prefect", "sklearn"}


def test_search_params_fit_the_index():
    assert search_params_for("HNSW", {"ef": 64}, 300) == {"ef": 300}
    assert search_params_for("HNSW", {"ef": 512}, 10) == {"ef": 512}
    assert search_params_for("HNSW", None, 5) == {"ef": 64}
    assert search_params_for("IVF_FLAT", None, 5) == {"nprobe": 16}
    assert search_params_for("FLAT", None, 5) == {}


# -- the command line ----------------------------------------------------------------------
@pytest.fixture
def cli_collection(lite, tmp_path, t5_embedder, t5_onnx):
    """A Lite db ingested in-process with the tiny T5 model, and a YAML config that points at it
    (the model's ONNX export is in the session's cache: a search process needs no torch)."""
    corpus = sample_corpus(tmp_path / "corpus")
    collection = unique_name()
    run_ingest(lite.settings(collection), [str(corpus)], embedder=t5_embedder)
    config = write_config(tmp_path / "c.yaml", lite.uri, collection, milvus={"timeout": 5, "retries": 0})
    return config, corpus, collection


def _one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert result.stdout == ""
    return lines[0]


def test_cli_json_prints_one_object_per_question_with_a_context(cli_collection):
    config, corpus, _ = cli_collection
    result = run_module(
        "flows.search",
        *QUESTIONS,
        "--config",
        str(config),
        "--top-k",
        "3",
        "--json",
        "--context",
        "--budget",
        "96",
        PYTHONPROFILEIMPORTTIME="1",
    )
    assert result.returncode == 0, result.stderr
    imported = {
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "numpy" in imported and "pymilvus" in imported
    assert not imported & {"torch", "transformers", "sentence_transformers", "prefect", "sklearn"}  # the fast path
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for question, line in zip(QUESTIONS, lines):
        answer = json.loads(line)
        assert answer["question"] == question
        assert len(answer["hits"]) == 3
        for hit in answer["hits"]:
            assert set(hit) == {"id", "score", "source", "start", "end", "text", "title", "section", "page", "format"}
            assert hit["source"].startswith(str(corpus.resolve()))
            assert _source_text(hit["source"])[hit["start"] : hit["end"]] == hit["text"]
        context = answer["context"]
        assert 0 < context["tokens"] <= 96 and context["text"].startswith("[1] ")
        assert {p["source"] for p in context["passages"]} <= {h["source"] for h in answer["hits"]}


def test_cli_errors_are_one_line_and_exit_2(cli_collection, tmp_path, t5_embedder):
    config, _, collection = cli_collection
    uri = yaml.safe_load(config.read_text())["milvus"]["uri"]
    missing = run_module("flows.search", "q?", "--config", str(config), "--collection", "nope")
    assert missing.returncode == 2 and "'nope' does not exist" in _one_line_error(missing)

    empty = Backend("lite", str(tmp_path / "empty.db")).settings(unique_name())
    with MilvusStore(empty.milvus) as store:
        store.ensure_collection(collection_meta(empty, t5_embedder.dim))
    result = run_module(
        "flows.search",
        "q?",
        "--config",
        str(config),
        "--uri",
        empty.milvus.uri,
        "--collection",
        empty.milvus.collection,
    )
    assert result.returncode == 2 and "is empty" in _one_line_error(result)

    bad = run_module("flows.search", "q?", "--config", str(config), "--filter", 'sourc == "x"')
    assert bad.returncode == 2
    assert _one_line_error(bad).startswith("error: bad --filter expression 'sourc == \"x\"': unknown field")

    other = write_config(tmp_path / "m.yaml", uri, collection, model={"name": MINILM_MODEL})
    mismatch = run_module("flows.search", "q?", "--config", str(other))
    assert mismatch.returncode == 2 and "was built with model" in _one_line_error(mismatch)

    down = run_module("flows.search", "q?", "--config", str(config), "--uri", "http://127.0.0.1:9")
    assert down.returncode == 2 and "127.0.0.1:9" in _one_line_error(down)


def test_the_flow_returns_json_safe_answers_and_publishes_the_hits(cli_collection, monkeypatch):
    import io

    from flows.search import SearchParams, _answers_from_dicts, print_answers, search

    config, _, _ = cli_collection
    artifacts: dict[str, object] = {}
    monkeypatch.setattr(
        "prefect.artifacts.create_table_artifact", lambda table, key, **kw: artifacts.setdefault(key, table)
    )
    params = SearchParams(questions=QUESTIONS, config=str(config), top_k=2, context=True, budget_tokens=64)
    results = search.fn(params)  # the flow's body, without starting a Prefect server
    assert json.loads(json.dumps(results)) == results and len(results) == 2
    assert [len(r["hits"]) for r in results] == [2, 2] and all(r["context"]["tokens"] <= 64 for r in results)
    assert [row["rank"] for row in artifacts["search-hits"]] == [1, 2, 1, 2]

    out = io.StringIO()  # what --flow prints is rebuilt from those dicts
    print_answers(_answers_from_dicts(results), as_json=False, stream=out)
    assert out.getvalue().count("-- context:") == 2 and results[0]["context"]["text"] in out.getvalue()
