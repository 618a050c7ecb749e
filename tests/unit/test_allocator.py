"""glibc keeps the encoder's freed memory for the next batch instead of faulting it in again.

Each check runs in a new interpreter: the settings are process-wide and one-way.  The pattern is
what a batch does: many blocks of a megabyte live at once (a layer's tensors), then all freed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from milvus_ingest.encoders import allocator

REPO = Path(__file__).resolve().parents[2]
REPEATS = 5
BLOCKS = 40  # live blocks of 1 MiB per repeat: 10,240 pages that glibc trims and faults again

PROBE = f"""
import json, resource
import numpy as np
from milvus_ingest.encoders.allocator import keep_freed_memory
set_now = keep_freed_memory()
def batch():
    blocks = [np.ones(1 << 20, np.uint8) for _ in range({BLOCKS})]
    del blocks
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({REPEATS}):
    batch()
print(json.dumps({{"set": set_now, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}}))
"""

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in allocator.USER_TUNABLES and k != allocator.OPT_OUT}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_freed_batch_memory_is_reused_not_faulted_in_again():
    untouched = _probe(**{allocator.OPT_OUT: "0"})
    tuned = _probe()
    pages = REPEATS * BLOCKS * 256  # 4 KiB pages the repeats touch
    assert untouched == {"set": False, "faults": untouched["faults"]}
    # The control: glibc's defaults fault most of those pages in again (how many varies with the
    # kernel's own memory work: 42-100% seen), the tuned allocator almost none.
    assert untouched["faults"] >= pages // 10, untouched
    assert tuned["set"] is True
    assert tuned["faults"] <= pages // 50, tuned


@glibc_only
@pytest.mark.parametrize("variable", ["GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_"])
def test_an_owners_own_malloc_tunables_are_left_alone(variable):
    value = "glibc.malloc.trim_threshold=131072" if variable == "GLIBC_TUNABLES" else "131072"
    assert _probe(**{variable: value})["set"] is False


def test_the_torchscript_engine_sets_it_when_it_loads(monkeypatch, tmp_path):
    from milvus_ingest.encoders import torchscript_engine

    calls: list[bool] = []
    monkeypatch.setattr(torchscript_engine, "keep_freed_memory", lambda: calls.append(True) or True)
    monkeypatch.setattr(torchscript_engine.ExportedEncoder, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(torchscript_engine.TorchScriptEncoder, "_warm_up", lambda self: None)
    torchscript_engine.TorchScriptEncoder(tmp_path, "fp32", cache_dir=tmp_path)
    assert calls == [True]
