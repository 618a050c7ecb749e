"""What this machine's CPU can do, and which encoder engine and precision to use on it.

``cpu_features()`` reads the instruction-set flags at run time (never assume the machine that
built or tested the code: some of ours have AVX-512 with BF16 and VNNI, others AVX2 only).
``choose_engine()`` is a pure function of those flags, the GPU's presence and measured quality,
so the rule is unit-tested with mocked machines.  This module must never import torch itself
nor run a model; it only reads torch's answer when torch is already imported.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

#: The flags that matter to the engine choice, as /proc/cpuinfo spells them.
KNOWN_FLAGS = frozenset(
    {
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx_vnni",
        "avx512_bf16",
        "amx_bf16",
        "amx_int8",
        "amx_tile",
    }
)
_VNNI = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
#: Retrieval tolerance: int8 is used only if it costs at most this much nDCG@10 against fp32.
NDCG_TOLERANCE = 0.005
#: Without a retrieval measurement, int8 needs at least this cosine agreement with fp32 on the
#: reference pairs.  Calibration: torch bf16 on all-MiniLM-L6-v2 agreed with fp32 at cosine min
#: 0.9965 and cost 0.0028 nDCG@10 on the held-out FAQ set (within NDCG_TOLERANCE); int8 at mean
#: 0.991 / min 0.980 had no retrieval measurement.  So only agreement at least as close as bf16's
#: measured one is taken as proof.
COSINE_MIN_BOUND = 0.995
COSINE_MEAN_BOUND = 0.998


def _proc_flags(cpuinfo: Path) -> set[str]:
    for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def _fallback_flags() -> set[str]:
    """Non-Linux: torch's own capability probe if torch is loaded anyway, else the architecture."""
    torch = sys.modules.get("torch")
    if torch is not None:
        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
        if capability.startswith("AVX512"):
            return {"avx2", "avx512f"}
        if capability == "AVX2":
            return {"avx2"}
    if platform.machine().lower() in {"arm64", "aarch64"}:
        return {"neon"}
    return set()


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of ``KNOWN_FLAGS`` (plus ``neon`` on ARM) this CPU reports."""
    path = Path(cpuinfo)
    try:
        flags = _proc_flags(path)
    except OSError:
        flags = set()
    if not flags:
        return _fallback_flags()
    return (flags & KNOWN_FLAGS) | ({"neon"} if {"asimd", "neon"} & flags else set())


def int8_scheme(features: set[str]) -> str:
    """ONNX Runtime int8 weight scheme: signed weights where VNNI/AMX does u8×s8 natively."""
    return "s8" if features & _VNNI else "u8"


def _int8_verdict(quality: dict[str, float] | None) -> tuple[bool, str]:
    """Whether int8 is proven good enough, and the evidence, from measured figures."""
    quality = quality or {}
    if "int8_ndcg_delta" in quality:
        delta = float(quality["int8_ndcg_delta"])
        return delta <= NDCG_TOLERANCE, f"int8 nDCG@10 delta {delta:+.4f} (tolerance {NDCG_TOLERANCE})"
    if "int8_cosine_min" in quality and "int8_cosine_mean" in quality:
        low, mean = float(quality["int8_cosine_min"]), float(quality["int8_cosine_mean"])
        ok = low >= COSINE_MIN_BOUND and mean >= COSINE_MEAN_BOUND
        return (
            ok,
            f"int8 cosine to fp32 min {low:.4f} / mean {mean:.4f} (bounds {COSINE_MIN_BOUND}/{COSINE_MEAN_BOUND})",
        )
    return False, "no int8 quality measurement"


def choose_engine(features: set[str], has_gpu: bool, quality: dict[str, float] | None = None) -> tuple[str, str, str]:
    """``(backend, precision, reason)``: ``torch`` fp16/bf16, or ``onnx`` int8/fp32.

    ``quality`` holds the model's measured int8 figures: ``int8_ndcg_delta`` (fp32 minus int8
    nDCG@10, preferred) or ``int8_cosine_min`` + ``int8_cosine_mean`` (agreement with fp32 on the
    reference pairs).
    """
    if has_gpu:
        return "torch", "fp16", "GPU present: torch fp16"
    native_bf16 = sorted(features & _BF16)
    if native_bf16:
        return "torch", "bf16", f"CPU has native bf16 ({', '.join(native_bf16)}): torch bf16"
    ok, evidence = _int8_verdict(quality)
    if ok:
        return "onnx", "int8", f"no native bf16; {evidence}: ONNX Runtime int8 ({int8_scheme(features)} weights)"
    return "onnx", "fp32", f"no native bf16; {evidence}: ONNX Runtime fp32"
