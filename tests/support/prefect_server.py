"""Start a real Prefect server, workers and ``serve`` processes for tests, and stop them all by PID.

``start_prefect_server(home)`` runs ``prefect server start --host 127.0.0.1 --port <free>`` with
its own ``PREFECT_HOME`` (never the user's ``~/.prefect``), polls ``/api/health`` and returns a
``PrefectServer`` that knows the environment its clients need, runs ``prefect`` CLI commands
against it, and starts further processes (workers, ``python -m flows.serve``).

Every process starts in its own process group and is stopped as a group (SIGTERM, then SIGKILL).
Prefect starts flow runs in *new* sessions (outside the worker's group), so ``stop`` also walks
``/proc`` for every descendant first and stops their groups too: no orphans, even when a test
fails halfway.  This module must never kill a process it did not start, and has no pytest
dependency (standard library, plus ``prefect`` only inside ``client()``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

#: Settings for every process that talks to a test server: quiet, no telemetry, quick polling.
CLIENT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_CLI_PROMPT": "false",
    "PREFECT_CLI_COLORS": "false",
    "PREFECT_CLI_WRAP_LINES": "false",
    "PREFECT_LOGGING_LEVEL": "INFO",
    "PREFECT_WORKER_QUERY_SECONDS": "2",
    "PREFECT_WORKER_PREFETCH_SECONDS": "2",
    "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    "PREFECT_WORKER_HEARTBEAT_SECONDS": "10",
    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TQDM_DISABLE": "1",
}
#: Extra settings for the server itself: no UI, and new schedules picked up within seconds.
SERVER_ENV = {
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS": "300",
    # A run waiting for a deployment's concurrency slot (ENQUEUE) retries this often (default 30 s).
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "3",
}
#: Inherited variables that would point a test process at someone else's Prefect.
_DROPPED_ENV = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE", "PREFECT_HOME", "MILVUS_URI", "MILVUS_TOKEN")

_LIVE: set[ManagedProcess] = set()


class PrefectServerError(RuntimeError):
    """The server did not become healthy (the message ends with its log)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: split after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first); empty off Linux."""
    if not os.path.isdir("/proc"):
        return []
    tree = _children_map()
    found: list[int] = []
    todo = list(tree.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(tree.get(child, []))
    return found


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not yet reaped


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


@dataclass(eq=False)
class ManagedProcess:
    """A process started by this module in its own process group, with its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    #: Every PID seen under this process, so a test can check that none outlived ``stop``.
    seen: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the group and every descendant's group, then SIGKILL whatever is left."""
        if self.popen.poll() is None:
            family = descendants(self.pid)
            self.seen.update(family)
            _signal_group(self.pid, signal.SIGTERM)
            for pid in family:
                _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and (
                self.popen.poll() is None or any(is_alive(p) for p in family)
            ):
                time.sleep(0.2)
        family = [p for p in self.seen | set(descendants(self.pid)) if is_alive(p)]
        self.seen.update(family)
        _signal_group(self.pid, signal.SIGKILL)
        for pid in family:
            _signal_group(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        _LIVE.discard(self)

    def survivors(self) -> list[int]:
        """PIDs of this process and its descendants that are still alive (should be none)."""
        return [p for p in {self.pid, *self.seen} if is_alive(p)]


def spawn(name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path, cwd: Path = REPO) -> ManagedProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    process = ManagedProcess(name, popen, log)
    _LIVE.add(process)
    return process


@atexit.register
def _stop_all() -> None:
    for process in list(_LIVE):
        process.stop(grace=5)


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV and not k.startswith("PREFECT_")}
    env.update(CLIENT_ENV)
    env["PREFECT_HOME"] = str(home)
    # No PYTHONPATH: like a fresh clone, workers find ``flows`` from the working directory that
    # the deployment's pull step sets (the project need not be installed).
    return env


