"""The ``ingest-fanout`` Prefect flow: split one ingest into N shards run as deployment runs on a pool.

The parent flow checks the target, starts one run of the ``ingest`` deployment per shard
(``--shard i/N``: a stable split by source path, see ``milvus_ingest.ingest.shard_of``), waits for all of
them, publishes a per-shard table and fails if any shard did not complete.  Shards run in
parallel on whatever workers poll the pool, so the target must be a Milvus *server*: Milvus Lite
is one process per database and is refused up front.  This module must never ingest anything
itself, and never put the Milvus token (or a URI with credentials in it) in a shard's parameters.

CLI (needs ``PREFECT_API_URL`` and workers on the pool)::

    python -m flows.fanout SOURCE... --shards 4 --uri http://milvus:19530 [--deployment ingest/ingest-shard]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from flows.cli import add_params_options, format_table, params_from_args, quiet_environment, run_cli
from milvus_ingest.config import Settings, settings_with_overrides
from milvus_ingest.errors import ConfigError, ShardsFailedError

if __name__ == "__main__":
    quiet_environment(one_off=True)  # before Prefect is imported: it reads these at import

from prefect import flow  # after the quiet defaults
from pydantic import BaseModel, ConfigDict, Field

#: Final states of a shard run; anything else is still on its way.
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
#: Numbers the shards' ``ingest-summary`` artifacts carry that add up across shards.
SUMMED_METRICS = ("files_read", "new", "updated", "unchanged", "pruned", "skipped", "chunks")


class FanoutParams(BaseModel):
    """Parameters of ``ingest-fanout``; Prefect validates them before a run is created."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(min_length=1, description="files, folders or globs, at the same path on every worker")
    shards: int = Field(default=2, ge=1, le=1024, description="number of shard runs")
    deployment: str = Field(
        default="ingest/ingest-shard", pattern=r"^[^/]+/[^/]+$",
        description="the ingest deployment each shard runs (ingest/ingest-shard: no concurrency limit, see prefect.yaml)",
    )
    config: str | None = Field(default=None, description="YAML config file, as the workers see it")
    uri: str | None = Field(default=None, description="Milvus server URI; overrides config and MILVUS_URI")
    collection: str | None = Field(default=None, description="collection name (overrides milvus.collection)")
    model: str | None = Field(default=None, description="model: hub id, local folder or package://PKG/SUBDIR")
    full: bool = Field(default=False, description="re-embed every source, changed or not")
    prune: bool = Field(default=False, description="remove stored sources whose files no longer exist")
    yes: bool = Field(default=False, description="confirm a prune over sources.prune_max_share")
    token_secret: str | None = Field(default=None, description="name of a Prefect Secret block with the token")
    wait: float | None = Field(default=None, ge=0, description="seconds a shard waits for a conflicting ingest")
    timeout_seconds: int | None = Field(default=None, ge=1, description="give up waiting for shards after this")
    poll_seconds: float = Field(default=5.0, gt=0, le=300, description="seconds between looks at the shards")


def refuse_lite(settings: Settings) -> None:
    """Shards run as separate processes at once; Milvus Lite allows one process per database."""
    if settings.milvus.is_lite:
        raise ConfigError(
            f"ingest-fanout needs a Milvus server, not Milvus Lite ({settings.milvus.uri}): shards run as "
            "parallel processes and a Lite database can be opened by one process only. Give a server URI "
            "(--uri / the uri parameter, e.g. http://HOST:19530, or MILVUS_URI), or ingest into Lite with "
            "one `python -m flows.ingest` run"
        )


def resolve_target(params: FanoutParams) -> Settings:
    """The settings the shards will write with (config, env, overrides); refuses Milvus Lite."""
    settings = settings_with_overrides(params.config, params.uri, params.collection, params.model)
    refuse_lite(settings)
    return settings


def shard_parameters(params: FanoutParams, settings: Settings) -> list[dict[str, Any]]:
    """The ``ingest`` flow's ``params`` for each shard, complete (deployment defaults are replaced).

    The resolved URI and collection are passed on, so that every shard writes where the parent
    checked, whatever each worker's own environment says; a URI with credentials in it is not
    (each worker then resolves it from the same config and environment as the parent).
    """
    uri = settings.milvus.uri if "@" not in settings.milvus.uri else None
    return [
        {
            "sources": list(params.sources),
            "config": params.config,
            "uri": uri,
            "collection": settings.milvus.collection,
            "model": params.model,
            "full": params.full,
            "prune": params.prune,
            "yes": params.yes,
            "recreate": False,  # shards run at once: none may drop the collection under the others
            "shard": f"{index}/{params.shards}",
            "wait": params.wait,
            "token_secret": params.token_secret,
        }
        for index in range(params.shards)
    ]


