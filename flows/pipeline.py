"""The ingest pipeline as plain functions: plan what changed, then chunk → encode → write.

A run converges: every chunk's primary key is derived from its source and position, a source's
rows carry the hash of the content they came from, and chunk 0 carries the number of chunks of a
*complete* version (written last, after stale rows are gone).  So a re-run skips sources whose
stored version is complete and current, redoes any that a crash left half-written, and removes
chunks that a shorter new version no longer has.  Reading and chunking run in a thread ahead of
the encoder, and writes run in a thread behind it, so the model is never kept waiting.

This module must never import Prefect (the flows wrap it), and never load the model when there
is nothing to encode.
"""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any


from flows.chunking import Chunk, Chunker, TokenCounter, check_chunk_budget
from flows.config import Settings
from flows.errors import ConfigError, PipelineError, PruneRefusedError
from flows.sources import (
    Discovery,
    Skipped,
    SourceFile,
    SourceReadError,
    TextDocument,
    discover_sources,
    inspect_source,
    iter_blocks,
    os_reason,
)
from flows.store import CollectionMeta, MilvusStore, SourceState

#: Bump when chunk boundaries for the same text and settings would change.
CHUNKER_VERSION = 1
#: Chunks handed to the encoder at once; sentence-transformers sorts them by length and pads
#: each of its batches to the longest item, so a wide window means little padding.
WINDOW_BATCHES = 8

Item = SourceFile | TextDocument
ProgressCallback = Callable[[int, int, int], None]  # (bytes done, bytes total, chunks done)


def chunk_id(source: str, index: int) -> str:
    """Primary key of chunk ``index`` of ``source``: the same on every run, on every machine."""
    return hashlib.blake2b(f"{source}\x00{index}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def shard_of(source: str, shards: int) -> int:
    """Stable shard number of a source path (not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha1(source.encode("utf-8", "surrogatepass")).digest()[:8], "big") % shards


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"i/N"`` → ``(i, N)``; shards are numbered from 0."""
    if not spec:
        return None
    try:
        index_text, count_text = spec.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ConfigError(f"--shard {spec!r} must look like i/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {spec!r}: need N >= 1 and 0 <= i < N")
    return index, count


@dataclass(frozen=True)
class IngestOptions:
    full: bool = False
    prune: bool = False
    #: Confirms a prune over ``sources.prune_max_share`` of the collection.
    yes: bool = False
    shard: tuple[int, int] | None = None


@dataclass
class SourcePlan:
    item: Item
    source_hash: str
    status: str  # "new" or "updated"
    old_ids: set[str]
    size: int
    #: SHA-256 of the bytes inspected; reading them again must give the same, or the file changed.
    sha256: str = ""


@dataclass
class IngestPlan:
    todo: list[SourcePlan]
    unchanged: list[str]
    skipped: list[Skipped]
    #: Sources whose content is now empty: their old rows go, as a clean ingest would have none.
    emptied: dict[str, set[str]]
    #: Stored sources under the given roots that no longer exist (removed only with ``prune``).
    gone: dict[str, set[str]]


@dataclass
class StageTimes:
    read: float = 0.0
    chunk: float = 0.0
    encode: float = 0.0
    write: float = 0.0
    plan: float = 0.0
    model_load: float = 0.0

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
        }


