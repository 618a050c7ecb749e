"""Which encoder engine runs, and building it: one small interface over torch and ONNX Runtime.

An engine has ``backend``, ``precision``, ``device``, ``dim``, ``max_seq_length``, ``tokenizer``
and ``encode_array(texts, instruction)`` → ``(n, dim)`` float32 L2-normalised rows, with the
instruction excluded from pooling: torch (on a CPU ``torchscript_engine.TorchScriptEncoder``, a
cached trace that starts without sentence-transformers, fp32 or bf16; on a GPU, or for a model the
trace does not reproduce, ``torch_engine.TorchEngine``: sentence-transformers, fp32/fp16/bf16) or
``onnx_engine.OnnxEncoder`` (ONNX Runtime on the CPU; fp32, int8).

``decide_engine`` turns ``model.backend`` / ``model.precision`` / ``model.device`` into an
``EngineChoice`` with its reason: ``auto`` follows ``cpu.choose_engine`` on this machine's CPU
flags, its GPU and the model's measured figures (``measured``).  Questions (the search) get the
documents' engine on this CPU when that is ONNX Runtime (the quality guard measured documents
and questions encoded alike), and ONNX fp32 where documents would run on torch: a search must
not pay seconds of torch import for one question.  ``combo_problem`` is the static check the
config runs.  This module must never import torch except to ask whether a GPU is there (only
where the machine shows signs of one) or to build the torch engine.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from milvus_ingest.encoders.cpu import (
    SPEED_NOISE,
    choose_engine,
    cpu_features,
    half_verdict,
    int8_scheme,
    int8_verdict,
)
from milvus_ingest.encoders.measured import quality_for, speed_for
from milvus_ingest.errors import ModelError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
#: Files whose presence says a GPU driver is installed; without any, ``device: auto`` never
#: imports torch to ask (that import alone costs seconds).
_GPU_SIGNS = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd")


class Engine(Protocol):
    backend: str
    precision: str
    device: str
    batch_size: int

    @property
    def dim(self) -> int: ...

    @property
    def max_seq_length(self) -> int: ...

    @property
    def tokenizer(self) -> Any: ...

    def encode_array(self, texts: list[str], instruction: str) -> np.ndarray: ...


@dataclass(frozen=True)
class EngineChoice:
    """The engine to build, and why; ``as_dict`` is what the run summary shows."""

    backend: str
    precision: str
    reason: str
    cpu_features: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"backend": self.backend, "precision": self.precision, "reason": self.reason}
        if self.precision == "int8":
            data["int8_weights"] = int8_scheme(set(self.cpu_features))
        data["cpu_features"] = list(self.cpu_features)
        return data


def _is_gpu_device(device: str) -> bool:
    return device == "mps" or device.startswith("cuda")


def combo_problem(backend: str, precision: str, device: str) -> str | None:
    """What is wrong with this backend/precision/device combination, in one line, or None."""
    if backend not in BACKENDS:
        return f"model.backend {backend!r} is not one of {', '.join(BACKENDS)}"
    if precision not in PRECISIONS:
        return f"model.precision {precision!r} is not one of {', '.join(PRECISIONS)}"
    if precision == "int8" and backend == "torch":
        return "model.precision int8 runs on the ONNX engine only: set model.backend to onnx or auto"
    if precision in ("fp16", "bf16") and backend == "onnx":
        return (
            f"the ONNX engine runs fp32 or int8, not {precision}: set model.precision to fp32, int8 or auto, "
            f"or model.backend to torch"
        )
    if (backend == "onnx" or precision == "int8") and _is_gpu_device(device):
        return f"the ONNX engine runs on the CPU, not {device}: set model.device to cpu or auto, or model.backend to torch"
    if precision == "fp16" and device == "cpu":
        return "model.precision fp16 needs a GPU (device cuda, mps or auto): on a CPU use bf16, int8 or auto"
    return None


def gpu_info(device: str) -> tuple[bool, bool]:
    """``(a GPU will run torch, it computes bf16)`` for ``model.device``, importing torch only if needed."""
    if device == "cpu":
        return False, False
    if device == "auto" and sys.platform != "darwin" and not any(os.path.exists(p) for p in _GPU_SIGNS):
        return False, False
    import torch

    if device in ("auto", "cuda") or device.startswith("cuda:"):
        if torch.cuda.is_available():
            return True, bool(torch.cuda.is_bf16_supported())
        if device != "auto":
            raise ModelError(f"device {device!r} asked for but no CUDA GPU is visible (use device: auto)")
    mps = getattr(torch.backends, "mps", None)
    if device in ("auto", "mps") and mps is not None and mps.is_available():
        return True, False
    if device == "mps":
        raise ModelError("device 'mps' asked for but Apple's Metal backend is not available (use device: auto)")
    return False, False


def _torch_auto(features: set[str], gpu: tuple[bool, bool], quality: dict[str, float]) -> tuple[str, str]:
    """torch's own best precision: bf16/fp16 on a GPU, bf16 on native-bf16 CPUs, else fp32."""
    backend, precision, reason = choose_engine(features, gpu[0], quality, None, gpu[1])
    if backend == "torch":
        return precision, reason
    bf16_ok, evidence = half_verdict("bf16", quality)
    if features & {"avx512_bf16", "amx_bf16"} and bf16_ok:
        return "bf16", f"model.backend torch; CPU has native bf16 ({evidence}): torch bf16"
    return "fp32", "model.backend torch; no native bf16 on this CPU: torch fp32"


