"""bf16 / fp16 against fp32: speed on the same sample of chunks, and how closely the vectors agree.

Each precision is a fresh ``InstructorEmbeddingFunction(precision=…)`` on the same device, so
this measures what ``model.precision`` in the config gives a user.  Agreement is the cosine of
each reduced-precision row with its fp32 row (1.0 = identical direction).  On a CPU without
AVX512-BF16 or AMX, torch emulates bf16 and it is *slower* than fp32: the report says so.
This module must never change the model a caller passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.measure import cpu_has_fast_bf16, measure, note


def sample_texts(texts: Sequence[str], size: int) -> list[str]:
    """An evenly spread, deterministic sample (long and short chunks alike)."""
    if size <= 0 or not texts:
        return []
    step = max(1, len(texts) // size)
    return list(texts[::step][:size])


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("ij,ij->i", a, b) / np.where(norms > 0, norms, 1.0)


def compare_precisions(ef: Any, model_settings: Any, texts: Sequence[str], precisions: Sequence[str] = ("bf16", "fp16")) -> list[dict[str, Any]]:
    """fp32 (``ef`` itself) and each reduced precision on ``texts``: seconds, rows/s, cosine."""
    import torch

    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    texts = list(texts)
    if not texts:
        return []
    ef.encode_array(texts[:2], ef.doc_instruction)  # warm-up outside the timing
    with measure() as phase:
        reference = ef.encode_array(texts, ef.doc_instruction)
    rows: list[dict[str, Any]] = [{
        "precision": ef.precision, "device": ef.device, "rows": len(texts), "seconds": round(phase.wall, 3),
        "rows_per_second": round(len(texts) / phase.wall, 2) if phase.wall else 0.0,
        "speed_vs_fp32": 1.0, "cosine_min": 1.0, "cosine_mean": 1.0,
    }]
    for precision in precisions:
        if precision == ef.precision:
            continue
        row: dict[str, Any] = {"precision": precision, "device": ef.device, "rows": len(texts)}
        if ef.device == "cpu" and precision == "bf16" and not cpu_has_fast_bf16():
            row["note"] = "this CPU has no AVX512-BF16/AMX: torch emulates bf16"
        if ef.device == "cpu" and precision == "fp16":
            row["note"] = "fp16 on CPU is for checking agreement only; use it on a GPU"
        try:
            other = InstructorEmbeddingFunction(
                model_name=model_settings.name,
                query_instruction=ef.query_instruction,
                doc_instruction=ef.doc_instruction,
                batch_size=ef.batch_size,
                device=ef.device,
                normalize_embeddings=ef.normalize_embeddings,
                precision=precision,
                backend="torch",
                threads=torch.get_num_threads(),  # the caller's setting, not the default
            )
            other.encode_array(texts[:2], other.doc_instruction)
            with measure() as phase:
                vectors = other.encode_array(texts, other.doc_instruction)
            cos = cosine_rows(reference, vectors)
            row.update(
                seconds=round(phase.wall, 3),
                rows_per_second=round(len(texts) / phase.wall, 2) if phase.wall else 0.0,
                speed_vs_fp32=round(rows[0]["seconds"] / phase.wall, 3) if phase.wall else 0.0,
                cosine_min=round(float(cos.min()), 6),
                cosine_mean=round(float(cos.mean()), 6),
            )
            del other
        except Exception as exc:  # noqa: BLE001 - a precision the device cannot run is a finding
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            note(f"{precision}: {row['error']}")
        rows.append(row)
    return rows
