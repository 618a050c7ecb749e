"""Retrieval evaluation on a BEIR-layout dataset, through the same ingest and search code users run.

``evaluate_dataset`` ingests the corpus into a scratch collection (``run_ingest`` with in-memory
documents whose ``source`` is the document id), searches every judged query in batches with
``milvus_ingest.retrieval.Searcher``, ranks documents by their best chunk, and scores the run with
``milvus_ingest.evaluation.metrics`` (nDCG@k, Recall@k, Recall@100, MRR@k).  This module must never leave its
scratch collection behind (a temporary Milvus Lite folder by default; with a given URI, a unique
collection name dropped in a ``finally``), never touch a collection it did not create, and never
import Prefect.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milvus_ingest.evaluation.beir import BeirDataset, load_beir
from milvus_ingest.config import Settings
from milvus_ingest.errors import ConfigError
from milvus_ingest.evaluation.metrics import evaluate_run
from milvus_ingest.retrieval import MAX_TOP_K, Hit, Searcher

#: Questions encoded and searched per call.
QUERY_BATCH = 64
#: Chunks fetched per document wanted: a document can own several of the top chunks.
CHUNKS_PER_DOC = 3


def metric_ks(k: int) -> dict[str, tuple[int, ...]]:
    """nDCG@k, Recall@k, Recall@100 and MRR@k (k=10 gives the BEIR headline set)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"--k must be a positive integer, got {k!r}")
    return {"ndcg": (k,), "recall": tuple(sorted({k, 100})), "mrr": (k,)}


def rank_documents(hits: Sequence[Hit], limit: int) -> list[tuple[str, float]]:
    """Documents in the order of their best chunk (hits come best first), at most ``limit``."""
    seen: set[str] = set()
    ranking: list[tuple[str, float]] = []
    for hit in hits:
        if hit.source in seen:
            continue
        seen.add(hit.source)
        ranking.append((hit.source, hit.score))
        if len(ranking) == limit:
            break
    return ranking


@dataclass
class EvaluationReport:
    """The scores, what was evaluated, how long it took, and every query's own result."""

    dataset: str
    split: str
    model: str
    k: int
    documents: int
    chunks: int
    skipped_documents: int
    metrics: dict[str, float]
    queries: int
    per_query: dict[str, dict[str, Any]] = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)
    collection: str = ""
    uri: str = ""
    #: The engine that encoded documents and questions (backend, precision, reason), when known.
    engine: dict[str, Any] | None = None

    def summary(self) -> dict[str, float | int]:
        """The flat record ``--json`` prints: every metric plus ``queries``."""
        return {**{name: round(value, 4) for name, value in self.metrics.items()}, "queries": self.queries}

    def details(self) -> dict[str, Any]:
        """Everything, for ``--out``: the summary, the run's settings and timings, per-query results."""
        return {
            "summary": self.summary(),
            "dataset": self.dataset,
            "split": self.split,
            "model": self.model,
            "k": self.k,
            "documents": self.documents,
            "skipped_documents": self.skipped_documents,
            "chunks": self.chunks,
            "seconds": self.seconds,
            "engine": self.engine,
            "queries": self.per_query,
        }


def _scratch_settings(settings: Settings, uri: str | None, folder: Path | None) -> Settings:
    scratch = settings.model_copy(deep=True)
    scratch.milvus.uri = uri if uri else str(folder / "milvus.db")  # type: ignore[operator]
    scratch.milvus.collection = "eval_" + uuid.uuid4().hex[:12]
    return scratch


def load_embedder(settings: Settings) -> Any:
    """The full document + query encoder (documents need it; queries reuse it)."""
    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    return InstructorEmbeddingFunction.from_settings(settings.model)


