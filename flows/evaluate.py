"""The ``evaluate`` Prefect flow and ``python -m flows.evaluate``: thin wrappers over ``milvus_ingest.evaluation.run``.

``python -m flows.evaluate DATASET_DIR`` ingests a BEIR-layout dataset into a scratch collection,
searches its judged queries and prints nDCG@10, Recall@10, Recall@100 and MRR@10 (``--json``: one
object with those keys and ``queries``; ``--out FILE``: per-query results).  Like the search
command it imports Prefect only for ``--flow``; the flow publishes the scores and the worst
queries as artifacts.  This module must never hold evaluation logic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.cli import format_table, quiet_environment, run_cli
from milvus_ingest.config import settings_with_overrides
from milvus_ingest.errors import ConfigError

if __name__ == "__main__":
    quiet_environment(one_off=True)
    # gRPC's C core logs keepalive GOAWAYs from Milvus Lite to stderr; errors reach the user as our line.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from milvus_ingest.evaluation.beir import load_beir  # noqa: E402
from milvus_ingest.evaluation.run import EvaluationReport, evaluate_dataset  # noqa: E402
from milvus_ingest.retrieval import MODES  # noqa: E402


class EvaluateParams(BaseModel):
    """Flow parameters; Prefect validates them before a run is created."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    config: str | None = Field(default=None, description="YAML config file (default config/default.yaml)")
    uri: str | None = Field(
        default=None, description="Milvus URI for the scratch collection (default: a temporary Lite folder)"
    )
    k: int = Field(default=10, ge=1, le=1000)
    split: str = "test"
    backend: str | None = Field(default=None, description="encoder engine: auto, torch or onnx (default: the config's)")
    precision: str | None = Field(default=None, description="auto, fp32, fp16, bf16 or int8 (default: the config's)")
    mode: str | None = Field(default=None, description="search mode: auto, dense, bm25 or hybrid (default: the config's)")
    out: str | None = Field(default=None, description="write per-query results as JSON to this file")


def write_details(report: EvaluationReport, out: str) -> None:
    write_json(report.details(), out)


def write_json(data: Any, out: str) -> None:
    try:
        Path(out).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the results ({exc.strerror or exc})") from None


