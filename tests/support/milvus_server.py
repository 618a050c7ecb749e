"""Start a real Milvus 2.3.5 standalone server for tests, without Docker.

Uses the PyPI ``milvus`` package ("embedded Milvus", ``pip install milvus==2.3.5``): it ships the
real ``milvus`` binary (lzma-compressed) and a ``milvus.yaml`` template.  This module does not use
the package's own ``MilvusServer`` runner because that one

* always binds the embedded etcd on 2379/2380 (not configurable through its template),
* uses one fixed pid file, ``/run/milvus/standalone.pid``, which the server locks,
* re-extracts ~250 MB of binaries into every data directory (~7 s),
* stops with SIGTERM and a 1 s grace before SIGKILL, and does not kill a process group.

Here every port the server binds (proxy, proxy-internal, the coordinators and nodes, embedded
etcd client and peer, metrics/healthz) is a free port chosen at start, the pid file gets a
unique ``-alias``, binaries are extracted once into a shared cache, and the server runs in its
own process group (killed as a group on stop; on Linux it also gets SIGKILL if the process
that started it dies).  Binary cache: ``$MILVUS_SERVER_BIN_CACHE/<version>`` or
``~/.cache/milvus-server-bin/<version>`` (~250 MB, ~7-10 s to fill once).  Each data dir
takes ~210 MB even when empty (etcd and rocksmq preallocate their logs).

After a restart (stop/kill + start) collections are *not* loaded: queries fail with
``MilvusException(code=101, "collection not loaded")`` until ``client.load_collection(name)``.

Usage::

    from tests.support.milvus_server import is_available, start_milvus_server

    with start_milvus_server(tmp_path / "milvus") as server:
        client = MilvusClient(uri=server.uri)
        ...

No pytest dependency; only the standard library (and the ``milvus`` package for its files).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import lzma
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional

__all__ = [
    "SKIP_REASON",
    "MilvusServer",
    "MilvusServerError",
    "is_available",
    "start_milvus_server",
]

SKIP_REASON = "pip install milvus==2.3.5 to run the server-backend tests"

# Template keys of the package's config.yaml.template that are ports (all get a free port).
_TEMPLATE_PORT_KEYS = (
    "proxy_port",
    "proxy_internal_port",
    "root_coord_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
    "etcd_port",  # etcd client endpoint the server connects to
)
# Ports not in the template: embedded etcd peer port, metrics/healthz (METRICS_PORT env var).
_EXTRA_PORT_KEYS = ("etcd_peer_port", "metrics_port")
PORT_KEYS = _TEMPLATE_PORT_KEYS + _EXTRA_PORT_KEYS

# Environment variables passed through to the server (plus LC_*).
_PASS_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR"})

_LIVE_SERVERS: "set[MilvusServer]" = set()
_LIVE_LOCK = threading.Lock()


class MilvusServerError(RuntimeError):
    """The server could not be started (the message includes the tail of its logs).

    ``kind`` is ``"ports"`` (a port was taken: retry with others), ``"timeout"``, ``"exit"``
    (the process died) or ``"error"``.
    """

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


def is_available() -> bool:
    """Whether the ``milvus`` (embedded Milvus server) package is importable."""
    return _package_dir() is not None


def _package_dir() -> Optional[Path]:
    try:
        spec = importlib.util.find_spec("milvus")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    pkg = Path(spec.origin).parent
    if not (pkg / "data" / "config.yaml.template").is_file():
        return None  # some other package called "milvus"
    return pkg


def _package_version(pkg: Path) -> str:
    text = (pkg / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return m.group(1) if m else "unknown"


# --------------------------------------------------------------------------------------------
# Binaries: extracted once per package version into a shared cache directory.
# --------------------------------------------------------------------------------------------


def _bin_cache_dir(version: str) -> Path:
    env = os.environ.get("MILVUS_SERVER_BIN_CACHE")
    if env:
        return Path(env).expanduser() / version
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "milvus-server-bin" / version


def _ensure_binaries(pkg: Path, version: str) -> Path:
    """Decompress the package's ``data/bin/*.lzma`` into the cache (atomically, under a lock)."""
    bin_dir = _bin_cache_dir(version)
    bin_dir.mkdir(parents=True, exist_ok=True)
    src_dir = pkg / "data" / "bin"
    sources = sorted(src_dir.glob("*.lzma"))
    if not sources:
        raise MilvusServerError(f"no binaries found in {src_dir}")
    stamp_text = "\n".join(f"{p.name} {p.stat().st_size}" for p in sources)
    stamp = bin_dir / ".complete"
    if stamp.is_file() and stamp.read_text() == stamp_text:
        return bin_dir
    with open(bin_dir / ".lock", "w") as lock_fp:
        fcntl.flock(lock_fp, fcntl.LOCK_EX)
        try:
            if stamp.is_file() and stamp.read_text() == stamp_text:
                return bin_dir
            for src in sources:
                target = bin_dir / src.name[: -len(".lzma")]
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                with lzma.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
            stamp.write_text(stamp_text)
        finally:
            fcntl.flock(lock_fp, fcntl.LOCK_UN)
    return bin_dir


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

