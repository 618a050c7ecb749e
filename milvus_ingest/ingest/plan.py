"""Planning an ingest: which sources are new, changed, unchanged, emptied, skipped or gone.

A run converges because every chunk's primary key is derived from its source and position
(``chunk_id``), every row carries a version stamp of the bytes *and* the chunking that made it
(``content_hash``), and chunk 0 of a source carries its commit mark (``store.SourceMark``: the
stored version and, once complete, its number of chunks; see ``store.state`` for the invariant).
This module decides from one mark per source alone, so a plan costs what the number of sources
costs, not the number of rows; it must never read chunk text, load a model or write to Milvus.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from milvus_ingest.config import Settings
from milvus_ingest.errors import ConfigError, PruneRefusedError
from milvus_ingest.reading import inspect_source, source_format
from milvus_ingest.sources import Discovery, Skipped, SourceFile, TextDocument
from milvus_ingest.store import CollectionMeta, SourceMark

#: Bump when chunk boundaries for the same text and settings would change.
CHUNKER_VERSION = 1

Item = SourceFile | TextDocument


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
    #: Drop the collection (one this pipeline made) and rebuild it from these sources; needs ``full``.
    recreate: bool = False

    def __post_init__(self) -> None:
        if self.recreate and not self.full:
            raise ConfigError(
                "--recreate drops the collection and rebuilds it from the sources given: pass --full with it"
            )


@dataclass
class SourcePlan:
    item: Item
    source_hash: str
    status: str  # "new" or "updated"
    #: The source's stored mark, or None when nothing of it is stored.
    stored: SourceMark | None
    size: int
    #: SHA-256 of the bytes inspected; reading them again must give the same, or the file changed.
    sha256: str = ""
    #: What the source is read as (``milvus_ingest.readers.FORMATS``), and its modification time.
    format: str = "text"
    mtime: int = 0

    def has_stale_tail(self, n_chunks: int) -> bool:
        """Whether rows from chunk ``n_chunks`` on may be stored, and so must be deleted.

        Nothing stored: no rows (a source's chunk 0 is its first row written, its last removed).
        A complete version of ``k`` chunks: rows 0..k-1 exactly, so a tail only when ``k > n``.
        A version being written: any extent, so always.
        """
        if self.stored is None:
            return False
        return self.stored.n_chunks == 0 or self.stored.n_chunks > n_chunks


@dataclass
class IngestPlan:
    todo: list[SourcePlan]
    unchanged: list[str]
    skipped: list[Skipped]
    #: Sources whose content is now empty: their old rows go, as a clean ingest would have none.
    emptied: dict[str, SourceMark]
    #: Stored sources under the given roots that no longer exist (removed only with ``prune``).
    gone: dict[str, SourceMark]


def collection_meta(settings: Settings, dim: int) -> CollectionMeta:
    return CollectionMeta(
        model=settings.model.name,
        dim=dim,
        doc_instruction=settings.model.instructions.doc,
        query_instruction=settings.model.instructions.query,
        metric_type=settings.milvus.metric_type,
        text_max_bytes=settings.milvus.text_max_bytes,
    )


def content_hash(sha256: str, settings: Settings, fmt: str = "text") -> str:
    """The version stamp stored on every row: file bytes, the format they are read as, *and* the
    chunking that cut them (with the context embedded before each chunk)."""
    c = settings.chunking
    fingerprint = f"{sha256}:{c.chunk_tokens}:{c.overlap_tokens}:{settings.milvus.text_max_bytes}:{CHUNKER_VERSION}:{fmt}"
    if c.contextual:  # what is embedded changes with it, so toggling it re-embeds every source
        fingerprint += f":context:{c.context_tokens}"
    return hashlib.sha256(fingerprint.encode()).hexdigest()


def plan_ingest(
    items: Sequence[Item],
    skipped: Sequence[Skipped],
    is_gone: Callable[[str], bool],
    marks: dict[str, SourceMark],
    settings: Settings,
    options: IngestOptions,
) -> IngestPlan:
    """Decide per source: new, updated, unchanged, emptied or skipped; and what is gone.

    ``marks`` holds every stored source's mark (``MilvusStore.source_marks``).  A stored source
    not seen this run is gone only when ``is_gone`` says so (its file no longer exists within a
    spec's scope; see ``Discovery.is_gone``); a skipped one is still present.
    """
    todo: list[SourcePlan] = []
    unchanged: list[str] = []
    all_skipped = list(skipped)
    emptied: dict[str, SourceMark] = {}
    present = {s.source for s in skipped if not s.refused}
    for item in items:
        present.add(item.source)
        fmt = source_format(item, settings.sources.formats)
        inspection = inspect_source(item, fmt)
        mark = marks.get(item.source)
        if inspection.reason:
            all_skipped.append(Skipped(item.source, inspection.reason))
            if mark and inspection.reason.startswith(("empty", "no text")):
                emptied[item.source] = mark
            continue
        version = content_hash(inspection.sha256, settings, fmt)
        if mark and not options.full and mark.is_complete(version):
            unchanged.append(item.source)
            continue
        status = "updated" if mark else "new"
        todo.append(
            SourcePlan(item, version, status, mark, inspection.size, inspection.sha256, fmt, inspection.mtime)
        )
    gone: dict[str, SourceMark] = {}
    for source, mark in marks.items():
        if source in present or not is_gone(source):
            continue
        if options.shard and shard_of(source, options.shard[1]) != options.shard[0]:
            continue
        gone[source] = mark
    return IngestPlan(todo, unchanged, all_skipped, emptied, gone)


def check_prune_share(plan: IngestPlan, rows: int, max_share: float, doomed: int) -> None:
    """Refuse, before anything is written, a prune that would remove too much of the collection.

    ``doomed`` is the number of rows the prune would delete (``store.state.rows_accounted_for``
    over ``plan.gone``).
    """
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


