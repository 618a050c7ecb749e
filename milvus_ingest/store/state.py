"""What a collection holds per source, read from commit marks: one row per source, never every row.

Every source's chunk 0 is its *commit mark*: its row carries the hash of the version being
written and ``n_chunks``, which is > 0 only once that version is complete.  The write protocol
(``milvus_ingest.ingest.stream``) keeps one invariant, on which a re-run's whole plan rests:

    a source has rows  =>  its chunk 0 exists;  chunk 0 says (hash h, n > 0)  =>  the source's
    rows are exactly chunks 0..n-1 of version h.

Chunk 0 is the first row a run writes for a source (with ``n_chunks=0``: "being written"),
and the mark (``n_chunks=n``) is written last, after every chunk and after the stale tail
(``chunk_index >= n``) is deleted by expression; a source is removed with one delete by
expression of all its rows, chunk 0 included.  So a plan needs chunk 0's row per source only:
:func:`read_marks` lists them (``chunk_index == 0``: one row per source, paginated), and checks
the invariant at the cost of one ``count(*)``: the rows of complete sources must add up to their
marks, plus the rows of sources still marked "being written" (a shard run checks its own
shard's sources, by a count per batch of them, since the other shards write at the same time).  If they do not (a server
killed half-way through a delete, rows written by an older version of this code or by hand), it
falls back once to :func:`scan_states`, the full scan of every row, which is exact; the run that
follows repairs what did not add up.

This module must never hold ids of the whole collection except in that fallback, and never send
a filter whose string literals were not escaped by ``escape_string``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from milvus_ingest.config import MilvusSettings
from milvus_ingest.errors import StoreError
from milvus_ingest.store.schema import SourceState, escape_string

log = logging.getLogger(__name__)

#: The rows that are commit marks.
MARK_FILTER = "chunk_index == 0"
#: A server returns at most 16384 rows per query (offset + limit).
MARKS_IN_ONE_QUERY = 16384
#: Bounds of one filter expression listing sources (escaped literal bytes, and items).
EXPR_MAX_BYTES = 256 * 1024
EXPR_MAX_ITEMS = 1000


class MilvusStore(Protocol):
    """What this module needs of ``milvus.MilvusStore`` (named apart to keep imports one-way)."""

    settings: MilvusSettings
    collection: str

    def count(self, filter_expr: str = "") -> int: ...
    def query(self, filter_expr: str, fields: Sequence[str], limit: int) -> list[dict[str, Any]]: ...
    def flush(self) -> None: ...
    def delete_where(self, filter_expr: str, what: str) -> None: ...
    def _iterate(self, fields: list[str], batch_size: int = 4096, filter_expr: str = "") -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class SourceMark:
    """Chunk 0's record of one source: the version it belongs to, and its commit mark."""

    source_hash: str
    #: Chunks of the complete version ``source_hash``; 0 while a version is being written.
    n_chunks: int

    def is_complete(self, source_hash: str) -> bool:
        return self.n_chunks > 0 and self.source_hash == source_hash


def read_marks(store: MilvusStore, in_scope: Callable[[str], bool] | None = None) -> dict[str, SourceMark]:
    """Every stored source's mark, checked against ``count(*)`` (see the module docstring).

    ``in_scope`` limits the check to the sources a shard run may write (other shards write
    theirs at the same time, so the whole collection's count is a moving target; a shard's own
    sources are not).  The Strong count goes first: on a server, an iterator can miss rows still
    in growing segments until one has run.  A mismatch gets a flush and a second reading; a
    second mismatch falls back to reading every row (of the scope's sources).
    """
    for attempt in range(2):
        total = store.count()
        marks = list_marks(store)
        if in_scope is None:
            checked, expected = marks, total
        else:
            checked = {s: m for s, m in marks.items() if in_scope(s)}
            expected = count_source_rows(store, list(checked))
        found = rows_accounted_for(store, checked)
        if found == expected:
            return marks
        if attempt == 0:
            store.flush()
    log.warning(
        "collection %r: commit marks account for %d rows, count(*) says %d; reading every row once to "
        "repair (a run was killed during a delete, or rows were written outside this pipeline)",
        store.collection, found, expected,
    )
    if in_scope is None:
        return marks_from_states(scan_states(store))
    return {**marks, **marks_from_states(scan_sources(store, list(checked)))}


