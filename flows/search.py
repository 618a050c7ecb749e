"""The ``search`` Prefect flow and ``python -m flows.search``: thin wrappers over ``milvus_ingest.retrieval``.

``python -m flows.search QUESTION...`` prints ranked hits per question (a table on a terminal,
one JSON object per question with ``--json``) or, with ``--context``, a citable context block per
question.  The command line is interactive, so it never imports Prefect unless ``--flow`` asks
for a flow run (a temporary Prefect server costs ~10 s here), and it encodes questions on ONNX
Runtime (``milvus_ingest.retrieval.load_query_encoder``: no torch, no sentence-transformers import
once the model's export is cached; the first search exports it).  Python callers that want
no Prefect import use ``milvus_ingest.retrieval.search_questions``.  This module must never hold search
logic, and never put the Milvus token in a parameter, a log line or an artifact.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from milvus_ingest.config import Settings
from flows.cli import printable, quiet_environment, run_cli
from milvus_ingest.config import settings_with_overrides
from milvus_ingest.errors import ConfigError
from milvus_ingest.retrieval import MAX_TOP_K, Hit, Searcher, search_questions

if __name__ == "__main__":
    quiet_environment(one_off=True)
    # gRPC's C core logs keepalive GOAWAYs from Milvus Lite to stderr; errors reach the user as our line.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")

DEFAULT_TOP_K = 5
DEFAULT_BUDGET = 512


class SearchParams(BaseModel):
    """Flow parameters; Prefect validates them before a run is created (deployments too)."""

    model_config = ConfigDict(extra="forbid")

    questions: list[str] = Field(min_length=1, description="questions, searched in one batch")
    config: str | None = Field(default=None, description="YAML config file (default config/default.yaml)")
    uri: str | None = Field(default=None, description="Milvus URI; overrides config and MILVUS_URI")
    collection: str | None = None
    top_k: int = Field(default=DEFAULT_TOP_K, ge=1, le=MAX_TOP_K)
    filter: str = Field(default="", description='Milvus filter expression, e.g. source like "%.md"')
    mode: Literal["auto", "dense", "bm25", "hybrid"] | None = Field(
        default=None, description="dense, bm25 (full text), hybrid (both, fused) or auto (default: search.mode)"
    )
    output_fields: list[str] = Field(default_factory=list, description="extra row fields to return")
    context: bool = Field(default=False, description="also build a citable context block per question")
    budget_tokens: int = Field(default=DEFAULT_BUDGET, ge=1, description="token budget of a context block")
    token_secret: str | None = Field(
        default=None, description="name of a Prefect Secret block holding the Milvus token"
    )


@dataclass
class Answer:
    """One question's hits and, when asked for, its context block (``milvus_ingest.context.Context``)."""

    question: str
    hits: list[Hit]
    context: Any = None
    #: The mode the hits were found in (``auto`` resolved).
    mode: str = ""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"question": self.question, "mode": self.mode, "hits": [h.as_dict() for h in self.hits]}
        if self.context is not None:
            data["context"] = self.context.as_dict()
        return data


def answer_questions(
    settings: Settings,
    questions: list[str],
    top_k: int = DEFAULT_TOP_K,
    filter_expr: str = "",
    output_fields: list[str] | None = None,
    budget_tokens: int | None = None,
    mode: str | None = None,
) -> list[Answer]:
    """Search all questions in one batch; with ``budget_tokens``, build each one's context block."""
    if budget_tokens is not None and (isinstance(budget_tokens, bool) or budget_tokens < 1):
        raise ConfigError(f"--budget must be a positive number of tokens, got {budget_tokens!r}")
    # The question encoder loads on a second thread while Milvus is connected to; BM25 needs none.
    with Searcher(settings, preload=(mode or settings.search.mode) != "bm25") as searcher:
        mode = searcher.mode(mode)  # a mode the collection cannot serve is refused before any model loads
        results = searcher.search(questions, top_k, filter_expr, output_fields or (), mode=mode)
        counter = None
        if budget_tokens is not None:
            from milvus_ingest.chunking import TokenCounter
            from milvus_ingest.context import build_context

            counter = TokenCounter(searcher.encoder.tokenizer)
        answers = []
        for question, hits in zip(questions, results):
            context = None if counter is None or budget_tokens is None else build_context(hits, budget_tokens, counter)
            answers.append(Answer(question, hits, context, mode))
        return answers


