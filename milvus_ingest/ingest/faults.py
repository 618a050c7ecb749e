"""Fault injection at named points of a run, so tests prove recovery from real signals.

``FLOWS_CRASH_AT=point:N`` sends SIGKILL to this process at the Nth time ``point`` is reached
(what a user's ``kill -9`` or an OOM kill does); ``FLOWS_SIGNAL_AT=point:N:SIGTERM`` sends that
signal instead (what ``kill``, Ctrl-C or a scheduler's stop does).  The points: ``planned``,
``encode``, ``after_upsert``, ``between_batches``, ``after_delete``.  Costs one dict lookup when
neither variable is set.  This module must never be used for anything but tests.
"""

from __future__ import annotations

import os
import signal

_HITS: dict[tuple[str, str], int] = {}


def fault_point(name: str) -> None:
    """Kill or signal this process here when a test asked for it (see the module docstring)."""
    for variable, default_signal in (("FLOWS_CRASH_AT", "SIGKILL"), ("FLOWS_SIGNAL_AT", "SIGTERM")):
        spec = os.environ.get(variable)
        if not spec:
            continue
        target, _, rest = spec.partition(":")
        if target != name:
            continue
        count, _, signal_name = rest.partition(":")
        key = (variable, name)
        _HITS[key] = _HITS.get(key, 0) + 1
        if _HITS[key] == int(count or 1):
            os.kill(os.getpid(), getattr(signal, signal_name or default_signal))
