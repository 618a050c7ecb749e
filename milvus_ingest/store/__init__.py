"""Milvus, owned in one place: the client (``milvus``), the row layout (``schema``), retries.

Nothing outside this package calls a pymilvus client or writes a row dict by hand.
"""

from milvus_ingest.store.milvus import MilvusStore
from milvus_ingest.store.state import SourceMark
from milvus_ingest.store.schema import (
    DOCUMENT_FIELDS,
    META_PROPERTY,
    SCALAR_FIELDS,
    SCHEMA_VERSION,
    CollectionMeta,
    DocumentFields,
    SourceState,
    chunk_id,
    chunk_row,
    escape_string,
    plan_write_batches,
    row_bytes,
)

__all__ = [
    "DOCUMENT_FIELDS",
    "META_PROPERTY",
    "SCALAR_FIELDS",
    "SCHEMA_VERSION",
    "CollectionMeta",
    "DocumentFields",
    "MilvusStore",
    "SourceMark",
    "SourceState",
    "chunk_id",
    "chunk_row",
    "escape_string",
    "plan_write_batches",
    "row_bytes",
]
