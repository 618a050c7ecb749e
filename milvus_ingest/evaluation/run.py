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

import logging
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

log = logging.getLogger(__name__)

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
    #: The search mode scored (``auto`` resolved).
    mode: str = ""
    #: Queries longer than the model reads (encoded from their first tokens).
    queries_cut: int = 0

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
            "mode": self.mode,
            "queries_cut": self.queries_cut,
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


@dataclass
class ModeResult:
    """One search mode's scores over one ingest."""

    mode: str
    metrics: dict[str, float]
    queries: int
    per_query: dict[str, dict[str, Any]]
    search_seconds: float
    ms_per_query: float


def evaluate_dataset(
    settings: Settings,
    dataset_dir: str | Path,
    k: int = 10,
    split: str = "test",
    uri: str | None = None,
    embedder: Any = None,
    dataset: BeirDataset | None = None,
    query_encoder: Any = None,
    mode: str | None = None,
) -> EvaluationReport:
    """Ingest ``dataset_dir``'s corpus into a scratch collection, search its judged queries, score.

    ``uri`` None uses a temporary Milvus Lite folder (removed at the end); a given URI gets a
    unique scratch collection, dropped at the end whatever happens.  ``embedder`` encodes the
    documents and, unless ``query_encoder`` is given, the questions too (one engine and
    precision for both, ``settings.model``'s when None).  ``mode`` is the search mode
    (``search.mode`` when None).
    """
    dataset = dataset or load_beir(dataset_dir, split)
    report, results = evaluate_modes(settings, dataset, [mode or settings.search.mode], k, uri, embedder, query_encoder)
    result = results[0]
    report.metrics, report.queries, report.per_query = result.metrics, result.queries, result.per_query
    report.seconds.update(search=result.search_seconds, search_ms_per_query=result.ms_per_query)
    report.mode = result.mode
    return report


def evaluate_modes(
    settings: Settings,
    dataset: BeirDataset,
    modes: Sequence[str],
    k: int = 10,
    uri: str | None = None,
    embedder: Any = None,
    query_encoder: Any = None,
) -> tuple[EvaluationReport, list[ModeResult]]:
    """One ingest of the corpus, then every mode in ``modes`` searched and scored on it.

    The report describes the ingest (its metrics are left empty); each ``ModeResult`` has a mode's
    scores.  A mode the collection cannot serve (bm25 without a BM25 field) is refused before the
    corpus is ingested, so a refusal costs nothing."""
    ks = metric_ks(k)
    depth = max(100, k)
    top_k = min(depth * CHUNKS_PER_DOC, MAX_TOP_K)
    folder = None if uri else Path(tempfile.mkdtemp(prefix="flows-eval-"))
    scratch = _scratch_settings(settings, uri, folder)
    started = time.perf_counter()
    results: list[ModeResult] = []
    try:
        _check_modes_servable(scratch, modes)
        if embedder is None:
            embedder = load_embedder(settings)
        loaded = time.perf_counter()
        from milvus_ingest.ingest import run_ingest

        report = run_ingest(scratch, documents=corpus_documents(dataset, settings), embedder=embedder)
        ingested = time.perf_counter()
        queries = dataset.judged_queries()
        qids = list(queries)
        with Searcher(scratch, encoder=query_encoder or embedder) as searcher:
            searcher.warn_overlong = False  # long queries are counted and said once, not per batch
            queries_cut = _count_overlong(searcher, modes, list(queries.values()))
            for mode in modes:
                began = time.perf_counter()
                rankings: dict[str, list[tuple[str, float]]] = {}
                mode, _, fusion = mode.partition(":")  # "hybrid:weighted:0.7": that fusion, on this ingest
                ranker, _, weight = fusion.partition(":")
                scratch.search = settings.search.model_copy(update={
                    **({"ranker": ranker} if ranker else {}), **({"dense_weight": float(weight)} if weight else {}),
                })
                resolved = searcher.mode(mode)
                for start in range(0, len(qids), QUERY_BATCH):
                    batch = qids[start : start + QUERY_BATCH]
                    hits = searcher.search([queries[q] for q in batch], top_k=top_k, mode=resolved)
                    for qid, row in zip(batch, hits):
                        rankings[qid] = rank_documents(row, depth)
                results.append(score_rankings(resolved, rankings, dataset, queries, ks, k, time.perf_counter() - began))
    except BaseException:
        _drop_scratch(scratch, folder, quiet=True)
        raise
    _drop_scratch(scratch, folder, quiet=False)
    return EvaluationReport(
        dataset=str(dataset.root),
        split=dataset.split,
        model=settings.model.name,
        k=k,
        documents=len(dataset.corpus),
        chunks=report.chunks,
        skipped_documents=len(report.skipped),
        metrics={},
        queries=0,
        per_query={},
        seconds={"model_load": round(loaded - started, 3), "ingest": round(ingested - loaded, 3)},
        collection=scratch.milvus.collection,
        uri=uri or "temporary Milvus Lite folder",
        engine=_engine_of(embedder, query_encoder),
        queries_cut=queries_cut,
    ), results


