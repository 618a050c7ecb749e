"""What the command lines share (Prefect-free, so a bad flag costs no Prefect import): quiet defaults, config + flag overrides, one-line errors, progress.

Every CLI maps a ``PipelineError`` to one line on stderr and its exit code, and anything
unexpected to one line plus a hint to rerun with ``FLOWS_DEBUG=1`` for the traceback.  This
module must never import torch, sentence-transformers or pymilvus at import time: the CLIs
validate their arguments before paying for those.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import re
import signal
import sys
import threading
import time
import types
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ValidationError

from milvus_ingest.config import debug_enabled
from milvus_ingest.errors import PipelineError, UsageError

#: Quiet Prefect for one-off runs (NOTES: a temporary server per run logs shutdown noise).
PREFECT_QUIET_DEFAULTS = {
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "PREFECT_LOGGING_LOG_PRINTS": "false",
}


def quiet_environment(one_off: bool = False) -> None:
    """Set quiet defaults for Prefect, tokenizers and transformers, never overriding the user's.

    ``one_off`` is a command-line run: errors reach the user as our one line, so Prefect's own
    copies of them (with tracebacks) are kept out of the terminal.
    """
    for key, value in PREFECT_QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if one_off:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        # Prefect's background services log under their class names ("Still processing items…"
        # while the temporary server drains at exit): not the user's business in a one-off run.
        for name in ("EventsWorker", "APILogWorker"):
            logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # keep-alive chatter from grpc core
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    for name in ("pymilvus", "milvus_lite", "transformers", "sentence_transformers", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Milvus Lite answers the iterator's timestamp probe with "not implemented" and logs it.
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinds the run the way Ctrl-C does (not an ``Exception``)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: Seconds an interrupted run may take to unwind before it is ended hard (a flow run whose
#: temporary Prefect server died with the same Ctrl-C otherwise retries for minutes).
INTERRUPT_GRACE_SECONDS = 4.0


def run_cli(main: Callable[[], int], one_off: bool = True) -> None:
    """Run a CLI's ``main`` and exit with its code; errors become one line, never a traceback.

    Exit codes: 0 done, 1 done with sources skipped, 2 a user-fixable error, 3 an unexpected
    one, 130/143 interrupted by SIGINT/SIGTERM.  On a signal every process the run started
    (a temporary Prefect server) is ended too; stored data stays consistent because every
    source is committed last (a rerun redoes what was cut short).
    """
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        os.environ["FLOWS_DEBUG"] = "1"
    quiet_environment(one_off=one_off)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
    try:
        code = main()
    except PipelineError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        code = exc.exit_code
    except (KeyboardInterrupt, Interrupted) as exc:
        code = _interrupted(getattr(exc, "signum", signal.SIGINT))
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into a line
        if debug_enabled():
            raise
        first = printable(str(exc).strip().splitlines()[0][:300]) if str(exc).strip() else ""
        print(f"error: unexpected {type(exc).__name__}: {first} (rerun with --debug for details)", file=sys.stderr)
        code = 3
    end_child_processes()
    sys.stdout.flush()
    # The work is done and every atexit hook (Milvus Lite's close, logging's flush) still runs;
    # what remains is the interpreter's final garbage collections over everything pymilvus
    # imported (pandas, pyarrow, grpc): 0.2-0.3 s of a 1.5-2 s command, for memory the OS takes
    # back anyway.  Frozen objects are left out of those passes (``gc.freeze``).
    gc.freeze()
    sys.exit(code)


def _on_signal(signum: int, frame: Any) -> None:
    if _INTERRUPTED:  # a second signal while unwinding: stop now
        os._exit(_interrupted(signum))
    _INTERRUPTED.append(signum)
    if not debug_enabled():  # the run is being abandoned: what it logs while unwinding is noise
        logging.disable(logging.CRITICAL)
    watchdog = threading.Timer(INTERRUPT_GRACE_SECONDS, lambda: os._exit(_interrupted(signum)))
    watchdog.daemon = True
    watchdog.start()
    raise Interrupted(signum)


_INTERRUPTED: list[int] = []
_ANNOUNCED: list[int] = []


def _interrupted(signum: int) -> int:
    """Say so once, end the run's child processes, and return the exit code (128 + signal)."""
    if not _ANNOUNCED:
        _ANNOUNCED.append(signum)
        name = signal.Signals(signum).name
        print(f"interrupted: {name} received, run stopped; rerun to finish; nothing is lost", file=sys.stderr)
        sys.stderr.flush()
        end_child_processes()
    return 128 + signum


