"""The FAQ evaluation sets shipped under tests/data load cleanly and are not trivially solvable.

Built by ``python -m benchmarks.datasets.build_faq_sets --out tests/data``; fast, no model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from milvus_ingest.evaluation.beir import load_beir

DATA = Path(__file__).resolve().parents[1] / "data"

# name: (passages, queries) ranges the shipped sets must stay inside.
EXPECTED = {
    "debian-faq": ((150, 1500), (50, 300)),
    "zsh-faq": ((150, 1500), (50, 300)),
    "ffmpeg-faq": ((150, 1500), (50, 300)),
}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["_id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_evalset_layout(name: str) -> None:
    root = DATA / name
    ds = load_beir(root)  # checks every qrels id against the corpus and the queries
    (plo, phi), (qlo, qhi) = EXPECTED[name]
    assert plo <= len(ds.corpus) <= phi
    assert qlo <= len(ds.queries) <= qhi
    for path in (root / "corpus.jsonl", root / "queries.jsonl"):
        ids = _ids(path)
        assert len(ids) == len(set(ids)), f"duplicate ids in {path}"
    # Every query is judged, every judgement is a plain 1, and answers are a minority of the corpus.
    assert set(ds.qrels) == set(ds.queries)
    assert {score for judged in ds.qrels.values() for score in judged.values()} == {1}
    relevant = {doc_id for judged in ds.qrels.values() for doc_id in judged}
    assert len(relevant) < len(ds.corpus), "the corpus needs distractors"
    texts = {_norm(q) for q in ds.queries.values()}
    assert len(texts) == len(ds.queries), "the same question twice"
    assert (root / "README.md").is_file()
    assert (root / "corpus.jsonl").stat().st_size < 2_000_000


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_question_not_inside_its_answer(name: str) -> None:
    ds = load_beir(DATA / name)
    for qid, judged in ds.qrels.items():
        question = _norm(ds.queries[qid])
        for doc_id in judged:
            doc = ds.corpus[doc_id]
            assert question not in _norm(doc.title), (qid, doc_id)
            assert question not in _norm(doc.text), (qid, doc_id)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_queries_are_questions(name: str) -> None:
    from benchmarks.datasets.build_faq_sets import is_question

    ds = load_beir(DATA / name)
    assert all(is_question(text) for text in ds.queries.values())
