"""Instructor embeddings on current sentence-transformers, with the API shape Milvus users know.

``InstructorEmbeddingFunction(model_name=…, query_instruction=…, doc_instruction=…)`` with
``encode_documents()``, ``encode_queries()`` and ``.dim``, as in pymilvus-model, but working on
today's libraries: the model sees ``instruction + text.strip()`` and mean pooling skips the
instruction's tokens (sentence-transformers' ``prompt=`` with ``Pooling(include_prompt=False)``),
which reproduces the original ``InstructorEmbedding`` package's vectors (tested to 1e-5).

This module must never pad to the model's maximum length (batches pad to their longest item)
and never truncate a document silently: chunks are sized by ``milvus_ingest.chunking`` to fit.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from milvus_ingest.errors import ModelError

log = logging.getLogger(__name__)

PACKAGE_SCHEME = "package://"
DEFAULT_DOC_INSTRUCTION = "Represent the document for retrieval:"
DEFAULT_QUERY_INSTRUCTION = "Represent the question for retrieval:"


def resolve_model_path(model_name: str) -> str:
    """A local folder for ``model_name``: a folder as is, ``package://PKG/SUB``, or a hub id.

    A hub id is taken from the local Hugging Face cache when it is there, else downloaded; when
    neither works (no network, ``HF_HUB_OFFLINE=1``) it fails at once with one line that says how
    to point at a local model.
    """
    if model_name.startswith(PACKAGE_SCHEME):
        package, _, sub = model_name[len(PACKAGE_SCHEME) :].partition("/")
        spec = importlib.util.find_spec(package) if package else None
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"model {model_name!r}: Python package {package!r} is not installed "
                f"(pip install {package.replace('_', '-')})"
            )
        folder = Path(list(spec.submodule_search_locations)[0]) / sub
        if not folder.is_dir():
            raise ModelError(f"model {model_name!r}: {folder} is not a folder inside the package")
        return str(folder)
    candidate = Path(model_name).expanduser()
    if candidate.exists():
        if not candidate.is_dir() or not (
            (candidate / "modules.json").exists() or (candidate / "config.json").exists()
        ):
            raise ModelError(
                f"model folder {candidate} has no modules.json or config.json: point model.name at "
                "a sentence-transformers model folder"
            )
        return str(candidate.resolve())
    if model_name.startswith((".", "/", "~")) or model_name.count("/") > 1:
        raise ModelError(f"model folder {model_name} does not exist (check model.name / --model)")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model_name, local_files_only=True)
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            return snapshot_download(model_name)
        except Exception as exc:  # network errors, gated or missing repos
            reason = type(exc).__name__
            if "not found" in str(exc).lower() or "404" in str(exc):
                reason = "no such model on the hub"
    raise ModelError(
        f"model {model_name!r} is not in the local Hugging Face cache and cannot be downloaded "
        f"({reason}): download it where the hub is reachable (huggingface-cli download "
        f"{model_name}) or set model.name / --model to a local model folder"
    )


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


class InstructorEmbeddingFunction:
    """Encodes documents and queries with their instructions; rows are float32, L2-normalised.

    ``precision`` is ``fp32`` (default), ``fp16`` (GPU) or ``bf16`` (GPU, or CPUs with AVX512-BF16
    / AMX); ``threads`` sets torch's intra-op threads (0 keeps torch's default).
    """

    def __init__(
        self,
        model_name: str = "hkunlp/instructor-xl",
        query_instruction: str = DEFAULT_QUERY_INSTRUCTION,
        doc_instruction: str = DEFAULT_DOC_INSTRUCTION,
        batch_size: int = 32,
        device: str = "auto",
        normalize_embeddings: bool = True,
        precision: str = "fp32",
        threads: int = 0,
        **kwargs: Any,
    ):
        self.model_name = model_name
        self.query_instruction = query_instruction
        self.doc_instruction = doc_instruction
        self.batch_size = batch_size
        self.normalize_embeddings = normalize_embeddings
        self.precision = precision
        path = resolve_model_path(model_name)

        import torch

        if threads and threads > 0:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        try:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(path, device=self.device, **kwargs)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"model {model_name!r} could not be loaded from {path}: {exc}") from None
        pooling_found = False
        for module in self._model:
            if hasattr(module, "include_prompt"):
                module.include_prompt = False  # Instructor: pool over the text, not the instruction
                pooling_found = True
        if not pooling_found:
            raise ModelError(f"model {model_name!r} has no Pooling module: it is not an Instructor-style encoder")
        if precision == "fp16":
            self._model.half()
        elif precision == "bf16":
            self._model.to(torch.bfloat16)
        elif precision != "fp32":
            raise ModelError(f"precision {precision!r} is not one of fp32, fp16, bf16")
        self._model.eval()
        dim = self._model.get_embedding_dimension() if hasattr(
            self._model, "get_embedding_dimension"
        ) else self._model.get_sentence_embedding_dimension()
        if not dim:
            raise ModelError(f"model {model_name!r} does not report its embedding dimension")
        self._dim = int(dim)

    @classmethod
    def from_settings(cls, model: Any, query_instruction: str | None = None) -> InstructorEmbeddingFunction:
        """Build from ``Settings.model``; ``query_instruction`` overrides it (the collection's own)."""
        return cls(
            model_name=model.name,
            query_instruction=query_instruction or model.query_instruction,
            doc_instruction=model.doc_instruction,
            batch_size=model.batch_size,
            device=model.device,
            normalize_embeddings=model.normalize_embeddings,
            precision=model.precision,
            threads=model.threads,
        )

    # -- properties ---------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_seq_length(self) -> int:
        return int(self._model.max_seq_length)

    @property
    def tokenizer(self) -> Any:
        return self._model.tokenizer

    # -- encoding -----------------------------------------------------------------------
    def encode_documents(self, documents: list[str]) -> list[np.ndarray]:
        return self.encode(documents, self.doc_instruction)

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        self._warn_truncated(queries, self.query_instruction)
        return self.encode(queries, self.query_instruction)

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        return self.encode_documents(texts)

    def encode(self, texts: list[str], instruction: str) -> list[np.ndarray]:
        """Rows for ``texts`` with one instruction; batches are length-sorted and padded to fit."""
        return list(self.encode_array(texts, instruction))

    def encode_array(self, texts: list[str], instruction: str) -> np.ndarray:
        """As ``encode`` but one ``(n, dim)`` float32 array: what the pipeline writes."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        stripped = [str(t).strip() for t in texts]
        with torch.inference_mode():
            vectors = self._model.encode(
                stripped,
                prompt=instruction or None,
                batch_size=self.batch_size,
                normalize_embeddings=self.normalize_embeddings,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _warn_truncated(self, texts: list[str], instruction: str) -> None:
        tokenizer = self.tokenizer
        limit = self.max_seq_length
        for text in texts:
            n = len(tokenizer(instruction + text.strip(), add_special_tokens=True)["input_ids"])
            if n > limit:
                log.warning("query of %d tokens is cut to the model's %d: %.60r…", n, limit, text)
