"""What the command lines share (Prefect-free, so a bad flag costs no Prefect import): quiet defaults, config + flag overrides, one-line errors, progress.

Every CLI maps a ``PipelineError`` to one line on stderr and its exit code, and anything
unexpected to one line plus a hint to rerun with ``FLOWS_DEBUG=1`` for the traceback.  This
module must never import torch, sentence-transformers or pymilvus at import time: the CLIs
validate their arguments before paying for those.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, TextIO

from milvus_ingest.errors import PipelineError

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


def run_cli(main: Callable[[], int]) -> None:
    """Run a CLI's ``main`` and exit with its code; errors become one line, never a traceback."""
    try:
        code = main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into a line
        if os.environ.get("FLOWS_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"error: unexpected {type(exc).__name__}: {first} (rerun with FLOWS_DEBUG=1 for details)", file=sys.stderr)
        code = 3
    sys.stdout.flush()
    sys.exit(code)


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


def format_table(rows: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
