"""The torch engine: a sentence-transformers model in fp32, fp16 or bf16, on a CPU or a GPU.

What ``InstructorEmbeddingFunction`` ran before there were engines: the model sees
``instruction + text.strip()`` (sentence-transformers' ``prompt=``) and mean pooling skips the
instruction's tokens (``Pooling(include_prompt=False)``), which reproduces the original
``InstructorEmbedding`` package's vectors (tested to 1e-5).  This module must never pad a batch
beyond its longest item, and never be imported where torch must stay out (the search, the ONNX
engine): it imports torch and sentence-transformers when an engine is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from milvus_ingest.encoders.allocator import keep_freed_memory
from milvus_ingest.errors import ModelError

PRECISIONS = ("fp32", "fp16", "bf16")


def pick_device(device: str) -> str:
    """``auto`` means the fastest device present: cuda, then Apple's mps, then cpu."""
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {device!r} asked for but no CUDA GPU is visible (use device: auto)")
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


class TorchEngine:
    """``encode_array(texts, instruction)`` → ``(n, dim)`` float32 rows, on sentence-transformers.

    ``threads`` sets torch's intra-op threads (0 keeps torch's default); ``kwargs`` go to
    ``SentenceTransformer``.
    """

    backend = "torch"

    def __init__(
        self,
        path: str,
        precision: str = "fp32",
        device: str = "auto",
        batch_size: int = 32,
        normalize_embeddings: bool = True,
        threads: int = 0,
        label: str = "",
        **kwargs: Any,
    ):
        if precision not in PRECISIONS:
            raise ModelError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)} (torch engine)")
        import torch

        if threads and threads > 0:
            torch.set_num_threads(threads)
        self.precision = precision
        self.batch_size = batch_size
        self.normalize_embeddings = normalize_embeddings
        self.device = pick_device(device)
        if self.device == "cpu":
            keep_freed_memory()  # each batch's tensors reuse the last one's memory (allocator.py)
        name = label or path
        try:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(path, device=self.device, **kwargs)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"model {name!r} could not be loaded from {path}: {exc}") from None
        pooling_found = False
        for module in self.model:
            if hasattr(module, "include_prompt"):
                module.include_prompt = False  # Instructor: pool over the text, not the instruction
                pooling_found = True
        if not pooling_found:
            raise ModelError(f"model {name!r} has no Pooling module: it is not an Instructor-style encoder")
        if precision == "fp16":
            self.model.half()
        elif precision == "bf16":
            self.model.to(torch.bfloat16)
        self.model.eval()
        dim = (
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )
        if not dim:
            raise ModelError(f"model {name!r} does not report its embedding dimension")
        self._dim = int(dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face fast tokenizer (``backend_tokenizer`` is the Rust one)."""
        return self.model.tokenizer

    def encode_array(self, texts: list[str], instruction: str) -> np.ndarray:
        """Rows in input order; sentence-transformers length-sorts and pads each batch to fit."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        stripped = [str(t).strip() for t in texts]
        with torch.inference_mode():
            vectors = self.model.encode(
                stripped,
                prompt=instruction or None,
                batch_size=self.batch_size,
                normalize_embeddings=self.normalize_embeddings,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.normalize_embeddings and self.precision != "fp32":
            # Normalize ran in fp16/bf16: rows are off unit length by up to ~2^-8; redo it in float32.
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors
