"""Retrieval metrics against hand-computed values, and the BEIR loader against good and bad data.

The metric expectations are worked out in the comments, not by another implementation, so a
shared misconception (natural log, ideal taken from the run, duplicates counted twice) cannot
pass on both sides.  log2(3) = 1.5849625007, 1 / log2(3) = 0.6309297536.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from milvus_ingest.errors import DatasetError, MetricError
from milvus_ingest.evaluation.beir import BeirDoc, load_beir
from milvus_ingest.evaluation.metrics import DEFAULT_KS, evaluate_run, mrr_at_k, ndcg_at_k, recall_at_k

INV_LOG2_3 = 1 / math.log2(3)  # 0.6309297536
BEIR_MINI = Path(__file__).resolve().parents[1] / "data" / "beir-mini"


# --- nDCG ---------------------------------------------------------------------------------


def test_ndcg_graded_with_ideal_order_different_from_run_order() -> None:
    qrels = {"a": 2, "b": 1, "c": 0}
    # top 3 = b, x, a.  DCG = 1/log2(2) + 0/log2(3) + 2/log2(4) = 1 + 0 + 1 = 2
    # ideal = a(2), b(1):  IDCG = 2/log2(2) + 1/log2(3) = 2 + 0.6309297536 = 2.6309297536
    # nDCG@3 = 2 / 2.6309297536 = 0.7601875...
    assert ndcg_at_k(["b", "x", "a", "c"], qrels, 3) == pytest.approx(2 / (2 + INV_LOG2_3))
    assert ndcg_at_k(["b", "x", "a", "c"], qrels, 3) == pytest.approx(0.7601875, abs=1e-7)
    # perfect order a, b: DCG = 2 + 0.6309 = IDCG -> 1.0
    assert ndcg_at_k(["a", "b"], qrels, 10) == pytest.approx(1.0)
    # swapped b, a: DCG = 1 + 2 * 0.6309297536 = 2.2618595 ; / 2.6309297536 = 0.8597187
    assert ndcg_at_k(["b", "a"], qrels, 10) == pytest.approx(0.8597187, abs=1e-7)


def test_ndcg_gain_is_linear_not_exponential() -> None:
    # run = x, a(3), b(1).  Linear: DCG = 0 + 3/log2(3) + 1/log2(4) = 1.8927893 + 0.5 = 2.3927893
    # IDCG = 3/log2(2) + 1/log2(3) = 3.6309298  ->  nDCG@10 = 0.6590018
    # (exponential gain 2^rel - 1 would give (7*0.6309298 + 0.5) / (7 + 0.6309298) = 0.6442869)
    assert ndcg_at_k(["x", "a", "b"], {"a": 3, "b": 1}, 10) == pytest.approx(
        (3 * INV_LOG2_3 + 0.5) / (3 + INV_LOG2_3)
    )
    assert ndcg_at_k(["x", "a", "b"], {"a": 3, "b": 1}, 10) == pytest.approx(0.6590018, abs=1e-6)


def test_ndcg_relevant_doc_beyond_k_counts_nothing() -> None:
    qrels = {"a": 1}
    # a is at rank 3: outside the top 2 -> 0 ; inside the top 3 -> (1/log2(4)) / 1 = 0.5
    assert ndcg_at_k(["x", "y", "a"], qrels, 2) == 0.0
    assert ndcg_at_k(["x", "y", "a"], qrels, 3) == pytest.approx(0.5)


def test_ndcg_ideal_is_cut_at_k_too() -> None:
    # three relevant docs, k = 1: the ideal top 1 is one grade-1 doc (IDCG = 1), so a at rank 1
    # is perfect -> 1.0, not 1 / (1 + 0.6309 + 0.5).
    assert ndcg_at_k(["a"], {"a": 1, "b": 1, "c": 1}, 1) == pytest.approx(1.0)


def test_ndcg_nothing_relevant_retrieved_and_nothing_relevant_at_all() -> None:
    assert ndcg_at_k(["x", "y", "z"], {"a": 1}, 10) == 0.0
    assert ndcg_at_k([], {"a": 1}, 10) == 0.0
    # no grade > 0: no ideal to normalise by -> 0.0 (such queries are left out of evaluate_run)
    assert ndcg_at_k(["a"], {"a": 0}, 10) == 0.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0


def test_ndcg_negative_grades_are_not_relevant_and_give_no_negative_gain() -> None:
    # a(-1) at rank 1 gains 0 (not -1), b(1) at rank 2 gains 1/log2(3).  IDCG = 1 (b alone).
    # nDCG = 0.6309297536
    assert ndcg_at_k(["a", "b"], {"a": -1, "b": 1}, 10) == pytest.approx(INV_LOG2_3)


def test_duplicates_count_once_and_do_not_take_a_place_in_the_top_k() -> None:
    qrels = {"a": 1, "b": 1}
    ranking = ["a", "a", "x", "b"]
    # deduplicated: a, x, b.  top 3 -> DCG = 1 + 0 + 1/log2(4) = 1.5
    # IDCG = 1 + 1/log2(3) = 1.6309297536 -> nDCG@3 = 0.9197208
    # (counting the repeat would give DCG = 1 + 0.6309 = IDCG -> 1.0, and recall@3 = 1/2)
    assert ndcg_at_k(ranking, qrels, 3) == pytest.approx(1.5 / (1 + INV_LOG2_3))
    assert ndcg_at_k(ranking, qrels, 3) == pytest.approx(0.9197208, abs=1e-7)
    assert recall_at_k(ranking, qrels, 3) == pytest.approx(1.0)
    assert mrr_at_k(ranking, qrels, 3) == pytest.approx(1.0)
    # a repeated relevant doc is found once: recall of [a, a] for {a, b} is 1/2, not 2/2
    assert recall_at_k(["a", "a"], qrels, 10) == pytest.approx(0.5)
    # the first occurrence is the one that counts: b at rank 2 -> MRR 1/2
    assert mrr_at_k(["x", "b", "b"], {"b": 1}, 10) == pytest.approx(0.5)


# --- Recall and MRR -----------------------------------------------------------------------


def test_recall_denominator_is_all_relevant_docs_of_the_query() -> None:
    qrels = {"a": 1, "b": 2, "c": 1, "d": 0}
    # relevant = {a, b, c} (d has grade 0).  top 4 = a, d, x, b -> found a, b -> 2/3
    assert recall_at_k(["a", "d", "x", "b"], qrels, 4) == pytest.approx(2 / 3)
    # k = 1 < 3 relevant: the denominator stays 3, not min(k, 3) -> 1/3
    assert recall_at_k(["a"], qrels, 1) == pytest.approx(1 / 3)
    # b at rank 4 is beyond k = 3 -> only a -> 1/3
    assert recall_at_k(["a", "d", "x", "b"], qrels, 3) == pytest.approx(1 / 3)
    assert recall_at_k(["x", "y"], qrels, 10) == 0.0
    assert recall_at_k(["a"], {"a": 0}, 10) == 0.0


def test_mrr_is_reciprocal_rank_of_first_relevant_within_k() -> None:
    qrels = {"a": 2, "b": 1}
    # first relevant is b at rank 3 (grades do not matter) -> 1/3 ; beyond k = 2 -> 0
    assert mrr_at_k(["x", "y", "b", "a"], qrels, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "b", "a"], qrels, 2) == 0.0
    assert mrr_at_k(["a"], qrels, 1) == 1.0
    # a grade-0 doc at rank 1 is not a hit; b at rank 2 -> 1/2
    assert mrr_at_k(["z", "b"], {"z": 0, "b": 1}, 10) == pytest.approx(0.5)
    assert mrr_at_k([], qrels, 10) == 0.0


@pytest.mark.parametrize("k", [0, -1, 2.0, True, None])
def test_bad_k_is_refused(k: object) -> None:
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k):
        with pytest.raises(MetricError, match="k must be a positive integer"):
            metric(["a"], {"a": 1}, k)  # type: ignore[arg-type]


def test_a_string_is_not_a_ranking() -> None:
    with pytest.raises(MetricError, match="list of doc ids"):
        recall_at_k("abc", {"a": 1}, 10)


# --- evaluate_run -------------------------------------------------------------------------


def test_evaluate_run_means_over_queries_with_a_relevant_doc() -> None:
    qrels = {
        "q1": {"a": 2, "b": 1},
        "q2": {"c": 1},
        "q3": {"d": 0},  # no relevant doc: excluded, as BEIR does
        "q4": {"e": 1},  # judged but missing from the run: scores 0
    }
    run = {
        "q1": ["b", "x", "a"],
        "q2": ["c"],
        "q3": ["d"],
        "q5": ["z"],  # not in the qrels: ignored
    }
    result = evaluate_run(run, qrels)
    # q1: nDCG@10 = (1 + 0 + 2/2) / (2 + 0.6309297536) = 0.7601875 ; recall 2/2 ; MRR 1/1
    # q2: all 1.0 ;  q4: all 0.0
    # means over 3 queries: nDCG = (0.7601875 + 1 + 0) / 3 = 0.5867292 ; recall = MRR = 2/3
    assert result.queries == 3
    assert set(result.metrics) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
    assert result["ndcg@10"] == pytest.approx((2 / (2 + INV_LOG2_3) + 1) / 3)
    assert result["ndcg@10"] == pytest.approx(0.5867292, abs=1e-7)
    assert result["recall@10"] == pytest.approx(2 / 3)
    assert result["recall@100"] == pytest.approx(2 / 3)
    assert result["mrr@10"] == pytest.approx(2 / 3)
    assert set(result.per_query) == {"q1", "q2", "q4"}
    assert result.per_query["q1"]["ndcg@10"] == pytest.approx(0.7601875, abs=1e-7)
    assert result.per_query["q4"] == {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    assert result.as_dict() == {**result.metrics, "queries": 3}


def test_evaluate_run_recall_at_100_sees_what_recall_at_10_misses() -> None:
    # the relevant doc at rank 11: recall@10 = 0, recall@100 = 1, MRR@10 = 0
    ranking = [f"x{i}" for i in range(10)] + ["a"]
    result = evaluate_run({"q": ranking}, {"q": {"a": 1}})
    assert result.as_dict() == {
        "ndcg@10": 0.0,
        "recall@10": 0.0,
        "recall@100": 1.0,
        "mrr@10": 0.0,
        "queries": 1,
    }


def test_evaluate_run_custom_ks_and_errors() -> None:
    result = evaluate_run({"q": ["x", "a"]}, {"q": {"a": 1}}, ks={"mrr": (1, 2)})
    assert result.metrics == {"mrr@1": 0.0, "mrr@2": 0.5}
    assert DEFAULT_KS["recall"] == (10, 100)
    with pytest.raises(MetricError, match="unknown metric"):
        evaluate_run({}, {"q": {"a": 1}}, ks={"map": (10,)})
    with pytest.raises(MetricError, match="positive integer"):
        evaluate_run({}, {"q": {"a": 1}}, ks={"ndcg": (0,)})
    with pytest.raises(MetricError, match="ks is empty"):
        evaluate_run({}, {"q": {"a": 1}}, ks={})
    with pytest.raises(MetricError, match="nothing to evaluate"):
        evaluate_run({"q": ["a"]}, {"q": {"a": 0}})
    assert issubclass(MetricError, ValueError)


# --- BEIR loader: the shipped mini dataset ------------------------------------------------


def test_beir_mini_loads_and_every_qrels_id_exists() -> None:
    data = load_beir(BEIR_MINI)
    assert data.split == "test"
    assert len(data.corpus) == 98
    assert len(data.queries) == 41
    assert len(data.qrels) == 40
    assert sum(len(judged) for judged in data.qrels.values()) == 43
    for qid, judged in data.qrels.items():
        assert qid in data.queries
        for doc_id, grade in judged.items():
            assert doc_id in data.corpus
            assert grade in (1, 2)
    assert all(any(g > 0 for g in judged.values()) for judged in data.qrels.values())
    # q41 has no judgements on purpose: kept in queries, left out of the judged set
    judged_queries = data.judged_queries()
    assert len(judged_queries) == 40 and "q41" in data.queries and "q41" not in judged_queries
    doc = data.corpus["gen-37-23"]
    assert doc.title == "Genesis 37:23-28"
    assert doc.full_text.startswith("Genesis 37:23-28\n\nAnd it came to pass, when Joseph")
    assert "twenty pieces of silver" in doc.text
    # the folder stays small enough to live in the repository
    assert sum(p.stat().st_size for p in BEIR_MINI.rglob("*") if p.is_file()) < 200_000


def test_a_perfect_run_on_beir_mini_scores_one() -> None:
    data = load_beir(BEIR_MINI)
    run = {qid: sorted(judged, key=lambda d: -judged[d]) for qid, judged in data.qrels.items()}
    result = evaluate_run(run, data.qrels)
    assert result.queries == 40
    assert result.as_dict() == {
        "ndcg@10": 1.0,
        "recall@10": 1.0,
        "recall@100": 1.0,
        "mrr@10": 1.0,
        "queries": 40,
    }


def test_full_text_without_title_is_the_text() -> None:
    assert BeirDoc("d", "", "body").full_text == "body"
    assert BeirDoc("d", "  ", "body").full_text == "body"
    assert BeirDoc("d", "Title", "body").full_text == "Title\n\nbody"


# --- BEIR loader: bad datasets built in tmp_path ------------------------------------------

GOOD_CORPUS: list[object] = [
    {"_id": "d1", "title": "One", "text": "first"},
    {"_id": "d2", "title": "", "text": "second"},
    {"_id": "d3", "text": "third"},
]
GOOD_QUERIES: list[object] = [{"_id": "q1", "text": "which one?"}, {"_id": "q2", "text": "unjudged"}]
GOOD_QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t2\n"


def _jsonl(rows: list[object]) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def write_dataset(
    root: Path,
    corpus: list[object] | None = None,
    queries: list[object] | None = None,
    qrels: str | None = None,
    split: str = "test",
) -> Path:
    """A valid three-document dataset, with any one file replaced by the caller's version."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(_jsonl(GOOD_CORPUS if corpus is None else corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text(_jsonl(GOOD_QUERIES if queries is None else queries), encoding="utf-8")
    (root / "qrels" / f"{split}.tsv").write_text(GOOD_QRELS if qrels is None else qrels, encoding="utf-8")
    return root


