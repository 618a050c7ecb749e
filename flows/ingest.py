"""The ``ingest`` Prefect flow and ``python -m flows.ingest``: thin wrappers over ``milvus_ingest.ingest``.

The flow makes a task per stage and per group of sources (never per chunk: NOTES measured the
per-task cost), publishes the run summary, the skipped sources and the embedding progress as
artifacts, and returns a small summary dict.  This module must never hold pipeline logic, and
never put the Milvus token in a parameter, a log line or an artifact.
"""

from __future__ import annotations

import time
from typing import Any

if __name__ == "__main__":
    # `python -m flows.ingest`: the command line lives in flows.ingest_cli, which imports this
    # module (and Prefect, ~2 s) only for a flow run, not for --no-flow.
    from flows.cli import run_cli
    from flows.ingest_cli import main

    run_cli(main)

from flows.cli import ProgressBar  # noqa: E402
from milvus_ingest.config import settings_with_overrides  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from milvus_ingest.ingest import IngestOptions, IngestReport, parse_shard, run_ingest  # noqa: E402


class IngestParams(BaseModel):
    """Flow parameters; Prefect validates them before a run is created (deployments too)."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(min_length=1, description="files, folders or glob patterns")
    config: str | None = Field(default=None, description="YAML config file (default config/default.yaml)")
    uri: str | None = Field(default=None, description="Milvus URI; overrides config and MILVUS_URI")
    collection: str | None = None
    model: str | None = Field(default=None, description="hub id, local folder or package://PKG/SUBDIR")
    full: bool = Field(default=False, description="re-embed every source, changed or not")
    prune: bool = Field(default=False, description="remove stored sources whose files no longer exist")
    yes: bool = Field(default=False, description="confirm a prune over sources.prune_max_share")
    shard: str | None = Field(default=None, pattern=r"^[0-9]+/[0-9]+$", description="i/N: this worker's part")
    recreate: bool = Field(default=False, description="with full: drop the collection and rebuild it from the sources")
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
    options = IngestOptions(
        full=params.full, prune=params.prune, yes=params.yes, shard=parse_shard(params.shard), recreate=params.recreate
    )
    progress = _ProgressArtifact(CLI_PROGRESS.get("bar"))
    report = run_ingest(settings, params.sources, options, progress=progress, step=_prefect_step)
    _publish(report)
    return report.as_dict()


#: The command line's progress bar, drawn from inside the flow run (same process).
CLI_PROGRESS: dict[str, ProgressBar] = {}
