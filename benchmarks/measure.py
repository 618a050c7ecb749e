"""Measuring tools the benchmarks share: wall/CPU timers, peak-RSS sampling, machine facts, tables.

Peak RSS is sampled (psutil when installed, else ``/proc``) so that a phase's peak is its own,
not the process's lifetime maximum; a child process's peak comes from sampling its whole tree.
This module must never import torch, sentence-transformers, pymilvus or Prefect: the benchmarks
time those imports and loads themselves.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1 << 20


def _rss_of(pid: int) -> int:
    """Resident bytes of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except Exception:  # noqa: BLE001 - no psutil, or the process ended
        return 0


def _high_water_of(pid: int) -> int:
    """The kernel's peak resident bytes of one process so far (``VmHWM``; 0 when unknown)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children_of(pid: int) -> list[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # noqa: BLE001
        pass
    try:  # Linux without psutil: direct children are enough for `python -m ...`
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            return [int(x) for x in handle.read().split()]
    except OSError:
        return []


class RssSampler:
    """Samples the resident memory of a process (and, optionally, its children) in a thread.

    ``peak`` is the largest sum seen; ``peak_own`` the largest for the process alone.  A sample
    every ``interval`` seconds misses spikes shorter than that, which is fine for the slow
    growth these benchmarks look for.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.05, children: bool = False):
        self.pid = pid or os.getpid()
        self.interval = interval
        self.children = children
        self.peak = 0
        self.peak_own = 0
        #: Peak RSS of the process alone as the kernel counts it (exact, not sampled).
        self.high_water = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        own = _rss_of(self.pid)
        total = own + (sum(_rss_of(c) for c in _children_of(self.pid)) if self.children else 0)
        self.peak_own = max(self.peak_own, own)
        self.high_water = max(self.high_water, _high_water_of(self.pid), own)
        self.peak = max(self.peak, total)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def peak_mib(self) -> float:
        return self.peak / MIB


@dataclass
class Phase:
    """Wall seconds, process CPU seconds and peak RSS of one measured phase."""

    wall: float = 0.0
    cpu: float = 0.0
    peak_rss_mib: float = 0.0
    load_avg: float = 0.0

    @property
    def cpu_share(self) -> float:
        """Cores kept busy on average (CPU seconds / wall seconds)."""
        return self.cpu / self.wall if self.wall > 0 else 0.0


@contextmanager
def measure() -> Iterator[Phase]:
    """``with measure() as phase:`` fills ``phase`` with wall, CPU and peak RSS on exit."""
    phase = Phase()
    sampler = RssSampler()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    with sampler:
        try:
            yield phase
        finally:
            phase.wall = time.perf_counter() - wall0
            phase.cpu = time.process_time() - cpu0
    phase.peak_rss_mib = sampler.peak_mib
    phase.load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); else torch emulates it."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def machine_info() -> dict[str, Any]:
    """Facts a reader needs to judge a figure: CPU, cores, memory, load, GPU, versions."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    flags = cpu_flags()
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "simd": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "python": platform.python_version(),
    }
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10,
            check=False,
        )
        info["gpu"] = gpu.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["gpu"] = None
    return info


def describe_machine(info: dict[str, Any]) -> str:
    gpu = info.get("gpu") or "no GPU"
    return (
        f"{info['cores']}-core {info['machine']} ({info['cpu']}, {', '.join(info['simd']) or 'no AVX2'}), "
        f"{info['memory_gib']:.0f} GiB, {gpu}, load average {info['load_avg_1m_at_start']} at start"
    )


def format_rows(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, right-aligned numbers; also valid Markdown."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(values, widths)]
        return "| " + " | ".join(parts) + " |"

    out = [line(list(headers)), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"
    return str(value)


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(".", "", 1).replace("×", "").replace("%", "").lstrip("-").isdigit()


def note(message: str) -> None:
    """Progress lines go to stderr, so stdout carries only the result table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Result:
    """One row of a benchmark table, kept as plain data for the JSON."""

    name: str
    chunks: int
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: float = 0.0
    cpu_share: float = 0.0
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_share * self.seconds

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "cpu_share": round(self.cpu_share, 2),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "threads": self.threads,
            **self.extra,
        }


def stop_process(process: "subprocess.Popen[bytes] | subprocess.Popen[str] | None", grace: float = 30) -> None:
    """Stop a helper server this benchmark started: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
