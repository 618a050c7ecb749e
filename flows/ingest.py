"""The ``ingest`` Prefect flow and ``python -m flows.ingest``: thin wrappers over ``flows.pipeline``.

The flow makes a task per stage and per group of sources (never per chunk: NOTES measured the
per-task cost), publishes the run summary, the skipped sources and the embedding progress as
artifacts, and returns a small summary dict.  This module must never hold pipeline logic, and
never put the Milvus token in a parameter, a log line or an artifact.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from flows.console import ProgressBar, format_table, quiet_environment, run_cli, settings_with_overrides

if __name__ == "__main__":
    quiet_environment(one_off=True)  # before Prefect is imported: it reads these at import

from prefect import flow, task  # noqa: E402 - after the quiet defaults
from prefect.cache_policies import NONE  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from flows.pipeline import IngestOptions, IngestReport, parse_shard, run_ingest  # noqa: E402
from flows.sources import discover_sources  # noqa: E402


class IngestParams(BaseModel):
    """Flow parameters; Prefect validates them before a run is created (deployments too)."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(min_length=1, description="files, folders or glob patterns")
    config: str | None = Field(default=None, description="YAML config file (default config/default.yaml)")
    uri: str | None = Field(default=None, description="Milvus URI; overrides config and MILVUS_URI")
    collection: str | None = None
    model: str | None = Field(default=None, description="hub id, local folder or package://PKG/SUBDIR")
    full: bool = Field(default=False, description="re-embed every source, changed or not")
    prune: bool = Field(default=False, description="remove chunks of sources that no longer exist")
    shard: str | None = Field(default=None, pattern=r"^[0-9]+/[0-9]+$", description="i/N: this worker's part")
    token_secret: str | None = Field(
        default=None, description="name of a Prefect Secret block holding the Milvus token"
    )


@task(cache_policy=NONE, persist_result=False)
def _stage(fn: Any, *args: Any) -> Any:
    """One pipeline stage as a task; its arguments are never hashed or stored (models, arrays)."""
    return fn(*args)


def _prefect_step(name: str, fn: Any, *args: Any) -> Any:
    return _stage.with_options(name=name, task_run_name=name)(fn, *args)


class _ProgressArtifact:
    """Updates a Prefect progress artifact during embedding, at most every two seconds."""

    def __init__(self, bar: ProgressBar | None):
        from prefect.artifacts import create_progress_artifact

        self.bar = bar
        self._last = 0.0
        try:
            self.artifact_id = create_progress_artifact(progress=0.0, key="ingest-progress", description="Embedding progress")
        except Exception:  # artifacts need an API; a failure must not stop an ingest
            self.artifact_id = None

    def __call__(self, done: int, total: int, chunks: int) -> None:
        if self.bar:
            self.bar(done, total, chunks)
        now = time.monotonic()
        if self.artifact_id is None or (now - self._last < 2 and done < total):
            return
        self._last = now
        from prefect.artifacts import update_progress_artifact

        try:
            update_progress_artifact(self.artifact_id, progress=100.0 * done / total if total else 100.0)
        except Exception:
            pass


def _publish(report: IngestReport) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    summary = report.as_dict()
    table = [{"metric": k, "value": v} for k, v in summary.items() if not isinstance(v, (list, dict))]
    table += [{"metric": f"seconds.{k}", "value": v} for k, v in summary["stages"].items()]
    create_table_artifact(table=table, key="ingest-summary", description="Ingest run summary")
    if report.skipped:
        lines = ["| source | reason |", "|---|---|"]
        lines += [f"| `{s.source}` | {s.reason} |" for s in report.skipped]
        create_markdown_artifact("\n".join(lines), key="ingest-skipped", description="Skipped sources")


@flow(name="ingest", log_prints=False, validate_parameters=True)
def ingest(params: IngestParams) -> dict[str, Any]:
    """Ingest sources into Milvus; returns the run summary (also published as an artifact)."""
    settings = settings_with_overrides(params.config, params.uri, params.collection, params.model)
    if params.token_secret:
        from prefect.blocks.system import Secret

        settings.milvus.token = Secret.load(params.token_secret).get()
    options = IngestOptions(full=params.full, prune=params.prune, shard=parse_shard(params.shard))
    progress = _ProgressArtifact(_CLI_PROGRESS.get("bar"))
    report = run_ingest(settings, params.sources, options, progress=progress, step=_prefect_step)
    _publish(report)
    return report.as_dict()


_CLI_PROGRESS: dict[str, ProgressBar] = {}


def print_summary(summary: dict[str, Any], stream: Any = sys.stdout) -> None:
    rows = [
        ("collection", f"{summary['collection']} at {summary['uri']}"),
        ("files read", f"{summary['files_read']} (new {summary['new']}, updated {summary['updated']}, unchanged {summary['unchanged']})"),
        ("skipped", summary["skipped"]),
    ]
    rows += [(f"  {s['source']}", s["reason"]) for s in summary["skipped_sources"]]
    rows += [("pruned", summary["pruned"])]
    if summary["stale_not_pruned"]:
        rows.append(("gone, not pruned", f"{summary['stale_not_pruned']} (rerun with --prune to remove them)"))
    stages = summary["stages"]
    rows += [
        ("chunks", summary["chunks"]),
        ("rows now", summary["rows_in_collection"]),
        ("seconds", f"{summary['seconds']:.2f} (model load {stages['model_load']:.2f}, encode {stages['encode']:.2f}, write {stages['write']:.2f})"),
        ("chunks/s", f"{summary['chunks_per_second']:.1f}"),
    ]
    print(format_table(rows), file=stream)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.ingest",
        description="Chunk, embed (Instructor, document instruction) and upsert sources into Milvus.",
        epilog="Exit codes: 0 all sources in, 1 some sources skipped, 2 usage/config/Milvus error.",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="files, folders (recursive) or glob patterns")
    parser.add_argument("--config", help="YAML config (default: config/default.yaml)")
    parser.add_argument("--uri", help="Milvus URI: ./milvus.db (Lite) or http://host:19530")
    parser.add_argument("--collection", help="collection name")
    parser.add_argument("--model", help="model: hub id, local folder, or package://PKG/SUBDIR")
    parser.add_argument("--full", action="store_true", help="re-embed everything, changed or not")
    parser.add_argument("--prune", action="store_true", help="remove chunks of sources gone from these roots")
    parser.add_argument("--shard", help="i/N: ingest only this worker's share of the sources")
    parser.add_argument("--no-flow", action="store_true", help="run without Prefect (no flow run, no artifacts)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_with_overrides(args.config, args.uri, args.collection, args.model)  # fail fast
    options = IngestOptions(full=args.full, prune=args.prune, shard=parse_shard(args.shard))
    # A typo in a path is a one-line error before any flow run, model or Milvus is started.
    discover_sources(args.sources, settings.sources.include, settings.sources.exclude)
    bar = ProgressBar()
    try:
        if args.no_flow:
            summary = run_ingest(settings, args.sources, options, progress=bar).as_dict()
        else:
            _CLI_PROGRESS["bar"] = bar
            params = IngestParams(
                sources=args.sources, config=args.config, uri=args.uri, collection=args.collection,
                model=args.model, full=args.full, prune=args.prune, shard=args.shard,
            )
            summary = ingest(params)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
    return 1 if summary["skipped"] else 0


if __name__ == "__main__":
    run_cli(main)
