"""Opening a Milvus client, and saying in one line why it could not be opened.

The same ``MilvusClient`` serves Milvus Lite (a local folder) and a server (a URI); what differs
is how each fails, and each failure is named for what it is (a file where a folder should be, an
unwritable folder, a lock held by another process, bad credentials, an unreachable address).
This module must never log or echo the token.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from milvus_ingest.config import MilvusSettings, debug_enabled
from milvus_ingest.errors import StoreError


#: What pymilvus reads from the environment (and a ``.env`` file) when it is imported.
PYMILVUS_IMPORT_ENV = ("MILVUS_URI", "MILVUS_DEFAULT_CONNECTION")


def import_pymilvus() -> ModuleType:
    """pymilvus, imported without its import-time parse of ``MILVUS_URI``.

    Importing pymilvus builds its ORM's default connection from ``MILVUS_URI`` (or
    ``MILVUS_DEFAULT_CONNECTION``, or either from a ``.env`` file) and raises unless it is
    ``http[s]://host:port``, so ``MILVUS_URI=./milvus.db``, a Milvus Lite folder that this
    pipeline's environment override accepts, would fail every run at the import.  Nothing here
    uses that ORM default (the URI reaches ``MilvusClient`` from the settings), so the variables
    are blanked for the import only and restored.  Call it before any other pymilvus import.
    """
    if "pymilvus" in sys.modules:
        return sys.modules["pymilvus"]
    saved = {name: os.environ.get(name) for name in PYMILVUS_IMPORT_ENV}
    try:
        for name in PYMILVUS_IMPORT_ENV:
            os.environ[name] = ""  # set, so a .env file cannot fill it in either (dotenv keeps set values)
        import pymilvus
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return pymilvus


def skip_per_character_string_check() -> None:
    """Switch off pymilvus's client-side VARCHAR length check, which checks nothing on row writes.

    For each string of a row, pymilvus (2.5 to 3.0) hands ``convert_to_str_array`` the string
    itself, so the check walks its *characters*, each a 1-character string that cannot exceed
    ``max_length``: it can never fail, and costs ~0.8 ms a chunk row, half of an upsert's client
    CPU (cProfile, 914 rows: 1.8 → 0.9 CPU s).  Lengths are bounded before rows are built (the
    chunker's byte limit, ``schema.clip_utf8``) and Milvus checks VARCHAR lengths itself (tested)."""
    helper = sys.modules.get("pymilvus.client.entity_helper")
    if helper is not None and isinstance(getattr(helper, "CHECK_STR_ARRAY", None), bool):
        helper.CHECK_STR_ARRAY = False


#: pymilvus pings its server every 10 s, even with no call in flight; Milvus Lite's in-process
#: gRPC server keeps gRPC's default policy (at most one ping per 5 minutes without data), so a
#: connection idle for a minute or two (a QA app between questions, ``flows.serve`` between
#: runs) got a GOAWAY "too_many_pings" and gRPC's C core printed two raw log lines to stderr
#: (the next call reconnected).  Lite runs in this process: no ping can find it dead, so none
#: is sent while idle.
LITE_GRPC_OPTIONS = {"grpc.keepalive_permit_without_calls": False}


def connect(settings: MilvusSettings) -> Any:
    """A connected ``MilvusClient`` for ``settings``, or a ``StoreError`` naming the cause."""
    MilvusClient = import_pymilvus().MilvusClient
    skip_per_character_string_check()

    _quiet_lite_noise()
    if settings.is_lite:
        check_lite_path(settings.uri)
    lite_logger = logging.getLogger("milvus_lite")
    previous = lite_logger.level
    lite_logger.setLevel(logging.CRITICAL)  # its own lock traceback would drown our one line
    try:
        kwargs: dict[str, Any] = {"uri": settings.uri, "timeout": min(settings.timeout, 5)}
        if settings.token:
            kwargs["token"] = settings.token
        if settings.is_lite:
            kwargs["grpc_options"] = LITE_GRPC_OPTIONS
        return MilvusClient(**kwargs)
    except Exception as exc:
        raise _describe_connect_error(settings, exc) from None
    finally:
        lite_logger.setLevel(previous)


def release_lite(uri: str) -> None:
    """Stop this process's Milvus Lite server for the folder at ``uri``, freeing its lock.

    A closed client leaves that server running (and writing) until the process exits, so a
    long-lived process would lock other runs out of the folder, and a caller that removes the
    folder would race the server's last writes."""
    try:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(Path(uri).expanduser()))
    except Exception:  # no Lite installed, or nothing running for it: nothing holds the folder
        pass


def check_lite_path(uri: str) -> None:
    """Refuse a Lite location that cannot work, before Lite turns it into a misleading error."""
    folder = Path(uri).expanduser()
    parent = folder.parent if str(folder.parent) else Path(".")
    if not parent.exists():
        raise StoreError(f"folder {parent} for Milvus Lite database {uri} does not exist: create it or fix --uri")
    if not parent.is_dir():
        raise StoreError(f"{parent} (in Milvus Lite database path {uri}) is not a folder: fix --uri")
    if folder.exists() and not folder.is_dir():
        raise StoreError(
            f"Milvus Lite database {uri} is a file, not a database folder: point --uri at a new or "
            "existing Lite folder (e.g. ./milvus.db)"
        )
    target = folder if folder.exists() else parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise StoreError(f"Milvus Lite database {uri}: folder {target} is not writable by this user")


#: pymilvus's loggers, which its import configures itself (dictConfig at WARNING, two at INFO).
PYMILVUS_LOGGERS = ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "pymilvus.decorators", "milvus_lite")


def _quiet_lite_noise() -> None:
    """Keep pymilvus's own failure logs (a traceback per failed RPC and retry) out of the output.

    Every failure reaches the caller as one ``StoreError`` with the cause chained, so those logs
    only repeat it, hundreds of lines at a time when a server dies mid-run.  ``FLOWS_DEBUG=1``
    keeps them.  Also: Milvus Lite cannot hand out an MVCC timestamp for iterators and pymilvus
    warns on every scan before falling back to a client-side one, which is what we want.
    Called after pymilvus is imported, because its import resets these levels.
    """
    if not debug_enabled():
        for name in PYMILVUS_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


def _describe_connect_error(settings: MilvusSettings, exc: BaseException) -> StoreError:
    text = str(exc)
    if settings.is_lite:
        chain = repr(exc) + repr(exc.__cause__) + repr(exc.__context__)
        lock_words = ("lock", "Open local milvus failed", "ConnectionConfigException")
        if any(word in text or word in chain or word in type(exc).__name__ for word in lock_words):
            return StoreError(
                f"Milvus Lite database {settings.uri} is in use by another process (Lite allows one "
                "process at a time): wait for it to finish, or run a Milvus server for concurrent writers"
            )
        return StoreError(f"cannot open Milvus Lite database {settings.uri}: {text.strip() or type(exc).__name__}")
    cause = exc.__cause__
    cause_code = cause.code() if cause is not None and callable(getattr(cause, "code", None)) else None
    if (
        "UNAUTHENTICATED" in str(cause_code)
        or "PERMISSION_DENIED" in str(cause_code)
        or any(w in text.lower() for w in ("auth", "credential", "permission"))
    ):
        return StoreError(
            f"Milvus at {settings.uri} refused the credentials: set MILVUS_TOKEN to user:password or an API key"
        )
    return StoreError(
        f"cannot reach Milvus at {settings.uri} ({type(exc).__name__}): check the address and that the "
        "server is up (MILVUS_URI / --uri)"
    )
