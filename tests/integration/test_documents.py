"""PDF, HTML, DOCX, Markdown and rst through the whole pipeline, on both Milvus backends.

Every fixture is built at test time (reportlab, pypdf, python-docx, strings).  Checked per format:
the text of each page and section lands with its page number and section path, boilerplate and
front matter are not indexed, offsets index into the extracted text, the structure fields can be
filtered and come back on hits; every bad document is skipped with its reason while the good ones
land (exit code 1); an unchanged PDF is never parsed again and a changed one re-embeds alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from milvus_ingest.errors import CollectionMismatchError, ConfigError
from milvus_ingest.ingest import IngestOptions, collection_meta, run_ingest
from milvus_ingest.readers import detect_format, open_document
from milvus_ingest.retrieval import Searcher
from milvus_ingest.store import DOCUMENT_FIELDS, MilvusStore
from tests.support.corpus import write_corpus
from tests.support.documents import encrypt_pdf, make_docx, make_pdf, make_zip_bomb_docx, truncate
from tests.support.snapshots import snapshot

MARKDOWN = """\
---
title: Field Guide
tags: [birds, rivers]
owner: FRONTMATTERSECRET
---
An introduction to the field guide and its lanterns.

# Installation

Install the lantern with care before the harbour opens.

## On Linux

Linux users unpack the copper archive beside the mill.

## On Windows

Windows users run the granite installer in the meadow.

# Usage

Open the falcon compass and read the glacier chart.
"""

HTML = """<!DOCTYPE html><html><head><title>Harbour Notes</title></head><body>
<header>HEADERTEXT site banner</header><nav><a href="/">NAVTEXT home</a></nav>
<div id="cookie-consent">COOKIETEXT accept all</div>
<main><h1>Harbour Notes</h1><p>The harbour keeps its own calendar of tides.</p>
<h2>Tides</h2><p>High tide floods the lower quay twice a day.</p>
<h2>Boats</h2><h3>Sails</h3><p>Canvas sails are mended every winter by the rope makers.</p>
<table><tr><td>sloop</td><td>two masts</td></tr></table></main>
<footer>FOOTERTEXT copyright</footer></body></html>
"""

RST = """\
Orchard Handbook
================

Pruning
-------

