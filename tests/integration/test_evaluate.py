"""Evaluation: beir-mini scored through the real ingest and search code, scratch collections
always dropped, the command line's JSON and per-query output, and the flow's artifacts.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import pytest

from milvus_ingest.config import load_settings
from milvus_ingest.evaluation.beir import load_beir
from milvus_ingest.evaluation.run import evaluate_dataset, metric_ks, rank_documents
from milvus_ingest.ingest import run_ingest
from milvus_ingest.retrieval import Hit, Searcher
from milvus_ingest.sources import TextDocument
from milvus_ingest.store import MilvusStore
from tests.support.cli_support import run_module, write_config
from tests.support.corpus import REPO, unique_name

BEIR_MINI = REPO / "tests" / "data" / "beir-mini"
KEYS = {"ndcg@10", "recall@10", "recall@100", "mrr@10", "queries"}


def write_beir(root: Path) -> Path:
    """Four documents, two judged questions: enough to run every stage with the tiny T5 model."""
    root.mkdir(parents=True)
    docs = {
        "d1": ("Copper", "The copper engine hums in the harbour."),
        "d2": ("Glacier", "The glacier moves slowly past the mountain."),
        "d3": ("", "Lanterns light the orchard at night."),
        "d4": ("Falcon", "A falcon circles over the meadow."),
    }
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in docs.items()), encoding="utf-8"
    )
    queries = {"q1": "What hums in the harbour?", "q2": "What circles over the meadow?"}
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td4\t2\n")
    return root


def _collections(uri: str) -> set[str]:
    from milvus_ingest.config import MilvusSettings

    with MilvusStore(MilvusSettings(uri=uri)) as store:
        return set(store.client.list_collections())


def test_beir_mini_through_the_command_line_code(minilm_embedder, monkeypatch, capsys, tmp_path):
    """The CLI's main, in-process with the session's MiniLM model: JSON keys, sane scores, --out."""
    import flows.evaluate as cli

    monkeypatch.setattr("milvus_ingest.evaluation.run.load_embedder", lambda settings: minilm_embedder)
    folders: list[str] = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: folders.append(real_mkdtemp(**kw)) or folders[-1])
    out = tmp_path / "per-query.json"
    code = cli.main([str(BEIR_MINI), "--config", str(REPO / "config" / "local.yaml"), "--json", "--out", str(out)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == KEYS
    dataset = load_beir(BEIR_MINI)
    judged = [q for q, rel in dataset.qrels.items() if any(g > 0 for g in rel.values())]
    assert summary["queries"] == len(judged)
    assert summary["ndcg@10"] > 0.5 and summary["mrr@10"] > 0.5
    assert 0.6 < summary["recall@10"] <= summary["recall@100"] <= 1.0
    assert folders and not Path(folders[0]).exists()  # the temporary Lite folder is gone

    details = json.loads(out.read_text())
    assert details["summary"] == summary and details["documents"] == len(dataset.corpus)
    assert set(details["queries"]) == set(dataset.judged_queries())
    q = details["queries"][judged[0]]
    assert set(q["metrics"]) == KEYS - {"queries"} and len(q["top"]) == 10
    docs = [row["doc"] for row in q["top"]]
    assert len(set(docs)) == 10 and set(docs) <= set(dataset.corpus)
    if q["first_relevant_rank"]:
        assert q["top"][q["first_relevant_rank"] - 1]["relevant"]


def test_a_given_uri_gets_a_scratch_collection_that_is_always_dropped(backend, tmp_path, t5_embedder, monkeypatch):
    dataset_dir = write_beir(tmp_path / "beir")
    settings = backend.settings()
    kept = settings.model_copy(deep=True)
    kept.milvus.collection = unique_name()
    run_ingest(
        kept, documents=[TextDocument("keep", "A collection that is not the evaluation's.")], embedder=t5_embedder
    )
    before = _collections(settings.milvus.uri) if backend.name == "lite" else None
    with MilvusStore(kept.milvus) as store:
        rows_before = store.count()

    report = evaluate_dataset(settings, dataset_dir, k=3, uri=settings.milvus.uri, embedder=t5_embedder)
    assert report.queries == 2 and report.documents == 4 and report.chunks >= 4
    assert set(report.summary()) == {"ndcg@3", "recall@3", "recall@100", "mrr@3", "queries"}
    assert report.collection.startswith("eval_")
    with MilvusStore(kept.milvus) as store:
        assert not MilvusStore(_with(settings, report.collection).milvus).exists()
        assert store.count() == rows_before
    if before is not None:
        assert _collections(settings.milvus.uri) == before

    def broken(self, *args, **kwargs):
        raise RuntimeError("search broke")

    created: list[str] = []
    real_run_ingest = run_ingest

    def spy_ingest(s, **kwargs):
        created.append(s.milvus.collection)
        return real_run_ingest(s, **kwargs)

    monkeypatch.setattr(Searcher, "search", broken)
    monkeypatch.setattr("milvus_ingest.ingest.run_ingest", spy_ingest)
    with pytest.raises(RuntimeError, match="search broke"):
        evaluate_dataset(settings, dataset_dir, k=3, uri=settings.milvus.uri, embedder=t5_embedder)
    assert created and not MilvusStore(_with(settings, created[0]).milvus).exists()


def _with(settings, collection):
    other = settings.model_copy(deep=True)
    other.milvus.collection = collection
    return other


def test_queries_longer_than_the_model_reads_are_counted_and_said_once(lite, tmp_path, t5_embedder, caplog):
    dataset_dir = write_beir(tmp_path / "beir")
    long_query = " ".join(["What hums in the copper harbour?"] * t5_embedder.max_seq_length)
    lines = [json.dumps({"_id": "q1", "text": long_query}), json.dumps({"_id": "q2", "text": long_query[:4000]})]
    (dataset_dir / "queries.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    caplog.set_level(logging.WARNING, logger="milvus_ingest")
    report = evaluate_dataset(lite.settings(), dataset_dir, k=3, embedder=t5_embedder, mode="hybrid")
    assert report.queries == 2 and report.queries_cut == 2 and report.details()["queries_cut"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("2 of 2 queries are longer than the model reads"), warnings
    caplog.clear()
    short = evaluate_dataset(lite.settings(), write_beir(tmp_path / "short"), k=3, embedder=t5_embedder)
    assert short.queries_cut == 0 and not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_documents_are_ranked_by_their_best_chunk():
    hits = [
        Hit(f"h{i}", s, doc, 0, 1, "x") for i, (doc, s) in enumerate([("a", 0.9), ("b", 0.8), ("a", 0.7), ("c", 0.6)])
    ]
    assert rank_documents(hits, 10) == [("a", 0.9), ("b", 0.8), ("c", 0.6)]
    assert rank_documents(hits, 2) == [("a", 0.9), ("b", 0.8)]
    assert metric_ks(10) == {"ndcg": (10,), "recall": (10, 100), "mrr": (10,)}
    assert metric_ks(100)["recall"] == (100,)


def test_the_flow_publishes_scores_and_worst_queries(tmp_path, monkeypatch):
    from flows.evaluate import EvaluateParams, evaluate

    artifacts: dict[str, object] = {}
    monkeypatch.setattr(
        "prefect.artifacts.create_table_artifact", lambda table, key, **kw: artifacts.setdefault(key, table)
    )
    monkeypatch.setattr(
        "prefect.artifacts.create_markdown_artifact", lambda md, key, **kw: artifacts.setdefault(key, md)
    )
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "unused.db"))
    out = tmp_path / "out.json"
    summary = evaluate.fn(
        EvaluateParams(dataset=str(write_beir(tmp_path / "beir")), config=str(config), k=2, out=str(out))
    )
    assert set(summary) == {"ndcg@2", "recall@2", "recall@100", "mrr@2", "queries"} and summary["queries"] == 2
    metrics = {row["metric"]: row["value"] for row in artifacts["evaluation-scores"]}
    assert metrics["queries"] == 2 and "ndcg@2" in metrics
    assert "| q1 |" in artifacts["evaluation-worst-queries"] and "| q2 |" in artifacts["evaluation-worst-queries"]
    assert json.loads(out.read_text())["summary"] == summary
    assert not (tmp_path / "unused.db").exists()  # without --uri the config's database is not touched


def test_cli_dataset_errors_are_one_line(tmp_path):
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "m.db"))
    result = run_module("flows.evaluate", str(tmp_path / "nope"), "--config", str(config))
    assert result.returncode == 2 and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "dataset folder not found" in lines[0]
    settings = load_settings(config)
    assert settings.model.name.endswith("tiny-instructor-t5")
