"""What a run did: per-source outcomes, stage times and the summary every front end prints.

This module must never hold the Milvus token: a URI is redacted before it is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from milvus_ingest.sources import Skipped


@dataclass
class StageTimes:
    read: float = 0.0
    chunk: float = 0.0
    encode: float = 0.0
    write: float = 0.0
    plan: float = 0.0
    model_load: float = 0.0
    #: Waiting for the collection's write lease (another ingest was writing it).
    lock_wait: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.__dict__.items()}


@dataclass
class IngestReport:
    collection: str
    uri: str
    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    stale_sources: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0
    rows: int = 0
    seconds: float = 0.0
    stages: StageTimes = field(default_factory=StageTimes)
    created_collection: bool = False
    #: The encoder engine that ran (backend, precision, reason, CPU flags); None when no model loaded.
    engine: dict[str, Any] | None = None
    #: What makes the rows retrievable: instructions in force (and where from), contextual chunks,
    #: and whether the collection has the BM25 field.
    retrieval: dict[str, Any] | None = None

    @property
    def files_read(self) -> int:
        return len(self.new) + len(self.updated) + len(self.unchanged)

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when every source went in, 1 when some were skipped."""
        return 1 if self.skipped else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "uri": _redact(self.uri),
            "files_read": self.files_read,
            "new": len(self.new),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "pruned": len(self.pruned),
            "stale_not_pruned": len(self.stale_sources),
            "skipped": len(self.skipped),
            "skipped_sources": [{"source": s.source, "reason": s.reason} for s in self.skipped],
            "chunks": self.chunks,
            "rows_in_collection": self.rows,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
            "stages": self.stages.as_dict(),
            "engine": self.engine,
            "retrieval": self.retrieval,
        }


def _redact(uri: str) -> str:
    """A URI for logs: user:password@ removed."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


def retrieval_info(settings: Any, bm25: bool) -> dict[str, Any]:
    """The run summary's word on retrieval: what the rows were embedded with and can be searched by."""
    instructions = settings.model.instructions
    return {
        "instructions": instructions.origin,
        "doc_instruction": instructions.doc,
        "contextual": settings.chunking.contextual,
        "bm25": bm25,
    }
