"""The Prefect flow measured honestly: against a running Prefect server, its start-up timed apart.

Without ``PREFECT_API_URL`` every flow run starts a temporary server (~10 s, NOTES), which would
be charged to the ingest.  So this starts ``prefect server start`` once (its own PREFECT_HOME),
waits until it answers, points ``PREFECT_API_URL`` at it, runs ``flows.ingest.ingest`` in this
process, and stops the server by its PID.  This module must never leave the server running and
never touch a Prefect server or home it did not start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.measure import Result, measure, note, stop_process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrefectServer:
    """``prefect server start`` in a child process with a private PREFECT_HOME."""

    def __init__(self, home: Path, timeout: float = 180.0):
        self.home = home
        self.timeout = timeout
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   DO_NOT_TRACK="1", PREFECT_SERVER_LOGGING_LEVEL="WARNING")
        env.pop("PREFECT_API_URL", None)
        log = open(self.home / "server.log", "wb")  # noqa: SIM115 - closed with the process
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port), "--no-ui"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = started + self.timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self.process.returncode} (see {self.home / 'server.log'})")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        self.startup_seconds = time.perf_counter() - started
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"prefect server did not answer within {self.timeout:.0f} s")

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> PrefectServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_flow(corpus: Path, config_file: Path, home: Path) -> tuple[Result, dict[str, Any]]:
    """One ``ingest`` flow run on a running server; returns its row and the server's timings.

    The flow loads its own model (a flow takes a config, not a live model), so its row reports
    the wall time *without* the model load the flow itself measured, next to the full wall time.
    """
    with PrefectServer(home) as server:
        note(f"prefect server up in {server.startup_seconds:.1f} s at {server.url}")
        previous = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
        os.environ["PREFECT_API_URL"] = server.url
        os.environ["PREFECT_HOME"] = str(home)
        try:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            from flows.ingest import IngestParams, ingest

            with temporary_settings(updates={PREFECT_API_URL: server.url}), measure() as phase:
                summary = ingest(IngestParams(sources=[str(corpus)], config=str(config_file)))
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    stages = dict(summary["stages"])
    model_load = float(stages.get("model_load", 0.0))
    inner = float(summary["seconds"])
    result = Result(
        "Prefect flow (running server)",
        int(summary["chunks"]),
        phase.wall - model_load,
        stages=stages,
        peak_rss_mib=phase.peak_rss_mib,
        cpu_share=phase.cpu_share,
        extra={
            "wall_with_model_load": round(phase.wall, 3),
            "model_load_in_flow": round(model_load, 3),
            "run_ingest_seconds_inside_flow": round(inner, 3),
            "flow_overhead_seconds": round(phase.wall - inner, 3),
            "server_startup_seconds": round(server.startup_seconds, 3),
            "rows": summary.get("rows_in_collection"),
            "load_avg": round(phase.load_avg, 2),
        },
    )
    return result, {"server_startup_seconds": server.startup_seconds}