def _redact(uri: str) -> str:
    """A URI for logs: user:password@ removed."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


def _crash_point(name: str) -> None:
    """Fault injection for the crash tests: ``FLOWS_CRASH_AT=name:N`` kills -9 at the Nth hit.

    A real SIGKILL of the real process, so the tests prove recovery from exactly what a user's
    ``kill -9`` or an OOM kill does.  Costs one dict lookup when unset.
    """
    spec = os.environ.get("FLOWS_CRASH_AT")
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    hits = _CRASH_HITS.get(name, 0) + 1
    _CRASH_HITS[name] = hits
    if hits >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_CRASH_HITS: dict[str, int] = {}


def collection_meta(settings: Settings, dim: int) -> CollectionMeta:
    return CollectionMeta(
        model=settings.model.name,
        dim=dim,
        doc_instruction=settings.model.doc_instruction,
        query_instruction=settings.model.query_instruction,
        metric_type=settings.milvus.metric_type,
        text_max_bytes=settings.milvus.text_max_bytes,
    )


def content_hash(sha256: str, settings: Settings) -> str:
    """The version stamp stored on every row: file bytes *and* the chunking that cut them."""
    c = settings.chunking
    fingerprint = f"{sha256}:{c.chunk_tokens}:{c.overlap_tokens}:{settings.milvus.text_max_bytes}:{CHUNKER_VERSION}"
    return hashlib.sha256(fingerprint.encode()).hexdigest()


def plan_ingest(
    items: Sequence[Item],
    skipped: Sequence[Skipped],
    is_gone: Callable[[str], bool],
    states: dict[str, SourceState],
    settings: Settings,
    options: IngestOptions,
) -> IngestPlan:
    """Decide per source: new, updated, unchanged, emptied or skipped; and what is gone.

    A stored source not seen this run is gone only when ``is_gone`` says so (its file no longer
    exists within a spec's scope; see ``Discovery.is_gone``); a skipped one is still present.
    """
    todo: list[SourcePlan] = []
    unchanged: list[str] = []
    all_skipped = list(skipped)
    emptied: dict[str, set[str]] = {}
    present = {s.source for s in skipped if not s.refused}
    for item in items:
        present.add(item.source)
        inspection = inspect_source(item)
        state = states.get(item.source)
        if inspection.reason:
            all_skipped.append(Skipped(item.source, inspection.reason))
            if state and inspection.reason.startswith(("empty", "no text")):
                emptied[item.source] = set(state.ids)
            continue
        version = content_hash(inspection.sha256, settings)
        if state and not options.full and state.is_complete(version):
            unchanged.append(item.source)
            continue
        status = "updated" if state else "new"
        old_ids = set(state.ids) if state else set()
        todo.append(SourcePlan(item, version, status, old_ids, inspection.size, inspection.sha256))
    gone: dict[str, set[str]] = {}
    for source, state in states.items():
        if source in present or not is_gone(source):
            continue
        if options.shard and shard_of(source, options.shard[1]) != options.shard[0]:
            continue
        gone[source] = set(state.ids)
    return IngestPlan(todo, unchanged, all_skipped, emptied, gone)


def check_prune_share(plan: IngestPlan, rows: int, max_share: float) -> None:
    """Refuse, before anything is written, a prune that would remove too much of the collection."""
    doomed = sum(len(ids) for ids in plan.gone.values())
    if rows and doomed / rows > max_share:
        raise PruneRefusedError(
            f"--prune would remove {doomed} of {rows} rows ({doomed / rows:.0%}, from {len(plan.gone)} sources "
            f"whose files are gone, e.g. {min(plan.gone)}); that is over sources.prune_max_share "
            f"({max_share:.0%}): check the paths, then rerun with --prune --yes to confirm"
        )


def select_shard(discovery: Discovery, shard: tuple[int, int] | None) -> Discovery:
    if not shard:
        return discovery
    index, count = shard
    return replace(
        discovery,
        files=[f for f in discovery.files if shard_of(f.source, count) == index],
        skipped=[s for s in discovery.skipped if shard_of(s.source, count) == index],
    )


# -- the streaming stages ---------------------------------------------------------------


@dataclass
class _ChunkItem:
    plan_index: int
    index: int
    chunk: Chunk


@dataclass
class _EndItem:
    plan_index: int
    n_chunks: int


class _Writer(threading.Thread):
    """Applies upserts and per-source finalisation in order, behind the encoder."""

    def __init__(self, store: MilvusStore, times: StageTimes):
        super().__init__(name="milvus-writer", daemon=True)
        self.store = store
        self.times = times
        self.ops: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            op = self.ops.get()
            if op is None:
                return
            if self.error is not None:
                continue  # drain: the main thread will raise
            kind, payload = op
            started = time.perf_counter()
            try:
                if kind == "upsert":
                    self.store.upsert(payload)
                    _crash_point("after_upsert")
                elif kind == "finalize":
                    stale, commit_row = payload
                    if stale:
                        self.store.delete_ids(stale)
                        _crash_point("after_delete")
                    if commit_row is not None:
                        self.store.upsert([commit_row])
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.error = exc
            finally:
                self.times.write += time.perf_counter() - started

    def put(self, op: tuple[str, Any]) -> None:
        self.raise_if_failed()
        self.ops.put(op)

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.ops.put(None)
        self.join()
        self.raise_if_failed()


@dataclass
class _FailedItem:
    plan_index: int
    reason: str


def _produce(
    plans: Sequence[SourcePlan],
    chunker: Chunker,
    out: queue.Queue[Any],
    times: StageTimes,
    stop: threading.Event,
) -> None:
    """Read and chunk sources in order, ahead of the encoder (bounded queue: bounded memory).

    A source that fails to read, decode or parse — or whose bytes differ from what was inspected
    (changed mid-run) — ends with a ``_FailedItem`` instead of an ``_EndItem``: that source is
    skipped with the reason and the run goes on.
    """
    try:
        for plan_index, plan in enumerate(plans):
            n = 0
            digest = hashlib.sha256()
            try:
                blocks = iter_blocks(plan.item, digest)
                while True:
                    started = time.perf_counter()
                    block = next(blocks, None)
                    times.read += time.perf_counter() - started
                    if block is None:
                        break
                    started = time.perf_counter()
                    chunks = chunker.chunk_text(block[1], block[0])
                    times.chunk += time.perf_counter() - started
                    for chunk in chunks:
                        if stop.is_set():
                            return
                        out.put(_ChunkItem(plan_index, n, chunk))
                        n += 1
                if plan.sha256 and digest.hexdigest() != plan.sha256:
                    raise SourceReadError("changed while being read; rerun to pick up the new version")
            except Exception as exc:  # noqa: BLE001 - one source's failure is that source's skip
                out.put(_FailedItem(plan_index, read_failure_reason(exc)))
                continue
            out.put(_EndItem(plan_index, n))
        out.put(None)
    except BaseException as exc:  # noqa: BLE001 - re-raised by the consumer
        out.put(exc)


def read_failure_reason(exc: Exception) -> str:
    """One line for a source that failed while being read (never a traceback)."""
    if isinstance(exc, SourceReadError):
        return exc.reason
    if isinstance(exc, OSError):
        return os_reason(exc)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"could not be read ({type(exc).__name__}{': ' + text if text else ''})"


@dataclass
class WriteResult:
    """What one write step did: chunks per source written, and sources that failed to read."""

    counts: dict[str, int] = field(default_factory=dict)
    failed: list[Skipped] = field(default_factory=list)


class Ingestor:
    """Holds the store and (lazily) the model for one or more ingest steps of a run."""

    def __init__(
        self,
        settings: Settings,
        store: MilvusStore | None = None,
        embedder: Any = None,
        progress: ProgressCallback | None = None,
    ):
        self.settings = settings
        self.store = store or MilvusStore(settings.milvus)
        self._embedder = embedder
        self._chunker: Chunker | None = None
        self.progress = progress
        self.times = StageTimes()
        self._checked = False
        self._checked_with_model = False

    # -- model ------------------------------------------------------------------------
    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            started = time.perf_counter()
            from flows.embedding import InstructorEmbeddingFunction

            self._embedder = InstructorEmbeddingFunction.from_settings(self.settings.model)
            self.times.model_load += time.perf_counter() - started
        return self._embedder

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            ef = self.embedder
            counter = TokenCounter(ef.tokenizer)
            c = self.settings.chunking
            check_chunk_budget(counter, c.chunk_tokens, ef.doc_instruction, ef.max_seq_length)
            self._chunker = Chunker(
                counter,
                c.chunk_tokens,
                c.overlap_tokens,
                self.settings.milvus.text_max_bytes,
                ef.doc_instruction,
                ef.max_seq_length,
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
            loaded = need_model or self._embedder is not None
            dim = self.embedder.dim if loaded else (stored.dim if stored else 0)
            need_model = loaded
            store.check_compatible(collection_meta(self.settings, dim), for_writing=True)
            store.load()
            created = False
        else:
            created = store.ensure_collection(collection_meta(self.settings, self.embedder.dim))
            need_model = True
        self._checked = True
        self._checked_with_model = need_model
        return created

    def read_states(self) -> dict[str, SourceState]:
        return self.store.source_states() if self.store.exists() else {}

    # -- steps ------------------------------------------------------------------------
    def plan(self, discovery: Discovery, options: IngestOptions) -> IngestPlan:
        started = time.perf_counter()
        discovery = select_shard(discovery, options.shard)
        plan = plan_ingest(
            discovery.files, discovery.skipped, discovery.is_gone, self.read_states(), self.settings, options
        )
        self.times.plan += time.perf_counter() - started
        return plan

    def plan_documents(self, documents: Sequence[Item], options: IngestOptions) -> IngestPlan:
        """Plan in-memory documents; with ``prune``, stored sources not among them are gone."""
        started = time.perf_counter()
        states = self.read_states()
        plan = plan_ingest(documents, [], lambda source: False, states, self.settings, options)
        if options.prune:
            wanted = {d.source for d in documents}
            plan.gone = {s: set(st.ids) for s, st in states.items() if s not in wanted}
        self.times.plan += time.perf_counter() - started
        return plan

    def write_sources(self, plans: Sequence[SourcePlan]) -> WriteResult:
        """Chunk, encode and write these sources; returns chunks per source and the failures.

        Each source ends with its stale rows deleted and then its commit mark (chunk 0's
        ``n_chunks``) written, in that order, so a crash anywhere leaves it visibly incomplete.
        A source that fails while being read gets no commit mark (its old rows stay, or — if it
        was larger than a window — it stays visibly incomplete and is redone by the next run).
        """
        result = WriteResult()
        if not plans:
            return result
        self.prepare_collection(need_model=True)
        chunker = self.chunker
        ef = self.embedder
        window_size = max(1, self.settings.model.batch_size * WINDOW_BATCHES)
        total_bytes = sum(p.size for p in plans)
        items: queue.Queue[Any] = queue.Queue(maxsize=window_size * 2)
        stop = threading.Event()
        producer = threading.Thread(
            target=_produce, args=(plans, chunker, items, self.times, stop), name="chunker", daemon=True
        )
        writer = _Writer(self.store, self.times)
        producer.start()
        writer.start()
        counts = result.counts
        first_rows: dict[int, dict[str, Any]] = {}
        done_bytes = 0
        done_chunks = 0
        window: list[_ChunkItem | _EndItem] = []
        in_window = 0
        try:
            finished = False
            while not finished:
                item = items.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    finished = True
                elif isinstance(item, _FailedItem):
                    result.failed.append(Skipped(plans[item.plan_index].item.source, item.reason))
                    first_rows.pop(item.plan_index, None)
                    window = [w for w in window if w.plan_index != item.plan_index]
                    in_window = sum(isinstance(w, _ChunkItem) for w in window)
                    done_bytes += plans[item.plan_index].size
                else:
                    window.append(item)
                    in_window += isinstance(item, _ChunkItem)
                if window and (finished or in_window >= window_size):
                    done_chunks += self._flush(window, plans, ef, writer, first_rows, counts)
                    done_bytes += sum(plans[w.plan_index].size for w in window if isinstance(w, _EndItem))
                    window, in_window = [], 0
                    if self.progress:
                        self.progress(done_bytes, total_bytes, done_chunks)
                    _crash_point("between_batches")
            writer.close()
        except BaseException:
            stop.set()
            _drain(items)
            writer.ops.put(None)
            raise
        return result

    def _flush(
        self,
        window: list[_ChunkItem | _EndItem],
        plans: Sequence[SourcePlan],
        ef: Any,
        writer: _Writer,
        first_rows: dict[int, dict[str, Any]],
        counts: dict[str, int],
    ) -> int:
        """Encode the window's chunks, queue their rows, then finalise the sources that ended."""
        chunk_items = [w for w in window if isinstance(w, _ChunkItem)]
        ends = {w.plan_index: w.n_chunks for w in window if isinstance(w, _EndItem)}
        if chunk_items:
            started = time.perf_counter()
            _crash_point("encode")
            vectors = ef.encode_array([c.chunk.text for c in chunk_items], ef.doc_instruction)
            self.times.encode += time.perf_counter() - started
            rows = []
            for item, vector in zip(chunk_items, vectors):
                plan = plans[item.plan_index]
                known = ends.get(item.plan_index, 0)
                row = {
                    "id": chunk_id(plan.item.source, item.index),
                    "vector": vector,
                    "text": item.chunk.text,
                    "source": plan.item.source,
                    "chunk_index": item.index,
                    "start_char": item.chunk.start,
                    "end_char": item.chunk.end,
                    "source_hash": plan.source_hash,
                    # The commit mark: only when the whole source is in this window.
                    "n_chunks": known,
                }
                if item.index == 0 and not known:
                    first_rows[item.plan_index] = row
                rows.append(row)
            writer.put(("upsert", rows))
        for plan_index, n in ends.items():
            plan = plans[plan_index]
            new_ids = {chunk_id(plan.item.source, i) for i in range(n)}
            stale = plan.old_ids - new_ids
            commit = first_rows.pop(plan_index, None)
            if commit is not None:
                commit = dict(commit, n_chunks=n)
            writer.put(("finalize", (stale, commit)))
            counts[plan.item.source] = n
        return len(chunk_items)

    def remove_sources(self, sources: dict[str, set[str]]) -> list[str]:
        removed = []
        for source, ids in sorted(sources.items()):
            if ids:
                started = time.perf_counter()
                self.store.delete_ids(ids)
                self.times.write += time.perf_counter() - started
            removed.append(source)
        return removed

    def close(self) -> None:
        self.store.close()


def _drain(items: queue.Queue[Any]) -> None:
    try:
        while True:
            items.get_nowait()
    except queue.Empty:
        pass


StepRunner = Callable[..., Any]


def run_step_directly(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """The default step runner: call the function.  The Prefect flow passes one that makes a task."""
    return fn(*args)


def group_plans(plans: Sequence[SourcePlan], max_bytes: int = 8 << 20, max_files: int = 256) -> list[list[SourcePlan]]:
    """Sources grouped into steps of bounded size: one Prefect task per group, never per chunk."""
    groups: list[list[SourcePlan]] = []
    current: list[SourcePlan] = []
    size = 0
    for plan in plans:
        if current and (size + plan.size > max_bytes or len(current) >= max_files):
            groups.append(current)
            current, size = [], 0
        current.append(plan)
        size += plan.size
    if current:
        groups.append(current)
    return groups


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
    as given, and ``prune`` then removes stored sources not among them).  ``step`` runs each
    stage; the Prefect flow passes a runner that makes each one a task.  ``embedder`` reuses a
    loaded model (tests, the benchmark, the evaluation).
    """
    started = time.perf_counter()
    discovery = None
    if documents is None:  # a bad path fails before Milvus is even opened
        s = settings.sources
        discovery = step("discover", discover_sources, list(specs), s.include, s.exclude, s.follow_symlinks)
    own = ingestor is None
    ingestor = ingestor or Ingestor(settings, embedder=embedder, progress=progress)
    try:
        report = IngestReport(collection=ingestor.store.collection, uri=settings.milvus.uri)
        if discovery is not None:
            if ingestor.store.exists():
                ingestor.prepare_collection(need_model=False)
            plan = step("plan", ingestor.plan, discovery, options)
        else:
            if ingestor.store.exists():
                ingestor.prepare_collection(need_model=False)
            plan = step("plan", ingestor.plan_documents, list(documents), options)
        if options.prune and plan.gone and not options.yes:
            check_prune_share(plan, ingestor.store.count(), settings.sources.prune_max_share)
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
        report.seconds = time.perf_counter() - started
        return report
    finally:
        if own:
            ingestor.close()


__all__ = [
    "IngestOptions",
    "IngestPlan",
    "IngestReport",
    "Ingestor",
    "PipelineError",
    "chunk_id",
    "parse_shard",
    "plan_ingest",
    "run_ingest",
    "run_step_directly",
    "shard_of",
]

