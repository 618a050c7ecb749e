"""The planner as it was before commit marks: from a scan of every row (the oracle for the new one).

``plan_from_scan`` is the earlier ``plan_ingest``, fed by ``MilvusStore.source_states`` (every
row's id and hash): exact by construction, O(rows).  Tests run it beside the mark-based planner
on the same stored state and compare the decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

from milvus_ingest.ingest.plan import IngestOptions, IngestPlan, content_hash, plan_ingest, shard_of
from milvus_ingest.ingest.run import Ingestor
from milvus_ingest.reading import inspect_source, source_format
from milvus_ingest.sources import Discovery, Skipped
from milvus_ingest.store import MilvusStore, SourceState


@dataclass
class ScanPlan:
    todo: list[tuple[str, str, set[str]]]  # (source, "new"/"updated", stored ids)
    unchanged: list[str]
    skipped: list[Skipped]
    emptied: dict[str, set[str]]
    gone: dict[str, set[str]]


def plan_from_scan(discovery: Discovery, states: dict[str, SourceState], settings, options: IngestOptions) -> ScanPlan:
    todo: list[tuple[str, str, set[str]]] = []
    unchanged: list[str] = []
    all_skipped = list(discovery.skipped)
    emptied: dict[str, set[str]] = {}
    present = {s.source for s in discovery.skipped if not s.refused}
    for item in discovery.files:
        present.add(item.source)
        fmt = source_format(item, settings.sources.formats)
        inspection = inspect_source(item, fmt)
        state = states.get(item.source)
        if inspection.reason:
            all_skipped.append(Skipped(item.source, inspection.reason))
            if state and inspection.reason.startswith(("empty", "no text")):
                emptied[item.source] = set(state.ids)
            continue
        version = content_hash(inspection.sha256, settings, fmt)
        if state and not options.full and state.is_complete(version):
            unchanged.append(item.source)
            continue
        todo.append((item.source, "updated" if state else "new", set(state.ids) if state else set()))
    gone: dict[str, set[str]] = {}
    for source, state in states.items():
        if source in present or not discovery.is_gone(source):
            continue
        if options.shard and shard_of(source, options.shard[1]) != options.shard[0]:
            continue
        gone[source] = set(state.ids)
    return ScanPlan(todo, unchanged, all_skipped, emptied, gone)


def both_plans(settings, discovery: Discovery, options: IngestOptions = IngestOptions()) -> tuple[IngestPlan, ScanPlan, int]:
    """The mark-based plan (as a run makes it), the scan-based one, and the marks' doomed rows."""
    with MilvusStore(settings.milvus) as store:
        states = store.source_states() if store.exists() else {}
        ingestor = Ingestor(settings, store=store)
        marks = ingestor.read_marks()
        plan = plan_ingest(discovery.files, discovery.skipped, discovery.is_gone, marks, settings, options)
        doomed = ingestor.doomed_rows(plan.gone) if store.exists() else 0
    return plan, plan_from_scan(discovery, states, settings, options), doomed


def decisions(plan: IngestPlan | ScanPlan) -> dict[str, object]:
    """What a plan decided, in a form both planners share."""
    todo = [(t[0], t[1]) if isinstance(t, tuple) else (t.item.source, t.status) for t in plan.todo]
    return {
        "todo": sorted(todo),
        "unchanged": sorted(plan.unchanged),
        "skipped": sorted((s.source, s.reason) for s in plan.skipped),
        "emptied": sorted(plan.emptied),
        "gone": sorted(plan.gone),
    }
