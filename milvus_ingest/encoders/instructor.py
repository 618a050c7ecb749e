"""Instructor embeddings with the API shape Milvus users know, on the engine this machine runs best.

``InstructorEmbeddingFunction(model_name=…, query_instruction=…, doc_instruction=…)`` with
``encode_documents()``, ``encode_queries()`` and ``.dim``, as in pymilvus-model, but working on
today's libraries: the model sees ``instruction + text.strip()`` and mean pooling skips the
instruction's tokens, which reproduces the original ``InstructorEmbedding`` package's vectors
(tested to 1e-5).  Behind it runs an engine (``milvus_ingest.encoders.engines``): torch
(sentence-transformers; fp32/fp16/bf16) or ONNX Runtime (fp32/int8), picked by ``backend`` and
``precision`` (``auto``: measured, see ``engines.decide_engine``); vectors of every engine and
precision of one model are compatible, so the collection records the model, not the engine.

This module must never import torch at import time, never pad to the model's maximum length
(batches pad to their longest item) and never truncate a document silently: chunks are sized by
``milvus_ingest.chunking`` to fit.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from milvus_ingest.encoders.engines import EngineChoice, build_engine, decide_engine, export_problem
from milvus_ingest.encoders.presets import MILVUS_DOC_INSTRUCTION, MILVUS_QUERY_INSTRUCTION, resolve_instructions
from milvus_ingest.errors import ModelError

log = logging.getLogger(__name__)

PACKAGE_SCHEME = "package://"
#: pymilvus-model's defaults, kept importable; the constructor's defaults are the model's preset.
DEFAULT_DOC_INSTRUCTION = MILVUS_DOC_INSTRUCTION
DEFAULT_QUERY_INSTRUCTION = MILVUS_QUERY_INSTRUCTION


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


class InstructorEmbeddingFunction:
    """Encodes documents and queries with their instructions; rows are float32, L2-normalised.

    Instructions left out (None) are the model's preset (``encoders.presets``: none for
    all-MiniLM-L6-v2, the paper's retrieval prompts for Instructor, Milvus's defaults otherwise).
    ``backend`` is ``auto``, ``torch`` or ``onnx``; ``precision`` is ``auto``, ``fp32``, ``fp16``
    (GPU), ``bf16`` (GPU, or CPUs with AVX512-BF16 / AMX) or ``int8`` (ONNX Runtime);
    ``threads`` sets the engine's intra-op threads (0 keeps its default), ``workers`` how many
    batches the torch engine on a CPU encodes at a time (0: its default); ``cache_dir`` is where
    ONNX exports live (default ``$MILVUS_INGEST_CACHE`` or ~/.cache/milvus_ingest/onnx);
    ``for_queries`` picks the engine for encoding questions (ONNX fp32 under ``auto``).
    ``engine_choice`` says what runs and why.
    """

    def __init__(
        self,
        model_name: str = "hkunlp/instructor-xl",
        query_instruction: str | None = None,
        doc_instruction: str | None = None,
        batch_size: int = 32,
        device: str = "auto",
        normalize_embeddings: bool = True,
        precision: str = "auto",
        threads: int = 0,
        backend: str = "auto",
        cache_dir: str | Path | None = None,
        for_queries: bool = False,
        workers: int = 0,
        **kwargs: Any,
    ):
        self.model_name = model_name
        #: None takes the model's preset (``encoders.presets``); a string, even "", is used as given.
        self.instructions = resolve_instructions(model_name, doc_instruction, query_instruction)
        self.query_instruction = self.instructions.query
        self.doc_instruction = self.instructions.doc
        self.normalize_embeddings = normalize_embeddings
        path = resolve_model_path(model_name)
        choice = decide_engine(model_name, backend, precision, device, for_queries)
        if choice.backend == "onnx" and backend == "auto" and precision in ("auto", "fp32"):
            problem = export_problem(path)
            if problem:  # a model the ONNX engine does not reproduce: torch runs it as it always did
                fallback = decide_engine(model_name, "torch", precision, device, for_queries)
                choice = EngineChoice(
                    fallback.backend, fallback.precision, f"{fallback.reason} (ONNX engine: {problem})",
                    fallback.cpu_features,
                )
        self.engine_choice = choice
        self.engine = build_engine(
            choice, path, batch_size, device, normalize_embeddings, threads, cache_dir, label=model_name,
            workers=workers, **kwargs,
        )
        log.info("encoder %s: %s %s (%s)", model_name, choice.backend, choice.precision, choice.reason)
        self._counter: Any = None

    @classmethod
    def from_settings(
        cls, model: Any, query_instruction: str | None = None, for_queries: bool = False
    ) -> InstructorEmbeddingFunction:
        """Build from ``Settings.model``; ``query_instruction`` overrides it (the collection's own)."""
        return cls(
            model_name=model.name,
            query_instruction=model.instructions.query if query_instruction is None else query_instruction,
            doc_instruction=model.instructions.doc,
            batch_size=model.batch_size,
            device=model.device,
            normalize_embeddings=model.normalize_embeddings,
            precision=model.precision,
            threads=model.threads,
            backend=model.backend,
            for_queries=for_queries,
            workers=model.workers,
        )

    def set_query_instruction(self, instruction: str) -> None:
        """Encode questions with ``instruction`` from now on (a collection's own, as recorded on it)."""
        self.instructions = resolve_instructions(self.model_name, self.doc_instruction, instruction)
        self.query_instruction = self.instructions.query

    # -- properties ---------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(self.engine.batch_size)

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.engine.batch_size = value

    @property
    def dim(self) -> int:
        return self.engine.dim

    @property
    def max_seq_length(self) -> int:
        return int(self.engine.max_seq_length)

    @property
    def tokenizer(self) -> Any:
        """The engine's tokenizer: a Hugging Face fast tokenizer (torch) or a ``tokenizers.Tokenizer``."""
        return self.engine.tokenizer

    @property
    def backend(self) -> str:
        return self.engine_choice.backend

    @property
    def precision(self) -> str:
        return self.engine_choice.precision

    @property
    def workers(self) -> int:
        """Batches the engine encodes at a time (the pipeline's first window holds one for each)."""
        return int(getattr(self.engine, "workers", 1))

    @property
    def device(self) -> str:
        return str(self.engine.device)

    @property
    def engine_info(self) -> dict[str, Any]:
        """Backend, precision, the reason, the CPU flags and how batches share the cores: what the
        run summary reports."""
        info = self.engine_choice.as_dict()
        threads = getattr(self.engine, "worker_threads", None)
        if threads and len(threads) > 1:
            info["batches_at_a_time"] = len(threads)
            info["threads_per_batch"] = list(threads)
        return info

    @property
    def _model(self) -> Any:
        """The SentenceTransformer behind the torch engine (benchmarks drive it directly)."""
        model = getattr(self.engine, "model", None)
        if model is None:
            raise AttributeError(f"the {self.backend} engine has no SentenceTransformer model")
        return model

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

    #: ``encode_array`` takes the chunker's tokens (stubs and other embedders need not).
    takes_encodings = True

    def encode_array(self, texts: list[str], instruction: str, encodings: list[Any] | None = None) -> np.ndarray:
        """As ``encode`` but one ``(n, dim)`` float32 array: what the pipeline writes.

        ``encodings``: the chunker's exact-check tokens of ``instruction + text`` for each text
        (``TokenCounter.encode_with_specials`` on a copy of ``self.tokenizer``); the engines over
        an export use them instead of tokenizing again, sentence-transformers tokenizes itself."""
        from milvus_ingest.encoders.pool import finish

        return finish(self.submit_array(texts, instruction, encodings))

    def submit_array(
        self, texts: list[str], instruction: str, encodings: list[Any] | None = None, followed: bool = False
    ) -> Any:
        """``encode_array`` begun: ``result()`` gives the rows, ``stop()`` starts no further
        batch, ``cancel()`` also waits for those running, ``started``/``ended`` bound the work.

        The engines over an export queue it to their workers, behind the call before it (a
        stream's next window; ``followed``: another comes next, so even a small call goes to
        them); sentence-transformers encodes here, now."""
        from milvus_ingest.encoders.exported import ExportedEncoder
        from milvus_ingest.encoders.pool import Ready

        if isinstance(self.engine, ExportedEncoder):
            return self.engine.submit_array(list(texts), instruction, encodings, followed)
        started = time.perf_counter()
        if not texts:
            return Ready(np.zeros((0, self.dim), dtype=np.float32), started)
        return Ready(self.engine.encode_array(list(texts), instruction), started)

    def overlong(self, texts: list[str], instruction: str) -> list[tuple[int, int]]:
        """``(index, tokens)`` of each text that is longer, with ``instruction``, than the model
        reads (``max_seq_length``): the encoder keeps only its first tokens.

        Only texts long enough to possibly overflow are tokenized: no tokenizer here makes more
        tokens than the text has UTF-8 bytes, plus a leading ``▁`` and the special tokens, so a
        typical question costs nothing."""
        limit = self.max_seq_length
        suspects = [i for i, t in enumerate(texts) if len((instruction + str(t).strip()).encode("utf-8")) + 8 > limit]
        if not suspects:
            return []
        if self._counter is None:
            from milvus_ingest.chunking import TokenCounter

            self._counter = TokenCounter(self.tokenizer)
        counts = self._counter.count_with_specials([instruction + str(texts[i]).strip() for i in suspects])
        return [(i, n) for i, n in zip(suspects, counts) if n > limit]

    def _warn_truncated(self, texts: list[str], instruction: str) -> None:
        for i, n in self.overlong(texts, instruction):
            log.warning("query of %d tokens is cut to the model's %d: %.60r…", n, self.max_seq_length, texts[i])