def end_child_processes(grace: float = 2.0) -> None:
    """SIGTERM every descendant of this process (then SIGKILL what is left after ``grace``)."""
    children = _descendants(os.getpid())
    for pid in children:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while children and time.monotonic() < deadline:
        children = [pid for pid in children if _alive(pid)]
        time.sleep(0.05)
    for pid in children:
        _signal(pid, signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    """Descendant pids from /proc (Linux); none elsewhere."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*/stat") if Path("/proc").is_dir() else []:
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
            parents[int(entry.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(kids)
        frontier.extend(kids)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass


class ProgressBar:
    """A one-line progress bar on a TTY (stderr); silent elsewhere so logs stay clean."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool | None = None):
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.started = time.perf_counter()
        self._last = 0.0

    def __call__(self, done_bytes: int, total_bytes: int, chunks: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < 0.2 and done_bytes < total_bytes:
            return
        self._last = now
        fraction = done_bytes / total_bytes if total_bytes else 1.0
        width = 30
        filled = int(width * fraction)
        rate = chunks / max(now - self.started, 1e-9)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction:5.1%} {chunks} chunks {rate:6.1f}/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


#: Characters a terminal acts on rather than shows: C0/C1 controls (ESC starts a terminal escape
#: sequence) and the Unicode line and paragraph separators, which some terminals break lines at.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_OR_LINE_BREAK = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: Any, lines: bool = False) -> str:
    """``text`` as it may reach a terminal: controls shown as escapes (``\\n``, ``\\x1b``).

    File names, questions and stored passages are other people's bytes: a newline in a file name
    would break a one-line message or a summary row in two, and an escape sequence in a document
    could rewrite what the terminal shows.  ``lines`` keeps newlines and tabs (a passage printed
    whole); otherwise everything stays on one line."""
    text = str(text)
    pattern = _CONTROL if lines else _CONTROL_OR_LINE_BREAK
    return pattern.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def format_table(rows: list[tuple[str, Any]]) -> str:
    """Two columns, the first padded; every cell on one line (``printable``)."""
    cells = [(printable(k), printable(v)) for k, v in rows]
    width = max(len(k) for k, _ in cells)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in cells)


def prefect_api_configured() -> bool:
    """True when a Prefect API is set up (``PREFECT_API_URL`` or the active profile's), read
    without importing Prefect: a one-off command is then a flow run, else a plain run (a temporary
    Prefect server per command costs ~10 s and leaves nothing a user can look at afterwards)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    try:
        import tomllib
    except ImportError:  # Python 3.10: no TOML reader; only the environment variable counts
        return False
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    try:
        data = tomllib.loads((home / "profiles.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    return bool((data.get("profiles") or {}).get(active, {}).get("PREFECT_API_URL"))


def add_params_options(
    parser: argparse.ArgumentParser, model: type[BaseModel], positional: str, skip: tuple[str, ...] = ()
) -> None:
    """Command-line options from a flow's parameter model: one declaration, so help texts and
    defaults cannot drift apart.  ``positional`` is the list field given as bare arguments; a
    field may name its flag (``json_schema_extra={"flag": "--budget"}``) where the documented
    flag is shorter than the parameter."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        help_text = field.description or ""
        if name == positional:
            many = _plain_type(field.annotation) is list
            metavar = (name.rstrip("s") if many else name).upper()
            parser.add_argument(name, nargs="+" if many else None, metavar=metavar, help=help_text)
            continue
        flag = flag_of(name, field)
        kind = _plain_type(field.annotation)
        if kind is bool:
            parser.add_argument(flag, action="store_true", default=None, dest=name, help=help_text)
        elif kind is list:
            parser.add_argument(flag, nargs="+", default=None, dest=name, help=help_text)
        else:
            default = field.default if field.default is not None and not callable(field.default) else None
            shown = f" (default {default})" if default not in (None, "", False) else ""
            parser.add_argument(flag, type=kind, default=None, dest=name, help=(help_text + shown).replace("%", "%%"))


def flag_of(name: str, field: Any) -> str:
    """The command-line flag of a parameter: its own ``flag`` if it names one, else ``--name``."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("flag") or "--" + name.replace("_", "-"))


def params_from_args(model: type[BaseModel], args: argparse.Namespace) -> Any:
    """The model from the parsed flags (absent flags keep the model's defaults); a refused value
    is one line naming the flag and the value."""
    values = {name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None}
    try:
        return model(**values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = str(problem["loc"][0]) if problem["loc"] else ""
        flag = flag_of(name, model.model_fields[name]) if name in model.model_fields else "argument"
        raise UsageError(f"{flag} {values.get(name)!r}: {problem['msg']}") from None


def _plain_type(annotation: Any) -> type:
    """``str | None`` → str, ``list[str]`` → list, ``bool`` → bool, ``int`` → int."""
    origin = typing.get_origin(annotation)
    if origin is list:
        return list
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _plain_type(inner[0]) if inner else str
    return annotation if annotation in (bool, int, float) else str


def run_as_flow(module_name: str, flow_name: str, params: BaseModel) -> Any:
    """Run a flow in this process with ``params`` (Prefect is imported here, not before).

    The command line's module runs as ``__main__``; the flow lives in the importable module of
    the same file, whose parameter model is a different class, so the values are handed over.
    """
    module = importlib.import_module(module_name)
    flow_fn = getattr(module, flow_name)
    model = getattr(module, type(params).__name__)
    return flow_fn(model.model_validate(params.model_dump()))
