"""Planning from commit marks equals planning from every row, on every convergence case.

Each case leaves a real collection (Lite and a server) in some state — after a clean ingest, a
shrink, a grow, an emptied file, a deleted file, a run that died at its Nth write (every kind of
write: chunks, commit marks, tail deletes) with the file then kept or reverted — and plans the
next run twice: from one mark per source (what a run does) and from a scan of every row (the
earlier planner, ``tests.support.scan_plan``).  The decisions must be the same, the marks must
not have needed the full-scan fallback, and the run that follows must equal a clean ingest.
"""

from __future__ import annotations

import pytest

from milvus_ingest.ingest import IngestOptions, run_ingest
from milvus_ingest.sources import discover_sources
from milvus_ingest.store import MilvusStore, chunk_id
from milvus_ingest.store import state as store_state
from tests.support.corpus import sample_corpus, write_corpus
from tests.support.scan_plan import both_plans, decisions
from tests.support.snapshots import clean_snapshot, snapshot

#: Sources span several windows (16 chunks) and requests (4 rows): every crash point is mid-source.
SMALL = {"model__batch_size": 2, "model__window_batches": 8, "milvus__write_batch_rows": 4}


class Crash(Exception):
    """Stands for the process dying right after the Nth call of one store method returned."""


def crash_after(mp: pytest.MonkeyPatch, method: str, n: int) -> None:
    original = getattr(MilvusStore, method)
    calls = [0]

    def wrapped(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            raise Crash(f"{method} #{n}")
        return result

    mp.setattr(MilvusStore, method, wrapped)


@pytest.fixture
def fallbacks(monkeypatch) -> list[int]:
    """Counts the times a reading of marks fell back to the full scan."""
    seen: list[int] = []
    original = store_state.marks_from_states

    def spy(states):
        seen.append(len(states))
        return original(states)

    monkeypatch.setattr(store_state, "marks_from_states", spy)
    return seen


def _discover(settings, specs):
    s = settings.sources
    return discover_sources([str(p) for p in specs], s.include, s.exclude, s.follow_symlinks)


def assert_plans_agree(settings, specs, clean_rows, options=IngestOptions()):
    """Both planners decide the same; the marks' tail deletes cover every stale row the scan sees."""
    plan, oracle, doomed = both_plans(settings, _discover(settings, specs), options)
    assert decisions(plan) == decisions(oracle)
    assert doomed == sum(len(ids) for ids in oracle.gone.values())
    new_counts: dict[str, int] = {}
    for _, source, *_rest in clean_rows.values():
        new_counts[source] = new_counts.get(source, 0) + 1
    old_ids = {source: ids for source, _, ids in oracle.todo}
    for sp in plan.todo:
        n = new_counts.get(sp.item.source, 0)
        stale = old_ids[sp.item.source] - {chunk_id(sp.item.source, i) for i in range(n)}
        if stale:
            assert sp.has_stale_tail(n), sp.item.source
    return plan


def _mutate(corpus):
    (corpus / "doc1.md").write_text("Doc one is now much shorter than it was.", encoding="utf-8")  # shrink
    grown = (corpus / "doc3.md").read_text(encoding="utf-8")
    (corpus / "doc3.md").write_text(grown + "\n\n" + grown.replace("Part", "More"), encoding="utf-8")  # grow
    (corpus / "sub" / "doc2.txt").write_text("  \n", encoding="utf-8")  # emptied
    (corpus / "sub" / "doc4.txt").unlink()  # gone
    write_corpus(corpus, {"added.md": "An added file about falcons and compasses.\n\n" * 6})


def test_plans_agree_on_unchanged_shrink_grow_emptied_and_prune(backend, tmp_path, t5_embedder, fallbacks):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    settings = backend.settings(**SMALL)
    first = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    clean = snapshot(settings)
    plan = assert_plans_agree(settings, [corpus], clean)
    assert len(plan.unchanged) == 5 and not plan.todo

    original = {p: p.read_bytes() for p in corpus.rglob("*") if p.is_file()}
    _mutate(corpus)
    clean = clean_snapshot(backend, settings, [str(corpus)], t5_embedder)
    for options in (IngestOptions(), IngestOptions(prune=True, yes=True)):
        plan = assert_plans_agree(settings, [corpus], clean, options)
    assert sorted(p.status for p in plan.todo) == ["new", "updated", "updated"]
    assert len(plan.emptied) == 1 and len(plan.gone) == 1
    run_ingest(settings, [str(corpus)], IngestOptions(prune=True, yes=True), embedder=t5_embedder)
    assert snapshot(settings) == clean
    assert_plans_agree(settings, [corpus], clean)

    # Back to the first version, pruned of nothing: the collection is the first one again.
    for path in [p for p in corpus.rglob("*") if p.is_file()]:
        path.unlink()
    for path, data in original.items():
        path.write_bytes(data)
    run_ingest(settings, [str(corpus)], IngestOptions(prune=True, yes=True), embedder=t5_embedder)
    assert len(snapshot(settings)) == first.rows
    assert fallbacks == []


@pytest.mark.parametrize(
    "method,n,revert",
    [
        ("upsert", 1, False),  # the first window's chunks: chunk 0s say "being written"
        ("upsert", 2, True),  # two sources committed, a third half-written
        ("upsert", 4, False),  # in the middle of the grown source
        ("upsert", 6, True),
        ("delete_tails", 1, False),  # tail gone, mark not yet written
        ("delete_tails", 1, True),
        ("delete_sources", 1, True),  # the emptied source removed, the gone one not yet
    ],
)
def test_plans_agree_after_a_run_dies_at_any_write(backend, tmp_path, t5_embedder, monkeypatch, fallbacks, method, n, revert):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    settings = backend.settings(**SMALL)
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    original = {p: p.read_bytes() for p in corpus.rglob("*") if p.is_file()}
    _mutate(corpus)
    with monkeypatch.context() as mp:
        crash_after(mp, method, n)
        with pytest.raises(Crash):
            run_ingest(settings, [str(corpus)], IngestOptions(prune=True, yes=True), embedder=t5_embedder)
    if revert:  # the user undoes the edits before the next run: the half-written sources must be redone
        for path in [p for p in corpus.rglob("*") if p.is_file()]:
            path.unlink()
        for path, data in original.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    clean = clean_snapshot(backend, settings, [str(corpus)], t5_embedder)
    assert_plans_agree(settings, [corpus], clean, IngestOptions(prune=True, yes=True))
    rerun = run_ingest(settings, [str(corpus)], IngestOptions(prune=True, yes=True), embedder=t5_embedder)
    assert rerun.exit_code in (0, 1)
    assert snapshot(settings) == clean
    again = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert again.chunks == 0 and not again.new and not again.updated
    assert fallbacks == []


def test_a_collection_that_does_not_add_up_is_read_in_full_once_and_repaired(backend, tmp_path, t5_embedder, fallbacks):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    settings = backend.settings()
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    clean = snapshot(settings)
    victim = str(corpus / "doc1.md")
    with MilvusStore(settings.milvus) as store:  # a row removed behind the pipeline's back
        store.delete_where(f'id == "{chunk_id(victim, 2)}"', "test delete")
    assert_plans_agree(settings, [corpus], clean)
    assert fallbacks  # the marks no longer added up: read in full
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert report.updated == [victim] and snapshot(settings) == clean
    fallbacks.clear()
    assert len(run_ingest(settings, [str(corpus)], embedder=t5_embedder).unchanged) == 5
    assert fallbacks == []


def test_an_unchanged_rerun_reads_only_chunk_zero_rows(backend, tmp_path, t5_embedder, monkeypatch):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    settings = backend.settings()
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    reads: list[str] = []  # the filter of every row read back
    original_iterate, original_query = MilvusStore._iterate, MilvusStore.query

    def iterate(self, fields, batch_size=4096, filter_expr=""):
        for row in original_iterate(self, fields, batch_size, filter_expr):
            reads.append(filter_expr)
            yield row

    def query(self, filter_expr, fields, limit):
        rows = original_query(self, filter_expr, fields, limit)
        reads.extend(filter_expr for _ in rows)
        return rows

    monkeypatch.setattr(MilvusStore, "_iterate", iterate)
    monkeypatch.setattr(MilvusStore, "query", query)
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert len(report.unchanged) == 5 and report.rows > 5
    assert reads == ["chunk_index == 0"] * 5  # one row per source, in one request


def test_tail_and_source_deletes_by_expression_touch_only_their_rows(backend, tmp_path, t5_embedder):
    names = ['a" or source != "x.txt', "back\\slash\\.txt", "quote'single.txt", "new\nline.txt", "ünï 中文 🙂.txt"]
    text = " ".join(f"Sentence {i} about glaciers, lanterns and copper." for i in range(30))
    corpus = write_corpus(tmp_path / "h", {name: text for name in names + ["plain.txt"]})
    settings = backend.settings(chunking__chunk_tokens=24, chunking__overlap_tokens=0)
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    before = snapshot(settings)
    sources = {name: str((corpus / name).resolve()) for name in names + ["plain.txt"]}
    per_source = {s: sorted(r[2] for r in before.values() if r[1] == s) for s in sources.values()}
    assert all(len(indexes) >= 4 for indexes in per_source.values())
    with MilvusStore(settings.milvus) as store:
        store.delete_tails({sources[names[0]]: 2, sources[names[1]]: 3})
        store.delete_sources([sources[names[2]], sources[names[3]]])
        assert store.count() == len(before) - (len(per_source[sources[names[0]]]) - 2) - (
            len(per_source[sources[names[1]]]) - 3) - len(per_source[sources[names[2]]]) - len(per_source[sources[names[3]]])
    after = snapshot(settings)
    expected = {
        k: v for k, v in before.items()
        if not (v[1] == sources[names[0]] and v[2] >= 2) and not (v[1] == sources[names[1]] and v[2] >= 3)
        and v[1] not in (sources[names[2]], sources[names[3]])
    }
    assert after == expected