Prune the apple trees when the frost has passed.
"""

PDF_PAGES = [
    ["Operator Manual", "Page one tells of the alpha harbour and its lantern keepers."],
    ["Page two describes the copper signal engine in the tower."],
    [],  # an image-only page: no text layer
    ["Page four lists the violin makers of the granite valley."],
]

GOOD = {"manual.pdf", "guide.md", "page.html", "report.docx", "handbook.rst"}
BAD_REASONS = {
    "locked.pdf": "encrypted PDF",
    "scan.pdf": "no text layer (scanned PDF; needs OCR)",
    "truncated.pdf": "corrupt PDF (truncated: no %%EOF marker at the end)",
    "fake.pdf": "not a PDF (no %PDF- header)",
    "notzip.docx": "not a DOCX (not a zip package)",
    "navonly.html": "no main text in HTML",
}


def document_corpus(root: Path, bad: bool = True) -> Path:
    write_corpus(root, {"guide.md": MARKDOWN, "page.html": HTML, "handbook.rst": RST})
    make_pdf(root / "manual.pdf", PDF_PAGES, title="Operator Manual")
    make_docx(root / "report.docx")
    if bad:
        write_corpus(root, {"fake.pdf": "I only look like a PDF.",
                            "navonly.html": "<html><body><nav>only NAVTEXT</nav><footer>f</footer></body></html>",
                            "notzip.docx": "plain text in a .docx"})
        plain = make_pdf(root.parent / "plain.pdf", [["Confidential text of the locked file"]])
        encrypt_pdf(plain, root / "locked.pdf", "user-secret")
        make_pdf(root / "scan.pdf", [[], []])
        truncate(make_pdf(root.parent / "whole.pdf", [["some text"] * 20] * 3), root / "truncated.pdf")
        make_zip_bomb_docx(root / "bomb.docx")
    return root


def rows_by_source(settings) -> dict[str, list[dict]]:
    with MilvusStore(settings.milvus) as store:
        rows = list(store._iterate(["text", "source", "chunk_index", "start_char", "end_char", *DOCUMENT_FIELDS]))
    grouped: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["source"], r["chunk_index"])):
        grouped.setdefault(Path(row["source"]).name, []).append(row)
    return grouped


def extracted_text(path: Path) -> str:
    return "".join(block.text for block in open_document(path, detect_format(path)).blocks)


def test_every_format_lands_with_its_structure_and_bad_documents_are_skipped(backend, tmp_path, t5_embedder):
    corpus = document_corpus(tmp_path / "docs")
    settings = backend.settings()
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)

    reasons = {Path(s.source).name: s.reason for s in report.skipped}
    bomb = reasons.pop("bomb.docx")
    assert bomb.startswith("DOCX entry word/document.xml compresses") and bomb.endswith("(zip bomb?)")
    assert reasons == BAD_REASONS
    assert report.exit_code == 1 and {Path(s).name for s in report.new} == GOOD
    rows = rows_by_source(settings)
    assert set(rows) == GOOD and report.rows == report.chunks == sum(len(r) for r in rows.values())

    for name, source_rows in rows.items():  # offsets index into the text extracted from the source
        text = extracted_text(corpus / name)
        assert all(text[r["start_char"] : r["end_char"]] == r["text"] for r in source_rows), name
        assert {r["format"] for r in source_rows} == {detect_format(name)}
        assert all(r["mtime"] == int(os.stat(corpus / name).st_mtime) for r in source_rows)
    everything = " ".join(r["text"] for source_rows in rows.values() for r in source_rows)

    pdf = rows["manual.pdf"]
    assert {r["title"] for r in pdf} == {"Operator Manual"} and {r["section"] for r in pdf} == {""}
    assert {r["page"] for r in pdf} == {1, 2, 4}
    for page, lines in enumerate(PDF_PAGES, start=1):
        for line in lines:
            assert any(line in r["text"] and r["page"] == page for r in pdf), (page, line)
    assert pdf[0]["metadata"] == {"pages": 4}

    guide = rows["guide.md"]
    assert {r["title"] for r in guide} == {"Field Guide"}
    assert guide[0]["metadata"] == {"tags": ["birds", "rivers"], "owner": "FRONTMATTERSECRET"}
    assert "FRONTMATTERSECRET" not in everything and "tags:" not in everything
    expected = {"Linux users unpack": "Installation > On Linux", "Windows users run": "Installation > On Windows",
                "Install the lantern": "Installation", "falcon compass": "Usage", "An introduction": ""}
    for words, section in expected.items():
        assert [r["section"] for r in guide if words in r["text"]] == [section], words
    assert {r["page"] for r in guide} == {0}

    html = rows["page.html"]
    assert {r["title"] for r in html} == {"Harbour Notes"}
    for boilerplate in ("HEADERTEXT", "NAVTEXT", "COOKIETEXT", "FOOTERTEXT"):
        assert boilerplate not in everything
    assert [r["section"] for r in html if "Canvas sails" in r["text"]] == ["Harbour Notes > Boats > Sails"]
    assert any("sloop | two masts" in r["text"] for r in html)

    docx = rows["report.docx"]
    assert {r["title"] for r in docx} == {"The Docx Title"}
    assert [r["section"] for r in docx if "Nested text." in r["text"]] == ["Chapter One > Section 1.1"]
    assert [r["section"] for r in rows["handbook.rst"] if "apple trees" in r["text"]] == ["Orchard Handbook > Pruning"]


def test_structure_fields_filter_and_come_back_on_hits(backend, tmp_path, t5_embedder):
    corpus = document_corpus(tmp_path / "docs", bad=False)
    settings = backend.settings()
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    with Searcher(settings, encoder=t5_embedder) as searcher:
        [hits] = searcher.search(["the copper signal engine"], top_k=10, filter_expr='format == "pdf" and page <= 2')
        assert hits and {(h.format, h.title) for h in hits} == {("pdf", "Operator Manual")}
        assert {h.page for h in hits} <= {1, 2}
        page_two = [h for h in hits if "copper signal engine" in h.text]
        assert [h.page for h in page_two] == [2] and page_two[0].location == "p.2"
        [linux] = searcher.search(["unpack the archive"], top_k=3, filter_expr='section == "Installation > On Linux"')
        assert linux and all(h.section == "Installation > On Linux" and h.source.endswith("guide.md") for h in linux)
        assert linux[0].location == "Installation > On Linux" and linux[0].page == 0
        data = linux[0].as_dict()
        assert {k: data[k] for k in ("title", "section", "page", "format")} == {
            "title": "Field Guide", "section": "Installation > On Linux", "page": 0, "format": "markdown"}
        json.dumps(data)  # JSON-safe, as --json prints it
        [meta] = searcher.search(["tags"], top_k=1, filter_expr='format == "markdown"', output_fields=["metadata"])
        assert meta[0].fields["metadata"]["tags"] == ["birds", "rivers"]


def test_unchanged_pdf_is_not_parsed_and_a_changed_one_re_embeds_alone(backend, tmp_path, t5_embedder, monkeypatch):
    corpus = document_corpus(tmp_path / "docs", bad=False)
    settings = backend.settings()
    first = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    from milvus_ingest import reading

    opened: list[str] = []
    real_open = reading.open_document

    def counting(path, fmt, **kwargs):
        opened.append(Path(path).name)
        return real_open(path, fmt, **kwargs)

    monkeypatch.setattr(reading, "open_document", counting)
    again = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert len(again.unchanged) == len(GOOD) and again.chunks == 0 and opened == []

    before = snapshot(settings)
    make_pdf(corpus / "manual.pdf", PDF_PAGES[:2] + [["A new third page about the orchard bells."]], title="Operator Manual")
    changed = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert opened == ["manual.pdf"] and [Path(s).name for s in changed.updated] == ["manual.pdf"]
    assert len(changed.unchanged) == len(GOOD) - 1
    after = snapshot(settings)
    pdf = str(corpus / "manual.pdf")
    assert {k: v for k, v in after.items() if v[1] != pdf} == {k: v for k, v in before.items() if v[1] != pdf}
    assert any("orchard bells" in v[0] for v in after.values()) and changed.rows == first.rows


def _replace_with_other_pdf(path: Path) -> None:
    make_pdf(path, [["Different text written while the run was going."]])


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _swapped_for_a_link(path: Path) -> None:
    path.unlink()
    path.symlink_to("/etc/passwd")


MID_RUN_BREAKS = {
    "changed": (_replace_with_other_pdf, "changed while being read"),
    "deleted": (lambda p: p.unlink(), "vanished"),
    "fifo": (_fifo, "not a regular file (a FIFO)"),
    "symlink": (_swapped_for_a_link, "symlink"),
}


@pytest.mark.parametrize("victim", ["manual.pdf", "guide.md"])
@pytest.mark.parametrize("case", sorted(MID_RUN_BREAKS))
def test_a_document_that_goes_bad_mid_run_is_that_documents_skip(lite, tmp_path, t5_embedder, monkeypatch, case, victim):
    if case == "changed" and victim == "guide.md":
        return  # text formats: covered by test_ingest's mid-run cases
    how, reason = MID_RUN_BREAKS[case]
    corpus = document_corpus(tmp_path / "docs", bad=False)
    target = corpus / victim
    from milvus_ingest.ingest import plan as pipeline

    real_inspect = pipeline.inspect_source

    def inspect(item, *args, **kwargs):
        result = real_inspect(item, *args, **kwargs)
        if getattr(item, "path", None) == target:
            how(target)
        return result

    monkeypatch.setattr(pipeline, "inspect_source", inspect)
    report = run_ingest(lite.settings(), [str(corpus)], embedder=t5_embedder)
    assert [(Path(s.source).name, reason in s.reason) for s in report.skipped] == [(victim, True)]
    assert report.exit_code == 1 and {Path(s).name for s in report.new} == GOOD - {victim}


def _old_collection(settings, t5_embedder, monkeypatch, source: str) -> None:
    """A collection as schema version 1 wrote it: no document fields, version 1 in its record."""
    from dataclasses import replace

    from milvus_ingest.chunking import Chunk
    from milvus_ingest.store import chunk_row
    from milvus_ingest.store import schema as schema_module

    old = settings.milvus.model_copy(update={"bm25": "off"})  # schema 1 had no BM25 field either
    vector = t5_embedder.encode_array(["old text"], t5_embedder.doc_instruction)[0]
    row = chunk_row(source, 0, Chunk("old text", 0, 8), vector, "h", 1)
    with monkeypatch.context() as patch:
        patch.setattr(schema_module, "DOCUMENT_FIELD_TYPES", {})  # the schema without them
        with MilvusStore(old) as store:
            store.ensure_collection(replace(collection_meta(settings, t5_embedder.dim), schema_version=1))
            store.upsert([{k: v for k, v in row.items() if k not in DOCUMENT_FIELDS}])


def test_a_collection_from_before_the_document_fields_is_refused_until_recreated(backend, tmp_path, t5_embedder, monkeypatch):
    corpus = document_corpus(tmp_path / "docs", bad=False)
    settings = backend.settings()
    _old_collection(settings, t5_embedder, monkeypatch, str(corpus / "old.txt"))
    before = snapshot(settings)
    with pytest.raises(CollectionMismatchError) as refused:
        run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    message = str(refused.value)
    assert "schema version 1" in message and "--full --recreate" in message and "new collection" in message
    assert "\n" not in message and snapshot(settings) == before  # nothing written, nothing deleted
    with Searcher(settings, encoder=t5_embedder) as searcher:  # still searchable, without the new fields
        [hits] = searcher.search(["old text"], top_k=1)
        assert hits[0].text == "old text" and (hits[0].page, hits[0].section, hits[0].format) == (0, "", "")
    with pytest.raises(ConfigError, match="--full"):
        run_ingest(settings, [str(corpus)], IngestOptions(recreate=True), embedder=t5_embedder)

    report = run_ingest(settings, [str(corpus)], IngestOptions(full=True, recreate=True), embedder=t5_embedder)
    assert report.created_collection and {Path(s).name for s in report.new} == GOOD
    rows = rows_by_source(settings)
    assert set(rows) == GOOD and {r["format"] for r in rows["manual.pdf"]} == {"pdf"}


def test_recreate_never_drops_a_collection_this_pipeline_did_not_make(lite, tmp_path, t5_embedder):
    settings = lite.settings()
    with MilvusStore(settings.milvus) as store:
        store.client.create_collection(settings.milvus.collection, dimension=8)
    corpus = document_corpus(tmp_path / "docs", bad=False)
    with pytest.raises(CollectionMismatchError, match="never drops it"):
        run_ingest(settings, [str(corpus)], IngestOptions(full=True, recreate=True), embedder=t5_embedder)
    with MilvusStore(settings.milvus) as store:
        assert store.exists()


def test_sources_formats_reads_a_new_suffix_as_its_format(lite, tmp_path, t5_embedder):
    corpus = write_corpus(tmp_path / "docs", {"notes.mdx": "# Notes\n\n## Tides\n\nThe tide rises at noon.\n"})
    settings = lite.settings(sources__include=["*.mdx"], sources__formats={".mdx": "markdown"})
    report = run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    assert report.exit_code == 0
    [row] = rows_by_source(settings)["notes.mdx"]
    assert (row["format"], row["section"], row["title"]) == ("markdown", "Notes > Tides", "Notes")


def test_a_large_pdf_keeps_memory_bounded_during_an_ingest(lite, tmp_path, t5_embedder):
    """What the reader, the chunker and the stream hold does not grow with the pages already
    ingested: pages are parsed one at a time, pypdf's cached page streams are dropped, and chunks
    leave through bounded queues.  Counted with tracemalloc in the pipeline's own code and pypdf
    (Milvus Lite keeps the rows it is given in memory, as a server keeps them on its side).
    Measured: ~0.2 KB per page (pypdf's page dictionaries) plus up to ~50 KB in flight when a
    sample lands mid-page; ~2.8 KB per page when pypdf kept every page's decoded stream."""
    import gc
    import tracemalloc

    pages = [[f"Page {n}: the harbour lantern keepers mend the copper signal by the mill."] * 2 for n in range(150)]
    corpus = tmp_path / "big"
    corpus.mkdir()
    make_pdf(corpus / "big.pdf", pages)
    samples: list[tuple[int, int]] = []  # (chunks done, bytes held)
    marks = [40, 150, 260]  # of ~300 chunks (2 per page); a snapshot costs seconds, so only three

    def progress(done: int, total: int, chunks: int) -> None:
        if marks and chunks >= marks[0] and done < total:  # while the PDF is still being read
            marks.pop(0)
            gc.collect()
            samples.append((chunks, _held_by_pipeline()))

    tracemalloc.start(1)
    try:
        settings = lite.settings(model__batch_size=2, model__window_batches=8)  # 16 chunks: a sample every ~5 pages
        report = run_ingest(settings, [str(corpus)], embedder=t5_embedder, progress=progress)
    finally:
        tracemalloc.stop()
    assert report.exit_code == 0 and report.chunks >= len(pages) and len(samples) == 3
    (chunks_early, early), (chunks_late, late) = samples[0], max(samples[1:], key=lambda s: s[1])
    pages_between = (chunks_late - chunks_early) * len(pages) / report.chunks
    # The constant is what is in flight at a sample, whatever the page count: a page mid-decode
    # (pypdf's inflate buffers, a font's cmap: up to ~50 KB measured) and the bounded chunk window.
    # A per-page leak shows in the slope: pypdf keeping every decoded stream adds ~300 KB here.
    assert late - early < 512 * max(pages_between, 1) + 65_536, (early, late, pages_between)


PIPELINE_CODE = ("*/milvus_ingest/readers/*", "*/milvus_ingest/reading.py", "*/milvus_ingest/chunking.py",
                 "*/milvus_ingest/ingest/*", "*/pypdf/*")


def _held_by_pipeline() -> int:
    """Bytes still allocated by the reader, the chunker, the stream and pypdf."""
    import tracemalloc

    snapshot_ = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, p) for p in PIPELINE_CODE])
    return sum(stat.size for stat in snapshot_.statistics("filename"))
