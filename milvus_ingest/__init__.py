"""milvus_ingest: keep a Milvus collection fresh from a team's documents, and search it.

The library a QA app imports: settings, the Instructor embedding function Milvus users know, the
ingest run and the search call.  It never imports Prefect; the flows in ``flows/`` orchestrate it.
Heavy parts (torch, pymilvus) load on first use, not on ``import milvus_ingest``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from milvus_ingest.config import Settings, load_settings, settings_from_dict
from milvus_ingest.errors import PipelineError

if TYPE_CHECKING:
    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction
    from milvus_ingest.ingest import IngestOptions, IngestReport, run_ingest
    from milvus_ingest.retrieval import Hit, Searcher
    from milvus_ingest.retrieval import search_questions as search

_LAZY = {
    "InstructorEmbeddingFunction": "milvus_ingest.encoders.instructor",
    "IngestOptions": "milvus_ingest.ingest",
    "IngestReport": "milvus_ingest.ingest",
    "run_ingest": "milvus_ingest.ingest",
    "Hit": "milvus_ingest.retrieval",
    "Searcher": "milvus_ingest.retrieval",
    "search": "milvus_ingest.retrieval:search_questions",
}


def __getattr__(name: str) -> Any:
    """Import the heavy parts of the public API on first use."""
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'milvus_ingest' has no attribute {name!r}")
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr or name)


__all__ = [
    "Hit",
    "IngestOptions",
    "IngestReport",
    "InstructorEmbeddingFunction",
    "PipelineError",
    "Searcher",
    "Settings",
    "load_settings",
    "run_ingest",
    "search",
    "settings_from_dict",
]