def compare_table(compared: Any) -> str:
    """The compare report as a Markdown table (it reads in a terminal and pastes into docs)."""
    k = compared.k
    base = compared.baseline_ndcg()
    head = f"| run | mode | nDCG@{k} | Recall@{k} | Recall@100 | MRR@{k} | ms/query |" + (" vs bare loop |" if base is not None else "")
    lines = [f"{compared.dataset}: {compared.queries} judged queries, model {compared.model}", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for row in compared.rows:
        m = row.metrics
        cells = [row.run + (" (default)" if row.default else ""), row.mode, f"{m.get(f'ndcg@{k}', 0):.4f}",
                 f"{m.get(f'recall@{k}', 0):.4f}", f"{m.get('recall@100', 0):.4f}", f"{m.get(f'mrr@{k}', 0):.4f}",
                 f"{row.ms_per_query:.1f}"]
        if base is not None:
            cells.append(f"{m.get(f'ndcg@{k}', 0) - base:+.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    instructions = {row.run: row.instructions for row in compared.rows}
    lines += [""] + [f"{run}: instructions {text}" for run, text in instructions.items() if text]
    return "\n".join(lines)


def print_report(report: EvaluationReport, stream: Any = sys.stdout) -> None:
    s = report.seconds
    rows: list[tuple[str, Any]] = [
        (
            "dataset",
            f"{report.dataset} (split {report.split}): {report.documents} documents, {report.queries} judged queries",
        ),
        ("model", report.model),
        ("mode", report.mode),
        *([("engine", f"{report.engine['backend']} {report.engine['precision']}: {report.engine['reason']}")]
          if report.engine else []),
        ("scratch", f"{report.collection} at {report.uri} (dropped)"),
        (
            "chunks",
            f"{report.chunks}"
            + (f" ({report.skipped_documents} empty documents skipped)" if report.skipped_documents else ""),
        ),
    ]
    if report.queries_cut:
        rows.append(("queries cut", f"{report.queries_cut} longer than the model reads: encoded from their first tokens"))
    rows += [(name, f"{value:.4f}") for name, value in report.metrics.items()]
    rows.append(
        (
            "seconds",
            (
                f"model load {s['model_load']:.1f}, ingest {s['ingest']:.1f}, search {s['search']:.2f} "
                f"({s['search_ms_per_query']:.1f} ms/query)"
            ),
        )
    )
    print(format_table(rows), file=stream)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.evaluate",
        description="Evaluate retrieval on a BEIR-layout dataset: ingest into a scratch collection, search, score.",
        epilog="Exit codes: 0 evaluated, 2 usage/config/dataset/Milvus error.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "dataset", metavar="DATASET_DIR", help="folder with corpus.jsonl, queries.jsonl, qrels/<split>.tsv"
    )
    parser.add_argument("--config", help="YAML config (default: config/default.yaml)")
    parser.add_argument("--uri", help="Milvus URI for a scratch collection (default: a temporary Milvus Lite folder)")
    parser.add_argument(
        "--k", type=int, default=10, help="cut-off of nDCG, Recall and MRR (default 10; Recall@100 too)"
    )
    parser.add_argument("--split", default="test", help="qrels split (default test)")
    parser.add_argument("--backend", choices=["auto", "torch", "onnx"], help="encoder engine (default: the config's)")
    parser.add_argument(
        "--precision", choices=["auto", "fp32", "fp16", "bf16", "int8"], help="encoder precision (default: the config's)"
    )
    parser.add_argument("--mode", choices=list(MODES), help="search mode (default: the config's search.mode)")
    parser.add_argument(
        "--compare", action="store_true",
        help="one table: every mode, instructions and contextual chunks flipped, and the bare-loop baseline",
    )
    parser.add_argument("--no-baseline", action="store_true", help="with --compare: leave out the bare-loop row")
    parser.add_argument("--json", action="store_true", help="print one JSON object: the metrics and queries")
    parser.add_argument("--out", help="write per-query results as JSON to FILE")
    parser.add_argument("--flow", action="store_true", help="run as a Prefect flow run (artifacts; slower start)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_with_overrides(args.config, args.uri, backend=args.backend, precision=args.precision)  # fail fast
    if not 1 <= args.k <= 1000:
        raise ConfigError(f"--k must be between 1 and 1000, got {args.k}")
    if args.flow:
        summary = evaluate(
            EvaluateParams(
                dataset=args.dataset, config=args.config, uri=args.uri, k=args.k, split=args.split, out=args.out,
                backend=args.backend, precision=args.precision, mode=args.mode,
            )
        )
        print(json.dumps(summary) if args.json else format_table(list(summary.items())))
        return 0
    dataset = load_beir(args.dataset, args.split)  # a bad dataset is one line before any model loads
    if args.compare:
        from milvus_ingest.evaluation.compare import compare_dataset

        compared = compare_dataset(settings, dataset, k=args.k, uri=args.uri, baseline=not args.no_baseline)
        if args.out:
            write_json(compared.as_dict(), args.out)
        print(json.dumps(compared.as_dict()) if args.json else compare_table(compared))
        return 0
    report = evaluate_dataset(
        settings, args.dataset, k=args.k, split=args.split, uri=args.uri, dataset=dataset, mode=args.mode
    )
    if args.out:
        write_details(report, args.out)
    if args.json:
        print(json.dumps(report.summary()))
    else:
        print_report(report)
    return 0


if __name__ == "__main__" and "--flow" not in sys.argv[1:]:
    run_cli(main)  # exits here: without --flow, Prefect is never imported

from prefect import flow  # noqa: E402 - only for the flow and --flow


@flow(name="evaluate", log_prints=False, validate_parameters=True)
def evaluate(params: EvaluateParams) -> dict[str, float | int]:
    """Evaluate retrieval on a dataset; returns the metrics and ``queries`` (also an artifact)."""
    settings = settings_with_overrides(params.config, params.uri, backend=params.backend, precision=params.precision)
    report = evaluate_dataset(settings, params.dataset, k=params.k, split=params.split, uri=params.uri, mode=params.mode)
    if params.out:
        write_details(report, params.out)
    _publish(report)
    return report.summary()


def _publish(report: EvaluationReport) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    table = [{"metric": name, "value": round(value, 4)} for name, value in report.metrics.items()]
    table += [{"metric": "queries", "value": report.queries}, {"metric": "chunks", "value": report.chunks}]
    table += [{"metric": f"seconds.{name}", "value": value} for name, value in report.seconds.items()]
    ndcg = f"ndcg@{report.k}"
    worst = sorted(
        (item for item in report.per_query.items() if item[1]["evaluated"]),
        key=lambda item: item[1]["metrics"].get(ndcg, 0.0),
    )[:10]
    lines = [f"| query | {ndcg} | first relevant rank | question |", "|---|---|---|---|"]
    lines += [
        f"| {qid} | {r['metrics'].get(ndcg, 0.0):.3f} | {r['first_relevant_rank'] or '-'} | {r['question'][:80]} |"
        for qid, r in worst
    ]
    try:
        create_table_artifact(table=table, key="evaluation-scores", description=f"Retrieval scores on {report.dataset}")
        create_markdown_artifact("\n".join(lines), key="evaluation-worst-queries", description="Worst queries by nDCG")
    except Exception:  # artifacts need an API; a failure must not lose the scores
        pass


__all__ = ["EvaluateParams", "evaluate", "main"]


if __name__ == "__main__":
    run_cli(main)
