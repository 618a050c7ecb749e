"""The row layout and the metadata record of a collection: the one place they are written out.

Every row the pipeline writes is built by ``chunk_row``; every field a search may return is named
in ``SCALAR_FIELDS``; what a collection was built with is a ``CollectionMeta`` stored as a
collection property.  This module must never talk to Milvus (``milvus.py`` does).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from milvus_ingest.errors import StoreError
from milvus_ingest.sources import SOURCE_MAX_BYTES

#: Version of the row layout below; bump when fields change.  2: the document fields.
SCHEMA_VERSION = 2
META_PROPERTY = "flows.meta"
ID_MAX_BYTES = 64
HASH_MAX_BYTES = 80

# -- document structure (schema 2) ----------------------------------------------------------
#: Per chunk: ``section`` (heading path, " > "-joined) and ``page`` (1-based; 0 = no pages); per
#: source: ``title``, ``format``, ``mtime`` (seconds) and ``metadata`` (front matter, JSON).
#: Name -> (Milvus type, VARCHAR limit in UTF-8 bytes).  Scalars, so filters can use them.
DOCUMENT_FIELD_TYPES: dict[str, tuple[str, int]] = {
    "title": ("VARCHAR", 1024),
    "section": ("VARCHAR", 2048),
    "page": ("INT64", 0),
    "format": ("VARCHAR", 16),
    "mtime": ("INT64", 0),
    "metadata": ("JSON", 0),
}
DOCUMENT_FIELDS = tuple(DOCUMENT_FIELD_TYPES)
#: A document's metadata is stored whole up to this many bytes of JSON, else key by key while it fits.
METADATA_MAX_BYTES = 16_384

# -- full text (optional per collection, recorded as ``CollectionMeta.bm25``) -------------------
#: The text Milvus's BM25 function indexes (the chunk after its context), and the sparse vector
#: the function makes of it.  Neither is ever returned to a reader.
BM25_TEXT_FIELD = "bm25_text"
SPARSE_FIELD = "sparse"
#: Room the context line may add to a chunk's text in the BM25 field, in UTF-8 bytes.
CONTEXT_MAX_BYTES = 4096

#: Fields every row has, in the order the collection declares them.
SCALAR_FIELDS = ("text", "source", "chunk_index", "start_char", "end_char", "source_hash", "n_chunks", *DOCUMENT_FIELDS)
#: Index types Milvus Lite builds (it accepts any name at create_index, so it cannot be asked);
#: a server is asked instead (``capabilities``).
LITE_INDEX_TYPES = {"FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "AUTOINDEX"}


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
    #: Whether the collection has the BM25 full-text field (``BM25_TEXT_FIELD`` + ``SPARSE_FIELD``),
    #: and its analyzer's parameters as JSON; records written before it say False.
    bm25: bool = False
    bm25_analyzer: str = ""

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
        elif isinstance(value, dict):
            size += len(json.dumps(value, ensure_ascii=False).encode("utf-8")) + 16
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


@dataclass(frozen=True)
class DocumentFields:
    """What every chunk row of one source carries about its document (see ``DOCUMENT_FIELD_TYPES``)."""

    title: str = ""
    format: str = "text"
    mtime: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


def chunk_row(
    source: str,
    index: int,
    chunk: Any,
    vector: np.ndarray,
    source_hash: str,
    n_chunks: int,
    document: DocumentFields = DocumentFields(),
    search_text: str | None = None,
) -> dict[str, Any]:
    """The row of chunk ``index`` of ``source``; ``n_chunks`` > 0 only on a committed chunk 0.

    ``search_text`` is what was embedded (the chunk after its context line); it goes to the BM25
    field, which the store leaves out for a collection without one."""
    limits = DOCUMENT_FIELD_TYPES
    full_text = chunk.text if search_text is None else search_text
    if len(full_text.encode("utf-8", "surrogatepass")) > len(chunk.text.encode("utf-8", "surrogatepass")) + CONTEXT_MAX_BYTES:
        full_text = chunk.text
    return {
        BM25_TEXT_FIELD: full_text,
        "id": chunk_id(source, index),
        "vector": vector,
        "text": chunk.text,
        "source": source,
        "chunk_index": index,
        "start_char": chunk.start,
        "end_char": chunk.end,
        "source_hash": source_hash,
        "n_chunks": n_chunks,
        "title": clip_utf8(document.title, limits["title"][1]),
        "section": clip_utf8(getattr(chunk, "section", ""), limits["section"][1]),
        "page": int(getattr(chunk, "page", 0)),
        "format": document.format,
        "mtime": int(document.mtime),
        "metadata": bounded_metadata(document.metadata),
    }


def clip_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes at a character boundary, "…" marking a cut."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode("utf-8", "ignore") + "…"


def bounded_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata as stored: whole when its JSON fits ``METADATA_MAX_BYTES``, else the keys that fit, in order."""
    def size(value: Any) -> int:
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))

    if size(metadata) <= METADATA_MAX_BYTES:
        return dict(metadata)
    kept: dict[str, Any] = {}
    for key, value in metadata.items():
        if size({**kept, key: value}) <= METADATA_MAX_BYTES:
            kept[key] = value
    return kept