@dataclass(eq=False)
class PrefectServer:
    """A running ``prefect server start``; ``api_url`` ends in ``/api``."""

    home: Path
    port: int
    process: ManagedProcess
    started_in: float
    others: list[ManagedProcess] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a client of this server (worker, CLI, ``serve``)."""
        env = base_env(self.home)
        env["PREFECT_API_URL"] = self.api_url
        env.update(extra)
        return env

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
        """Run ``prefect ARGS…`` against this server; never raises on a non-zero exit."""
        return subprocess.run(
            [sys.executable, "-m", "prefect", *args], check=False, cwd=cwd, env=env or self.env(), capture_output=True,
            text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> ManagedProcess:
        process = spawn(name, argv, env or self.env(), self.home / "logs")
        self.others.append(process)
        return process

    def start_worker(
        self, pool: str, name: str, env: dict[str, str] | None = None, limit: int | None = None, queue: str | None = None
    ) -> ManagedProcess:
        """``prefect worker start``: all the pool's queues unless ``queue``; ``limit`` runs at once."""
        argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--name", name, "--type", "process"]
        if limit:
            argv += ["--limit", str(limit)]
        if queue:
            argv += ["--work-queue", queue]
        return self.start(name, argv, env)

    def wait_for_worker(self, pool: str, names: Sequence[str], timeout: float = 60) -> None:
        """Until every named worker has polled the pool (a run triggered before that just waits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = self.api("POST", f"/work_pools/{pool}/workers/filter", {})
            if set(names) <= {w["name"] for w in workers}:
                return
            for process in self.others:
                if process.name in names and process.popen.poll() is not None:
                    raise PrefectServerError(f"worker {process.name} exited:\n{process.log_tail()}")
            time.sleep(0.5)
        raise PrefectServerError(f"workers {list(names)} did not poll pool {pool} within {timeout:.0f} s")

    #: Answers a busy server gives for a moment (503: its SQLite database was locked by one of
    #: its own services); Prefect's client retries these too, with backoff.
    TRANSIENT_STATUS = (429, 502, 503)
    API_ATTEMPTS = 6

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        """One JSON request to the REST API (for checks that need no Prefect import)."""
        data = None if body is None else json.dumps(body).encode()
        attempt = 0
        while True:
            request = urllib.request.Request(
                self.api_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    raw = response.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                attempt += 1
                if exc.code not in self.TRANSIENT_STATUS or attempt == self.API_ATTEMPTS:
                    raise
                time.sleep(0.25 * 2**attempt)

    @contextlib.contextmanager
    def client_settings(self) -> Iterator[None]:
        """Point this process's Prefect (clients, ``run_deployment``, blocks) at the server."""
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api_url, PREFECT_HOME: str(self.home)}):
            yield

    def stop(self) -> list[int]:
        """Stop every process (workers first, then the server); returns PIDs that survived."""
        survivors: list[int] = []
        for process in [*reversed(self.others), self.process]:
            process.stop()
            survivors += process.survivors()
        return survivors


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200 and response.read().strip() == b"true"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_prefect_server(home: Path, timeout: float = 90, attempts: int = 3) -> PrefectServer:
    """Start a server with its own ``PREFECT_HOME`` on a free port; poll ``/api/health``."""
    home.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in range(attempts):
        port = free_port()
        env = base_env(home)
        env.update(SERVER_ENV)
        started = time.monotonic()
        process = spawn(
            f"prefect-server-{attempt}",
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
            env, home / "logs",
        )
        server = PrefectServer(home, port, process, 0.0)
        while time.monotonic() - started < timeout:
            if _healthy(server.api_url):
                server.started_in = time.monotonic() - started
                return server
            if process.popen.poll() is not None:
                break
            time.sleep(0.25)
        last = process.log_tail()
        process.stop()
        if "address already in use" not in last.lower():
            break
    raise PrefectServerError(f"Prefect server did not become healthy within {timeout:.0f} s:\n{last}")


__all__ = ["ManagedProcess", "PrefectServer", "PrefectServerError", "descendants", "free_port", "start_prefect_server"]
