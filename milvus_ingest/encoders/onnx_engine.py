"""Instructor-style sentence embeddings on ONNX Runtime: fast to start, fast on CPUs.

The transformer runs in ONNX Runtime from an export cached by ``milvus_ingest.encoders.export``
(fp32, or int8 by ONNX Runtime's dynamic quantization with the weight scheme this CPU's kernels
want); tokenising, pooling and normalising are ``exported.ExportedEncoder``'s.

Encoding with an already-exported model must never import torch, transformers, onnx or
sentence-transformers (the first export does, in ``torch_export``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from milvus_ingest.encoders import export
from milvus_ingest.encoders.cpu import cpu_features, int8_scheme
from milvus_ingest.encoders.exported import ExportedEncoder
from milvus_ingest.errors import ModelError

PRECISIONS = ("fp32", "int8")


def variant_for(precision: str) -> str:
    """The export cache's name for ``precision`` here: ``fp32``, or int8 with this CPU's weight scheme."""
    return precision if precision == "fp32" else f"int8-{int8_scheme(cpu_features())}"


class OnnxEncoder(ExportedEncoder):
    """``encode_array(texts, instruction)`` → ``(n, dim)`` float32 rows, on ONNX Runtime.

    ``model_path`` is a local sentence-transformers folder (resolve hub ids and ``package://``
    names first); the first use of a model (per precision) exports it, which needs torch.
    ``precision`` is ``fp32`` or ``int8`` (dynamic int8 weights, scheme picked for this CPU);
    ``threads`` is ONNX Runtime's intra-op thread count (0 = its default, every core);
    ``cache_dir`` overrides ``$MILVUS_INGEST_CACHE`` / ~/.cache/milvus_ingest/onnx; ``normalize``
    False leaves rows unnormalised unless the model has a Normalize module (as sentence-transformers).
    """

    backend = "onnx"

    def __init__(
        self,
        model_path: str | Path,
        precision: str = "fp32",
        threads: int = 0,
        batch_size: int = 32,
        cache_dir: str | Path | None = None,
        force_external_data: bool = False,
        normalize: bool = True,
    ):
        if precision not in PRECISIONS:
            raise ModelError(f"ONNX precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        variant = variant_for(precision)
        super().__init__(
            model_path, variant, variant, threads, batch_size, cache_dir, force_external_data, normalize
        )

    def _open(self, entry: export.Entry) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT's optimizer notes are not the user's business
        return ort.InferenceSession(str(entry.model_file), options, providers=["CPUExecutionProvider"])

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self._graph.run(None, feeds)[0]
