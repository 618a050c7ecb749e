"""A write lease per collection on a Milvus server, so two ingests into one collection take turns.

Milvus has no compare-and-set, so the lease is written, then read: a contender upserts its own
row (a random token, the target collection, its scope, who it is, an expiry) into the small
collection ``LEASE_COLLECTION``, then reads every row for that target with Strong consistency.
It holds the lease if no *other* live row conflicts with its scope; otherwise it deletes its row
and tries again after a random pause, until ``lock_wait_seconds`` have passed.  Of two
contenders, the one whose write lands second reads after both writes, so it sees the other's
row and backs off; two that collide exactly both back off and retry at random times.

Crashes: the holder renews its row every third of ``lock_ttl_seconds`` from a thread; a holder
killed with ``kill -9`` stops renewing, and once its row has expired the next contender deletes
it, so a crash blocks others for at most one lease (a row this very process left behind, when
its release failed because the server was down, is known dead at once).  A holder that could
not renew before its own expiry (a paused machine, a lost network) marks the lease lost, and
``check`` stops the run before its next write.  Clocks of the writers' machines must agree to well within the lease.

Scopes: an unsharded run (``"all"``) conflicts with every other; shard runs (``"i/N"``, the
fan-out's disjoint split by source) conflict only with the same shard or another ``N``.
Milvus Lite needs no lease: a database folder is opened by one process at a time.

This module must never delete another holder's row before it has expired, and never renew a
lease after its own expiry (it might have passed to someone else).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from milvus_ingest.errors import CollectionBusyError, LeaseLostError, StoreError
from milvus_ingest.store.schema import escape_string

log = logging.getLogger(__name__)

LEASE_COLLECTION = "milvus_ingest_leases"
FIELDS = ["id", "target", "scope", "holder", "acquired_ms", "expires_ms"]
#: Attempts made even with no wait at all: a collision of two starts is not a held lease.
MIN_ATTEMPTS = 3
#: Loading the lease collection after a server restart took ~25 s on Milvus 2.3 (it recovers the
#: rows written before the restart): a load gets at least this long, whatever milvus.timeout says.
LOAD_TIMEOUT = 120
#: Every token this process hands out starts with this; ``_HELD`` lists the ones it holds now.
#: A row with our prefix that we do not hold is ours from an earlier run whose release failed
#: (the server was down), so it is dead and need not be waited for.
_PROCESS = uuid.uuid4().hex[:16]
_HELD: set[str] = set()
_HELD_LOCK = threading.Lock()


def scopes_conflict(a: str, b: str) -> bool:
    """Whether runs of scopes ``a`` and ``b`` may write the same source."""
    if a == "all" or b == "all":
        return True
    (ai, an), (bi, bn) = a.split("/"), b.split("/")
    return an != bn or ai == bi


def _now_ms() -> int:
    return int(time.time() * 1000)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class NoLease:
    """What a run holds where no lease is needed (Milvus Lite)."""

    def check(self) -> None:
        return None

    def release(self) -> None:
        return None


class WriteLease:
    """The write lease of ``store.collection`` for ``scope``; ``acquire`` before planning."""

    def __init__(self, store: Any, scope: str = "all"):
        self.store = store
        self.target = store.collection
        self.scope = scope
        self.ttl_ms = int(store.settings.lock_ttl_seconds * 1000)
        self.wait = float(store.settings.lock_wait_seconds)
        self.token = _PROCESS + uuid.uuid4().hex
        self.holder = f"{socket.gethostname()} pid {os.getpid()}"
        self.acquired_ms = 0
        self.expires_ms = 0
        self.lost = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the lease collection -----------------------------------------------------------
    def _call(self, fn: Any, what: str) -> Any:
        return self.store._call(fn, f"write lease: {what}")

    def _ensure_collection(self) -> None:
        from pymilvus import DataType

        client, timeout = self.store.client, self.store.settings.timeout
        if not self._call(lambda: client.has_collection(LEASE_COLLECTION, timeout=timeout), "has_collection"):
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False, description="milvus_ingest write leases")
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("target", DataType.VARCHAR, max_length=255)
            schema.add_field("scope", DataType.VARCHAR, max_length=32)
            schema.add_field("holder", DataType.VARCHAR, max_length=512)
            schema.add_field("acquired_ms", DataType.INT64)
            schema.add_field("expires_ms", DataType.INT64)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # every 2.3 collection needs one
            index = client.prepare_index_params()
            index.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
            try:
                client.create_collection(
                    LEASE_COLLECTION, schema=schema, index_params=index, consistency_level="Strong", timeout=timeout
                )
            except Exception:  # another contender created it first (Lite says so; a server does not)
                if not client.has_collection(LEASE_COLLECTION, timeout=timeout):
                    raise
        load_timeout = max(timeout, LOAD_TIMEOUT)
        self._call(lambda: client.load_collection(LEASE_COLLECTION, timeout=load_timeout), "load_collection")

    def _write(self, now_ms: int) -> None:
        row = {
            "id": self.token, "target": self.target, "scope": self.scope, "holder": self.holder[:512],
            "acquired_ms": self.acquired_ms or now_ms, "expires_ms": now_ms + self.ttl_ms, "vector": [1.0, 0.0],
        }
        self._call(lambda: self.store.client.upsert(LEASE_COLLECTION, [row], timeout=self.store.settings.timeout), "upsert")

    def _rows(self, filter_expr: str) -> list[dict[str, Any]]:
        return self._call(
            lambda: self.store.client.query(
                LEASE_COLLECTION, filter=filter_expr, output_fields=FIELDS, consistency_level="Strong",
                timeout=self.store.settings.timeout,
            ),
            "query",
        )

    def _delete(self, ids: list[str]) -> None:
        if ids:
            self._call(lambda: self.store.client.delete(LEASE_COLLECTION, ids=ids, timeout=self.store.settings.timeout), "delete")

    # -- acquire, renew, release --------------------------------------------------------
    def acquire(self) -> WriteLease:
        self._ensure_collection()
        deadline = time.monotonic() + self.wait
        attempt = 0
        while True:
            attempt += 1
            now = _now_ms()
            self._write(now)
            others = [r for r in self._rows(f"target == {escape_string(self.target)}") if r["id"] != self.token]
            with _HELD_LOCK:
                dead = [r["id"] for r in others if r["expires_ms"] < now or _ours_released(r["id"])]
            self._delete(dead)  # holders that stopped renewing (killed, cut off), or our own leftovers
            blocking = [r for r in others if r["id"] not in dead and scopes_conflict(self.scope, r["scope"])]
            if not blocking:
                with _HELD_LOCK:
                    _HELD.add(self.token)
                self.acquired_ms, self.expires_ms = now, now + self.ttl_ms  # as written above
                self._thread = threading.Thread(target=self._renew_loop, name="milvus-write-lease", daemon=True)
                self._thread.start()
                return self
            self._delete([self.token])
            left = deadline - time.monotonic()
            if left <= 0 and attempt >= MIN_ATTEMPTS:
                raise self._busy(blocking, now)
            pause = random.uniform(0.1, 0.5) * min(attempt, 6)
            time.sleep(min(pause, left) if left > 0 else random.uniform(0.05, 0.3))

    def _busy(self, blocking: list[dict[str, Any]], now: int) -> CollectionBusyError:
        first = min(blocking, key=lambda r: r["acquired_ms"])
        scope = "" if first["scope"] == "all" else f" (shard {first['scope']})"
        return CollectionBusyError(
            f"collection {self.target!r} is being written by another ingest{scope}: {first['holder']}, since "
            f"{_when(first['acquired_ms'])}, lease renewed until {_when(first['expires_ms'])} "
            f"(it expires {max(0, first['expires_ms'] - now) // 1000} s after a crash); rerun later, or wait for it "
            f"with --wait SECONDS (milvus.lock_wait_seconds)"
        )

    def _renew_loop(self) -> None:
        period = self.ttl_ms / 3000
        while not self._stop.wait(period):
            now = _now_ms()
            if now >= self.expires_ms:
                self.lost = f"not renewed before it expired at {_when(self.expires_ms)}"
                return
            try:
                mine = self._rows(f"id == {escape_string(self.token)}")
                if not mine:
                    self.lost = "its row was removed by another ingest (it had expired there)"
                    return
                self._write(now)
                self.expires_ms = now + self.ttl_ms
            except StoreError as exc:  # try again next period, while the lease still runs
                log.warning("write lease of %r not renewed: %s", self.target, exc)

    def check(self) -> None:
        """Raise ``LeaseLostError`` if the lease could not be kept: stop before writing more."""
        if self.lost or (self.expires_ms and _now_ms() >= self.expires_ms):
            reason = self.lost or f"not renewed before it expired at {_when(self.expires_ms)}"
            raise LeaseLostError(
                f"the write lease of collection {self.target!r} was lost ({reason}): stopped before writing more; "
                "rerun (what was written converges)"
            )

    def release(self) -> None:
        with _HELD_LOCK:
            _HELD.discard(self.token)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._delete([self.token])
        except StoreError as exc:  # it expires on its own
            log.warning("write lease of %r not released (it expires in %d s): %s", self.target, self.ttl_ms // 1000, exc)


def _ours_released(token: str) -> bool:
    return token.startswith(_PROCESS) and token not in _HELD


def acquire_lease(store: Any, shard: tuple[int, int] | None = None) -> WriteLease | NoLease:
    """The write lease for a run on ``store`` (none on an embedded Milvus Lite folder)."""
    if store.settings.is_lite:
        return NoLease()
    scope = f"{shard[0]}/{shard[1]}" if shard else "all"
    return WriteLease(store, scope).acquire()
