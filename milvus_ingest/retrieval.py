"""Search a collection with questions: encode them as the collection expects, return typed hits.

``Searcher`` opens one collection, checks it before any model is loaded (it exists, it was built by
this pipeline, it is not empty, the configured model is the one it was built with, the filter
parses), then encodes many questions in one batch with the **query instruction recorded on the
collection** and searches them in a few requests.  ``search_questions`` is the one-call form for
Python callers (a QA step, the evaluation).  This module must never import Prefect, never encode
a question with another model or dimension than the collection's (``CollectionMismatchError``),
and never let a Milvus parse error of a filter out as anything but one ``bad --filter`` line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from milvus_ingest.config import ModelSettings, Settings
from milvus_ingest.errors import BadFilterError, CollectionMismatchError, ConfigError, StoreError
from milvus_ingest.store.search import (
    check_filter,
    hybrid_hits,
    index_type,
    read_search_meta,
    search_hits,
    search_params_for,
    text_hits,
)
from milvus_ingest.hits import Hit, location, to_hit as _to_hit
from milvus_ingest.readers.base import is_blank
from milvus_ingest.store import SCALAR_FIELDS, CollectionMeta, MilvusStore
from milvus_ingest.store.capabilities import bm25_problem

log = logging.getLogger(__name__)

#: Fields every hit carries; ``output_fields`` adds to these.
HIT_FIELDS = ("text", "source", "start_char", "end_char", "chunk_index")
#: Where in its document a hit is, for citations; asked for on collections that have them (schema 2).
STRUCTURE_FIELDS = ("title", "section", "page", "format")
#: Fields a caller may ask for (the vector is left out: it is large and never needed by a reader).
SELECTABLE_FIELDS = ("id", *SCALAR_FIELDS)
#: Milvus's upper bound on ``limit`` (top-k).
MAX_TOP_K = 16384
#: Hits per search request (questions x top-k): keeps each answer well below gRPC's size limits.
HITS_PER_REQUEST = 4096
#: What ``search.mode`` / ``--mode`` may name; ``auto`` is hybrid where the collection has BM25.
MODES = ("auto", "dense", "bm25", "hybrid")


class Searcher:
    """One collection, checked once, and (lazily) the query encoder for it.

    ``encoder`` reuses a loaded model (anything with ``encode_array(texts, instruction)``, ``dim``
    and ``model_name``); otherwise the configured model is loaded with the engine for questions
    (``InstructorEmbeddingFunction(for_queries=True)``: ONNX Runtime fp32 under ``model.backend:
    auto``, no torch import once the model's export is cached): with ``preload`` (the default)
    on a second thread while Milvus is connected to and the collection checked, where it needs
    no import (``encoders.preload``), else on the first search.  Pass ``preload=False`` when
    only BM25 searches follow: they need no model.
    """

    def __init__(
        self,
        settings: Settings,
        encoder: Any = None,
        store: MilvusStore | None = None,
        preload: bool = True,
    ):
        self.settings = settings
        self._own_store = store is None
        self._preload: Any = None
        if encoder is None and preload:
            from milvus_ingest.encoders.preload import QueryEncoderPreload

            self._preload = QueryEncoderPreload(settings.model)
        # A private copy of the Milvus settings: the metric is set to the collection's below.
        self.store = store or MilvusStore(settings.milvus.model_copy(deep=True))
        self._encoder = encoder
        #: Warn about each question longer than the model reads; off where the caller reports
        #: them once itself (an evaluation over thousands of queries).
        self.warn_overlong = True
        try:
            self.meta = self._check_collection()
            self.index_type = self._index_type()
        except BaseException:
            self.close()
            raise

    # -- checks -----------------------------------------------------------------------
    def _check_collection(self) -> CollectionMeta:
        store, name, uri = self.store, self.store.collection, self.settings.milvus.uri
        if not store.exists():
            raise StoreError(
                f"collection {name!r} does not exist at {uri}: ingest into it first "
                "(python -m flows.ingest SOURCE --config FILE) or pass the right --collection / --uri"
            )
        meta = read_search_meta(store, self.settings.model.instructions.query)
        model = getattr(self._encoder, "model_name", None) or self.settings.model.name
        if meta.model != model:
            raise CollectionMismatchError(
                f"collection {name!r} was built with model {meta.model!r} ({meta.dim}-d); questions would be "
                f"encoded with {model!r}: search with the config the collection was ingested with "
                "(--config) or another --collection"
            )
        if self._encoder is not None:
            _check_dim(self._encoder, meta, name, model)
        if store.settings.metric_type != meta.metric_type:  # search with the metric the index was built for
            if not self._own_store:
                store.settings = store.settings.model_copy(deep=True)  # never change the caller's settings
            store.settings.metric_type = meta.metric_type  # type: ignore[assignment]
        store.load()
        if store.count() == 0:
            raise StoreError(
                f"collection {name!r} at {uri} is empty: ingest documents into it first "
                "(python -m flows.ingest SOURCE --config FILE)"
            )
        return meta

    def _index_type(self) -> str:
        return index_type(self.store)

    def check_filter(self, filter_expr: str) -> None:
        """Ask Milvus to parse ``filter_expr`` (a one-row query) before any model is loaded."""
        check_filter(self.store, filter_expr)

    # -- encoding ---------------------------------------------------------------------
    @property
    def query_instruction(self) -> str:
        return self.meta.query_instruction

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            preload, self._preload = self._preload, None  # taken once: a failed preload is not retried
            preloaded = preload.result() if preload is not None else None
            if preloaded is not None:
                preloaded.set_query_instruction(self.query_instruction)
            encoder = preloaded or load_query_encoder(self.settings.model, self.query_instruction)
            _check_dim(encoder, self.meta, self.store.collection, self.settings.model.name)
            self._encoder = encoder
        return self._encoder

    def encode(self, questions: Sequence[str]) -> Any:
        """``(n, dim)`` float32: all questions in one call, with the collection's query instruction.

        A question longer than the model reads is encoded from its first tokens only (BM25 still
        reads all of it); that is said in a warning naming the question, never done silently."""
        questions = list(questions)
        encoder = self.encoder
        overlong = getattr(encoder, "overlong", None) if self.warn_overlong else None
        for i, n in overlong(questions, self.query_instruction) if overlong else []:
            log.warning(
                "question %d is %d tokens: the model reads its first %d, the rest is left out of its vector "
                "(ask a shorter question, or search --mode bm25 for long text)", i + 1, n, encoder.max_seq_length,
            )
        return encoder.encode_array(questions, self.query_instruction)

    # -- search -----------------------------------------------------------------------
    def mode(self, requested: str | None = None) -> str:
        """The mode a search runs in: ``requested`` (else ``search.mode``), ``auto`` resolved by
        the collection's BM25 field; bm25/hybrid on a collection without one is one refusal line."""
        mode = requested or self.settings.search.mode
        if mode not in MODES:
            raise ConfigError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
        if mode == "auto":
            return "hybrid" if self.meta.bm25 else "dense"
        if mode != "dense" and not self.meta.bm25:
            store = self.store
            why = bm25_problem(store) or "it was created without one (milvus.bm25: off, or before BM25 fields)"
            raise ConfigError(
                f"--mode {mode} needs a BM25 full-text field and collection {store.collection!r} has none: {why}; "
                "search with --mode dense (search.mode: dense), or ingest into a new collection on a backend with BM25"
            )
        return mode

    def search(
        self,
        questions: Sequence[str],
        top_k: int = 5,
        filter_expr: str = "",
        output_fields: Sequence[str] = (),
        search_params: dict[str, Any] | None = None,
        mode: str | None = None,
    ) -> list[list[Hit]]:
        """Ranked hits per question (best first), in the order the questions were given.

        ``dense`` and ``hybrid`` encode the questions (one batch); ``bm25`` needs no model at all."""
        questions = list(questions)
        _check_questions(questions)
        _check_top_k(top_k)
        extra = _check_output_fields(output_fields)
        mode = self.mode(mode)
        self.check_filter(filter_expr)
        if mode == "bm25":
            return self._in_requests(len(questions), top_k, extra, lambda a, b, fields: text_hits(
                self.store, questions[a:b], top_k, filter_expr, fields))
        vectors = self.encode(questions)
        if mode == "dense":
            return self.search_vectors(vectors, top_k, filter_expr, extra, search_params)
        candidates = max(top_k, self.settings.search.candidates)
        params, ranker = self._params(search_params, candidates), self._ranker()
        return self._in_requests(len(questions), candidates, extra, lambda a, b, fields: hybrid_hits(
            self.store, vectors[a:b], questions[a:b], top_k, filter_expr, fields, params, ranker, candidates))

    def _ranker(self) -> Any:
        from pymilvus import RRFRanker, WeightedRanker

        s = self.settings.search
        return RRFRanker(s.rrf_k) if s.ranker == "rrf" else WeightedRanker(s.dense_weight, 1 - s.dense_weight)

    def _in_requests(self, n: int, per_question: int, extra: Sequence[str], run: Any) -> list[list[Hit]]:
        """``run(start, stop, fields)`` over question ranges of at most ``HITS_PER_REQUEST`` hits."""
        fields = self._fields(extra)
        per_request = max(1, HITS_PER_REQUEST // per_question)
        results: list[list[Hit]] = []
        for start in range(0, n, per_request):
            raw = run(start, min(start + per_request, n), fields)
            results.extend([_to_hit(h, extra) for h in row] for row in raw)
        return results

    def _fields(self, extra: Sequence[str]) -> list[str]:
        structure = STRUCTURE_FIELDS if self.meta.schema_version >= 2 else ()
        return list(dict.fromkeys([*HIT_FIELDS, *structure, *extra]))

    def _params(self, search_params: dict[str, Any] | None, top_k: int) -> dict[str, Any]:
        return search_params_for(
            self.index_type, search_params if search_params is not None else self._configured_params(), top_k
        )

    def search_vectors(
        self,
        vectors: Any,
        top_k: int,
        filter_expr: str = "",
        output_fields: Sequence[str] = (),
        search_params: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Search encoded questions (dense) in requests of at most ``HITS_PER_REQUEST`` hits."""
        params = self._params(search_params, top_k)
        return self._in_requests(len(vectors), top_k, output_fields, lambda a, b, fields: search_hits(
            self.store, vectors[a:b], top_k, filter_expr, fields, params))

    def _configured_params(self) -> dict[str, Any] | None:
        """The config's search params apply when the collection has the config's index type."""
        if self.index_type == self.settings.milvus.index_type:
            return dict(self.settings.milvus.search_params)
        return None

    def close(self) -> None:
        if self._own_store:
            self.store.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_query_encoder(model: ModelSettings, query_instruction: str) -> Any:
    """The configured model, on the engine for questions, with the collection's query instruction."""
    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    return InstructorEmbeddingFunction.from_settings(model, query_instruction=query_instruction, for_queries=True)


def _check_dim(encoder: Any, meta: CollectionMeta, collection: str, model: str) -> None:
    if int(encoder.dim) != int(meta.dim):
        raise CollectionMismatchError(
            f"collection {collection!r} was built with model {meta.model!r} ({meta.dim}-d) but "
            f"{getattr(encoder, 'model_name', None) or model!r} makes {encoder.dim}-d vectors: search with "
            "the model the collection was built with"
        )


def _check_questions(questions: list[str]) -> None:
    if not questions:
        raise ConfigError("no question given")
    for number, question in enumerate(questions, start=1):
        if not isinstance(question, str) or is_blank(question):  # zero-width spaces alone ask nothing
            raise ConfigError(f"question {number} is empty")
        try:
            question.encode("utf-8")
        except UnicodeEncodeError as exc:  # bytes a non-UTF-8 terminal or locale passed through argv
            raise ConfigError(
                f"question {number} is not valid UTF-8 (at character {exc.start}): pass the question as UTF-8 text"
            ) from None


def _check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise ConfigError(f"--top-k must be between 1 and {MAX_TOP_K}, got {top_k!r}")


def _check_output_fields(output_fields: Sequence[str]) -> list[str]:
    if isinstance(output_fields, str):
        output_fields = [output_fields]
    unknown = [f for f in output_fields if f not in SELECTABLE_FIELDS]
    if unknown:
        raise ConfigError(f"unknown output field(s) {', '.join(unknown)}: choose from {', '.join(SELECTABLE_FIELDS)}")
    return [f for f in output_fields if f not in HIT_FIELDS and f not in STRUCTURE_FIELDS and f != "id"]


def search_questions(
    settings: Settings,
    questions: Sequence[str],
    top_k: int = 5,
    filter_expr: str = "",
    output_fields: Sequence[str] = (),
    search_params: dict[str, Any] | None = None,
    encoder: Any = None,
    mode: str | None = None,
) -> list[list[Hit]]:
    """Open the configured collection, search every question in one batch, close; hits per question.

    ``mode`` is dense, bm25, hybrid or auto (``search.mode`` when None)."""
    with Searcher(settings, encoder=encoder, preload=(mode or settings.search.mode) != "bm25") as searcher:
        return searcher.search(questions, top_k, filter_expr, output_fields, search_params, mode)


__all__ = [
    "HIT_FIELDS",
    "STRUCTURE_FIELDS",
    "BadFilterError",
    "Hit",
    "Searcher",
    "location",
    "read_search_meta",
    "search_params_for",
    "search_questions",
]
