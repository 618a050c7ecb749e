"""``flows.evaluate --compare``: every retrieval choice on one dataset, in one table, against the bare loop.

Rows, each scored with the same metrics on the same questions:

- the configuration as given, on one ingest, in every mode the collection serves: ``dense``,
  ``bm25``, ``hybrid`` fused by RRF and by weighted scores (bm25/hybrid only where the backend
  has BM25 functions);
- the same with the document/query instructions flipped (none where the config has some, the
  Milvus defaults where it has none): one more ingest;
- the same with contextual chunks flipped: one more ingest;
- the bare loop (``baseline``), unless turned off.

The default mode's row (``auto`` resolved) is marked, and every row says how far it is from the
bare loop in nDCG@k.  This module must never change the caller's settings (each variant is a copy).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from milvus_ingest.config import Settings
from milvus_ingest.evaluation.beir import BeirDataset
from milvus_ingest.evaluation.run import (
    CHUNKS_PER_DOC,
    bm25_unavailable,
    evaluate_modes,
    load_embedder,
    metric_ks,
    score_rankings,
)
from milvus_ingest.encoders.presets import MILVUS_DOC_INSTRUCTION, MILVUS_QUERY_INSTRUCTION

BASELINE = "bare loop"


@dataclass
class CompareRow:
    run: str
    mode: str
    metrics: dict[str, float]
    ms_per_query: float
    instructions: str = ""
    contextual: bool | None = None
    default: bool = False

    def as_dict(self, k: int, baseline: float | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run": self.run,
            "mode": self.mode,
            **{name: round(value, 4) for name, value in self.metrics.items()},
            "ms_per_query": self.ms_per_query,
            "instructions": self.instructions,
            "contextual": self.contextual,
            "default": self.default,
        }
        if baseline is not None:
            data[f"ndcg@{k}_vs_bare_loop"] = round(self.metrics.get(f"ndcg@{k}", 0.0) - baseline, 4)
        return data


@dataclass
class CompareReport:
    dataset: str
    k: int
    model: str
    queries: int
    rows: list[CompareRow] = field(default_factory=list)
    engine: dict[str, Any] | None = None

    def baseline_ndcg(self) -> float | None:
        row = next((r for r in self.rows if r.run == BASELINE), None)
        return row.metrics.get(f"ndcg@{self.k}") if row else None

    def as_dict(self) -> dict[str, Any]:
        base = self.baseline_ndcg()
        return {
            "dataset": self.dataset,
            "k": self.k,
            "model": self.model,
            "queries": self.queries,
            "engine": self.engine,
            "rows": [row.as_dict(self.k, base) for row in self.rows],
        }


def flipped_instructions(settings: Settings) -> Settings:
    """A copy with the instructions turned off where they are on, and on (Milvus's) where off."""
    other = settings.model_copy(deep=True)
    current = settings.model.instructions
    if current.doc or current.query:
        other.model.doc_instruction, other.model.query_instruction = "", ""
    else:
        other.model.doc_instruction, other.model.query_instruction = MILVUS_DOC_INSTRUCTION, MILVUS_QUERY_INSTRUCTION
    return other


def flipped_context(settings: Settings) -> Settings:
    other = settings.model_copy(deep=True)
    other.chunking.contextual = not settings.chunking.contextual
    return other


def _describe(settings: Settings) -> str:
    i = settings.model.instructions
    return f"{i.origin}: doc {i.doc!r}, query {i.query!r}"


def _embedder_for(embedder: Any, settings: Settings) -> Any:
    """The loaded model, sharing its weights, with ``settings``' instructions."""
    variant = copy.copy(embedder)
    variant.doc_instruction = settings.model.instructions.doc
    variant.query_instruction = settings.model.instructions.query
    return variant


def compare_dataset(
    settings: Settings,
    dataset: BeirDataset,
    k: int = 10,
    uri: str | None = None,
    baseline: bool = True,
    embedder: Any = None,
) -> CompareReport:
    """The compare table's rows for ``dataset`` (see the module docstring)."""
    ks = metric_ks(k)
    embedder = embedder or load_embedder(settings)
    report = CompareReport(str(dataset.root), k, settings.model.name, len(dataset.judged_queries()))
    report.engine = getattr(embedder, "engine_info", None)
    default_done = False
    variants = [
        ("pipeline", settings, ["dense", "bm25", "hybrid:rrf", "hybrid:weighted:0.5", "hybrid:weighted"]),
        ("instructions flipped", flipped_instructions(settings), ["dense", "hybrid"]),
        ("contextual flipped", flipped_context(settings), ["dense", "bm25", "hybrid"]),
    ]
    for name, variant, modes in variants:
        # where evaluate_modes will ingest: ``uri``, or a temporary Lite folder when None
        if bm25_unavailable(variant.milvus.model_copy(update={"uri": uri or "./scratch.db"})):
            modes = ["dense"]
        ingest, results = evaluate_modes(variant, dataset, modes, k, uri, _embedder_for(embedder, variant))
        default_mode = _default_mode(variant, modes)
        for result, requested in zip(results, modes):
            is_default = name == "pipeline" and requested == default_mode and not default_done
            default_done = default_done or is_default
            report.rows.append(CompareRow(
                name, _mode_label(requested, variant), result.metrics, result.ms_per_query,
                _describe(variant), variant.chunking.contextual, is_default,
            ))
    if baseline:
        from milvus_ingest.encoders.instructor import resolve_model_path
        from milvus_ingest.evaluation.baseline import bare_loop_rankings

        depth = max(100, k)
        rankings, seconds, _ = bare_loop_rankings(dataset, resolve_model_path(settings.model.name), depth, CHUNKS_PER_DOC)
        queries = dataset.judged_queries()
        result = score_rankings("dense", rankings, dataset, queries, ks, k, seconds["search"])
        report.rows.append(CompareRow(BASELINE, "dense", result.metrics, result.ms_per_query,
                                      "none; 1000/100-character splitter", None))
    return report


def _default_mode(settings: Settings, modes: list[str]) -> str:
    """Which of ``modes`` is what a search with these settings runs (the row marked default)."""
    mode = settings.search.mode
    if mode == "auto":
        mode = "hybrid" if any(m.startswith("hybrid") for m in modes) else "dense"
    if mode != "hybrid":
        return mode
    return "hybrid" if "hybrid" in modes else f"hybrid:{settings.search.ranker}"


def _mode_label(requested: str, settings: Settings) -> str:
    """``hybrid (weighted 0.8/0.2)``, ``hybrid (rrf k=60)``, or the mode itself."""
    mode, _, fusion = requested.partition(":")
    if mode != "hybrid":
        return mode
    ranker, _, weight = fusion.partition(":")
    ranker = ranker or settings.search.ranker
    if ranker == "rrf":
        return f"hybrid (rrf k={settings.search.rrf_k})"
    w = float(weight) if weight else settings.search.dense_weight
    return f"hybrid (weighted {w:g}/{1 - w:g})"