_TEMPLATE_RE = re.compile(r"\{\{(.*?)\}\}")


def _render_template(template: str, values: Mapping[str, object]) -> str:
    """Fill ``{{ key }}``, ``{{ key: default }}``, ``{{ key(type): default }}`` placeholders."""

    def repl(m: "re.Match[str]") -> str:
        text = m.group(1).strip()
        key, default = (text.split(":", 1) + [None])[:2] if ":" in text else (text, None)
        key = key.split("(", 1)[0].strip()
        if key in values:
            val = values[key]
        elif default is not None:
            return default.strip()
        else:
            raise MilvusServerError(f"config template key {key!r} has no value")
        if isinstance(val, bool):
            return "true" if val else "false"
        return str(val)

    return _TEMPLATE_RE.sub(repl, template)


def _yaml_scalar(val: object) -> str:
    if isinstance(val, bool):
        return "true" if val else "false"
    if isinstance(val, (int, float)):
        return str(val)
    s = str(val)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _apply_overrides(text: str, overrides: Mapping[str, object]) -> str:
    """Set existing dotted keys (``common.session.ttl``) in a block-style YAML text.

    Only keys already present in the template can be overridden; an unknown key raises.
    """
    if not overrides:
        return text
    pending = dict(overrides)
    out = []
    path: list = []
    line_re = re.compile(r"^( *)([A-Za-z0-9_]+):(.*)$")
    for line in text.splitlines():
        m = line_re.match(line)
        if m and not line.lstrip().startswith("#"):
            level = len(m.group(1)) // 2
            path = path[:level] + [m.group(2)]
            dotted = ".".join(path)
            if dotted in pending:
                line = f"{m.group(1)}{m.group(2)}: {_yaml_scalar(pending.pop(dotted))}"
        out.append(line)
    if pending:
        raise MilvusServerError(f"config keys not in the template: {sorted(pending)}")
    return "\n".join(out) + "\n"


def _write_configs(
    pkg: Path,
    base_dir: Path,
    ports: Mapping[str, int],
    auth_enabled: bool,
    overrides: Mapping[str, object],
) -> Path:
    conf_dir = base_dir / "configs"
    logs_dir = base_dir / "logs"
    data_dir = base_dir / "data"
    for d in (conf_dir, logs_dir, data_dir):
        d.mkdir(parents=True, exist_ok=True)
    values: Dict[str, object] = {k: ports[k] for k in _TEMPLATE_PORT_KEYS}
    values.update(
        etcd_log_path=str(logs_dir / "etcd.log"),
        etcd_data_dir=str(data_dir / "etcd.data"),
        local_storage_dir=str(data_dir),
        rocksmq_data_dir=str(data_dir / "rocksmq"),
        system_log_path=str(logs_dir),
        authorization_enabled=bool(auth_enabled),
    )
    template = (pkg / "data" / "config.yaml.template").read_text(encoding="utf-8")
    text = _render_template(template, values)
    text = _apply_overrides(text, overrides)

    # The embedded etcd ignores etcd.endpoints and listens on 2379/2380 unless it gets its own
    # config file (etcd.config.path, not present in the package's template).
    etcd_conf = conf_dir / "embed-etcd.yaml"
    client = f"http://127.0.0.1:{ports['etcd_port']}"
    peer = f"http://127.0.0.1:{ports['etcd_peer_port']}"
    etcd_conf.write_text(
        "name: default\n"
        f"listen-client-urls: {client}\n"
        f"advertise-client-urls: {client}\n"
        f"listen-peer-urls: {peer}\n"
        f"initial-advertise-peer-urls: {peer}\n"
        f"initial-cluster: default={peer}\n",
        encoding="utf-8",
    )
    text, n = re.subn(
        r"(?m)^etcd:\n",
        f"etcd:\n  config:\n    path: {_yaml_scalar(str(etcd_conf))}\n",
        text,
        count=1,
    )
    if n != 1:
        raise MilvusServerError("could not find the etcd section in the config template")
    (conf_dir / "milvus.yaml").write_text(text, encoding="utf-8")
    shutil.copy(pkg / "data" / "glog.conf", conf_dir / "glog.conf")
    return conf_dir


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