def summarize_shards(runs: list[dict[str, Any]], summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-shard states plus totals of the shards' own run summaries (where they published one)."""
    totals = {metric: 0 for metric in SUMMED_METRICS}
    for summary in summaries.values():
        for metric in SUMMED_METRICS:
            value = summary.get(metric)
            if isinstance(value, (int, float)):
                totals[metric] += int(value)
    failed = [r for r in runs if r["state"] != "COMPLETED"]
    return {"shards": len(runs), "completed": len(runs) - len(failed), "failed": len(failed), "runs": runs, **totals}


def failure_message(summary: dict[str, Any]) -> str:
    bad = [r for r in summary["runs"] if r["state"] != "COMPLETED"]
    details = "; ".join(f"shard {r['shard']} {r['state'].lower()}: {r['message'] or 'no message'}" for r in bad)
    return f"{len(bad)} of {summary['shards']} shards did not complete ({details})"


def _table_rows(artifact: Any) -> dict[str, Any]:
    data = artifact.data
    rows = json.loads(data) if isinstance(data, str) else data
    return {row["metric"]: row["value"] for row in rows if isinstance(row, dict) and "metric" in row}


def _wait_for_shards(flow_run_ids: list[Any], timeout: float | None, poll: float) -> dict[Any, Any]:
    from prefect.client.orchestration import get_client

    deadline = None if timeout is None else time.monotonic() + timeout
    finals: dict[Any, Any] = {}
    with get_client(sync_client=True) as client:
        while True:
            for run_id in flow_run_ids:
                if run_id not in finals:
                    run = client.read_flow_run(run_id)
                    if run.state and run.state.type.value in FINAL_STATES:
                        finals[run_id] = run
            if len(finals) == len(flow_run_ids):
                return finals
            if deadline is not None and time.monotonic() > deadline:
                for run_id in flow_run_ids:
                    finals.setdefault(run_id, client.read_flow_run(run_id))
                return finals
            time.sleep(poll)


def _read_summaries(flow_run_ids: list[Any]) -> dict[str, dict[str, Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=list(flow_run_ids)),
                key=ArtifactFilterKey(any_=["ingest-summary"]),
            )
        )
    return {str(a.flow_run_id): _table_rows(a) for a in artifacts}


@flow(name="ingest-fanout", log_prints=False, validate_parameters=True)
def ingest_fanout(params: FanoutParams) -> dict[str, Any]:
    """Run the ingest deployment once per shard, in parallel on the pool's workers; fail if any fails."""
    from prefect.artifacts import create_table_artifact
    from prefect.context import get_run_context
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.logging import get_run_logger

    logger = get_run_logger()
    settings = resolve_target(params)  # Lite is refused before any shard run exists
    parent = get_run_context().flow_run  # type: ignore[union-attr]
    parent_id = parent.id
    started = []
    for index, shard in enumerate(shard_parameters(params, settings)):
        try:
            run = run_deployment(
                name=params.deployment,
                parameters={"params": shard},
                timeout=0,  # start them all, then wait below
                flow_run_name=f"{parent.name}-shard-{index}-of-{params.shards}",
                idempotency_key=f"{parent_id}:shard:{index}/{params.shards}",
                as_subflow=True,
            )
        except ObjectNotFound:
            raise ConfigError(
                f"deployment {params.deployment!r} does not exist: run `prefect deploy --all` from the repository root"
            ) from None
        started.append((shard["shard"], run.id))
    logger.info("started %d shard runs of %s", len(started), params.deployment)
    finals = _wait_for_shards([run_id for _, run_id in started], params.timeout_seconds, params.poll_seconds)
    runs = []
    for shard, run_id in started:
        state = finals[run_id].state
        runs.append({
            "shard": shard,
            "flow_run_id": str(run_id),
            "state": state.type.value if state else "UNKNOWN",
            "message": (state.message or "")[:300] if state else "",
        })
    summary = summarize_shards(runs, _read_summaries([run_id for _, run_id in started]))
    create_table_artifact(
        table=[{k: r[k] for k in ("shard", "state", "message", "flow_run_id")} for r in runs],
        key="ingest-fanout-shards",
        description=f"{summary['completed']} of {summary['shards']} shards completed",
    )
    if summary["failed"]:
        raise ShardsFailedError(failure_message(summary))
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.fanout",
        description="Ingest sources as N parallel shard runs of the ingest deployment (needs a Prefect server, "
        "workers on the pool, and a Milvus server).",
        epilog="Exit codes: 0 all shards completed, 2 config error or a shard failed, 130/143 interrupted.",
    )
    add_params_options(parser, FanoutParams, positional="sources")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = params_from_args(FanoutParams, args)
    resolve_target(params)  # one line, before any flow run, for Lite or a bad config
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise ConfigError(
            "python -m flows.fanout needs the Prefect API that has the ingest deployment and its workers: "
            "set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) or `prefect cloud login`"
        )
    summary = ingest_fanout(params)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        rows = [(f"shard {r['shard']}", r["state"].lower()) for r in summary["runs"]]
        rows += [(metric, summary[metric]) for metric in SUMMED_METRICS]
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    run_cli(main)
