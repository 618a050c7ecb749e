"""Milvus access for the pipeline: one schema, one client, the same code for Lite and a server.

Owns the collection's schema and its recorded metadata (model, instructions, dim), the state a
re-run reads back (a content hash per source), byte-bounded writes, and the translation of
Milvus's many failure shapes into one clear ``StoreError`` line.  This module must never write a
row into a collection whose recorded model, instruction or dimension differs from the caller's,
and never send a request larger than ``write_batch_bytes``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flows.config import MilvusSettings
from flows.errors import CollectionMismatchError, ConfigError, StoreError
from flows.retry import with_retries
from flows.sources import SOURCE_MAX_BYTES

log = logging.getLogger(__name__)


def _quiet_lite_noise() -> None:
    """Milvus Lite cannot hand out an MVCC timestamp for iterators: pymilvus warns on every scan
    (and Lite's gRPC server logs "not implemented") before falling back to a client-side
    timestamp, which is what we want.  Called after pymilvus is imported, which sets its levels."""
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)

#: Version of the row layout below; bump when fields change.
SCHEMA_VERSION = 1
META_PROPERTY = "flows.meta"
ID_MAX_BYTES = 64
HASH_MAX_BYTES = 80

#: Fields every row has, in the order the collection declares them.
SCALAR_FIELDS = ("text", "source", "chunk_index", "start_char", "end_char", "source_hash", "n_chunks")
#: Index types each backend can build (NOTES: Lite rejects the rest; DISKANN hangs on 2.3).
LITE_INDEX_TYPES = {"FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "AUTOINDEX"}
SERVER_23_INDEX_TYPES = LITE_INDEX_TYPES | {"IVF_PQ"}
SERVER_INDEX_TYPES = SERVER_23_INDEX_TYPES | {"DISKANN", "SCANN"}


@dataclass(frozen=True)
class CollectionMeta:
    """What a collection was built with; a writer or searcher with other values is refused."""

    model: str
    dim: int
    doc_instruction: str
    query_instruction: str
    metric_type: str
    text_max_bytes: int
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> CollectionMeta:
        data = json.loads(raw)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class SourceState:
    """What the collection holds for one source, read back at the start of a run."""

    ids: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)
    #: ``n_chunks`` recorded on the row of chunk 0: the commit mark of a complete version.
    committed_chunks: int = 0

    def is_complete(self, source_hash: str) -> bool:
        """True when exactly one whole version with this hash is stored, nothing else."""
        return (
            self.hashes == {source_hash}
            and self.committed_chunks > 0
            and len(self.ids) == self.committed_chunks
        )


_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def escape_string(value: str) -> str:
    """A Milvus filter string literal that matches exactly ``value``.

    Backslash, double quote, newline, carriage return and tab are escaped; everything else
    (quotes ``'``, non-ASCII, emoji) passes as UTF-8.  Checked on Milvus Lite 3.2 and Milvus
    2.3.5; ``json.dumps`` is *not* equivalent (its ``\\uXXXX`` escapes fail on both).
    """
    return '"' + value.translate(_ESCAPES) + '"'


def row_bytes(row: dict[str, Any]) -> int:
    """An upper estimate of one row's size on the wire (vector, strings and fixed fields)."""
    size = 64
    for value in row.values():
        if isinstance(value, str):
            size += len(value.encode("utf-8")) + 8
        elif isinstance(value, np.ndarray):
            size += value.nbytes + 16
        elif isinstance(value, (list, tuple)):
            size += 8 * len(value) + 16
        else:
            size += 16
    return size


def plan_write_batches(rows: Sequence[dict[str, Any]], max_rows: int, max_bytes: int) -> list[list[dict[str, Any]]]:
    """Split rows into requests bounded by a row count *and* a byte size.

    A single row larger than ``max_bytes`` cannot be sent at all: that is a bug upstream (the
    chunker bounds text bytes), so it is refused loudly rather than sent to fail in gRPC.
    """
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        n = row_bytes(row)
        if n > max_bytes:
            raise StoreError(f"a row of {n} bytes exceeds milvus.write_batch_bytes={max_bytes}")
        if current and (len(current) >= max_rows or size + n > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(row)
        size += n
    if current:
        batches.append(current)
    return batches


def _describe_connect_error(settings: MilvusSettings, exc: BaseException) -> StoreError:
    text = str(exc)
    if settings.is_lite:
        chain = repr(exc) + repr(exc.__cause__) + repr(exc.__context__)
        lock_words = ("lock", "Open local milvus failed", "ConnectionConfigException")
        if any(word in text or word in chain or word in type(exc).__name__ for word in lock_words):
            return StoreError(
                f"Milvus Lite database {settings.uri} is in use by another process (Lite allows one "
                "process at a time): wait for it to finish, or run a Milvus server for concurrent writers"
            )
        return StoreError(f"cannot open Milvus Lite database {settings.uri}: {text.strip() or type(exc).__name__}")
    cause = exc.__cause__
    cause_code = cause.code() if cause is not None and callable(getattr(cause, "code", None)) else None
    if (
        "UNAUTHENTICATED" in str(cause_code)
        or "PERMISSION_DENIED" in str(cause_code)
        or any(w in text.lower() for w in ("auth", "credential", "permission"))
    ):
        return StoreError(
            f"Milvus at {settings.uri} refused the credentials: set MILVUS_TOKEN to user:password or an API key"
        )
    return StoreError(
        f"cannot reach Milvus at {settings.uri} ({type(exc).__name__}): check the address and that the "
        "server is up (MILVUS_URI / --uri)"
    )


class MilvusStore:
    """The pipeline's view of one Milvus collection."""

    def __init__(self, settings: MilvusSettings, collection: str | None = None):
        self.settings = settings
        self.collection = collection or settings.collection
        self.client = self._connect()
        self.backend, self.server_version = self._identify()
        self._loaded = False

    # -- connection ---------------------------------------------------------------------
    def _connect(self) -> Any:
        from pymilvus import MilvusClient

        _quiet_lite_noise()
        s = self.settings
        if s.is_lite:
            folder = Path(s.uri).expanduser()
            if folder.parent and not folder.parent.exists():
                raise StoreError(f"folder {folder.parent} for Milvus Lite database {s.uri} does not exist")
        lite_logger = logging.getLogger("milvus_lite")
        previous = lite_logger.level
        lite_logger.setLevel(logging.CRITICAL)  # its own lock traceback would drown our one line
        try:
            kwargs: dict[str, Any] = {"uri": s.uri, "timeout": min(s.timeout, 5)}
            if s.token:
                kwargs["token"] = s.token
            return MilvusClient(**kwargs)
        except Exception as exc:
            raise _describe_connect_error(s, exc) from None
        finally:
            lite_logger.setLevel(previous)

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
            try:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(str(Path(self.settings.uri).expanduser()))
            except Exception:
                pass

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
    def supported_index_types(self) -> set[str]:
        if self.backend == "lite":
            return LITE_INDEX_TYPES
        if self.server_version.lstrip("v").startswith(("2.3", "2.2", "2.1", "2.0")):
            return SERVER_23_INDEX_TYPES
        return SERVER_INDEX_TYPES

    def check_index_type(self) -> None:
        index_type = self.settings.index_type
        supported = self.supported_index_types()
        if index_type not in supported:
            where = "Milvus Lite" if self.backend == "lite" else f"Milvus {self.server_version or 'server'}"
            raise ConfigError(
                f"milvus.index_type={index_type} cannot be built on {where}: use one of "
                f"{', '.join(sorted(supported))}"
            )

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
            self.check_compatible(meta, for_writing=True)
            self.load()
            return False
        self.check_index_type()
        schema = self._schema(meta)
        index_params = self.client.prepare_index_params()
        index_params.add_index(
            field_name="vector",
            index_type=self.settings.index_type,
            metric_type=self.settings.metric_type,
            params=dict(self.settings.index_params),
        )
        self._call(
            lambda: self.client.create_collection(
                self.collection,
                schema=schema,
                index_params=index_params,
                consistency_level="Strong",
                properties={META_PROPERTY: meta.to_json()},
                timeout=self.settings.timeout,
            ),
            f"creating collection {self.collection!r}",
        )
        self.load()
        return True

    def _schema(self, meta: CollectionMeta) -> Any:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False, description=meta.to_json()[:1000])
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=meta.dim)
        schema.add_field("text", DataType.VARCHAR, max_length=meta.text_max_bytes)
        schema.add_field("source", DataType.VARCHAR, max_length=SOURCE_MAX_BYTES)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("start_char", DataType.INT64)
        schema.add_field("end_char", DataType.INT64)
        schema.add_field("source_hash", DataType.VARCHAR, max_length=HASH_MAX_BYTES)
        schema.add_field("n_chunks", DataType.INT64)
        return schema

    def check_compatible(self, meta: CollectionMeta, for_writing: bool) -> CollectionMeta:
        """Refuse a collection built with another model, instruction, dim or metric."""
        stored = self.read_meta()
        name = self.collection
        if stored is None:
            raise CollectionMismatchError(
                f"collection {name!r} at {self.settings.uri} was not created by this pipeline (no "
                f"{META_PROPERTY} record): use another --collection name"
            )
        problems = []
        if stored.dim != meta.dim:
            problems.append(f"dim {stored.dim} vs the model's {meta.dim}")
        if stored.model != meta.model:
            problems.append(f"model {stored.model!r} vs {meta.model!r}")
        if for_writing and stored.doc_instruction != meta.doc_instruction:
            problems.append(f"doc instruction {stored.doc_instruction!r} vs {meta.doc_instruction!r}")
        if for_writing and stored.metric_type != meta.metric_type:
            problems.append(f"metric {stored.metric_type} vs {meta.metric_type}")
        if for_writing and stored.text_max_bytes != meta.text_max_bytes:
            problems.append(f"text_max_bytes {stored.text_max_bytes} vs {meta.text_max_bytes}")
        if stored.schema_version != SCHEMA_VERSION:
            problems.append(f"schema version {stored.schema_version} vs {SCHEMA_VERSION}")
        if problems:
            raise CollectionMismatchError(
                f"collection {name!r} was built with {'; '.join(problems)}: nothing was written; use the "
                "same model and instructions, or another --collection name"
            )
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

    # -- state --------------------------------------------------------------------------
    def source_states(self) -> dict[str, SourceState]:
        """Every source's ids, hashes and commit mark, read with Strong consistency.

        A server's iterator can miss rows still in growing segments until a Strong ``count(*)``
        has run, so the count goes first and the scan must match it (else a flush and a second
        scan): a state read that missed rows would leave stale chunks behind.
        """
        expected = self.count()
        states = self._scan_states()
        if sum(len(s.ids) for s in states.values()) != expected:
            self._call(lambda: self.client.flush(self.collection, timeout=self.settings.timeout), "flush")
            states = self._scan_states()
            found = sum(len(s.ids) for s in states.values())
            if found != self.count():
                raise StoreError(
                    f"Milvus at {self.settings.uri}: collection {self.collection!r} scan returned {found} rows, "
                    f"count(*) says {expected}; rerun when the server is settled"
                )
        return states

    def _scan_states(self) -> dict[str, SourceState]:
        states: dict[str, SourceState] = {}
        for row in self._iterate(["source", "source_hash", "chunk_index", "n_chunks"]):
            state = states.setdefault(row["source"], SourceState())
            state.ids.add(row["id"])
            state.hashes.add(row["source_hash"])
            if row["chunk_index"] == 0:
                state.committed_chunks = int(row["n_chunks"])
        return states

    def _iterate(self, fields: list[str], batch_size: int = 4096) -> Iterator[dict[str, Any]]:
        self._ensure_loaded()
        iterator = self._call(
            lambda: self.client.query_iterator(
                self.collection,
                batch_size=batch_size,
                filter="",
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

    def count(self) -> int:
        self._ensure_loaded()
        result = self._call(
            lambda: self.client.query(
                self.collection,
                filter="",
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
        batches = plan_write_batches(rows, self.settings.write_batch_rows, self.settings.write_batch_bytes)
        for batch in batches:
            payload = [_plain_row(r) for r in batch]
            self._call(
                lambda payload=payload: self.client.upsert(self.collection, payload, timeout=self.settings.timeout),
                f"upsert of {len(payload)} rows",
            )
        return len(batches)

    def delete_ids(self, ids: Iterable[str]) -> int:
        """Delete rows by primary key (ids are hex digests: no escaping can go wrong)."""
        id_list = sorted(ids)
        for start in range(0, len(id_list), 1000):
            part = id_list[start : start + 1000]
            self._call(
                lambda part=part: self.client.delete(self.collection, ids=part, timeout=self.settings.timeout),
                f"delete of {len(part)} rows",
            )
        return len(id_list)

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
