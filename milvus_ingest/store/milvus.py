"""Milvus access for the pipeline: one schema, one client, the same code for Lite and a server.

Owns the collection's schema and its recorded metadata (model, instructions, dim), the state a
re-run reads back (one commit mark per source: ``state``), byte-bounded writes, and the translation of
Milvus's many failure shapes into one clear ``StoreError`` line.  This module must never write a
row into a collection whose recorded model, instruction or dimension differs from the caller's,
and never send a request larger than ``write_batch_bytes``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from milvus_ingest.config import MilvusSettings
from milvus_ingest.errors import CollectionMismatchError, ConfigError, StoreError
from milvus_ingest.store import capabilities, indexes, state
from milvus_ingest.store.connect import connect, release_lite
from milvus_ingest.store.retry import with_retries
from milvus_ingest.store.schema import (
    BM25_TEXT_FIELD,
    META_PROPERTY,
    CollectionMeta,
    SourceState,
    build_schema,
    escape_string,
    meta_problems,
    plan_write_batches,
    schema_upgrade_problem,
)
from milvus_ingest.store.state import SourceMark

log = logging.getLogger(__name__)


class MilvusStore:
    """The pipeline's view of one Milvus collection."""

    def __init__(self, settings: MilvusSettings, collection: str | None = None):
        self.settings = settings
        self.collection = collection or settings.collection
        self.client = connect(settings)
        self.backend, self.server_version = self._identify()
        self._loaded = False
        self.meta: CollectionMeta | None = None  # the collection's record, once read or written

    # -- connection ---------------------------------------------------------------------
    def _identify(self) -> tuple[str, str]:
        try:
            version = str(self._call(lambda: self.client.get_server_version(timeout=self.settings.timeout), "version"))
        except StoreError:
            version = ""
        backend = "lite" if self.settings.is_lite or version.startswith("milvus_lite") else "server"
        return backend, version

    def close(self) -> None:
        """Close the connection; for Lite also stop its in-process server and free the folder.

        Without the second step the process keeps Lite's lock until it exits, so a long-lived
        ``serve`` process would lock every other run out of the folder between its runs.
        """
        try:
            self.client.close()
        except Exception:  # closing a broken connection must not mask the real error
            pass
        if self.backend == "lite":
            release_lite(self.settings.uri)

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Any, what: str) -> Any:
        """Run one client call with retries; map whatever it raises to a ``StoreError`` line."""
        s = self.settings
        try:
            return with_retries(fn, what, retries=s.retries, backoff_seconds=s.retry_backoff_seconds)
        except StoreError:
            raise
        except Exception as exc:
            message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"Milvus at {s.uri}: {what} failed: {message}") from exc

    # -- collection ---------------------------------------------------------------------
    def supported_index_types(self, dim: int = 8) -> set[str]:
        """Index types this Milvus builds, asked of the server (see ``capabilities``)."""
        return capabilities.supported_index_types(self, dim)

    def check_index_type(self, dim: int = 8) -> None:
        """Refuse in one line an index the server cannot build, before anything is created."""
        capabilities.check_index(self, dim)

    def exists(self) -> bool:
        return bool(self._call(lambda: self.client.has_collection(self.collection, timeout=self.settings.timeout), "has_collection"))

    def read_meta(self) -> CollectionMeta | None:
        """The metadata recorded at creation, or None for a collection this pipeline did not make."""
        info = self._call(lambda: self.client.describe_collection(self.collection, timeout=self.settings.timeout), "describe_collection")
        raw = (info.get("properties") or {}).get(META_PROPERTY) or info.get("description") or ""
        try:
            return CollectionMeta.from_json(raw) if raw else None
        except (ValueError, TypeError, KeyError):
            return None

    def ensure_collection(self, meta: CollectionMeta) -> bool:
        """Create the collection for ``meta``, or check that the existing one matches; True if created."""
        if self.exists():
            self.open_for_writing(meta)
            return False
        self.check_index_type(meta.dim)
        meta = self._with_bm25(meta)
        schema = build_schema(meta)
        self._call(
            lambda: self.client.create_collection(
                self.collection,
                schema=schema,
                consistency_level="Strong",
                properties={META_PROPERTY: meta.to_json()},
                timeout=self.settings.timeout,
            ),
            f"creating collection {self.collection!r}",
        )
        indexes.ensure_indexes(self, meta, new=True)
        self.meta = meta
        self.load()
        return True

    def _with_bm25(self, meta: CollectionMeta) -> CollectionMeta:
        """``meta`` with the BM25 decision for a new collection (``milvus.bm25``; ``on`` is refused where it cannot be)."""
        wanted = self.settings.bm25
        problem = capabilities.bm25_problem(self) if wanted != "off" else "off"
        if wanted == "on" and problem:
            raise ConfigError(f"milvus.bm25=on: {problem}; nothing was created; set milvus.bm25: auto or off")
        if problem:
            return dataclasses.replace(meta, bm25=False, bm25_analyzer="")
        params = capabilities.analyzer_params(self.settings.bm25_analyzer)
        return dataclasses.replace(meta, bm25=True, bm25_analyzer=json.dumps(params, sort_keys=True))

    @property
    def has_bm25(self) -> bool:
        """Whether the collection has the BM25 full-text field (read from its record once)."""
        if self.meta is None:
            self.meta = self.read_meta()
        return bool(self.meta and self.meta.bm25)
    def check_compatible(self, meta: CollectionMeta, for_writing: bool) -> CollectionMeta:
        """Refuse a collection built with another model, instruction, dim or metric."""
        stored = self.read_meta()
        name = self.collection
        if stored is None:
            raise CollectionMismatchError(
                f"collection {name!r} at {self.settings.uri} was not created by this pipeline (no "
                f"{META_PROPERTY} record): use another --collection name"
            )
        upgrade = schema_upgrade_problem(stored, name) if for_writing else None
        if upgrade:
            raise CollectionMismatchError(upgrade)
        problems = meta_problems(stored, meta, for_writing)
        if problems:
            raise CollectionMismatchError(
                f"collection {name!r} was built with {'; '.join(problems)}: nothing was written; use the "
                "same model and instructions, or another --collection name"
            )
        if for_writing and self.settings.bm25 == "on" and not stored.bm25:
            raise ConfigError(
                f"milvus.bm25=on but collection {name!r} was created without the BM25 field: nothing was "
                "written; rebuild it with --full --recreate, or set milvus.bm25: auto"
            )
        self.meta = stored
        return stored

    def open_for_writing(self, meta: CollectionMeta) -> CollectionMeta:
        """Check the existing collection against ``meta``, put back an index a killed run left
        out (``indexes``), load it; the collection's own record."""
        stored = self.check_compatible(meta, for_writing=True)
        indexes.ensure_indexes(self, stored, new=False)
        self.load()
        return stored

    def load(self) -> None:
        self._call(lambda: self.client.load_collection(self.collection, timeout=self.settings.timeout), "load_collection")
        self._loaded = True

    def _ensure_loaded(self) -> None:
        """Reads need a loaded collection; a reopened Lite folder or a restarted server has none."""
        if not self._loaded:
            self.load()

    def drop(self) -> None:
        if self.exists():
            self._call(lambda: self.client.drop_collection(self.collection, timeout=self.settings.timeout), "drop_collection")

    # -- state (commit marks: see ``state``) --------------------------------------------
    def source_marks(self, in_scope: Callable[[str], bool] | None = None) -> dict[str, SourceMark]:
        """Every stored source's commit mark (one row per source), checked against ``count(*)``
        over the sources ``in_scope`` accepts (all by default; a shard run's own)."""
        return state.read_marks(self, in_scope)

    def source_states(self) -> dict[str, SourceState]:
        """Every source's ids and hashes from every row: exact, O(rows); the marks' fallback."""
        return state.scan_states(self)

    def flush(self) -> None:
        self._call(lambda: self.client.flush(self.collection, timeout=self.settings.timeout), "flush")

    def _iterate(self, fields: list[str], batch_size: int = 4096, filter_expr: str = "") -> Iterator[dict[str, Any]]:
        self._ensure_loaded()
        iterator = self._call(
            lambda: self.client.query_iterator(
                self.collection,
                batch_size=batch_size,
                filter=filter_expr,
                output_fields=fields,
                consistency_level="Strong",
                timeout=self.settings.timeout,
            ),
            "query_iterator",
        )
        try:
            while True:
                page = self._call(iterator.next, "reading rows")
                if not page:
                    return
                yield from page
        finally:
            iterator.close()

    def query(self, filter_expr: str, fields: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """At most ``limit`` rows matching ``filter_expr``, read with Strong consistency."""
        self._ensure_loaded()
        return self._call(
            lambda: self.client.query(
                self.collection,
                filter=filter_expr,
                output_fields=list(fields),
                limit=limit,
                consistency_level="Strong",
                timeout=self.settings.timeout,
            ),
            "query",
        )

    def count(self, filter_expr: str = "") -> int:
        """Rows (matching ``filter_expr``), read with Strong consistency."""
        self._ensure_loaded()
        result = self._call(
            lambda: self.client.query(
                self.collection,
                filter=filter_expr,
                output_fields=["count(*)"],
                consistency_level="Strong",
                timeout=self.settings.timeout,
            ),
            "count(*)",
        )
        return int(result[0]["count(*)"]) if result else 0

    # -- writes -------------------------------------------------------------------------
    def upsert(self, rows: Sequence[dict[str, Any]]) -> int:
        """Upsert rows in requests bounded by rows and bytes; returns the number of requests."""
        if not self.has_bm25:  # the row's BM25 text has no field to go to
            rows = [{k: v for k, v in r.items() if k != BM25_TEXT_FIELD} for r in rows]
        batches = plan_write_batches(rows, self.settings.write_batch_rows, self.settings.write_batch_bytes)
        for batch in batches:
            payload = [_plain_row(r) for r in batch]
            self._call(
                lambda payload=payload: self.client.upsert(self.collection, payload, timeout=self.settings.timeout),
                f"upsert of {len(payload)} rows",
            )
        return len(batches)

    def delete_where(self, filter_expr: str, what: str) -> None:
        """Delete the rows matching an expression built from escaped literals (``state``)."""
        self._call(
            lambda: self.client.delete(self.collection, filter=filter_expr, timeout=self.settings.timeout), what
        )

    def delete_tails(self, tails: dict[str, int]) -> None:
        """For each ``source: n``, delete that source's chunks ``n`` and after, by expression."""
        state.delete_tails(self, tails)

    def delete_sources(self, sources: Iterable[str]) -> None:
        """Delete every row of these sources (chunk 0 in the same request as the rest)."""
        state.delete_sources(self, sources)

    # -- reads --------------------------------------------------------------------------
    def query_source(self, source: str, fields: Sequence[str] = ("id",)) -> list[dict[str, Any]]:
        """Rows of one source, selected by an escaped filter literal."""
        self._ensure_loaded()
        return self._call(
            lambda: self.client.query(
                self.collection,
                filter=f"source == {escape_string(source)}",
                output_fields=list(fields),
                consistency_level="Strong",
                timeout=self.settings.timeout,
            ),
            "query by source",
        )

    def search(
        self,
        vectors: np.ndarray,
        top_k: int,
        filter_expr: str = "",
        output_fields: Sequence[str] = ("text", "source", "start_char", "end_char", "chunk_index"),
        search_params: dict[str, Any] | None = None,
        consistency_level: str | None = None,
    ) -> list[list[dict[str, Any]]]:
        self._ensure_loaded()
        params = {"metric_type": self.settings.metric_type, "params": dict(search_params or self.settings.search_params)}
        kwargs: dict[str, Any] = {}
        if consistency_level:
            kwargs["consistency_level"] = consistency_level
        return self._call(
            lambda: self.client.search(
                self.collection,
                data=[np.asarray(v, dtype=np.float32).tolist() for v in vectors],
                limit=top_k,
                filter=filter_expr,
                output_fields=list(output_fields),
                search_params=params,
                timeout=self.settings.timeout,
                **kwargs,
            ),
            "search",
        )


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    vector = row["vector"]
    if isinstance(vector, np.ndarray):
        row = dict(row)
        row["vector"] = vector.astype(np.float32, copy=False).tolist()
    return row
