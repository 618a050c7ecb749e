"""What the connected Milvus can build, found by asking it, and refused in one line when it cannot.

A server is asked directly: the index the config names (type, metric, parameters, dimension) is
created on a throwaway, empty collection, which the server validates at once (an unknown type,
a parameter out of range, a PQ ``m`` that does not divide the dimension) and which is dropped
right after.  Two cases cannot be asked, and are said so:

- Milvus Lite 3.x accepts any index name at ``create_index`` (even a made-up one) and builds
  only its own kinds, so for Lite the list is its documented one (``LITE_INDEX_TYPES``);
- Milvus 2.3 accepts DISKANN and then never finishes building it (NOTES: ``create_index``
  without a timeout never returns), so DISKANN is refused on servers before 2.4.

This module must never leave its probe collection behind, and never probe at all when the
collection already exists (only a new collection's index is chosen from the config).
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from milvus_ingest.config import MilvusSettings
from milvus_ingest.errors import ConfigError, StoreError
from milvus_ingest.store.schema import LITE_INDEX_TYPES


class MilvusStore(Protocol):
    """What this module needs of ``milvus.MilvusStore`` (named apart to keep imports one-way)."""

    settings: MilvusSettings
    client: Any
    backend: str
    server_version: str

    def _call(self, fn: Any, what: str) -> Any: ...

#: Index types the config may name, each with parameters any server that has it accepts.
CANDIDATES: dict[str, dict[str, Any]] = {
    "FLAT": {},
    "IVF_FLAT": {"nlist": 128},
    "IVF_SQ8": {"nlist": 128},
    "IVF_PQ": {"nlist": 128, "m": 1, "nbits": 8},
    "HNSW": {"M": 16, "efConstruction": 200},
    "AUTOINDEX": {},
    "DISKANN": {},
    "SCANN": {"nlist": 128},
}
PROBE_PREFIX = "_milvus_ingest_probe_"


def known_unbuildable(index_type: str, backend: str, version: str) -> str:
    """Why this server cannot build ``index_type`` though it would say yes, or ''."""
    if backend == "server" and index_type == "DISKANN" and _minor(version) < (2, 4):
        return "it accepts a DISKANN index and then never finishes building it (DiskANN needs Milvus 2.4+)"
    return ""


def bm25_problem(store: MilvusStore) -> str:
    """Why this Milvus cannot build a BM25 full-text field ('' when it can)."""
    return bm25_missing(store.backend, store.server_version)


def bm25_missing(backend: str, server_version: str) -> str:
    """Why a backend ("lite" or "server" at a version) has no BM25 functions ('' when it has):
    they came with Milvus 2.5 and the Milvus Lite 3 rewrite."""
    if backend == "lite":
        try:
            from importlib.metadata import version

            lite = version("milvus-lite")
        except Exception:  # not installed as a distribution: assume the current one
            return ""
        return "" if _minor(lite) >= (3, 0) else f"Milvus Lite {lite} has no BM25 functions (Milvus Lite 3 has)"
    if _minor(server_version) < (2, 5):
        return f"Milvus {server_version or 'server'} has no BM25 functions (Milvus 2.5+ has)"
    return ""


def analyzer_params(analyzer: str | dict[str, Any]) -> dict[str, Any]:
    """Milvus ``analyzer_params`` for the configured analyzer: a name or the parameters themselves."""
    if isinstance(analyzer, dict):
        return dict(analyzer)
    if analyzer == "jieba":
        return {"tokenizer": "jieba"}
    return {"type": analyzer}


def check_index(store: MilvusStore, dim: int) -> None:
    """Refuse, before the collection exists, an index this Milvus cannot build (one line)."""
    s = store.settings
    index_type = s.index_type
    where = "Milvus Lite" if store.backend == "lite" else f"Milvus {store.server_version or 'server'}"
    if store.backend == "lite":
        if index_type not in LITE_INDEX_TYPES:
            raise ConfigError(
                f"milvus.index_type={index_type} cannot be built on {where}: use one of {', '.join(sorted(LITE_INDEX_TYPES))}"
            )
        return
    reason = known_unbuildable(index_type, store.backend, store.server_version)
    if not reason:
        reason = probe(store, {index_type: dict(s.index_params)}, dim).get(index_type, "")
        if reason:
            reason = f"with index_params {dict(s.index_params)} the server says: {reason}"
    if reason:
        accepted = supported_index_types(store, dim)
        raise ConfigError(
            f"milvus.index_type={index_type} cannot be built on {where}: {reason}; use one of "
            f"{', '.join(sorted(accepted)) or 'none found'} (with fitting milvus.index_params)"
        )


def supported_index_types(store: MilvusStore, dim: int = 8) -> set[str]:
    """The index types of ``CANDIDATES`` this Milvus builds, asked of the server where it can be."""
    if store.backend == "lite":
        return set(LITE_INDEX_TYPES)
    answers = probe(store, CANDIDATES, dim)
    return {t for t, problem in answers.items() if not problem and not known_unbuildable(t, store.backend, store.server_version)}


def probe(store: MilvusStore, indexes: dict[str, dict[str, Any]], dim: int) -> dict[str, str]:
    """Create each index on a throwaway empty collection: ``{type: '' if accepted, else why not}``."""
    from pymilvus import DataType

    client = store.client
    s = store.settings
    name = PROBE_PREFIX + uuid.uuid4().hex[:12]
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    timeout = min(s.timeout, 30)
    store._call(lambda: client.create_collection(name, schema=schema, timeout=timeout), "creating the index probe collection")
    answers: dict[str, str] = {}
    try:
        for index_type, params in indexes.items():
            index_params = client.prepare_index_params()
            index_params.add_index(field_name="vector", index_type=index_type, metric_type=s.metric_type, params=params)
            try:
                client.create_index(name, index_params, timeout=timeout)
            except Exception as exc:  # the server's refusal is the answer
                answers[index_type] = _first_line(exc)
                continue
            answers[index_type] = ""
            try:
                client.drop_index(name, "vector", timeout=timeout)
            except Exception as exc:
                raise StoreError(f"Milvus at {s.uri}: dropping a probe index failed: {_first_line(exc)}") from exc
    finally:
        try:
            client.drop_collection(name, timeout=timeout)
        except Exception:  # the probe's answer stands; a leftover is named by its prefix
            pass
    return answers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if "message=" in text:
        text = text.split("message=", 1)[1].rstrip(")>")
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _minor(version: str) -> tuple[int, int]:
    digits = version.lstrip("v").split("-")[0].split(".")
    try:
        return int(digits[0]), int(digits[1])
    except (IndexError, ValueError):
        return (99, 0)  # unknown: assume current, and let the probe answer