def decide_engine(
    model_name: str,
    backend: str = "auto",
    precision: str = "auto",
    device: str = "auto",
    for_queries: bool = False,
    features: set[str] | None = None,
    gpu: tuple[bool, bool] | None = None,
) -> EngineChoice:
    """The engine for this model here; ``features`` / ``gpu`` replace this machine's (tests)."""
    problem = combo_problem(backend, precision, device)
    if problem:
        raise ModelError(problem)
    feats = cpu_features() if features is None else set(features)
    flags = tuple(sorted(feats))

    def chosen(b: str, p: str, reason: str) -> EngineChoice:
        return EngineChoice(b, p, reason, flags)

    quality = quality_for(model_name, feats)
    if for_queries and backend != "torch" and precision in ("auto", "fp32", "int8") and not _is_gpu_device(device):
        documents = decide_engine(model_name, backend, precision, "cpu", False, feats, (False, False))
        if documents.backend == "onnx":  # the documents' engine on this CPU: measured as one system
            return chosen("onnx", documents.precision, f"questions: as documents here ({documents.reason})")
        return chosen(
            "onnx", "fp32",
            f"questions: ONNX Runtime fp32, starts without torch (documents here: torch {documents.precision})",
        )
    if precision == "int8" or (backend == "onnx" and precision != "fp32"):
        ok, evidence = int8_verdict(quality)
        if precision == "int8" or ok:
            asked = "model.precision int8" if precision == "int8" else f"model.backend onnx; {evidence}"
            return chosen("onnx", "int8", f"{asked}: ONNX Runtime int8 ({int8_scheme(feats)} weights)")
        return chosen("onnx", "fp32", f"model.backend onnx; {evidence}: ONNX Runtime fp32")
    if backend == "onnx":
        return chosen("onnx", "fp32", "model.backend onnx, model.precision fp32: ONNX Runtime fp32")
    on_gpu = gpu if gpu is not None else gpu_info(device)
    if precision == "fp16" and not on_gpu[0]:
        raise ModelError(f"model.precision fp16 needs a GPU and none is visible (device {device}): use bf16, int8 or auto")
    if precision in ("fp16", "bf16"):
        emulated = precision == "bf16" and not on_gpu[0] and not feats & {"avx512_bf16", "amx_bf16"}
        note = " (this CPU has no AVX512-BF16/AMX: torch emulates bf16, slower than fp32)" if emulated else ""
        if emulated:
            log.warning("model.precision bf16 on a CPU without native bf16: expect it to be slower than fp32")
        return chosen("torch", precision, f"model.precision {precision}: torch {precision}{note}")
    if backend == "torch":
        if precision == "fp32":
            return chosen("torch", "fp32", "model.backend torch, model.precision fp32: torch fp32")
        return chosen("torch", *_torch_auto(feats, on_gpu, quality))
    speed = speed_for(model_name, feats)
    if precision == "fp32":
        if on_gpu[0]:
            return chosen("torch", "fp32", "model.precision fp32; GPU present: torch fp32")
        if float(speed.get("onnx-fp32", 1.0)) < 1.0 - SPEED_NOISE:
            return chosen("torch", "fp32", "model.precision fp32; ONNX fp32 measured slower than torch fp32 here")
        return chosen("onnx", "fp32", "model.precision fp32: ONNX Runtime fp32 (as fast as torch fp32, no torch import)")
    return chosen(*choose_engine(feats, on_gpu[0], quality, speed, on_gpu[1]))


def export_problem(path: str | Path) -> str | None:
    """Why the exported engines (ONNX, the TorchScript trace) cannot run this model folder (its
    layout check), or None."""
    from milvus_ingest.encoders.layout import read_layout

    try:
        read_layout(path)
    except ModelError as exc:
        return str(exc)
    return None


def build_engine(
    choice: EngineChoice,
    path: str,
    batch_size: int = 32,
    device: str = "auto",
    normalize_embeddings: bool = True,
    threads: int = 0,
    cache_dir: str | Path | None = None,
    label: str = "",
    workers: int = 0,
    **kwargs: Any,
) -> Engine:
    """The engine ``choice`` names, loaded from the local model folder ``path``; ``workers``
    (batches at a time) is the TorchScript engine's only."""
    if choice.backend == "onnx":
        if kwargs:
            raise ModelError(
                f"{', '.join(sorted(kwargs))}: sentence-transformers options, which the ONNX engine does not take "
                "(pass backend='torch')"
            )
        from milvus_ingest.encoders.onnx_engine import OnnxEncoder

        return OnnxEncoder(
            path, choice.precision, threads=threads, batch_size=batch_size, cache_dir=cache_dir,
            normalize=normalize_embeddings,
        )
    if not kwargs and choice.precision in ("fp32", "bf16") and not gpu_info(device)[0]:
        engine = _torchscript_engine(choice, path, batch_size, normalize_embeddings, threads, cache_dir, label, workers)
        if engine is not None:
            return engine
    from milvus_ingest.encoders.torch_engine import TorchEngine

    return TorchEngine(
        path, choice.precision, device, batch_size, normalize_embeddings, threads, label=label, **kwargs
    )


def _torchscript_engine(
    choice: EngineChoice, path: str, batch_size: int, normalize: bool, threads: int,
    cache_dir: str | Path | None, label: str, workers: int = 0,
) -> Engine | None:
    """torch on a CPU as a cached TorchScript trace (starts without sentence-transformers), or
    None where the model's layout is not one the trace reproduces or the trace cannot be made:
    then sentence-transformers runs it, as it always did."""
    problem = export_problem(path)
    if problem:
        log.info("model %s runs on sentence-transformers: %s", label or path, problem)
        return None
    from milvus_ingest.encoders.torchscript_engine import TorchScriptEncoder

    try:
        return TorchScriptEncoder(path, choice.precision, threads, batch_size, cache_dir, normalize, workers)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model the tracer cannot handle still runs, on ST
        log.warning("model %s could not be traced for TorchScript (%s): running it on sentence-transformers",
                    label or path, exc)
        return None
