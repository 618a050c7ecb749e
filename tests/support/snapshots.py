"""A collection's rows as comparable data, and a clean ingest to compare them with.

"Converges" is checked the strict way: after any sequence of runs, the collection equals a clean
ingest of the current sources, row by row (same ids, same text, same offsets).
"""

from __future__ import annotations

from milvus_ingest.ingest import run_ingest
from milvus_ingest.store import MilvusStore
from tests.support.corpus import unique_name


def snapshot(settings) -> dict[str, tuple]:
    with MilvusStore(settings.milvus) as store:
        rows = list(store._iterate(["text", "source", "chunk_index", "start_char", "end_char", "source_hash", "n_chunks"]))
    return {r["id"]: (r["text"], r["source"], r["chunk_index"], r["start_char"], r["end_char"], r["source_hash"]) for r in rows}


def clean_snapshot(backend, settings, specs, embedder) -> dict[str, tuple]:
    clean = settings.model_copy(deep=True)
    clean.milvus.collection = unique_name()
    run_ingest(clean, specs, embedder=embedder)
    return snapshot(clean)
