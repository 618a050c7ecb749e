"""Questions are checked before anything is opened or encoded: one line naming the question."""

from __future__ import annotations

import pytest

from milvus_ingest.errors import ConfigError
from milvus_ingest.retrieval import _check_questions


@pytest.mark.parametrize(
    "questions,message",
    [
        ([], "no question given"),
        (["fine", "  "], "question 2 is empty"),
        (["\u200b\u200d\ufeff"], "question 1 is empty"),  # invisible characters ask nothing
        (["caf\udce9 au lait"], "question 1 is not valid UTF-8 (at character 3)"),  # argv bytes from a latin-1 shell
    ],
)
def test_bad_questions_are_one_clear_refusal(questions, message):
    with pytest.raises(ConfigError) as caught:
        _check_questions(questions)
    assert str(caught.value).startswith(message)


def test_good_questions_pass():
    _check_questions(["Who built the ark?", "数 🙂 é", "a" * 100_000])
