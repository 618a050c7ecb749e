"""Load a retrieval benchmark in the BEIR layout into typed, cross-checked dataclasses.

The layout is BEIR's (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``), so any BEIR
dataset, or a small hand-made one, can be benchmarked the same way.  This module must never
embed, index or score anything, and must never accept a dataset it has not fully checked: a
qrels row pointing at a missing document would silently cap every metric below 1, so every
problem is a ``DatasetError`` whose one line names the file, the line and the fix.

The jsonl files are read line by line (BEIR corpora run to millions of lines); the result is
held in memory as dicts, since the qrels must be checked against every id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milvus_ingest.errors import DatasetError

__all__ = ["QRELS_HEADER", "BeirDataset", "BeirDoc", "DatasetError", "load_beir"]

#: The header BEIR writes and its loader skips; checked here so that a file with the columns in
#: another order (TREC's ``qid 0 docid rel``) is refused instead of misread.
QRELS_HEADER = ("query-id", "corpus-id", "score")
_INTEGER = re.compile(r"-?[0-9]+")





@dataclass(frozen=True)
class BeirDoc:
    """One corpus document; the title is kept apart because models treat it differently."""

    doc_id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title, blank line, text: the order BEIR's dense models encode (title first)."""
        return f"{self.title}\n\n{self.text}" if self.title.strip() else self.text


@dataclass(frozen=True)
class BeirDataset:
    """A checked dataset: every qrels id is a known query and a known document."""

    root: Path
    split: str
    corpus: dict[str, BeirDoc]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def judged_queries(self) -> dict[str, str]:
        """The queries that appear in the qrels, in qrels order: the only ones worth searching.

        BEIR ships queries for all splits in one file; searching the others costs time and
        their results could never be scored.  ``evaluate_run`` further drops a query whose
        judgements are all <= 0.
        """
        return {qid: self.queries[qid] for qid in self.qrels}


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text without the newline), decoding each line on its own.

    Decoding per line, rather than through a text-mode file that decodes in 8 KiB blocks, is what
    makes the line number of a bad byte exact.
    """
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a BOM written by an editor must not make line 1 invalid
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DatasetError(
                    path, lineno, f"not valid UTF-8 (byte {exc.start + 1})", "re-save the file as UTF-8"
                ) from None


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) one line at a time; blank lines are skipped."""
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                path, lineno, f"invalid JSON ({exc.msg}, column {exc.colno})", "write one JSON object per line"
            ) from None
        if not isinstance(obj, dict):
            raise DatasetError(
                path,
                lineno,
                f"expected a JSON object, got {type(obj).__name__}",
                'write one object per line, like {"_id": "...", "text": "..."}',
            )
        yield lineno, obj


def _id_field(path: Path, lineno: int, obj: dict[str, Any]) -> str:
    """The ``_id`` as a non-empty string; an integer id is accepted as its decimal string,
    since the qrels (a TSV) can only ever refer to it that way."""
    if "_id" not in obj:
        raise DatasetError(path, lineno, 'missing "_id"', 'give every line a string "_id"')
    value = obj["_id"]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(
            path, lineno, f'"_id" must be a non-empty string, got {value!r}', 'give every line a string "_id"'
        )
    return value


def _str_field(path: Path, lineno: int, obj: dict[str, Any], key: str, *, required: bool) -> str:
    if key not in obj:
        if required:
            raise DatasetError(path, lineno, f'missing "{key}"', f'give every line a string "{key}"')
        return ""
    value = obj[key]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DatasetError(
            path, lineno, f'"{key}" must be a string, got {type(value).__name__}', f'make "{key}" a JSON string'
        )
    return value


def _load_corpus(path: Path) -> dict[str, BeirDoc]:
    corpus: dict[str, BeirDoc] = {}
    for lineno, obj in _read_jsonl(path):
        doc_id = _id_field(path, lineno, obj)
        if doc_id in corpus:
            raise DatasetError(path, lineno, f"duplicate _id {doc_id!r}", "give each document a unique _id")
        # Empty text is allowed: real BEIR corpora hold title-only documents.
        text = _str_field(path, lineno, obj, "text", required=True)
        title = _str_field(path, lineno, obj, "title", required=False)
        corpus[doc_id] = BeirDoc(doc_id=doc_id, title=title, text=text)
    if not corpus:
        raise DatasetError(path, None, "no documents", "add one JSON object per document")
    return corpus


