"""Deterministic generated prose for the benchmarks: the same bytes on every machine, any size.

``generate_corpus(root, total_bytes)`` writes Markdown/text files of varied lengths (a few short
notes, many mid-sized pages, some long chapters) made of English-like sentences, so chunking sees
paragraphs, sentence ends and short tails, and the encoder sees chunks of varied token counts.
This module must never depend on the network, on a model, or on anything random that is not
seeded: two runs with the same arguments write identical files.
"""

from __future__ import annotations

import random
from pathlib import Path

_NOUNS = (
    "river mountain ledger harbour lantern orchard signal engine copper meadow thunder violin granite "
    "compass falcon glacier archive bridge candle desert forest garden island journey kettle library "
    "market needle ocean pencil quarry railway saddle tower valley window yard anchor basket canyon "
    "dragon ember feather gravel hammer igloo jacket kingdom ladder mirror nest oven palace quilt "
    "ribbon scholar theatre umbrella village wagon apron beacon cellar dune estuary furnace grove "
    "hinge inlet jetty keel loom mast nozzle outpost pier quay rampart sluice thicket upland vent "
    "wharf meadowlark cathedral network protocol database cluster server kernel compiler pipeline "
    "vector index shard replica query schema packet router gateway sensor turbine reactor circuit"
).split()
_VERBS = (
    "carries watches builds measures follows remembers crosses shelters gathers divides bends "
    "lifts records answers balances guards repairs releases connects describes returns opens "
    "closes holds shapes changes reaches turns finds keeps leaves brings joins covers stores"
).split()
_ADJECTIVES = (
    "quiet ancient narrow distant golden heavy bright hollow patient restless silver crooked "
    "gentle broken careful hidden northern southern early late frozen open steady wide small "
    "large plain rough smooth stable fast slow empty crowded modern old new"
).split()
_LINKS = (
    "and then", "because", "while", "although", "so that", "until", "after", "before", "whenever",
    "as long as", "even though", "which is why", "in the same way that",
)


def _sentence(rng: random.Random) -> str:
    clauses = []
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        words = [
            "the", rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_VERBS),
            rng.choice(("the", "a", "every", "its")), rng.choice(_NOUNS),
        ]
        if rng.random() < 0.5:
            words += [rng.choice(("near", "beyond", "under", "beside", "across")), "the", rng.choice(_NOUNS)]
        clauses.append(" ".join(words))
    text = f" {rng.choice(_LINKS)} ".join(clauses)
    if rng.random() < 0.15:
        text += f", as noted in {rng.randint(1, 1999)}"
    return text[0].upper() + text[1:] + rng.choice((".", ".", ".", "!", "?"))


class _SentencePool:
    """A fixed pool of sentences drawn from by index: fast enough for hundreds of megabytes."""

    def __init__(self, seed: int, size: int = 20_000):
        rng = random.Random(seed)
        self.sentences = [_sentence(rng) for _ in range(size)]

    def paragraph(self, rng: random.Random, label: str) -> str:
        n = rng.randint(2, 9)
        picks = [self.sentences[rng.randrange(len(self.sentences))] for _ in range(n)]
        return f"{label} " + " ".join(picks)


def _file_size(rng: random.Random) -> int:
    """Bytes of one file: mostly pages of a few KB, some notes, a few long chapters."""
    roll = rng.random()
    if roll < 0.2:
        return rng.randint(150, 900)  # a note: one short chunk
    if roll < 0.9:
        return rng.randint(1_500, 12_000)  # a page: a few chunks, one short tail
    return rng.randint(20_000, 80_000)  # a chapter


def generate_corpus(root: Path, total_bytes: int, seed: int = 7) -> list[Path]:
    """Write about ``total_bytes`` of prose under ``root`` (10 files per folder); returns the files."""
    root.mkdir(parents=True, exist_ok=True)
    pool = _SentencePool(seed)
    rng = random.Random(seed + 1)
    files: list[Path] = []
    written = 0
    while written < total_bytes:
        index = len(files)
        target = min(_file_size(rng), max(150, total_bytes - written))
        suffix = ".md" if index % 3 else ".txt"
        title = f"Document {index}: the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        parts = [f"# {title}" if suffix == ".md" else title]
        size = len(parts[0]) + 1
        paragraph = 0
        while size < target:
            paragraph += 1
            text = _SentencePool.paragraph(pool, rng, f"({index}.{paragraph})")
            parts.append(text)
            size += len(text) + 2
        path = root / f"part{index // 10:05d}" / f"doc{index:06d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = ("\n\n".join(parts) + "\n").encode("utf-8")
        path.write_bytes(data)
        written += len(data)
        files.append(path)
    return files
