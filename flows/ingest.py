"""The ``ingest`` Prefect flow and ``python -m flows.ingest``: thin wrappers over ``milvus_ingest.ingest``.

The flow makes a task per stage and per group of sources (never per chunk: a task run costs
5-10 ms and state kept for the whole flow), publishes the run summary, the skipped sources and
the embedding progress as artifacts, and returns a small summary dict.  The command line builds
its options from ``IngestParams`` (declared once) and is a flow run when a Prefect API is
configured or ``--flow`` is given, a plain run otherwise; a plain run never imports Prefect.
This module must never hold pipeline logic, and never put the Milvus token in a parameter, a log
line or an artifact.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.cli import (
    ProgressBar,
    add_params_options,
    format_table,
    params_from_args,
    prefect_api_configured,
    printable,
)
from milvus_ingest.config import Settings, settings_with_overrides
from milvus_ingest.ingest import IngestOptions, IngestReport, ProgressCallback, StepRunner, parse_shard, run_ingest
from milvus_ingest.sources import discover_sources


class IngestParams(BaseModel):
    """Flow parameters; Prefect validates them before a run is created (deployments too)."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(min_length=1, description="files, folders (recursive) or glob patterns")
    config: str | None = Field(default=None, description="YAML config file (default config/default.yaml)")
    uri: str | None = Field(default=None, description="Milvus URI: ./milvus.db (Lite) or http://host:19530")
    collection: str | None = Field(default=None, description="collection name (overrides milvus.collection)")
    model: str | None = Field(default=None, description="model: hub id, local folder or package://PKG/SUBDIR")
    full: bool = Field(default=False, description="re-embed every source, changed or not")
    prune: bool = Field(
        default=False, description="remove stored sources whose files no longer exist within these sources"
    )
    yes: bool = Field(default=False, description="confirm a prune over sources.prune_max_share")
    shard: str | None = Field(default=None, pattern=r"^[0-9]+/[0-9]+$", description="i/N: this worker's part")
    wait: float | None = Field(
        default=None, ge=0, description="seconds to wait for another ingest into the collection (milvus.lock_wait_seconds)"
    )
    recreate: bool = Field(default=False, description="with full: drop the collection and rebuild it from the sources")
    token_secret: str | None = Field(
        default=None, description="name of a Prefect Secret block holding the Milvus token"
    )


def settings_for(params: IngestParams) -> Settings:
    """Config file, environment, then these parameters: the last wins."""
    settings = settings_with_overrides(params.config, params.uri, params.collection, params.model)
    if params.wait is not None:
        settings.milvus.lock_wait_seconds = params.wait
    return settings


def execute(
    params: IngestParams, settings: Settings, progress: ProgressCallback | None, step: StepRunner | None = None
) -> IngestReport:
    """The one ingest both front ends run: plain (``step`` None) or with each stage a task."""
    options = IngestOptions(
        full=params.full, prune=params.prune, yes=params.yes, shard=parse_shard(params.shard), recreate=params.recreate
    )
    if step is None:
        return run_ingest(settings, params.sources, options, progress=progress)
    return run_ingest(settings, params.sources, options, progress=progress, step=step)


# -- the command line ---------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.ingest",
        description="Chunk, embed (Instructor, document instruction) and upsert sources into Milvus.",
        epilog="Exit codes: 0 all sources in, 1 some sources skipped, 2 usage/config/Milvus error, "
        "130/143 interrupted (rerun to finish).",
    )
    add_params_options(parser, IngestParams, positional="sources", skip=("token_secret",))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--flow", action="store_true", help="run as a Prefect flow run (default when a Prefect API is set)")
    mode.add_argument("--no-flow", action="store_true", help="run without Prefect (default without a Prefect API)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def _cell(text: str) -> str:
    """A Markdown table cell: one line, its pipes escaped (a file may be named ``a|b.txt``)."""
    return printable(text).replace("|", "\\|")


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
    engine = summary.get("engine")
    if engine:
        share = engine.get("threads_per_batch")
        at_a_time = f"; {len(share)} batches at a time, {'/'.join(map(str, share))} threads each" if share else ""
        rows.append(("engine", f"{engine['backend']} {engine['precision']}: {engine['reason']}{at_a_time}"))
    retrieval = summary.get("retrieval")
    if retrieval:
        doc = retrieval["doc_instruction"]
        rows.append(("retrieval", (
            f"instruction {doc!r} ({retrieval['instructions']}); contextual chunks "
            f"{'on' if retrieval['contextual'] else 'off'}; BM25 field {'yes' if retrieval['bm25'] else 'no (dense search only)'}"
        )))
    print(format_table(rows), file=stream)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = params_from_args(IngestParams, args)
    settings = settings_for(params)  # a bad config or flag fails here, before Prefect, model or Milvus
    s = settings.sources
    discover_sources(params.sources, s.include, s.exclude, s.follow_symlinks)  # so does a typo in a path
    if args.flow or (not args.no_flow and prefect_api_configured()):
        from flows.cli import run_as_flow

        summary = run_as_flow("flows.ingest", "ingest", params)
    else:
        bar = ProgressBar()
        try:
            summary = execute(params, settings, bar).as_dict()
        finally:
            bar.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
    return 1 if summary["skipped"] else 0


if __name__ == "__main__":
    from flows.cli import run_cli

    run_cli(main)


# -- the flow (Prefect is imported only from here on: a plain run never gets this far) -------

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402


@task(cache_policy=NONE, persist_result=False)
def _stage(fn: Any, *args: Any) -> Any:
    """One pipeline stage as a task; its arguments are never hashed or stored (models, arrays)."""
    return fn(*args)


def _prefect_step(name: str, fn: Any, *args: Any) -> Any:
    return _stage.with_options(name=name, task_run_name=name)(fn, *args)


class _ProgressArtifact:
    """Updates a Prefect progress artifact during embedding (at most every two seconds), and a
    terminal progress bar when the run's stderr is one (a command line, not a worker)."""

    def __init__(self) -> None:
        from prefect.artifacts import create_progress_artifact

        self.bar = ProgressBar()
        self._last = 0.0
        try:
            self.artifact_id = create_progress_artifact(progress=0.0, key="ingest-progress", description="Embedding progress")
        except Exception:  # artifacts need an API; a failure must not stop an ingest
            self.artifact_id = None

    def __call__(self, done: int, total: int, chunks: int) -> None:
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
        lines += [f"| {_cell(s.source)} | {_cell(s.reason)} |" for s in report.skipped]
        create_markdown_artifact("\n".join(lines), key="ingest-skipped", description="Skipped sources")


@flow(name="ingest", log_prints=False, validate_parameters=True)
def ingest(params: IngestParams) -> dict[str, Any]:
    """Ingest sources into Milvus; returns the run summary (also published as an artifact)."""
    settings = settings_for(params)
    if params.token_secret:
        from prefect.blocks.system import Secret

        settings.milvus.token = Secret.load(params.token_secret).get()
    progress = _ProgressArtifact()
    try:
        report = execute(params, settings, progress, step=_prefect_step)
    finally:
        progress.bar.close()
    _publish(report)
    return report.as_dict()
