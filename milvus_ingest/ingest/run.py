"""One whole ingest: discover, plan, then chunk → encode → write a group of sources at a time.

A run converges: every chunk's primary key is derived from its source and position, a source's
rows carry the hash of the content they came from, and chunk 0 carries the number of chunks of a
*complete* version (written last, after stale rows are gone).  So a re-run skips sources whose
stored version is complete and current, redoes any that a crash left half-written, and removes
chunks that a shorter new version no longer has; the plan reads one mark per source, never every
row (``store.state``).  A run holds the collection's write lease (``store.lease``) from before its
plan to its last write, so two ingests into one server collection take turns.  Reading and
chunking run in a thread ahead of the encoder (the first group's in a child process while the
model loads: ``early``), and writes in a thread behind it, so the model is never kept waiting.

This module must never import Prefect (the flows wrap it), and never load the model when there
is nothing to encode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from milvus_ingest.chunking import Chunker, TokenCounter, check_chunk_budget
from milvus_ingest.config import Settings
from milvus_ingest.ingest.early import start_early, worth_it
from milvus_ingest.ingest.faults import fault_point
from milvus_ingest.errors import CollectionMismatchError
from milvus_ingest.ingest.plan import (
    IngestOptions,
    IngestPlan,
    Item,
    SourcePlan,
    check_prune_share,
    collection_meta,
    group_plans,
    plan_ingest,
    select_shard,
    shard_of,
)
from milvus_ingest.ingest.probe import drop_unopenable
from milvus_ingest.ingest.report import IngestReport, StageTimes, retrieval_info
from milvus_ingest.ingest.stream import ProgressCallback, WriteResult, write_stream
from milvus_ingest.sources import Discovery, Skipped, TextDocument, discover_sources
from milvus_ingest.store import MilvusStore, SourceMark
from milvus_ingest.store.lease import NoLease, WriteLease, acquire_lease
from milvus_ingest.store.state import rows_accounted_for


class Ingestor:
    """Holds the store and (lazily) the model for one or more ingest steps of a run."""

    def __init__(
        self,
        settings: Settings,
        store: MilvusStore | None = None,
        embedder: Any = None,
        progress: ProgressCallback | None = None,
        overlap_writes: bool = True,
        early_chunking: bool = False,
    ):
        self.settings = settings
        #: Writes run in a thread behind the encoder; False writes inline (for measuring it).
        self.overlap_writes = overlap_writes
        #: A child that chunks the first group while the model loads (``early``), started first.
        self._early = start_early(settings) if early_chunking and store is None and embedder is None else None
        try:
            self.store = store or MilvusStore(settings.milvus)
        except BaseException:
            self.stop_chunking_ahead()
            raise
        self._embedder = embedder
        self._chunker: Chunker | None = None
        self.progress = progress
        self.times = StageTimes()
        self._checked = False
        self._checked_with_model = False
        #: The collection's write lease for this run (``run_ingest`` takes it before planning).
        self.lease: WriteLease | NoLease = NoLease()

    # -- model ------------------------------------------------------------------------
    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            started = time.perf_counter()
            from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

            self._embedder = InstructorEmbeddingFunction.from_settings(self.settings.model)
            self.times.model_load += time.perf_counter() - started
        return self._embedder

    @property
    def engine_info(self) -> dict[str, Any] | None:
        """What the loaded model runs on and why (None before a model is loaded, or if it cannot say)."""
        info = getattr(self._embedder, "engine_info", None) if self._embedder is not None else None
        return dict(info) if isinstance(info, dict) else None

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            ef = self.embedder
            counter = TokenCounter(ef.tokenizer)
            c = self.settings.chunking
            context = c.context_tokens if c.contextual else 0
            check_chunk_budget(counter, c.chunk_tokens, ef.doc_instruction, ef.max_seq_length, context)
            self._chunker = Chunker(
                counter,
                c.chunk_tokens,
                c.overlap_tokens,
                self.settings.milvus.text_max_bytes,
                ef.doc_instruction,
                ef.max_seq_length,
                context,
            )
        return self._chunker

    # -- collection -------------------------------------------------------------------
    def prepare_collection(self, need_model: bool) -> bool:
        """Create the collection, or refuse an incompatible one before anything is written.

        Without ``need_model`` an existing collection is checked on what the config says (model
        name, instructions, metric), so an unchanged re-run never loads the model; the dimension
        is checked as soon as the model is loaded.  Returns True when the collection was created.
        """
        if self._checked_with_model or (self._checked and not need_model):
            return False
        store = self.store
        if store.exists():
            stored = store.read_meta()
            if stored is not None:
                self._follow_recorded_instructions(stored)
            loaded = need_model or self._embedder is not None
            dim = self.embedder.dim if loaded else (stored.dim if stored else 0)
            need_model = loaded
            store.open_for_writing(collection_meta(self.settings, dim))
            created = False
        else:
            _ = self.chunker  # built now: the chunk budget is checked before anything is created
            created = store.ensure_collection(collection_meta(self.settings, self.embedder.dim))
            need_model = True
        self._checked = True
        self._checked_with_model = need_model
        return created

    def _follow_recorded_instructions(self, stored: Any) -> None:
        """An instruction the config leaves unset is the one the collection recorded, not the
        model's preset: a preset that changed (or a collection made with explicit ones) must not
        turn the next scheduled run into a refusal.  One the config sets is checked as given."""
        model = self.settings.model
        if model.doc_instruction is not None and model.query_instruction is not None:
            return
        if stored.model != model.name:
            return  # a model mismatch: refused by the compatibility check
        self.settings = self.settings.model_copy(deep=True)
        if model.doc_instruction is None:
            self.settings.model.doc_instruction = stored.doc_instruction
        if model.query_instruction is None:
            self.settings.model.query_instruction = stored.query_instruction
        if self._embedder is not None:
            self._embedder.doc_instruction = self.settings.model.instructions.doc
            self._embedder.query_instruction = self.settings.model.instructions.query
            self._chunker = None  # its budget counted the old instruction

    def read_marks(self, shard: tuple[int, int] | None = None) -> dict[str, SourceMark]:
        """One commit mark per stored source (a few paged reads, not a scan of every row); a shard
        run reads its own shard's only (the other shards of its fan-out may be writing theirs)."""
        if not self.store.exists():
            return {}
        if shard is None:
            return self.store.source_marks()
        index, count = shard
        return self.store.source_marks(lambda source: shard_of(source, count) == index)

    def recreate_collection(self) -> bool:
        """Drop the collection so this run rebuilds it (``--full --recreate``); True when one was dropped.

        Only a collection this pipeline made is dropped, and only once the model has loaded (a
        model that fails to load leaves the collection as it was).
        """
        store = self.store
        if not store.exists():
            return False
        if store.read_meta() is None:
            raise CollectionMismatchError(
                f"collection {store.collection!r} at {self.settings.milvus.uri} was not created by this pipeline: "
                "--recreate never drops it; use another --collection name"
            )
        _ = self.embedder.dim  # loads the model before anything is dropped
        store.drop()
        self._checked = self._checked_with_model = False
        return True

    # -- steps ------------------------------------------------------------------------
    def plan(self, discovery: Discovery, options: IngestOptions) -> IngestPlan:
        started = time.perf_counter()
        discovery = select_shard(discovery, options.shard)
        plan = plan_ingest(
            discovery.files, discovery.skipped, discovery.is_gone, self.read_marks(options.shard), self.settings, options
        )
        self.times.plan += time.perf_counter() - started
        return plan

    def plan_documents(self, documents: Sequence[Item], options: IngestOptions) -> IngestPlan:
        """Plan in-memory documents; with ``prune``, stored sources not among them are gone."""
        started = time.perf_counter()
        marks = self.read_marks()
        plan = plan_ingest(documents, [], lambda source: False, marks, self.settings, options)
        if options.prune:
            wanted = {d.source for d in documents}
            plan.gone = {s: mark for s, mark in marks.items() if s not in wanted}
        self.times.plan += time.perf_counter() - started
        return plan

    def chunk_ahead(self, plans: Sequence[SourcePlan]) -> None:
        """Give the child the first group of ``plans`` while the model is not loaded, else end it."""
        if self._early is not None and self._embedder is None and worth_it(plans):
            self._early.submit(group_plans(plans)[0])
        else:
            self.stop_chunking_ahead()

    def stop_chunking_ahead(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            early.close()

    def write_sources(self, plans: Sequence[SourcePlan]) -> WriteResult:
        """Chunk, encode and write these sources (see ``stream.write_stream``); sources that do
        not even open are skipped before the model loads (``probe``)."""
        started = time.perf_counter()
        probed = drop_unopenable(plans)
        self.times.read += time.perf_counter() - started
        if not probed.plans:
            return WriteResult(failed=probed.failures)
        self.lease.check()
        self.prepare_collection(need_model=True)
        window = max(1, self.settings.model.batch_size * self.settings.model.window_batches)
        first = self.settings.model.batch_size * getattr(self.embedder, "workers", 1)  # a batch for each worker
        chunker = self.chunker
        early, self._early = self._early, None  # the first group's only; the stream ends it
        result = write_stream(
            probed.plans, chunker, self.embedder, self.store, self.times, window, self.progress,
            self.overlap_writes, first_window=min(first, window), opened=probed.opened,
            window_seconds=self.settings.model.window_seconds,
            early=early if early is not None and early.usable_for(chunker) else None,
        )
        result.failed[:0] = probed.failures
        return result

    def remove_sources(self, sources: dict[str, SourceMark]) -> list[str]:
        """Delete every row of these sources, by expression, a batch of sources per request."""
        self.lease.check()
        started = time.perf_counter()
        self.store.delete_sources(sources)
        self.times.write += time.perf_counter() - started
        return sorted(sources)

    def doomed_rows(self, sources: dict[str, SourceMark]) -> int:
        """Rows that removing these sources deletes: their marks' counts, a count where unknown."""
        return rows_accounted_for(self.store, sources)

    def close(self) -> None:
        self.stop_chunking_ahead()
        self.store.close()


StepRunner = Callable[..., Any]


def run_step_directly(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """The default step runner: call the function.  The Prefect flow passes one that makes a task."""
    return fn(*args)


def run_ingest(
    settings: Settings,
    specs: Sequence[str] = (),
    options: IngestOptions = IngestOptions(),
    documents: Sequence[TextDocument] | None = None,
    ingestor: Ingestor | None = None,
    progress: ProgressCallback | None = None,
    step: StepRunner = run_step_directly,
    embedder: Any = None,
) -> IngestReport:
    """One whole ingest: discover, plan, write (a step per group of sources), prune, count.

    ``documents`` ingests in-memory texts instead of files (their ``source`` names are stored
    as given, and ``prune`` then removes stored sources not among them).  ``options.recreate``
    drops the collection first (see ``Ingestor.recreate_collection``).  ``step`` runs each
    stage; the Prefect flow passes a runner that makes each one a task.  ``embedder`` reuses a
    loaded model (tests, the benchmark, the evaluation).
    """
    started = time.perf_counter()
    discovery = None
    if documents is None:  # a bad path fails before Milvus is even opened
        s = settings.sources
        discovery = step("discover", discover_sources, list(specs), s.include, s.exclude, s.follow_symlinks)
    own = ingestor is None
    ingestor = ingestor or Ingestor(settings, embedder=embedder, progress=progress, early_chunking=documents is None)
    try:
        # Taken before the plan: what another ingest is writing is never planned against.
        waited = time.perf_counter()
        ingestor.lease = acquire_lease(ingestor.store, options.shard)
        ingestor.times.lock_wait += time.perf_counter() - waited
        report = IngestReport(collection=ingestor.store.collection, uri=settings.milvus.uri)
        if options.recreate:
            step("recreate", ingestor.recreate_collection)
        if ingestor.store.exists():
            ingestor.prepare_collection(need_model=False)
        if discovery is not None:
            plan = step("plan", ingestor.plan, discovery, options)
        else:
            plan = step("plan", ingestor.plan_documents, list(documents), options)
        fault_point("planned")
        ingestor.chunk_ahead(plan.todo)
        if options.prune and plan.gone and not options.yes:
            doomed = ingestor.doomed_rows(plan.gone)
            check_prune_share(plan, ingestor.store.count(), settings.sources.prune_max_share, doomed)
        if not ingestor.store.exists():
            report.created_collection = ingestor.prepare_collection(need_model=True)
        counts: dict[str, int] = {}
        failed: list[Skipped] = []
        for group in group_plans(plan.todo):
            written = step("embed-and-write", ingestor.write_sources, group)
            counts.update(written.counts)
            failed.extend(written.failed)
        for sp in plan.todo:
            if sp.item.source in counts:
                (report.new if sp.status == "new" else report.updated).append(sp.item.source)
        report.chunks = sum(counts.values())
        report.unchanged = plan.unchanged
        report.skipped = plan.skipped + failed
        if plan.emptied:
            step("remove-emptied", ingestor.remove_sources, plan.emptied)
        if options.prune and plan.gone:
            report.pruned = step("prune", ingestor.remove_sources, plan.gone)
        else:
            report.stale_sources = sorted(plan.gone)
        report.rows = ingestor.store.count()
        report.stages = ingestor.times
        report.engine = ingestor.engine_info
        report.retrieval = retrieval_info(ingestor.settings, ingestor.store.has_bm25)
        report.seconds = time.perf_counter() - started
        return report
    finally:
        ingestor.stop_chunking_ahead()
        ingestor.lease.release()
        ingestor.lease = NoLease()
        if own:
            ingestor.close()