def list_marks(store: MilvusStore) -> dict[str, SourceMark]:
    """Chunk 0's row of every source: one request up to ``MARKS_IN_ONE_QUERY`` sources, else pages.

    A single query returning fewer rows than its limit has returned every match (no ordering is
    assumed); only a full one is read again, with the paging iterator.
    """
    fields = ["source", "source_hash", "n_chunks"]
    first = store.query(MARK_FILTER, fields, limit=MARKS_IN_ONE_QUERY)
    rows: Iterable[dict[str, Any]] = first
    if len(first) >= MARKS_IN_ONE_QUERY:
        rows = store._iterate(fields, filter_expr=MARK_FILTER)
    return {row["source"]: SourceMark(row["source_hash"], int(row["n_chunks"])) for row in rows}


def rows_accounted_for(store: MilvusStore, marks: dict[str, SourceMark]) -> int:
    """Rows the marks stand for: ``n`` per complete source, a count per source being written."""
    complete = sum(m.n_chunks for m in marks.values() if m.n_chunks > 0)
    return complete + count_source_rows(store, [s for s, m in marks.items() if m.n_chunks == 0])


def count_source_rows(store: MilvusStore, sources: Sequence[str]) -> int:
    """Rows of these sources, one ``count(*)`` per batch of sources."""
    total = 0
    for expr in source_filters(sources):
        total += store.count(expr)
    return total


def delete_tails(store: MilvusStore, tails: dict[str, int]) -> None:
    """Delete every row of ``source`` with ``chunk_index >= n``, for each ``source: n``."""
    for expr in _or_filters(f"(source == {escape_string(s)} and chunk_index >= {int(n)})" for s, n in sorted(tails.items())):
        store.delete_where(expr, f"delete of stale chunks of {len(tails)} sources")


def delete_sources(store: MilvusStore, sources: Iterable[str]) -> None:
    """Delete every row of these sources, chunk 0 with the rest (one request per batch)."""
    for expr in source_filters(sorted(sources)):
        store.delete_where(expr, "delete of removed sources")


def source_filters(sources: Sequence[str]) -> Iterator[str]:
    """``source in [...]`` filters over ``sources``, each bounded in bytes and items."""
    batch: list[str] = []
    size = 0
    for source in sources:
        literal = escape_string(source)
        if batch and (size + len(literal) > EXPR_MAX_BYTES or len(batch) >= EXPR_MAX_ITEMS):
            yield f"source in [{', '.join(batch)}]"
            batch, size = [], 0
        batch.append(literal)
        size += len(literal) + 2
    if batch:
        yield f"source in [{', '.join(batch)}]"


def _or_filters(terms: Iterable[str]) -> Iterator[str]:
    batch: list[str] = []
    size = 0
    for term in terms:
        if batch and (size + len(term) > EXPR_MAX_BYTES or len(batch) >= EXPR_MAX_ITEMS):
            yield " or ".join(batch)
            batch, size = [], 0
        batch.append(term)
        size += len(term) + 4
    if batch:
        yield " or ".join(batch)


def marks_from_states(states: dict[str, SourceState]) -> dict[str, SourceMark]:
    """The marks a full scan proves: complete only where every row agrees, else "being written"."""
    marks = {}
    for source, state in states.items():
        single = next(iter(state.hashes)) if len(state.hashes) == 1 else ""
        complete = bool(single) and state.is_complete(single)
        marks[source] = SourceMark(single, state.committed_chunks if complete else 0)
    return marks


def scan_states(store: MilvusStore) -> dict[str, SourceState]:
    """Every source's ids, hashes and commit mark, from every row (the exact, O(rows) fallback).

    The count goes first and the scan must match it (else a flush and a second scan): a state
    read that missed rows would leave stale chunks behind.
    """
    expected = store.count()
    states = _scan(store)
    if sum(len(s.ids) for s in states.values()) != expected:
        store.flush()
        states = _scan(store)
        found = sum(len(s.ids) for s in states.values())
        if found != store.count():
            raise StoreError(
                f"Milvus at {store.settings.uri}: collection {store.collection!r} scan returned {found} rows, "
                f"count(*) says {expected}; rerun when the server is settled"
            )
    return states


def scan_sources(store: MilvusStore, sources: Sequence[str]) -> dict[str, SourceState]:
    """Like ``scan_states``, for these sources only (a shard's fallback)."""
    states: dict[str, SourceState] = {}
    for expr in source_filters(sources):
        states.update(_scan(store, expr))
    return states


def _scan(store: MilvusStore, filter_expr: str = "") -> dict[str, SourceState]:
    states: dict[str, SourceState] = {}
    for row in store._iterate(["source", "source_hash", "chunk_index", "n_chunks"], filter_expr=filter_expr):
        state = states.setdefault(row["source"], SourceState())
        state.ids.add(row["id"])
        state.hashes.add(row["source_hash"])
        if row["chunk_index"] == 0:
            state.committed_chunks = int(row["n_chunks"])
    return states