def evaluate_dataset(
    settings: Settings,
    dataset_dir: str | Path,
    k: int = 10,
    split: str = "test",
    uri: str | None = None,
    embedder: Any = None,
    dataset: BeirDataset | None = None,
    query_encoder: Any = None,
) -> EvaluationReport:
    """Ingest ``dataset_dir``'s corpus into a scratch collection, search its judged queries, score.

    ``uri`` None uses a temporary Milvus Lite folder (removed at the end); a given URI gets a
    unique scratch collection, dropped at the end whatever happens.  ``embedder`` encodes the
    documents and, unless ``query_encoder`` is given, the questions too (one engine and
    precision for both, ``settings.model``'s when None).
    """
    ks = metric_ks(k)
    dataset = dataset or load_beir(dataset_dir, split)
    depth = max(100, k)
    top_k = min(depth * CHUNKS_PER_DOC, MAX_TOP_K)
    folder = None if uri else Path(tempfile.mkdtemp(prefix="flows-eval-"))
    scratch = _scratch_settings(settings, uri, folder)
    started = time.perf_counter()
    try:
        if embedder is None:
            embedder = load_embedder(settings)
        loaded = time.perf_counter()
        from milvus_ingest.ingest import run_ingest
        from milvus_ingest.sources import TextDocument

        documents = [TextDocument(source=doc_id, text=doc.full_text) for doc_id, doc in dataset.corpus.items()]
        report = run_ingest(scratch, documents=documents, embedder=embedder)
        ingested = time.perf_counter()
        queries = dataset.judged_queries()
        qids = list(queries)
        rankings: dict[str, list[tuple[str, float]]] = {}
        with Searcher(scratch, encoder=query_encoder or embedder) as searcher:
            for start in range(0, len(qids), QUERY_BATCH):
                batch = qids[start : start + QUERY_BATCH]
                results = searcher.search([queries[q] for q in batch], top_k=top_k)
                for qid, hits in zip(batch, results):
                    rankings[qid] = rank_documents(hits, depth)
            searched = time.perf_counter()
    except BaseException:
        _drop_scratch(scratch, folder, quiet=True)
        raise
    _drop_scratch(scratch, folder, quiet=False)
    run = {qid: [doc for doc, _ in ranking] for qid, ranking in rankings.items()}
    result = evaluate_run(run, dataset.qrels, ks)
    per_query = {
        qid: _query_record(queries[qid], rankings.get(qid, []), dataset.qrels[qid], result.per_query.get(qid), k)
        for qid in qids
    }
    n = max(len(qids), 1)
    return EvaluationReport(
        dataset=str(dataset.root),
        split=dataset.split,
        model=settings.model.name,
        k=k,
        documents=len(dataset.corpus),
        chunks=report.chunks,
        skipped_documents=len(report.skipped),
        metrics=dict(result.metrics),
        queries=result.queries,
        per_query=per_query,
        seconds={
            "model_load": round(loaded - started, 3),
            "ingest": round(ingested - loaded, 3),
            "search": round(searched - ingested, 3),
            "search_ms_per_query": round(1000 * (searched - ingested) / n, 2),
        },
        collection=scratch.milvus.collection,
        uri=uri or "temporary Milvus Lite folder",
        engine=_engine_of(embedder, query_encoder),
    )


def _engine_of(embedder: Any, query_encoder: Any) -> dict[str, Any] | None:
    info = getattr(embedder, "engine_info", None)
    if not isinstance(info, dict):
        return None
    questions = getattr(query_encoder, "engine_info", None) if query_encoder is not None else None
    return {**info, "questions": dict(questions)} if isinstance(questions, dict) else dict(info)


def _query_record(
    question: str,
    ranking: list[tuple[str, float]],
    qrels: Mapping[str, int],
    metrics: Mapping[str, float] | None,
    k: int,
) -> dict[str, Any]:
    relevant = {doc: grade for doc, grade in qrels.items() if grade > 0}
    first = next((rank for rank, (doc, _) in enumerate(ranking, start=1) if doc in relevant), None)
    return {
        "question": question,
        "metrics": {name: round(value, 4) for name, value in (metrics or {}).items()},
        "evaluated": metrics is not None,
        "relevant": dict(qrels),
        "first_relevant_rank": first,
        "top": [{"doc": doc, "score": round(score, 6), "relevant": doc in relevant} for doc, score in ranking[:k]],
    }


def _drop_scratch(scratch: Settings, folder: Path | None, quiet: bool) -> None:
    """Drop the scratch collection and remove its temporary folder.

    ``quiet`` is for the error path: a failure to drop must not hide the error that ended the run.
    """
    try:
        if folder is None:  # a temporary Lite folder goes whole, below
            from milvus_ingest.store import MilvusStore

            with MilvusStore(scratch.milvus) as store:
                store.drop()
    except Exception:
        if not quiet:
            raise
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


__all__ = ["EvaluationReport", "evaluate_dataset", "load_embedder", "metric_ks", "rank_documents"]