# -- output -------------------------------------------------------------------------------
def _display_source(source: str) -> str:
    """A path under the working directory is shown relative to it: shorter in a table."""
    cwd = os.getcwd().rstrip("/") + "/"
    return printable(source.removeprefix(cwd))


def _cited(hit: Hit) -> str:
    """The source as a table shows it, with the page and section: ``manual.pdf p.3 · Installation``."""
    where = hit.location
    return _display_source(hit.source) + (f" {printable(where)}" if where else "")


def _one_line(text: str, width: int) -> str:
    flat = printable(" ".join(text.split()))
    return flat if len(flat) <= width else flat[: max(width - 1, 1)] + "…"


def print_table(answers: list[Answer], stream: TextIO, width: int | None = None) -> None:
    """Ranked hits per question: one row each, the passage cut to the terminal's width."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    for number, answer in enumerate(answers, start=1):
        if number > 1:
            print(file=stream)
        print(f"Q{number}: {printable(answer.question)}", file=stream)
        if not answer.hits:
            print("  (no hits)", file=stream)
            continue
        sources = [_cited(h) for h in answer.hits]
        spans = [f"{h.start}-{h.end}" for h in answer.hits]
        source_width = min(max(len(s) for s in sources + ["source"]), max(24, width * 2 // 5))
        span_width = max(len(s) for s in spans + ["chars"])
        header = f"  {'#':>2}  {'score':>6}  {'source':<{source_width}}  {'chars':<{span_width}}  passage"
        print(header, file=stream)
        room = max(width - len(header) + len("passage"), 20)
        for rank, (hit, source, span) in enumerate(zip(answer.hits, sources, spans), start=1):
            shown = source if len(source) <= source_width else "…" + source[-(source_width - 1) :]
            passage = _one_line(hit.text, room)
            print(
                f"  {rank:>2}  {hit.score:6.4f}  {shown:<{source_width}}  {span:<{span_width}}  {passage}", file=stream
            )


def print_plain(answers: list[Answer], stream: TextIO) -> None:
    """Not a terminal: every hit with its whole passage, indented, for logs and pipes."""
    for number, answer in enumerate(answers, start=1):
        if number > 1:
            print(file=stream)
        print(f"Q{number}: {printable(answer.question)}", file=stream)
        for rank, hit in enumerate(answer.hits, start=1):
            where = f" {printable(hit.location)}" if hit.location else ""
            print(f"{rank}. score {hit.score:.4f}  {printable(hit.source)}:{hit.start}-{hit.end}{where}", file=stream)
            for line in printable(hit.text, lines=True).splitlines() or [""]:
                print(f"   {line}", file=stream)


def print_contexts(answers: list[Answer], stream: TextIO) -> None:
    for number, answer in enumerate(answers, start=1):
        if number > 1:
            print(file=stream)
        context = answer.context
        print(f"Q{number}: {printable(answer.question)}", file=stream)
        note = f" ({context.omitted} passage(s) left out by the budget)" if context.omitted else ""
        print(
            f"-- context: {context.tokens} of {context.budget} tokens, {len(context.passages)} passage(s){note}",
            file=stream,
        )
        print(printable(context.text, lines=True), file=stream)


def print_answers(answers: list[Answer], as_json: bool, stream: TextIO = sys.stdout) -> None:
    if as_json:
        for answer in answers:
            print(json.dumps(answer.as_dict(), ensure_ascii=False), file=stream)
    elif answers and answers[0].context is not None:
        print_contexts(answers, stream)
    elif stream.isatty():
        print_table(answers, stream)
    else:
        print_plain(answers, stream)


# -- command line -------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.search",
        description="Search a collection with questions (encoded with the collection's query instruction).",
        epilog="Exit codes: 0 answered, 2 usage/config/Milvus error (missing or empty collection, bad filter, "
        "model mismatch).",
        allow_abbrev=False,
    )
    parser.add_argument("questions", nargs="+", metavar="QUESTION", help="one or more questions, searched in one batch")
    parser.add_argument("--config", help="YAML config (default: config/default.yaml)")
    parser.add_argument("--uri", help="Milvus URI: ./milvus.db (Lite) or http://host:19530")
    parser.add_argument("--collection", help="collection name")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help=f"hits per question (default {DEFAULT_TOP_K})")
    parser.add_argument("--filter", default="", help="Milvus filter expression, e.g. 'source like \"%%/psalms/%%\"'")
    parser.add_argument(
        "--mode", choices=["auto", "dense", "bm25", "hybrid"],
        help="dense (vectors), bm25 (full text), hybrid (both, fused), auto: hybrid where the collection has "
        "BM25 (default: search.mode)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per question: question, mode, hits")
    parser.add_argument("--context", action="store_true", help="print a citable context block per question")
    parser.add_argument(
        "--budget", type=int, default=DEFAULT_BUDGET, help=f"token budget of a context block (default {DEFAULT_BUDGET})"
    )
    parser.add_argument("--flow", action="store_true", help="run as a Prefect flow run (slower start)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_with_overrides(args.config, args.uri, args.collection)  # fail fast
    budget = args.budget if args.context else None
    if args.flow:
        params = _flow_params(
            questions=args.questions,
            config=args.config,
            uri=args.uri,
            collection=args.collection,
            top_k=args.top_k,
            filter=args.filter,
            context=args.context,
            budget_tokens=args.budget,
            mode=args.mode,
        )
        results = search(params)
        if args.json:
            for result in results:
                print(json.dumps(result, ensure_ascii=False))
        else:
            print_answers(_answers_from_dicts(results), False)
        return 0
    answers = answer_questions(settings, args.questions, args.top_k, args.filter, None, budget, args.mode)
    try:
        print_answers(answers, args.json)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _flow_params(**values: Any) -> SearchParams:
    """The flow's parameters from the flags; a value pydantic refuses is one line naming the flag."""
    try:
        return SearchParams(**values)
    except ValidationError as exc:
        item = exc.errors()[0]
        name = str(item["loc"][0]) if item["loc"] else "parameters"
        flag = {"budget_tokens": "--budget", "top_k": "--top-k"}.get(name, f"--{name}")
        raise ConfigError(f"bad {flag}: {item['msg']}") from None


