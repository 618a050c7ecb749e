"""Which errors are retried, and how often."""

from __future__ import annotations

import grpc
import pytest
from pymilvus.exceptions import MilvusException

from milvus_ingest.store.retry import is_transient, with_retries


class _Rpc(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code


@pytest.mark.parametrize(
    "exc,transient",
    [
        (_Rpc(grpc.StatusCode.UNAVAILABLE), True),
        (_Rpc(grpc.StatusCode.DEADLINE_EXCEEDED), True),
        (_Rpc(grpc.StatusCode.INVALID_ARGUMENT), False),
        (_Rpc(grpc.StatusCode.RESOURCE_EXHAUSTED), False),
        (MilvusException(code=8, message="rate limit exceeded"), True),
        (MilvusException(code=1, message="service not ready"), True),
        (MilvusException(code=100, message="collection not found[collection=x]"), False),
        (MilvusException(code=101, message="collection not loaded"), False),
        (MilvusException(code=1100, message="cannot parse expression: source =="), False),
        (ConnectionRefusedError(), True),
        (ValueError("bad value"), False),
    ],
)
def test_transient_classification(exc, transient):
    assert is_transient(exc) is transient


def test_retries_transient_then_succeeds_and_gives_up_on_others():
    calls = []
    sleeps = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _Rpc(grpc.StatusCode.UNAVAILABLE)
        return "ok"

    assert with_retries(flaky, "op", retries=3, backoff_seconds=0.5, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]

    def broken():
        calls.append(1)
        raise MilvusException(code=1100, message="invalid expression")

    calls.clear()
    with pytest.raises(MilvusException):
        with_retries(broken, "op", retries=3, sleep=sleeps.append)
    assert len(calls) == 1

    calls.clear()
    with pytest.raises(grpc.RpcError):
        with_retries(lambda: calls.append(1) or (_ for _ in ()).throw(_Rpc(grpc.StatusCode.UNAVAILABLE)),
                     "op", retries=2, sleep=lambda s: None)
    assert len(calls) == 3
