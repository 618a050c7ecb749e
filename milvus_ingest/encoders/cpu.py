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
#: Speed differences below this share are run-to-run noise on a shared box: ONNX fp32 within it
#: counts as "as fast as torch fp32", and then wins, since it starts without importing torch.
SPEED_NOISE = 0.05


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


def ndcg_evidence(precision: str, loss: float) -> str:
    """The measured worst nDCG@10 loss to fp32 in words (a signed "delta" read as a gain)."""
    if loss > 0:
        return f"{precision} loses {loss:.4f} nDCG@10 to fp32 at worst (tolerance {NDCG_TOLERANCE})"
    better = f"{-loss:.4f} better at worst; " if loss < 0 else ""
    return f"{precision} loses no nDCG@10 to fp32 ({better}tolerance {NDCG_TOLERANCE})"


def int8_verdict(quality: dict[str, float] | None) -> tuple[bool, str]:
    """Whether int8 is proven good enough, and the evidence, from measured figures."""
    quality = quality or {}
    if "int8_ndcg_delta" in quality:
        delta = float(quality["int8_ndcg_delta"])
        return delta <= NDCG_TOLERANCE, ndcg_evidence("int8", delta)
    if "int8_cosine_min" in quality and "int8_cosine_mean" in quality:
        low, mean = float(quality["int8_cosine_min"]), float(quality["int8_cosine_mean"])
        ok = low >= COSINE_MIN_BOUND and mean >= COSINE_MEAN_BOUND
        return (
            ok,
            f"int8 cosine to fp32 min {low:.4f} / mean {mean:.4f} (bounds {COSINE_MIN_BOUND}/{COSINE_MEAN_BOUND})",
        )
    return False, "no int8 quality measurement"


def half_verdict(precision: str, quality: dict[str, float] | None) -> tuple[bool, str]:
    """bf16/fp16 are allowed unless a measurement shows they lose more than the tolerance."""
    key = f"{precision}_ndcg_delta"
    if quality and key in quality:
        delta = float(quality[key])
        return delta <= NDCG_TOLERANCE, ndcg_evidence(precision, delta)
    return True, f"{precision} not measured on this model"


def _faster(speed: dict[str, float] | None, one: str, other: str) -> bool | None:
    """Whether engine ``one`` measured faster than ``other`` on this CPU class (None: unmeasured)."""
    if not speed or one not in speed or other not in speed:
        return None
    return float(speed[one]) > float(speed[other])


def _speed_note(speed: dict[str, float] | None, *engines: str) -> str:
    known = [f"{e} {float(speed[e]):.2f}×" for e in engines if speed and e in speed]
    return f" (measured × torch fp32 here: {', '.join(known)})" if known else ""


def choose_engine(
    features: set[str],
    has_gpu: bool,
    quality: dict[str, float] | None = None,
    speed: dict[str, float] | None = None,
    gpu_bf16: bool = False,
) -> tuple[str, str, str]:
    """``(backend, precision, reason)``: ``torch`` fp16/bf16/fp32, or ``onnx`` int8/fp32.

    ``quality`` holds the model's measured figures: ``int8_ndcg_delta`` (fp32 minus int8
    nDCG@10, the worst over the evaluation sets; preferred) or ``int8_cosine_min`` +
    ``int8_cosine_mean`` (agreement with fp32 on the reference pairs), and ``bf16_ndcg_delta`` /
    ``fp16_ndcg_delta``.  int8 needs proof; bf16/fp16 are refused only by a bad measurement.
    ``speed`` holds measured speed-ups over torch fp32 on this CPU class (keys ``torch-bf16``,
    ``onnx-int8``, ``onnx-fp32``): where both bf16 and int8 qualify, the faster measured one wins,
    and without a measurement bf16 does.  ``gpu_bf16``: the GPU computes bf16 (else fp16).
    """
    if has_gpu:
        half = "bf16" if gpu_bf16 else "fp16"
        ok, evidence = half_verdict(half, quality)
        if ok:
            return "torch", half, f"GPU present ({evidence}): torch {half}"
        return "torch", "fp32", f"GPU present; {evidence}: torch fp32"
    native_bf16 = sorted(features & _BF16)
    int8_ok, int8_evidence = int8_verdict(quality)
    scheme = int8_scheme(features)
    if native_bf16:
        bf16_ok, bf16_evidence = half_verdict("bf16", quality)
        where = f"CPU has native bf16 ({', '.join(native_bf16)})"
        if int8_ok and (not bf16_ok or _faster(speed, "onnx-int8", "torch-bf16")):
            why = bf16_evidence if not bf16_ok else "int8 measured faster than bf16"
            return (
                "onnx",
                "int8",
                f"{where}; {int8_evidence}; {why}{_speed_note(speed, 'onnx-int8', 'torch-bf16')}: "
                f"ONNX Runtime int8 ({scheme} weights)",
            )
        if bf16_ok:
            return "torch", "bf16", f"{where} ({bf16_evidence}; {int8_evidence}){_speed_note(speed, 'torch-bf16', 'onnx-int8')}: torch bf16"
        int8_evidence = f"{bf16_evidence}; {int8_evidence}"
    elif int8_ok:
        return "onnx", "int8", f"no native bf16; {int8_evidence}: ONNX Runtime int8 ({scheme} weights)"
    if speed and float(speed.get("onnx-fp32", 1.0)) < 1.0 - SPEED_NOISE:
        return "torch", "fp32", f"{int8_evidence}; ONNX fp32 measured slower than torch fp32 here: torch fp32"
    prefix = "no native bf16; " if not native_bf16 else ""
    return "onnx", "fp32", f"{prefix}{int8_evidence}: ONNX Runtime fp32 (as fast as torch fp32, no torch import)"


def cpu_class(features: set[str]) -> str:
    """The class of CPU a speed measurement stands for: which kernels the engines get on it."""
    if features & {"amx_bf16", "amx_int8"}:
        return "amx"
    if features & _BF16 and features & _VNNI:
        return "avx512_bf16+vnni"
    if features & _VNNI:
        return "vnni"
    if "avx512f" in features:
        return "avx512"
    if "avx2" in features:
        return "avx2"
    return "neon" if "neon" in features else "other"