def test_small_valid_dataset_and_lenient_inputs(tmp_path: Path) -> None:
    root = write_dataset(
        tmp_path,
        corpus=[*GOOD_CORPUS, "", {"_id": 7, "title": None, "text": "int id", "metadata": {}}],
        qrels=GOOD_QRELS + "q1\t7\t0\n\n",
        split="dev",
    )
    data = load_beir(root, split="dev")
    assert data.corpus["d2"].full_text == "second"
    assert data.corpus["d3"].title == ""
    assert data.corpus["7"].text == "int id"
    assert data.qrels == {"q1": {"d1": 1, "d3": 2, "7": 0}}
    assert data.queries == {"q1": "which one?", "q2": "unjudged"}
    assert data.judged_queries() == {"q1": "which one?"}


def test_a_byte_order_mark_is_not_an_error(tmp_path: Path) -> None:
    root = write_dataset(tmp_path)
    for name in ("corpus.jsonl", "qrels/test.tsv"):
        path = root / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(load_beir(root).corpus) == 3


BAD_DATASETS: list[tuple[str, dict[str, object], str]] = [
    # (case, write_dataset overrides, "file:line" expected in the message)
    ("bad JSON", {"corpus": [GOOD_CORPUS[0], '{"_id": "d2", "text": }']}, "corpus.jsonl:2"),
    ("not an object", {"queries": [GOOD_QUERIES[0], '["q2", "text"]']}, "queries.jsonl:2"),
    ("corpus missing _id", {"corpus": [*GOOD_CORPUS, {"text": "no id"}]}, "corpus.jsonl:4"),
    ("corpus missing text", {"corpus": [{"_id": "d1", "title": "t"}]}, "corpus.jsonl:1"),
    ("corpus text not a string", {"corpus": [*GOOD_CORPUS, {"_id": "d4", "text": 5}]}, "corpus.jsonl:4"),
    ("queries missing _id", {"queries": [*GOOD_QUERIES, {"text": "who?"}]}, "queries.jsonl:3"),
    ("queries missing text", {"queries": [{"_id": "q1"}]}, "queries.jsonl:1"),
    ("queries empty text", {"queries": [{"_id": "q1", "text": "  "}]}, "queries.jsonl:1"),
    ("empty _id", {"queries": [{"_id": "", "text": "x"}]}, "queries.jsonl:1"),
    ("duplicate corpus id", {"corpus": [*GOOD_CORPUS, {"_id": "d2", "text": "again"}]}, "corpus.jsonl:4"),
    ("duplicate query id", {"queries": [*GOOD_QUERIES, {"_id": "q1", "text": "again"}]}, "queries.jsonl:3"),
    ("bad header", {"qrels": "qid\tdocid\trel\nq1\td1\t1\n"}, "test.tsv:1"),
    ("header columns swapped", {"qrels": "corpus-id\tquery-id\tscore\nd1\tq1\t1\n"}, "test.tsv:1"),
    ("missing header", {"qrels": "q1\td1\t1\n"}, "test.tsv:1"),
    ("non-integer score", {"qrels": GOOD_QRELS + "q2\td2\t1.5\n"}, "test.tsv:4"),
    ("word score", {"qrels": GOOD_QRELS + "q2\td2\thigh\n"}, "test.tsv:4"),
    ("too few fields", {"qrels": GOOD_QRELS + "q2 d2 1\n"}, "test.tsv:4"),
    ("unknown query id", {"qrels": GOOD_QRELS + "q9\td2\t1\n"}, "test.tsv:4"),
    ("unknown corpus id", {"qrels": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td404\t1\n"}, "test.tsv:3"),
    ("duplicate judgement", {"qrels": GOOD_QRELS + "q1\td1\t2\n"}, "test.tsv:4"),
]


@pytest.mark.parametrize(
    ("case", "overrides", "where"), BAD_DATASETS, ids=[case for case, _, _ in BAD_DATASETS]
)
def test_bad_dataset_gives_one_line_naming_file_line_and_fix(
    tmp_path: Path, case: str, overrides: dict[str, object], where: str
) -> None:
    root = write_dataset(tmp_path, **overrides)  # type: ignore[arg-type]
    with pytest.raises(DatasetError) as caught:
        load_beir(root)
    message = str(caught.value)
    assert where in message, message
    assert "fix: " in message
    assert "\n" not in message
    assert caught.value.line == int(where.rsplit(":", 1)[1])
    assert isinstance(caught.value, ValueError)


def test_invalid_utf8_names_its_exact_line(tmp_path: Path) -> None:
    root = write_dataset(tmp_path)
    # line 1 padded past 8 KiB, so a decoder working in blocks would blame the wrong line
    lines = [json.dumps({"_id": "d1", "text": "x" * 9000}).encode(), b'{"_id": "d2", "text": "caf\xe9"}']
    (root / "corpus.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:2: not valid UTF-8"):
        load_beir(root)


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_missing_file_is_named(tmp_path: Path, missing: str) -> None:
    root = write_dataset(tmp_path)
    (root / missing).unlink()
    with pytest.raises(DatasetError) as caught:
        load_beir(root)
    message = str(caught.value)
    assert missing.split("/")[-1] in message and "not found" in message and "fix: " in message
    assert "\n" not in message


def test_missing_folder_or_split_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no-such-dataset.*not found"):
        load_beir(tmp_path / "no-such-dataset")
    root = write_dataset(tmp_path)
    with pytest.raises(DatasetError, match=r"dev\.tsv not found"):
        load_beir(root, split="dev")
    with pytest.raises(DatasetError, match="bad split name"):
        load_beir(root, split="../test")


def test_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"corpus\.jsonl: no documents"):
        load_beir(write_dataset(tmp_path / "a", corpus=[]))
    with pytest.raises(DatasetError, match=r"queries\.jsonl: no queries"):
        load_beir(write_dataset(tmp_path / "b", queries=[]))
    with pytest.raises(DatasetError, match=r"test\.tsv: no judgements"):
        load_beir(write_dataset(tmp_path / "c", qrels="query-id\tcorpus-id\tscore\n"))
