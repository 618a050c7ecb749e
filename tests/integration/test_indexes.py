"""A collection's indexes: a new one is indexed without waiting, a half-created one is repaired.

Both backends (``conftest.backend``): Lite loads a collection without an index, a server refuses
to, so a run killed between creating the collection and its index matters most there.
"""

from __future__ import annotations

import logging

import pytest

from milvus_ingest.ingest import collection_meta, run_ingest
from milvus_ingest.retrieval import search_questions
from milvus_ingest.store import MilvusStore, indexes
from milvus_ingest.store.schema import SPARSE_FIELD
from tests.support.corpus import sample_corpus


def _indexed_fields(settings) -> set[str]:
    with MilvusStore(settings.milvus) as store:
        fields = {"vector", SPARSE_FIELD}
        return {f for f in fields if store.client.list_indexes(store.collection, field_name=f)}


def test_a_new_collection_is_indexed_without_polling_the_build(backend, tmp_path, t5_embedder, monkeypatch):
    from pymilvus.client.grpc_handler import GrpcHandler

    polls: list[str] = []
    original = GrpcHandler.wait_for_creating_index

    def spy(self, collection_name, *args, **kwargs):
        polls.append(collection_name)
        return original(self, collection_name, *args, **kwargs)

    monkeypatch.setattr(GrpcHandler, "wait_for_creating_index", spy)
    settings = backend.settings()
    report = run_ingest(settings, [str(sample_corpus(tmp_path / "corpus"))], embedder=t5_embedder)
    assert report.exit_code == 0 and report.rows > 0
    assert settings.milvus.collection not in polls  # each poll began with a 0.5 s sleep
    with MilvusStore(settings.milvus) as store:
        info = store.client.describe_index(store.collection, "vector")
        assert (info["index_type"], info["metric_type"]) == (settings.milvus.index_type, settings.milvus.metric_type)
        bm25 = store.read_meta().bm25
    assert _indexed_fields(settings) == ({"vector", SPARSE_FIELD} if bm25 else {"vector"})


def test_a_collection_left_without_its_index_gets_it_on_the_next_run(backend, tmp_path, t5_embedder, caplog,
                                                                     monkeypatch):
    settings = backend.settings()
    corpus = sample_corpus(tmp_path / "corpus")

    def killed(*args, **kwargs):  # the process died right after creating the collection
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, MilvusStore(settings.milvus) as store:
        patch.setattr(indexes, "ensure_indexes", killed)
        with pytest.raises(KeyboardInterrupt):
            store.ensure_collection(collection_meta(settings, t5_embedder.dim))
        assert store.exists()
    assert _indexed_fields(settings) == set()

    with caplog.at_level(logging.WARNING, logger="milvus_ingest.store.indexes"):
        report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert report.exit_code == 0 and report.rows > 0
    assert any("has no index on vector" in r.getMessage() for r in caplog.records)
    with MilvusStore(settings.milvus) as store:
        bm25 = store.read_meta().bm25
    assert _indexed_fields(settings) == ({"vector", SPARSE_FIELD} if bm25 else {"vector"})
    hits = search_questions(settings, ["copper engine"], top_k=2, encoder=t5_embedder, mode="dense")[0]
    assert len(hits) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="milvus_ingest.store.indexes"):
        assert run_ingest(settings, [str(corpus)], embedder=t5_embedder).chunks == 0
    assert not caplog.records  # nothing missing any more: nothing created