def _count_overlong(searcher: Searcher, modes: Sequence[str], questions: list[str]) -> int:
    """Queries longer than the model reads, counted and said once (their vectors are made from
    their first tokens, as a search would), instead of a warning per query and batch."""
    encoder = searcher.encoder if any(not m.startswith("bm25") for m in modes) else None
    cut = len(encoder.overlong(questions, searcher.query_instruction)) if hasattr(encoder, "overlong") else 0
    if cut:
        log.warning("%d of %d queries are longer than the model reads (%d tokens): their vectors are made from "
                    "their first tokens, as a search would; BM25 reads them whole", cut, len(questions),
                    encoder.max_seq_length)
    return cut


def corpus_documents(dataset: BeirDataset, settings: Settings) -> list[Any]:
    """The corpus as in-memory documents whose ``source`` is the document id.  With contextual
    chunks the title travels as the document's title (embedded with every chunk), else it is the
    first line of the text, as BEIR's dense models read it."""
    from milvus_ingest.sources import TextDocument

    if settings.chunking.contextual:
        return [TextDocument(source=i, text=d.text if d.text.strip() else d.full_text, title=d.title)
                for i, d in dataset.corpus.items()]
    return [TextDocument(source=i, text=d.full_text) for i, d in dataset.corpus.items()]


def score_rankings(
    mode: str,
    rankings: dict[str, list[tuple[str, float]]],
    dataset: BeirDataset,
    queries: Mapping[str, str],
    ks: dict[str, tuple[int, ...]],
    k: int,
    seconds: float,
) -> ModeResult:
    """Metrics and per-query records of one run's document rankings."""
    run = {qid: [doc for doc, _ in ranking] for qid, ranking in rankings.items()}
    result = evaluate_run(run, dataset.qrels, ks)
    per_query = {
        qid: _query_record(queries[qid], rankings.get(qid, []), dataset.qrels[qid], result.per_query.get(qid), k)
        for qid in queries
    }
    n = max(len(queries), 1)
    return ModeResult(mode, dict(result.metrics), result.queries, per_query, round(seconds, 3), round(1000 * seconds / n, 2))


def _check_modes_servable(scratch: Settings, modes: Sequence[str]) -> None:
    """Refuse bm25/hybrid before ingesting when the scratch collection could not have BM25."""
    wanted = {m.partition(":")[0] for m in modes} & {"bm25", "hybrid"}
    problem = bm25_unavailable(scratch.milvus) if wanted else ""
    if problem:
        raise ConfigError(
            f"--mode {'/'.join(sorted(wanted))} needs a BM25 full-text field: {problem}; evaluate with --mode dense, "
            "or on a backend with BM25 (Milvus Lite 3, Milvus 2.5+); nothing was ingested"
        )


def bm25_unavailable(milvus: Any) -> str:
    """Why a new collection with these Milvus settings would have no BM25 field ('' when it would):
    ``milvus.bm25: off``, or a backend without BM25 functions (a Lite folder is judged by the
    installed Lite, without opening one; a server is asked)."""
    from milvus_ingest.store import MilvusStore
    from milvus_ingest.store.capabilities import bm25_missing, bm25_problem

    if milvus.bm25 == "off":
        return "milvus.bm25 is off"
    if milvus.is_lite:
        return bm25_missing("lite", "")
    with MilvusStore(milvus) as store:
        return bm25_problem(store)


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


__all__ = ["EvaluationReport", "ModeResult", "evaluate_dataset", "evaluate_modes", "load_embedder", "metric_ks", "rank_documents"]