def _load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for lineno, obj in _read_jsonl(path):
        qid = _id_field(path, lineno, obj)
        if qid in queries:
            raise DatasetError(path, lineno, f"duplicate _id {qid!r}", "give each query a unique _id")
        text = _str_field(path, lineno, obj, "text", required=True).strip()
        if not text:
            # An empty query embeds to a meaningless vector and would score as a silent miss.
            raise DatasetError(
                path, lineno, f"query {qid!r} has empty text", "write the question or drop the line"
            )
        queries[qid] = text
    if not queries:
        raise DatasetError(path, None, "no queries", "add one JSON object per query")
    return queries


def _load_qrels(path: Path, corpus: dict[str, BeirDoc], queries: dict[str, str]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    lines = _lines(path)
    header = next(lines, (1, ""))[1]
    if tuple(field.strip() for field in header.split("\t")) != QRELS_HEADER:
        raise DatasetError(
            path,
            1,
            f"bad header {header.strip()!r}",
            "the first line must be 'query-id<TAB>corpus-id<TAB>score'",
        )
    for lineno, row in lines:
        if not row.strip():
            continue
        fields = [field.strip() for field in row.split("\t")]
        if len(fields) != 3 or not fields[0] or not fields[1]:
            raise DatasetError(
                path,
                lineno,
                f"expected 3 tab-separated fields, got {row!r}",
                "write 'query-id<TAB>corpus-id<TAB>score'",
            )
        qid, doc_id, score_text = fields
        # A regex, not a bare int(): int() also takes "1_0" and "+1", which no qrels writer means.
        if not _INTEGER.fullmatch(score_text):
            raise DatasetError(
                path,
                lineno,
                f"score {score_text!r} is not an integer",
                "use an integer relevance grade (0 = not relevant, 1, 2, ...)",
            )
        score = int(score_text)
        if qid not in queries:
            raise DatasetError(
                path,
                lineno,
                f"query id {qid!r} is not in queries.jsonl",
                "add the query to queries.jsonl or remove the row",
            )
        if doc_id not in corpus:
            raise DatasetError(
                path,
                lineno,
                f"corpus id {doc_id!r} is not in corpus.jsonl",
                "add the document to corpus.jsonl or remove the row",
            )
        judged = qrels.setdefault(qid, {})
        if doc_id in judged:
            raise DatasetError(
                path,
                lineno,
                f"duplicate judgement for ({qid!r}, {doc_id!r})",
                "keep one row per query and document",
            )
        judged[doc_id] = score
    if not qrels:
        raise DatasetError(path, None, "no judgements after the header", "add at least one qrels row")
    return qrels


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(
            path,
            None,
            f"{what} not found",
            "a BEIR dataset needs corpus.jsonl, queries.jsonl "
            "and qrels/<split>.tsv; check the path and the split",
        )
    return path


def load_beir(root: str | Path, split: str = "test") -> BeirDataset:
    """Load and cross-check ``root`` (corpus, queries, ``qrels/<split>.tsv``); raise DatasetError.

    Queries without qrels are kept (BEIR ships one query file for every split); a qrels row for an
    unknown query or document is an error, because it would be scored as an impossible miss.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, None, "dataset folder not found", "pass the folder holding corpus.jsonl")
    if not split or split != Path(split).name or split in {".", ".."}:
        raise DatasetError(
            root / "qrels", None, f"bad split name {split!r}", "use a plain name such as 'test' or 'dev'"
        )
    corpus_path = _require_file(root / "corpus.jsonl", "corpus.jsonl")
    queries_path = _require_file(root / "queries.jsonl", "queries.jsonl")
    qrels_path = _require_file(root / "qrels" / f"{split}.tsv", f"qrels/{split}.tsv")
    corpus = _load_corpus(corpus_path)
    queries = _load_queries(queries_path)
    qrels = _load_qrels(qrels_path, corpus, queries)
    return BeirDataset(root=root, split=split, corpus=corpus, queries=queries, qrels=qrels)