def schema_upgrade_problem(stored: CollectionMeta, collection: str) -> str | None:
    """One line for a collection written with an older row layout (None when it is current)."""
    if stored.schema_version >= SCHEMA_VERSION:
        return None
    return (
        f"collection {collection!r} was written by an older version of this pipeline (schema version "
        f"{stored.schema_version}, without the fields {', '.join(DOCUMENT_FIELDS)}): nothing was written; "
        "ingest into a new collection (--collection NAME), or rebuild this one with --full --recreate "
        "(drops it and re-embeds these sources)"
    )


def build_schema(meta: CollectionMeta) -> Any:
    """The pymilvus schema of a collection for ``meta``: the row layout above, plus the BM25
    full-text field and its function when ``meta.bm25`` (an object only; nothing is sent)."""
    from pymilvus import CollectionSchema, DataType, FieldSchema, Function, FunctionType

    def field_of(name: str, kind: Any, **params: Any) -> Any:
        return FieldSchema(name, kind, **params)

    fields = [
        field_of("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES),
        field_of("vector", DataType.FLOAT_VECTOR, dim=meta.dim),
        field_of("text", DataType.VARCHAR, max_length=meta.text_max_bytes),
        field_of("source", DataType.VARCHAR, max_length=SOURCE_MAX_BYTES),
        field_of("chunk_index", DataType.INT64),
        field_of("start_char", DataType.INT64),
        field_of("end_char", DataType.INT64),
        field_of("source_hash", DataType.VARCHAR, max_length=HASH_MAX_BYTES),
        field_of("n_chunks", DataType.INT64),
    ]
    for name, (kind, max_length) in DOCUMENT_FIELD_TYPES.items():
        fields.append(field_of(name, getattr(DataType, kind), **({"max_length": max_length} if max_length else {})))
    functions = []
    if meta.bm25:
        fields.append(field_of(
            BM25_TEXT_FIELD, DataType.VARCHAR, max_length=min(meta.text_max_bytes + CONTEXT_MAX_BYTES, 65_535),
            enable_analyzer=True, analyzer_params=json.loads(meta.bm25_analyzer),
        ))
        fields.append(field_of(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR))
        functions.append(Function(name="bm25", function_type=FunctionType.BM25,
                                  input_field_names=[BM25_TEXT_FIELD], output_field_names=[SPARSE_FIELD]))
    return CollectionSchema(fields, description=meta.to_json()[:1000], enable_dynamic_field=False,
                            auto_id=False, functions=functions)


def chunk_id(source: str, index: int) -> str:
    """Primary key of chunk ``index`` of ``source``: the same on every run, on every machine."""
    return hashlib.blake2b(f"{source}\x00{index}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def meta_problems(stored: CollectionMeta, wanted: CollectionMeta, for_writing: bool) -> list[str]:
    """What differs between a collection's record and what a caller would use it with.

    A reader needs only the same model and dimension; a writer also the same document
    instruction, metric and text limit, or its rows would not be comparable with the stored ones.
    """
    problems = []
    if stored.dim != wanted.dim:
        problems.append(f"dim {stored.dim} vs the model's {wanted.dim}")
    if stored.model != wanted.model:
        problems.append(f"model {stored.model!r} vs {wanted.model!r}")
    if for_writing and stored.doc_instruction != wanted.doc_instruction:
        problems.append(f"doc instruction {stored.doc_instruction!r} vs {wanted.doc_instruction!r}")
    if for_writing and stored.metric_type != wanted.metric_type:
        problems.append(f"metric {stored.metric_type} vs {wanted.metric_type}")
    if for_writing and stored.text_max_bytes != wanted.text_max_bytes:
        problems.append(f"text_max_bytes {stored.text_max_bytes} vs {wanted.text_max_bytes}")
    if stored.schema_version != SCHEMA_VERSION:
        problems.append(f"schema version {stored.schema_version} vs {SCHEMA_VERSION}")
    return problems
