"""The read side of a collection for search: its record, its index, filter checks, hits.

Kept apart from ``milvus.py`` (which owns the connection and the writes) so each stays small;
both are the store, and nothing outside this package calls the client.  Every pymilvus failure
becomes one line: a ``BadFilterError`` for a filter Milvus cannot parse, else a ``StoreError``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from milvus_ingest.errors import BadFilterError, CollectionMismatchError, StoreError
from milvus_ingest.store.milvus import MilvusStore
from milvus_ingest.store.retry import is_transient, with_retries
from milvus_ingest.store.schema import META_PROPERTY, SPARSE_FIELD, CollectionMeta


@contextlib.contextmanager
def quiet_pymilvus() -> Iterator[None]:
    """pymilvus logs every failed RPC with a traceback at ERROR; our one line says it better."""
    logger = logging.getLogger("pymilvus")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def milvus_reason(exc: BaseException) -> str:
    """Milvus's parse error in one line: its first line plus its hint ("did you mean 'source'?")."""
    message = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    reason = lines[0]
    if len(lines) > 1 and "^" not in lines[-1] and lines[-1] != reason:
        reason = f"{reason}; {lines[-1]}"
    return reason[:300]


def search_params_for(index_type: str, params: dict[str, Any] | None, top_k: int) -> dict[str, Any]:
    """Search parameters that fit the index: HNSW's ``ef`` is raised to at least top-k.

    ``params`` None means defaults for the index type (HNSW ef=64, IVF nprobe=16, none for FLAT).
    """
    if params is None:
        params = {"ef": 64} if index_type == "HNSW" else {"nprobe": 16} if index_type.startswith("IVF") else {}
    params = dict(params)
    if index_type == "HNSW":
        params["ef"] = max(int(params.get("ef", 64)), top_k)
    return params


def read_search_meta(store: MilvusStore, configured_query_instruction: str) -> CollectionMeta:
    """The collection's recorded model, dim, metric and query instruction.

    A record written before the query instruction was kept falls back to the configured one.
    """
    meta = store.read_meta()
    if meta is not None:
        return meta
    info = with_retries(
        lambda: store.client.describe_collection(store.collection, timeout=store.settings.timeout),
        "describe_collection",
        retries=store.settings.retries,
        backoff_seconds=store.settings.retry_backoff_seconds,
    )
    raw = (info.get("properties") or {}).get(META_PROPERTY) or info.get("description") or ""
    try:
        data = json.loads(raw) if raw else {}
        data.setdefault("query_instruction", configured_query_instruction)
        return CollectionMeta(**{k: data[k] for k in CollectionMeta.__dataclass_fields__ if k in data})
    except (ValueError, TypeError, AttributeError):
        raise CollectionMismatchError(
            f"collection {store.collection!r} at {store.settings.uri} was not created by this pipeline "
            f"(no {META_PROPERTY} record): its model and query instruction are unknown; use another --collection"
        ) from None


def index_type(store: MilvusStore) -> str:
    """The index type the vector field was built with (the config's when Milvus does not say)."""
    try:
        with quiet_pymilvus():
            info = store.client.describe_index(
                store.collection, "vector", timeout=store.settings.timeout
            )
        return str((info or {}).get("index_type") or store.settings.index_type)
    except Exception:  # an index description is a nicety; the config's type is a fine default
        return store.settings.index_type


def check_filter(store: MilvusStore, filter_expr: str) -> None:
    """Ask Milvus to parse ``filter_expr`` (a one-row query) before any model is loaded."""
    if not filter_expr.strip():
        return
    try:
        with quiet_pymilvus():
            with_retries(
                lambda: store.client.query(
                    store.collection,
                    filter=filter_expr,
                    limit=1,
                    output_fields=["id"],
                    timeout=store.settings.timeout,
                ),
                "filter check",
                retries=store.settings.retries,
                backoff_seconds=store.settings.retry_backoff_seconds,
            )
    except Exception as exc:
        if is_transient(exc):
            raise StoreError(
                f"Milvus at {store.settings.uri}: filter check failed: {milvus_reason(exc)}"
            ) from None
        raise BadFilterError(f"bad --filter expression {filter_expr!r}: {milvus_reason(exc)}") from None


def search_hits(
    store: MilvusStore,
    vectors: np.ndarray,
    top_k: int,
    filter_expr: str,
    fields: Sequence[str],
    params: dict[str, Any],
) -> list[list[dict[str, Any]]]:
    """Raw dense hits per vector; a filter Milvus rejects at search time is a ``BadFilterError``."""
    return _filtered(filter_expr, lambda: store.search(vectors, top_k, filter_expr, fields, params))


def text_hits(
    store: MilvusStore, questions: Sequence[str], top_k: int, filter_expr: str, fields: Sequence[str]
) -> list[list[dict[str, Any]]]:
    """Raw BM25 hits per question, from the collection's full-text field (Milvus analyzes the
    question with the field's own analyzer).  Scores are BM25's, made positive (Lite negates them)."""
    store._ensure_loaded()
    raw = _filtered(filter_expr, lambda: store._call(
        lambda: store.client.search(
            store.collection, data=list(questions), anns_field=SPARSE_FIELD, limit=top_k, filter=filter_expr,
            output_fields=list(fields), search_params={"metric_type": "BM25"}, timeout=store.settings.timeout,
        ),
        "BM25 search",
    ))
    return [[{**hit, "distance": abs(float(hit.get("distance", 0.0)))} for hit in row] for row in raw]


def hybrid_hits(
    store: MilvusStore,
    vectors: np.ndarray,
    questions: Sequence[str],
    top_k: int,
    filter_expr: str,
    fields: Sequence[str],
    params: dict[str, Any],
    ranker: Any,
    candidates: int,
) -> list[list[dict[str, Any]]]:
    """Raw fused hits per question: ``candidates`` dense and ``candidates`` BM25 hits each, fused
    by ``ranker`` (a pymilvus ``RRFRanker`` or ``WeightedRanker``) down to ``top_k``."""
    from pymilvus import AnnSearchRequest

    store._ensure_loaded()
    limit = max(candidates, top_k)
    dense = AnnSearchRequest(
        data=[np.asarray(v, dtype=np.float32).tolist() for v in vectors], anns_field="vector",
        param={"metric_type": store.settings.metric_type, "params": dict(params)}, limit=limit, expr=filter_expr or None,
    )
    text = AnnSearchRequest(
        data=list(questions), anns_field=SPARSE_FIELD, param={"metric_type": "BM25"}, limit=limit,
        expr=filter_expr or None,
    )
    return _filtered(filter_expr, lambda: store._call(
        lambda: store.client.hybrid_search(
            store.collection, [dense, text], ranker, limit=top_k, output_fields=list(fields),
            timeout=store.settings.timeout,
        ),
        "hybrid search",
    ))


def _filtered(filter_expr: str, search: Any) -> Any:
    """Run ``search`` with pymilvus quiet; a filter Milvus rejects at search time is a ``BadFilterError``."""
    with quiet_pymilvus():
        try:
            return search()
        except StoreError as exc:
            cause = exc.__cause__
            if filter_expr and cause is not None and not is_transient(cause) and "expr" in str(cause).lower():
                raise BadFilterError(f"bad --filter expression {filter_expr!r}: {milvus_reason(cause)}") from None
            raise
