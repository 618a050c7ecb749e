"""``python -m flows.serve [--config FILE]``: serve the ingest and search flows, no work pool needed.

One long-running process registers two deployments (``ingest/<name>`` and ``search/<name>``) with
the Prefect API and runs their flow runs itself: the scheduled ingest (``schedule.ingest_cron``
over ``schedule.sources``, pruning if ``schedule.prune``), and any run started from the UI or with
``prefect deployment run``.  On Milvus Lite it runs one flow at a time (a Lite database is one
process at a time).  This module must never put the Milvus token in a deployment's parameters:
runs read it from ``MILVUS_TOKEN`` or a Secret block, like the ingest flow.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milvus_ingest.config import DEFAULT_CONFIG, Settings
from flows.cli import quiet_environment, run_cli
from milvus_ingest.config import settings_with_overrides
from milvus_ingest.errors import ConfigError

if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")  # a service: its runs' logs belong in the UI
    quiet_environment(one_off=False)  # before Prefect is imported: it reads these at import


@dataclass
class ServePlan:
    """What ``serve`` will register: plain data, so it is checked without Prefect or a server."""

    name: str
    config: str
    ingest_parameters: dict[str, Any]
    cron: str | None = None
    interval: float | None = None
    limit: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def schedule_text(self) -> str:
        if self.interval:
            return f"every {self.interval:g} s"
        return f"cron {self.cron!r} (UTC)" if self.cron else "no schedule (manual runs only)"


def check_cron(cron: str) -> str:
    """A cron string Prefect accepts, or a one-line ConfigError naming the key."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron)
    except ValidationError:
        raise ConfigError(
            f"schedule.ingest_cron {cron!r} is not a valid cron string (five fields, e.g. '0 * * * *' = hourly)"
        ) from None
    return cron


def plan_serve(
    settings: Settings,
    config_path: str | None,
    name: str = "local",
    interval: float | None = None,
    limit: int | None = None,
    cwd: Path | None = None,
) -> ServePlan:
    """Turn the ``schedule`` section into deployment parameters and a schedule.

    Sources and the config path are made absolute here (against ``cwd``), so that runs do not
    depend on the directory the runner starts them in.
    """
    base = cwd or Path.cwd()
    schedule = settings.schedule
    config = str((base / config_path).resolve()) if config_path else str(DEFAULT_CONFIG)
    sources = [s if os.path.isabs(s) else os.path.normpath(str(base / s)) for s in schedule.sources]
    scheduled = bool(interval or schedule.ingest_cron)
    if scheduled and not sources:
        raise ConfigError(
            "a schedule is set but schedule.sources is empty: list the folders to ingest under schedule.sources"
        )
    plan = ServePlan(
        name=name,
        config=config,
        ingest_parameters={"params": {"sources": sources, "config": config, "prune": schedule.prune}} if sources else {},
        cron=check_cron(schedule.ingest_cron) if schedule.ingest_cron and not interval else None,
        interval=interval,
        limit=limit,
    )
    if settings.milvus.is_lite:
        if limit not in (None, 1):
            raise ConfigError(
                f"--limit {limit}: Milvus Lite ({settings.milvus.uri}) allows one process per database, so "
                "runs cannot overlap; use a Milvus server for concurrent runs"
            )
        plan.limit = 1
        plan.notes.append("Milvus Lite: one run at a time")
    return plan


def require_api() -> str:
    """The Prefect API URL; without one Prefect would start a temporary server that never schedules."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ConfigError(
            "python -m flows.serve needs a running Prefect API (schedules never fire on the temporary server "
            "Prefect starts without one): run `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, or `prefect cloud login`"
        )
    return str(url)


def build_deployments(plan: ServePlan) -> list[Any]:
    """The two ``RunnerDeployment`` objects for ``prefect.serve``."""
    from prefect.deployments.runner import EntrypointType

    from flows.ingest import ingest
    from flows.search import search

    ingest_deployment = ingest.to_deployment(
        name=plan.name,
        cron=plan.cron,
        interval=plan.interval,
        parameters=plan.ingest_parameters or None,
        description=f"Scheduled ingest from {plan.config}",
        tags=["milvus", "serve"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    search_deployment = search.to_deployment(
        name=plan.name,
        description=f"Search with {plan.config}",
        tags=["milvus", "serve"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    return [ingest_deployment, search_deployment]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.serve",
        description="Serve the ingest and search flows (schedules from the config's schedule section). "
        "Runs start here; no work pool or worker needed. Stop with Ctrl+C.",
    )
    parser.add_argument("--config", help="YAML config (default: config/default.yaml)")
    parser.add_argument("--name", default="local", help="deployment name: ingest/NAME and search/NAME (default local)")
    parser.add_argument(
        "--interval", type=float, help="run the ingest every SECONDS instead of schedule.ingest_cron (tests, demos)"
    )
    parser.add_argument("--limit", type=int, help="most flow runs at once (always 1 on Milvus Lite)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.interval is not None and args.interval < 1:
        raise ConfigError(f"--interval {args.interval:g}: must be at least 1 second")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: must be at least 1")
    settings = settings_with_overrides(args.config)
    plan = plan_serve(settings, args.config, args.name, args.interval, args.limit)
    require_api()
    from prefect import serve

    deployments = build_deployments(plan)
    print(f"serving ingest/{plan.name} ({plan.schedule_text}) and search/{plan.name}; config {plan.config}"
          + "".join(f"; {note}" for note in plan.notes), file=sys.stderr)
    serve(*deployments, limit=plan.limit, print_starting_message=False)
    return 0


if __name__ == "__main__":
    run_cli(main, one_off=False)
