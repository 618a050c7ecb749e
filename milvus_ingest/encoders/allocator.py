"""Keep freed memory for the next batch: glibc's malloc settings for torch on a CPU.

Every batch allocates its activations and attention scores afresh (megabytes to tens of
megabytes per layer) and frees them at its end.  glibc serves a block over its mmap threshold
(dynamic, 128 KiB rising to at most 32 MiB) with a fresh ``mmap`` and unmaps it when freed, and
hands the heap's free top back to the kernel above its trim threshold, so the next batch, whose
shapes differ, page-faults all of that memory in again.  Measured on a 2-core AMD EPYC
(all-MiniLM-L6-v2, bf16 TorchScript, 3,047 chunks): 2.3-5.7 million minor faults and 4-10 s of
system time per encode; with the settings below 0.06-0.2 million and 0.1-0.5 s, and the whole
ingest went from 0.76x to 0.85x of the raw encode (docs/engines.md).  ONNX Runtime keeps its own
arena and does not fault like this.

The settings are process-wide and one-way: memory freed by the encoder stays in the process for
reuse (its RSS stays near its peak instead of falling between batches).  A process whose owner
set glibc's malloc tunables (``GLIBC_TUNABLES``, ``MALLOC_*_`` variables) keeps them, and
``MILVUS_INGEST_MALLOC_TUNING=0`` leaves glibc alone.  Off glibc (macOS, musl) nothing happens.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: glibc's ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap and are reused: glibc's own upper limit for the
#: mmap threshold (it refuses more on 64-bit).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the heap's top is kept up to this size (a batch's working set fits under it).
TRIM_THRESHOLD = 1024 * 1024 * 1024

#: Environment variables through which an owner tunes glibc's malloc themselves.
USER_TUNABLES = ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
OPT_OUT = "MILVUS_INGEST_MALLOC_TUNING"

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are (now) set.

    False where they are left as they were: not Linux/glibc, the owner's tunables, the opt-out."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT, "").strip().lower() in ("0", "false", "no"):
        return False
    if any(name in os.environ for name in USER_TUNABLES):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl or another libc: no glibc mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