def _free_ports(n: int) -> list:
    """``n`` distinct ports that are free on 127.0.0.1 and on all interfaces right now."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("0.0.0.0", 0))  # the server binds most ports on all interfaces
            socks.append(s)
            port = s.getsockname()[1]
            if port not in ports:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def _port_is_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Linux: the server gets SIGKILL if the thread that started it dies (no orphans)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


@dataclass(eq=False)
class MilvusServer:
    """A Milvus 2.3.5 standalone server process (see :func:`start_milvus_server`)."""

    base_dir: Path
    ports: Dict[str, int]
    auth_enabled: bool = False
    overrides: Dict[str, object] = field(default_factory=dict)
    extra_env: Dict[str, str] = field(default_factory=dict)
    stop_grace: float = 20.0
    start_timeout: float = 120.0
    die_with_parent: bool = True
    host: str = "127.0.0.1"
    version: str = ""
    _proc: Optional[subprocess.Popen] = field(default=None, repr=False)
    _pkg: Optional[Path] = field(default=None, repr=False)
    _bin_dir: Optional[Path] = field(default=None, repr=False)
    _log_files: list = field(default_factory=list, repr=False)

    # -- public properties ------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.ports["proxy_port"]

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        """Default credentials when auth is enabled (``root:Milvus``), else empty."""
        return "root:Milvus" if self.auth_enabled else ""

    @property
    def health_url(self) -> str:
        return f"http://{self.host}:{self.ports['metrics_port']}/healthz"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    @property
    def logs_dir(self) -> Path:
        return self.base_dir / "logs"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: Optional[float] = None) -> "MilvusServer":
        """Start the process (same data dir and ports as before) and wait until it is healthy."""
        if self.is_running():
            raise MilvusServerError(f"Milvus server already running (pid {self.pid})")
        self._reap()
        timeout = self.start_timeout if timeout is None else timeout
        pkg = self._pkg or _package_dir()
        if pkg is None:
            raise MilvusServerError(SKIP_REASON)
        self._pkg = pkg
        self.version = _package_version(pkg)
        self._bin_dir = _ensure_binaries(pkg, self.version)
        busy = [f"{k}={p}" for k, p in self.ports.items() if not _port_is_free(p)]
        if busy:
            raise MilvusServerError(f"ports already in use: {', '.join(busy)}", "ports")
        conf_dir = _write_configs(pkg, self.base_dir, self.ports, self.auth_enabled, self.overrides)

        # Milvus maps *any* environment variable onto its config (ETCD_ENDPOINTS -> etcd.endpoints,
        # underscores ignored), so the caller's environment is not passed through: only a few
        # harmless variables, then ours, then ``extra_env``.
        env = {k: v for k, v in os.environ.items() if k in _PASS_ENV or k.startswith("LC_")}
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(self.ports["metrics_port"]),
            MILVUSCONF=str(conf_dir),
            LD_LIBRARY_PATH=str(self._bin_dir),
            # Once a collection is loaded, a graceful stop waits queryNode.gracefulStopTimeout
            # for segments to move away - there is nowhere to move them in standalone, and the
            # default outlasted a 20 s grace. Acknowledged writes survive even SIGKILL (probed),
            # so keep it short: stop() then takes ~3 s.
            QUERYNODE_GRACEFULSTOPTIMEOUT="3",
        )
        env.update({str(k): str(v) for k, v in self.extra_env.items()})
        stdout = open(self.logs_dir / "milvus-stdout.log", "ab")
        stderr = open(self.logs_dir / "milvus-stderr.log", "ab")
        self._log_files = [stdout, stderr]
        # The pid file (/run/milvus/standalone-<alias>.pid or /tmp/milvus/...) is locked by the
        # server: a unique alias lets several servers run on one machine.
        alias = f"t{self.port}"
        cmd = [str(self._bin_dir / "milvus"), "run", "standalone", "-alias", alias]
        self._proc = subprocess.Popen(
            cmd,
            cwd=str(self.base_dir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # own process group: stop() kills the whole group
            preexec_fn=_set_pdeathsig if (self.die_with_parent and sys.platform.startswith("linux")) else None,
        )
        with _LIVE_LOCK:
            _LIVE_SERVERS.add(self)
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.2
        last_err = ""
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise MilvusServerError(
                    f"Milvus server exited during start-up (exit code {code})\n{self.log_tail()}",
                    self._startup_failure_kind(),
                )
            try:
                with urllib.request.urlopen(self.health_url, timeout=5) as resp:
                    body = resp.read().decode("utf-8", "replace")
                if resp.status == 200 and "OK" in body and self._proxy_accepts():
                    return
                last_err = f"healthz: {resp.status} {body[:200]!r}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_err = f"healthz: {exc}"
            if time.monotonic() > deadline:
                raise MilvusServerError(
                    f"Milvus server not healthy after {timeout:.0f} s ({last_err})\n{self.log_tail()}",
                    "timeout",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _proxy_accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2):
                return True
        except OSError:
            return False

    def _startup_failure_kind(self) -> str:
        tail = self.log_tail(200)
        if "address already in use" in tail or "bind: address" in tail:
            return "ports"
        return "exit"

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for name in ("milvus-stderr.log", "milvus-stdout.log"):
            p = self.logs_dir / name
            if p.is_file():
                with open(p, "rb") as fp:
                    fp.seek(0, os.SEEK_END)
                    size = fp.tell()
                    fp.seek(max(0, size - 64 * 1024))
                    text = fp.read().decode("utf-8", "replace").splitlines()[-lines:]
                parts.append(f"--- {p} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts)

    def _signal_group(self, sig: int) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, sig)  # pgid == pid (start_new_session)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def stop(self, grace: Optional[float] = None) -> None:
        """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL it. Idempotent."""
        if self._proc is None:
            return
        grace = self.stop_grace if grace is None else grace
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)  # also any leftover member of the group
        self._reap()

    def kill(self) -> None:
        """SIGKILL the whole process group at once (crash simulation)."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._reap()

    def restart(self, timeout: Optional[float] = None) -> "MilvusServer":
        """Stop (if running) and start again on the same data dir and ports."""
        self.stop()
        return self.start(timeout=timeout)

    def _reap(self) -> None:
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - should not happen after KILL
                pass
            # The server leaves /tmp/milvus/server_id_<pid> (and, when killed, its pid file
            # standalone-<alias>.pid in /run/milvus or /tmp/milvus): remove ours.
            for leftover in (
                f"/tmp/milvus/server_id_{proc.pid}",
                f"/run/milvus/standalone-t{self.port}.pid",
                f"/tmp/milvus/standalone-t{self.port}.pid",
            ):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
            self._proc = None
        for fp in self._log_files:
            with contextlib.suppress(OSError):
                fp.close()
        self._log_files = []
        with _LIVE_LOCK:
            _LIVE_SERVERS.discard(self)

    def rss_bytes(self) -> Optional[int]:
        """Resident memory of the server process (Linux), or None."""
        if not self.is_running():
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def __enter__(self) -> "MilvusServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_milvus_server(
    base_dir: Path,
    timeout: float = 120,
    *,
    auth_enabled: bool = False,
    overrides: Optional[Mapping[str, object]] = None,
    extra_env: Optional[Mapping[str, str]] = None,
    stop_grace: float = 20.0,
    die_with_parent: bool = True,
    attempts: int = 3,
) -> MilvusServer:
    """Start a Milvus 2.3.5 standalone server with its data in ``base_dir``, on free ports.

    Returns once ``/healthz`` says OK and the proxy accepts connections.  ``overrides`` sets
    existing ``milvus.yaml`` keys (``{"common.session.ttl": 10}``); ``extra_env`` sets any key
    the Milvus way (``{"QUERYNODE_GRACEFULSTOPTIMEOUT": "10"}``: upper case, dots and
    underscores ignored).  With ``auth_enabled`` connect with ``token=server.token``
    (``root:Milvus``).  The caller's environment is not passed to the server.  If a chosen port is taken by
    someone else between choosing and binding, it retries with new ports (``attempts`` times).
    Raises :class:`MilvusServerError` (with the log tail) if it can't start.
    """
    if not is_available():
        raise MilvusServerError(SKIP_REASON)
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    last: Optional[MilvusServerError] = None
    for _ in range(max(1, attempts)):
        ports = dict(zip(PORT_KEYS, _free_ports(len(PORT_KEYS))))
        server = MilvusServer(
            base_dir=base_dir,
            ports=ports,
            auth_enabled=auth_enabled,
            overrides=dict(overrides or {}),
            extra_env=dict(extra_env or {}),
            stop_grace=stop_grace,
            start_timeout=timeout,
            die_with_parent=die_with_parent,
        )
        try:
            return server.start(timeout=max(10.0, deadline - time.monotonic()))
        except MilvusServerError as exc:
            last = exc
            if exc.kind != "ports":
                raise
    assert last is not None
    raise last


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE_SERVERS)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop(grace=5)
