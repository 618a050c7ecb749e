"""Retrieval choices end to end: the BM25 field and what the collection records, search modes,
the fusion, contextual chunks, CJK text, refusals on a backend without BM25, and --compare.

Lite 3 has BM25 functions and the 2.3.5 test server has none, so the two backends show both
sides: ``auto`` builds the field on one and not on the other, and the server refuses bm25/hybrid
in one line while still serving dense search.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from milvus_ingest.chunking import context_line
from milvus_ingest.encoders.presets import MILVUS_DOC_INSTRUCTION
from milvus_ingest.errors import CollectionMismatchError, ConfigError
from milvus_ingest.ingest import run_ingest
from milvus_ingest.retrieval import Searcher
from milvus_ingest.store import MilvusStore
from tests.support.backend import Backend
from tests.support.cli_support import run_module, write_config
from tests.support.corpus import sample_corpus, unique_name, write_corpus

GUIDE = """---
title: Harbour Guide
---
# Harbour Guide

The harbour opens at dawn and closes at dusk.

## Moorings

Boats tie up at the copper bollards on the east quay.

## Fees > Seasonal

A xylophonic surcharge applies to visiting yachts in winter.
"""


@pytest.fixture
def server(milvus_server_process) -> Backend:
    return Backend("server", milvus_server_process.uri, getattr(milvus_server_process, "token", "") or "",
                   milvus_server_process)


def _rows(settings, fields=("text", "start_char", "end_char", "section", "title", "source")) -> list[dict]:
    with MilvusStore(settings.milvus) as store:
        return store.query("chunk_index >= 0", list(fields), limit=10_000)


def test_the_collection_records_instructions_and_whether_it_has_bm25(backend, tmp_path, t5_embedder):
    settings = backend.settings()
    report = run_ingest(settings, [str(sample_corpus(tmp_path / "corpus"))], embedder=t5_embedder)
    with MilvusStore(settings.milvus) as store:
        meta = store.read_meta()
    # the tiny T5 has no preset: Milvus's defaults, as recorded
    assert (meta.doc_instruction, meta.query_instruction) == (t5_embedder.doc_instruction, t5_embedder.query_instruction)
    assert meta.doc_instruction == MILVUS_DOC_INSTRUCTION
    assert meta.bm25 is (backend.name == "lite")
    assert report.retrieval == {"instructions": "Milvus defaults (no preset for this model)",
                                "doc_instruction": MILVUS_DOC_INSTRUCTION, "contextual": True,
                                "bm25": backend.name == "lite"}
    if meta.bm25:
        assert json.loads(meta.bm25_analyzer) == {"type": "standard"}
    with Searcher(settings, encoder=t5_embedder) as searcher:
        assert searcher.mode("auto") == ("hybrid" if meta.bm25 else "dense")
        assert searcher.search(["copper engine"], top_k=3, mode="auto")


def test_bm25_and_hybrid_are_refused_in_one_line_on_a_server_without_bm25(server, tmp_path, t5_embedder):
    settings = server.settings()
    run_ingest(settings, [str(sample_corpus(tmp_path / "corpus"))], embedder=t5_embedder)
    with MilvusStore(settings.milvus) as store:
        before = store.count()
    config = write_config(tmp_path / "c.yaml", server.uri, settings.milvus.collection,
                          milvus={"token": server.token})
    for mode in ("bm25", "hybrid"):
        done = run_module("flows.search", "copper engine", "--config", str(config), "--mode", mode)
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in done.stderr
        assert f"--mode {mode} needs a BM25 full-text field" in lines[0] and "has no BM25 functions" in lines[0]
        assert "--mode dense" in lines[0]
    dense = run_module("flows.search", "copper engine", "--config", str(config), "--mode", "dense", "--json")
    assert dense.returncode == 0, dense.stderr
    assert json.loads(dense.stdout.splitlines()[0])["mode"] == "dense"
    with MilvusStore(settings.milvus) as store:
        assert store.count() == before  # nothing changed
    # asking for the field on such a server refuses before anything is created
    wanted = server.settings(milvus__bm25="on")
    with pytest.raises(ConfigError, match=r"milvus.bm25=on: Milvus .* has no BM25 functions"):
        run_ingest(wanted, [str(tmp_path / "corpus")], embedder=t5_embedder)
    with MilvusStore(wanted.milvus) as store:
        assert not store.exists()


def test_evaluate_refuses_bm25_on_a_server_before_ingesting(server, tmp_path):
    from tests.integration.test_evaluate import write_beir

    data = write_beir(tmp_path / "beir")
    config = write_config(tmp_path / "c.yaml", server.uri, milvus={"token": server.token})
    from milvus_ingest.config import MilvusSettings

    def eval_collections() -> set[str]:
        with MilvusStore(MilvusSettings(uri=server.uri, token=server.token)) as store:
            return {c for c in store.client.list_collections() if c.startswith("eval_")}

    before = eval_collections()
    done = run_module("flows.evaluate", str(data), "--config", str(config), "--uri", server.uri, "--mode", "bm25")
    assert done.returncode == 2 and "nothing was ingested" in done.stderr and "Traceback" not in done.stderr
    assert eval_collections() == before


def test_hybrid_fuses_both_lists_by_reciprocal_rank(lite, tmp_path, t5_embedder):
    """Every hybrid hit comes from the dense or the BM25 candidates, its score is the RRF of its
    ranks in them, hits come best first, and a keyword only BM25 can find makes it in."""
    files = {f"d{i}.txt": f"Paragraph {i} about harbours, lanterns and copper engines number {i}." for i in range(30)}
    files["rare.txt"] = "The quindecagonal lighthouse stands alone on the cape."
    settings = lite.settings(search__candidates=20, search__ranker="rrf")
    run_ingest(settings, [str(write_corpus(tmp_path / "corpus", files))], embedder=t5_embedder)
    question = ["Where is the quindecagonal lighthouse?"]
    with Searcher(settings, encoder=t5_embedder) as searcher:
        dense = searcher.search(question, top_k=20, mode="dense")[0]
        text = searcher.search(question, top_k=20, mode="bm25")[0]
        fused = searcher.search(question, top_k=8, mode="hybrid")[0]
        filtered = searcher.search(question, top_k=8, mode="hybrid", filter_expr='source like "%d1%"')[0]
    assert text[0].source.endswith("rare.txt") and text[0].score > 0
    rank_dense = {h.id: r for r, h in enumerate(dense, start=1)}
    rank_text = {h.id: r for r, h in enumerate(text, start=1)}
    k = settings.search.rrf_k
    assert len(fused) == 8 and any(h.source.endswith("rare.txt") for h in fused)
    for hit in fused:
        assert hit.id in rank_dense or hit.id in rank_text
        expected = sum(1 / (k + ranks[hit.id]) for ranks in (rank_dense, rank_text) if hit.id in ranks)
        assert hit.score == pytest.approx(expected, rel=1e-5)
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)
    assert filtered and all(Path(h.source).name.startswith("d1") for h in filtered)


def test_weighted_fusion_is_configurable(lite, tmp_path, t5_embedder):
    files = {f"d{i}.txt": "A note on harbours. " + "falcon " * i + "and meadows." for i in range(1, 9)}
    settings = lite.settings(search__ranker="weighted", search__dense_weight=0.0)
    run_ingest(settings, [str(write_corpus(tmp_path / "corpus", files))], embedder=t5_embedder)
    with Searcher(settings, encoder=t5_embedder) as searcher:
        text = searcher.search(["falcon"], top_k=5, mode="bm25")[0]
        weighted = searcher.search(["falcon"], top_k=5, mode="hybrid")[0]
    assert [h.source for h in text] == [str(tmp_path / "corpus" / f"d{i}.txt") for i in (8, 7, 6, 5, 4)]
    assert [h.id for h in weighted] == [h.id for h in text]  # all the weight on BM25: its order


def test_contextual_chunks_embed_the_place_and_store_the_source_text(lite, tmp_path, t5_embedder):
    corpus = write_corpus(tmp_path / "corpus", {"guide.md": GUIDE})
    settings = lite.settings()
    run_ingest(settings, [str(corpus)], embedder=t5_embedder)
    from milvus_ingest.readers import open_document

    source = "".join(b.text for b in open_document(corpus / "guide.md", "markdown").blocks)  # offsets index this
    rows = _rows(settings, ("text", "start_char", "end_char", "section", "title", "bm25_text"))
    assert {r["section"] for r in rows} == {"Harbour Guide", "Harbour Guide > Moorings", "Harbour Guide > Fees > Seasonal"}
    for row in rows:
        assert row["text"] == source[row["start_char"]:row["end_char"]]  # stored text: the source's
        assert row["bm25_text"] == context_line(row["title"], row["section"]) + "\n\n" + row["text"]
    with Searcher(settings, encoder=t5_embedder) as searcher:  # the section path is searchable by BM25
        hits = searcher.search(["Seasonal fees"], top_k=1, mode="bm25")[0]
    assert hits[0].section == "Harbour Guide > Fees > Seasonal"
    # turning it off re-embeds every source (what is embedded changed), and converges
    off = settings.model_copy(deep=True)
    off.chunking.contextual = False
    again = run_ingest(off, [str(corpus)], embedder=t5_embedder)
    assert again.updated == [str(corpus / "guide.md")] and not again.unchanged
    assert all(r["bm25_text"] == r["text"] for r in _rows(off, ("text", "bm25_text")))
    assert not run_ingest(off, [str(corpus)], embedder=t5_embedder).updated


def test_cjk_text_is_searchable_with_the_jieba_analyzer(lite, tmp_path, t5_embedder):
    pytest.importorskip("jieba")
    files = {"zh.txt": "我们的向量数据库支持全文检索。北京的团队维护这个系统。", "en.txt": "An English note on harbours."}
    corpus = write_corpus(tmp_path / "corpus", files)
    jieba = lite.settings(milvus__bm25_analyzer="jieba")
    run_ingest(jieba, [str(corpus)], embedder=t5_embedder)
    standard = lite.settings()
    run_ingest(standard, [str(corpus)], embedder=t5_embedder)
    with Searcher(jieba, encoder=t5_embedder) as searcher:
        for word in ("数据库", "北京", "全文检索"):
            hits = searcher.search([word], top_k=2, mode="bm25")[0]
            assert hits and hits[0].source.endswith("zh.txt"), word
        assert searcher.search(["harbours"], top_k=1, mode="bm25")[0][0].source.endswith("en.txt")
    with Searcher(standard, encoder=t5_embedder) as searcher:  # why the README says to pick jieba for CJK
        assert not searcher.search(["数据库"], top_k=2, mode="bm25")[0]


def test_unset_instructions_follow_the_collection_and_set_ones_are_checked(lite, tmp_path, t5_embedder):
    corpus = sample_corpus(tmp_path / "corpus")
    explicit = lite.settings(model__doc_instruction="Represent the harbour note:", model__query_instruction="Find:")
    run_ingest(explicit, [str(corpus)], embedder=t5_embedder)
    (corpus / "doc1.md").write_text("A changed note about falcons.", encoding="utf-8")
    unset = lite.settings(collection=explicit.milvus.collection)
    report = run_ingest(unset, [str(corpus)], embedder=t5_embedder)  # the preset would differ: not refused
    assert report.updated == [str(corpus / "doc1.md")]
    with MilvusStore(unset.milvus) as store:
        assert store.read_meta().doc_instruction == "Represent the harbour note:"
    with Searcher(unset, encoder=t5_embedder) as searcher:
        assert searcher.query_instruction == "Find:"
    other = lite.settings(collection=explicit.milvus.collection, model__doc_instruction="Represent something else:")
    with pytest.raises(CollectionMismatchError, match="doc instruction"):
        run_ingest(other, [str(corpus)], embedder=t5_embedder)


def test_search_and_evaluate_command_lines_take_a_mode_and_compare(lite, tmp_path, t5_onnx):
    from tests.integration.test_evaluate import write_beir

    corpus = write_corpus(tmp_path / "corpus", {"guide.md": GUIDE})
    collection = unique_name()
    config = write_config(tmp_path / "c.yaml", lite.uri, collection)
    assert run_module("flows.ingest", str(corpus), "--config", str(config)).returncode == 0
    done = run_module("flows.search", "xylophonic surcharge", "--config", str(config), "--mode", "bm25", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[0])
    assert answer["mode"] == "bm25" and answer["hits"][0]["section"] == "Harbour Guide > Fees > Seasonal"
    assert answer["hits"][0]["score"] > 0
    data = write_beir(tmp_path / "beir")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = run_module(
        "flows.evaluate", str(data), "--config", str(config), "--compare", "--json", timeout=600, TMPDIR=str(scratch)
    )
    assert done.returncode == 0, done.stderr
    assert list(scratch.iterdir()) == []  # the evaluation's and the bare loop's Lite folders are gone
    result = json.loads(done.stdout)
    rows = [(r["run"], r["mode"]) for r in result["rows"]]
    fused = "hybrid (weighted 0.8/0.2)"
    assert rows == [
        ("pipeline", "dense"), ("pipeline", "bm25"), ("pipeline", "hybrid (rrf k=60)"),
        ("pipeline", "hybrid (weighted 0.5/0.5)"), ("pipeline", fused),
        ("instructions flipped", "dense"), ("instructions flipped", fused),
        ("contextual flipped", "dense"), ("contextual flipped", "bm25"), ("contextual flipped", fused),
        ("bare loop", "dense"),
    ]
    assert [(r["run"], r["mode"]) for r in result["rows"] if r["default"]] == [("pipeline", fused)]
    for row in result["rows"]:
        assert {"ndcg@10", "recall@10", "recall@100", "mrr@10", "ms_per_query", "ndcg@10_vs_bare_loop"} <= set(row)
        assert 0.0 <= row["ndcg@10"] <= 1.0
    table = run_module("flows.evaluate", str(data), "--config", str(config), "--compare", "--no-baseline", timeout=600)
    assert table.returncode == 0 and "| run | mode | nDCG@10 |" in table.stdout and "bare loop" not in table.stdout
