"""One small retry helper for Milvus calls: transient errors are retried with backoff, others not.

A transient error is one that the same call can survive a moment later (server unavailable,
rate limited, a deadline exceeded while the server was busy).  A bad request, a schema mismatch or
a missing collection is not: retrying those only delays the clear error.  This module must never
retry a non-idempotent call; every write the pipeline makes is an upsert or a delete by id, which
are safe to repeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: pymilvus ``ErrorCode.RATE_LIMIT``; and the legacy ``common.ErrorCode`` values RateLimit (49)
#: and NotReadyServe (56) that servers still send as ``compatible_code``.
_TRANSIENT_CODES = {8}
_TRANSIENT_COMPATIBLE_CODES = {49, 56}
_TRANSIENT_WORDS = (
    "unavailable",
    "rate limit",
    "ratelimit",
    "deadline exceeded",
    "connection refused",
    "connection reset",
    "failed to connect",
    "socket closed",
    "not ready",
    "service not ready",
    "server is not healthy",
    "too many requests",
    "timeout",
    "timed out",
    "broken pipe",
    "goaway",
)


def is_transient(exc: BaseException) -> bool:
    """True for errors that the same call may not hit a moment later."""
    try:
        import grpc

        if isinstance(exc, grpc.RpcError):
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            return code in {
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.ABORTED,
                grpc.StatusCode.CANCELLED,
            }
    except ImportError:  # pragma: no cover - grpc ships with pymilvus
        pass
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    text = str(exc).lower()
    if "message larger than max" in text or "resource_exhausted" in text and "larger" in text:
        return False
    if any(word in text for word in _TRANSIENT_WORDS):
        return True
    if getattr(exc, "retriable", False) is True:  # pymilvus marks some server errors itself
        return True
    code = getattr(exc, "code", None)
    compatible = getattr(exc, "compatible_code", None)
    return (isinstance(code, int) and code in _TRANSIENT_CODES) or compatible in _TRANSIENT_COMPATIBLE_CODES


def with_retries(
    call: Callable[[], T],
    what: str,
    retries: int = 3,
    backoff_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; on a transient error wait ``backoff * 2**attempt`` and try again.

    After the last attempt the error is raised as it is, so the caller's one clear line can say
    what the server answered.
    """
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise
            delay = backoff_seconds * (2**attempt)
            log.warning("%s failed (%s); retry %d/%d in %.1fs", what, _short(exc), attempt + 1, retries, delay)
            sleep(delay)
            attempt += 1


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
