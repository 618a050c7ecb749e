"""A collection's indexes: created without pymilvus's half-second polls, and put back when missing.

``MilvusClient.create_collection(index_params=…)`` creates each index and then polls its state,
sleeping 0.5 s before the first look: a new collection with a vector and a BM25 index cost every
first run a second of doing nothing.  A new collection is empty, so Milvus has its indexes
finished as soon as it accepts them; they are created without the wait (``sync=False``).

A run killed between creating the collection and its indexes leaves a collection without them
(a server then refuses to load it); the next run creates what is missing, and waits for that
build, since such a collection may hold rows by then.  This module must never drop or rebuild
an index that exists: its type and parameters are the ones the collection was built with.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from milvus_ingest.config import MilvusSettings
from milvus_ingest.store.schema import SPARSE_FIELD, CollectionMeta

log = logging.getLogger(__name__)


class MilvusStore(Protocol):
    """What this module needs of ``milvus.MilvusStore`` (named apart to keep imports one-way)."""

    settings: MilvusSettings
    client: Any
    collection: str

    def _call(self, fn: Any, what: str) -> Any: ...


def wanted_indexes(store: MilvusStore, meta: CollectionMeta) -> list[tuple[str, dict[str, Any]]]:
    """``(field, add_index arguments)`` for every index a collection of ``meta`` has."""
    settings = store.settings
    wanted: list[tuple[str, dict[str, Any]]] = [
        ("vector", {"index_type": settings.index_type, "metric_type": meta.metric_type or settings.metric_type,
                    "params": dict(settings.index_params)}),
    ]
    if meta.bm25:
        wanted.append((SPARSE_FIELD, {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "BM25"}))
    return wanted


def _indexed(store: MilvusStore, field: str) -> bool:
    timeout = store.settings.timeout
    names = store._call(lambda: store.client.list_indexes(store.collection, field_name=field, timeout=timeout),
                        f"list_indexes on {field}")
    return bool(names)


def ensure_indexes(store: MilvusStore, meta: CollectionMeta, new: bool) -> list[str]:
    """Create the indexes ``meta`` calls for that the collection lacks (all of them when ``new``:
    it was just created, empty); the fields indexed now."""
    missing = [(field, args) for field, args in wanted_indexes(store, meta) if new or not _indexed(store, field)]
    if not missing:
        return []
    fields = [field for field, _ in missing]
    if not new:
        log.warning("collection %r has no index on %s (a run stopped while creating it): creating it now",
                    store.collection, ", ".join(fields))
    params = store.client.prepare_index_params()
    for field, args in missing:
        params.add_index(field_name=field, **args)
    timeout = store.settings.timeout
    store._call(
        lambda: store.client.create_index(store.collection, params, timeout=timeout, sync=not new),
        f"creating the index on {', '.join(fields)} of collection {store.collection!r}",
    )
    return fields