def _answers_from_dicts(results: list[dict[str, Any]]) -> list[Answer]:
    """The flow returns plain dicts (JSON-safe results); rebuild them for the same printing."""
    from milvus_ingest.context import Context, Passage

    answers = []
    for result in results:
        hits = [
            Hit(**{k: v for k, v in h.items() if k != "fields"}, fields=h.get("fields", {})) for h in result["hits"]
        ]
        context = None
        if "context" in result:
            c = result["context"]
            passages = [
                Passage(
                    source=p["source"],
                    start=p["start"],
                    end=p["end"],
                    text="",
                    score=p["score"],
                    rank=p["number"],
                    hit_ids=tuple(p["hit_ids"]),
                    truncated=p["truncated"],
                    number=p["number"],
                )
                for p in c["passages"]
            ]
            context = Context(c["text"], passages, c["tokens"], c["budget"], c["omitted"])
        answers.append(Answer(result["question"], hits, context, result.get("mode", "")))
    return answers


if __name__ == "__main__" and "--flow" not in sys.argv[1:]:
    run_cli(main)  # exits here: the interactive path never imports Prefect

from prefect import flow  # noqa: E402 - only for the flow and --flow


@flow(name="search", log_prints=False, validate_parameters=True)
def search(params: SearchParams) -> list[dict[str, Any]]:
    """Search questions in one batch; returns one dict per question (``question``, ``hits``, ``context``)."""
    settings = settings_with_overrides(params.config, params.uri, params.collection)
    if params.token_secret:
        from prefect.blocks.system import Secret

        settings.milvus.token = Secret.load(params.token_secret).get()
    budget = params.budget_tokens if params.context else None
    answers = answer_questions(
        settings, params.questions, params.top_k, params.filter, params.output_fields, budget, params.mode
    )
    _publish(answers)
    return [a.as_dict() for a in answers]


def _publish(answers: list[Answer]) -> None:
    from prefect.artifacts import create_table_artifact

    rows = [
        {
            "question": a.question,
            "rank": rank,
            "score": round(h.score, 4),
            "source": h.source,
            "chars": f"{h.start}-{h.end}",
        }
        for a in answers
        for rank, h in enumerate(a.hits, start=1)
    ]
    try:
        create_table_artifact(table=rows, key="search-hits", description="Ranked hits per question")
    except Exception:  # an artifact needs an API; a failure must not lose the answers
        pass


__all__ = ["Answer", "SearchParams", "answer_questions", "search", "search_questions"]


if __name__ == "__main__":
    run_cli(main)
