"""Retrieval metrics (nDCG@k, Recall@k, MRR@k) over a ranked run and graded qrels, BEIR/TREC style.

This module turns "which documents came back, in what order" into the numbers a benchmark
reports, with the same conventions as BEIR (pytrec_eval's ``ndcg_cut``/``recall``), so that a
score here can be put next to a published one.  It must never search, embed or load anything:
it is pure arithmetic over ids, so it can be checked by hand and run anywhere.

Conventions, each one a choice that changes the numbers:

* gain = the qrels grade itself (linear, as ``ndcg_cut``), discount = ``log2(rank + 1)``, and
  the ideal ranking is the qrels' own grades sorted from high to low;
* a document is relevant when its grade is > 0; grades <= 0 (BEIR keeps 0 rows) give no gain;
* a doc id that appears twice in a ranking counts once, at its first rank, and the repeats do
  not take up a place in the top k (what a chunk index gives after collapsing chunks to docs);
* the means are over the queries with at least one relevant document (BEIR drops the others);
  such a query that is missing from the run scores 0 rather than being skipped, so a search
  that silently returned nothing lowers the score instead of hiding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from milvus_ingest.errors import MetricError

__all__ = [
    "DEFAULT_KS",
    "EvaluationResult",
    "MetricError",
    "evaluate_run",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
]

#: The metrics a benchmark reports by default: keys ``ndcg@10``, ``recall@10``, ``recall@100``,
#: ``mrr@10``.  Recall@100 shows what a reranker could still recover; the rest are BEIR's headline.
DEFAULT_KS: Mapping[str, tuple[int, ...]] = {"ndcg": (10,), "recall": (10, 100), "mrr": (10,)}


@dataclass(frozen=True)
class EvaluationResult:
    """Means over the evaluated queries, how many there were, and each query's own values.

    ``per_query`` is kept because a mean hides which questions fail; a regression is found by
    diffing those, not the headline number.
    """

    metrics: dict[str, float]
    queries: int
    per_query: dict[str, dict[str, float]] = field(repr=False)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def as_dict(self) -> dict[str, float | int]:
        """The flat record a report or a JSON file wants: every mean plus ``queries``."""
        return {**self.metrics, "queries": self.queries}


def _check_k(k: int) -> None:
    # bool is an int in Python; ndcg_at_k(..., True) is a bug, not "k = 1".
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise MetricError(f"k must be a positive integer, got {k!r}")


def _top_k_unique(ranked_doc_ids: Iterable[str], k: int) -> list[str]:
    """The first k distinct ids, in order: a repeated id keeps its first rank only."""
    if isinstance(ranked_doc_ids, str):
        # A bare string would be scored character by character, silently.
        raise MetricError(f"a ranking must be a list of doc ids, got the string {ranked_doc_ids!r}")
    seen: set[str] = set()
    top: list[str] = []
    for doc_id in ranked_doc_ids:
        if doc_id in seen:
            continue
        seen.add(doc_id)
        top.append(doc_id)
        if len(top) == k:
            break
    return top


def _dcg(gains: Iterable[float]) -> float:
    # rank r (1-based) is discounted by log2(r + 1); enumerate is 0-based, hence + 2.
    return sum(gain / math.log2(index + 2) for index, gain in enumerate(gains))


def ndcg_at_k(ranked_doc_ids: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Normalised DCG of the top k against the best order the qrels allow; 0.0 with nothing relevant.

    Graded: a grade-2 document at rank 1 is worth twice a grade-1 one, so putting the best answer
    first matters, which Recall cannot see.
    """
    _check_k(k)
    ideal_gains = sorted((grade for grade in qrels.values() if grade > 0), reverse=True)[:k]
    ideal = _dcg(ideal_gains)
    if ideal == 0.0:
        return 0.0
    gains = (max(qrels.get(doc_id, 0), 0) for doc_id in _top_k_unique(ranked_doc_ids, k))
    return _dcg(gains) / ideal


def recall_at_k(ranked_doc_ids: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Share of the query's relevant documents found in the top k; 0.0 when it has none.

    The denominator is every relevant document of the query, not min(k, that number), as
    pytrec_eval's ``recall_k``: with more relevant docs than k, 1.0 is out of reach by design.
    """
    _check_k(k)
    relevant = {doc_id for doc_id, grade in qrels.items() if grade > 0}
    if not relevant:
        return 0.0
    found = sum(1 for doc_id in _top_k_unique(ranked_doc_ids, k) if doc_id in relevant)
    return found / len(relevant)


def mrr_at_k(ranked_doc_ids: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document within the top k, else 0.0; grades do not matter."""
    _check_k(k)
    for rank, doc_id in enumerate(_top_k_unique(ranked_doc_ids, k), start=1):
        if qrels.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


_METRICS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k}


def _metric_names(ks: Mapping[str, Sequence[int]]) -> list[tuple[str, int]]:
    """Validate ``ks`` once, up front, so a typo fails before any query is scored."""
    names: list[tuple[str, int]] = []
    for metric, cutoffs in ks.items():
        if metric not in _METRICS:
            raise MetricError(f"unknown metric {metric!r}; choose from {sorted(_METRICS)}")
        for k in cutoffs:
            _check_k(k)
            names.append((metric, k))
    if not names:
        raise MetricError("no metric asked for: ks is empty")
    return names


def evaluate_run(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    ks: Mapping[str, Sequence[int]] = DEFAULT_KS,
) -> EvaluationResult:
    """Score a run (query id -> ranked doc ids) against qrels, averaged over the judged queries.

    A query counts when its qrels hold at least one grade > 0; run entries for other queries are
    ignored.  A counted query absent from the run scores 0 on every metric (see the module doc).
    """
    names = _metric_names(ks)
    evaluated = sorted(qid for qid, judged in qrels.items() if any(g > 0 for g in judged.values()))
    if not evaluated:
        raise MetricError("no query in the qrels has a relevant document (grade > 0); nothing to evaluate")
    per_query: dict[str, dict[str, float]] = {}
    for qid in evaluated:
        ranking = run.get(qid, ())
        per_query[qid] = {f"{m}@{k}": _METRICS[m](ranking, qrels[qid], k) for m, k in names}
    means = {
        f"{m}@{k}": math.fsum(values[f"{m}@{k}"] for values in per_query.values()) / len(evaluated)
        for m, k in names
    }
    return EvaluationResult(metrics=means, queries=len(evaluated), per_query=per_query)
