"""Context blocks: merging overlapping hits by offsets, labels for citation, the token budget.

No Milvus and no model run here: hits are built by hand from a known text, and tokens are
counted with the tiny T5 model's tokenizer (``milvus_ingest.chunking.TokenCounter``).
"""

from __future__ import annotations

import pytest

from milvus_ingest.chunking import TokenCounter
from milvus_ingest.context import ELLIPSIS, build_context, merge_hits
from milvus_ingest.errors import ConfigError
from milvus_ingest.retrieval import Hit

TEXT = " ".join(f"Sentence {i} tells of the river, the lantern and the orchard." for i in range(60))
OTHER = " ".join(f"Line {i} of another file, about copper and thunder." for i in range(40))


def hit(source: str, start: int, end: int, score: float, text: str | None = None) -> Hit:
    body = {"a.md": TEXT, "b.md": OTHER}[source]
    return Hit(f"{source}:{start}", score, source, start, end, body[start:end] if text is None else text)


@pytest.fixture(scope="module")
def counter(t5_embedder) -> TokenCounter:
    return TokenCounter(t5_embedder.tokenizer)


def test_overlapping_and_touching_hits_of_a_source_merge_into_one_passage():
    hits = [
        hit("a.md", 400, 700, 0.9),
        hit("b.md", 0, 200, 0.8),
        hit("a.md", 100, 450, 0.7),  # overlaps the first
        hit("a.md", 700, 800, 0.6),  # touches it
        hit("a.md", 120, 300, 0.5),  # inside the merged span
        hit("a.md", 1000, 1100, 0.4),  # a gap: its own passage
    ]
    passages = merge_hits(hits)
    assert [(p.source, p.start, p.end) for p in passages] == [
        ("a.md", 100, 800),
        ("b.md", 0, 200),
        ("a.md", 1000, 1100),
    ]
    merged = passages[0]
    assert merged.text == TEXT[100:800]  # spliced from the hits' own texts
    assert merged.score == 0.9 and merged.rank == 0
    assert merged.hit_ids == ("a.md:400", "a.md:100", "a.md:700", "a.md:120")


def test_hits_whose_text_is_not_their_span_are_never_spliced():
    odd = hit("a.md", 150, 300, 0.5, text="a text that is not TEXT[150:300]")
    passages = merge_hits([hit("a.md", 100, 200, 0.9), odd, hit("a.md", 100, 200, 0.3)])  # the last repeats an id
    assert [(p.start, p.end, p.text) for p in passages] == [(100, 200, TEXT[100:200]), (150, 300, odd.text)]


def test_passages_are_labelled_for_citation_in_rank_order(counter):
    hits = [hit("b.md", 50, 150, 0.9), hit("a.md", 0, 120, 0.8)]
    context = build_context(hits, 10_000, counter)
    assert context.text == f"[1] b.md:50-150\n{OTHER[50:150]}\n\n[2] a.md:0-120\n{TEXT[0:120]}"
    assert [p.number for p in context.passages] == [1, 2]
    assert context.omitted == 0 and context.tokens == counter.count([context.text])[0]


def test_the_budget_is_never_exceeded_and_cuts_are_marked(counter):
    hits = [
        hit("a.md", 0, 900, 0.9),
        hit("b.md", 0, 300, 0.8),
        hit("a.md", 2000, 2200, 0.7),
        hit("b.md", 900, 1000, 0.6),
    ]
    whole = build_context(hits, 10_000, counter)
    assert whole.omitted == 0 and not any(p.truncated for p in whole.passages)
    for budget in (20, 40, 80, 120, 200, 300, whole.tokens - 1, whole.tokens):
        context = build_context(hits, budget, counter)
        assert context.tokens <= budget, budget
        assert counter.count([context.text])[0] == context.tokens
        cut = [p for p in context.passages if p.truncated]
        assert len(cut) <= 1
        for passage in context.passages:
            body = {"a.md": TEXT, "b.md": OTHER}[passage.source]
            # The label's offsets are exactly the text shown: citable even after a cut.
            assert passage.text == body[passage.start : passage.end]
            shown = passage.render()
            assert shown.startswith(f"[{passage.number}] {passage.source}:{passage.start}-{passage.end}\n")
            assert shown.endswith(ELLIPSIS) == passage.truncated
            assert shown.split("\n", 1)[1].startswith(ELLIPSIS) == passage.cut_before
            assert shown in context.text
        assert len(context.passages) + context.omitted == 4


def test_whole_passages_go_in_score_order_and_the_first_that_does_not_fit_is_cut(counter):
    big, small = hit("a.md", 0, 1500, 0.5), hit("b.md", 0, 120, 0.9)
    small_tokens = counter.count([f"[1] b.md:0-120\n{OTHER[:120]}"])[0]
    context = build_context([small, big], small_tokens + 60, counter)
    first, second = context.passages
    assert (first.source, first.truncated, first.text) == ("b.md", False, OTHER[:120])
    assert second.source == "a.md" and second.truncated and 0 < second.end < 1500
    assert context.text.endswith(ELLIPSIS) and context.omitted == 0

    # The best passage is too big: it is cut to the whole budget; a worse one never jumps ahead.
    big, small = hit("a.md", 0, 1500, 0.9), hit("b.md", 0, 120, 0.5)
    context = build_context([big, small], small_tokens + 60, counter)
    assert [(p.source, p.truncated) for p in context.passages] == [("a.md", True)]
    assert context.omitted == 1 and context.omitted_sources == ["b.md"]
    assert context.tokens <= small_tokens + 60 and context.passages[0].end > 120


def test_a_cut_keeps_the_best_hit_of_a_merged_passage(counter):
    hits = [hit("a.md", 600, 1400, 0.9), hit("a.md", 0, 700, 0.5)]  # merged: 0-1400, best from 600
    context = build_context(hits, 60, counter)
    (passage,) = context.passages
    assert passage.cut_before and passage.truncated and passage.start == 600 < passage.end < 1400
    assert passage.text == TEXT[600 : passage.end]
    assert context.text.startswith(f"[1] a.md:600-{passage.end}\n{ELLIPSIS}{TEXT[600:610]}")
    assert context.text.endswith(ELLIPSIS) and context.tokens <= 60


def test_a_budget_too_small_for_anything_gives_an_empty_block(counter):
    context = build_context([hit("a.md", 0, 900, 0.9)], 3, counter)
    assert context.text == "" and context.passages == [] and context.omitted == 1
    assert build_context([], 100, counter).text == ""
    with pytest.raises(ConfigError, match="budget"):
        build_context([], 0, counter)
