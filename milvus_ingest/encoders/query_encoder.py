"""A fast-starting query encoder: the model folder's modules.json pipeline, computed in NumPy.

Why it exists: the search command is interactive, and on our 2-core machines importing
sentence-transformers costs 6-12 s, and even torch + transformers' modelling code ~6-9 s, while
encoding one question is milliseconds of arithmetic.  ``NumpyQueryEncoder`` reads the same files
a sentence-transformers folder holds (Transformer → Pooling(mean) → optional Dense → optional
Normalize; tokenizer.json; safetensors or zip-format torch weights) and computes what
``milvus_ingest.encoders.instructor.InstructorEmbeddingFunction`` computes: the model sees ``instruction +
text.strip()``, mean pooling skips the instruction's tokens, rows are L2-normalised float32.
``tests/test_search.py`` checks the two agree to 1e-5 on both test models and on BERT/T5
variants.

This module must never import torch, transformers or sentence-transformers, and never guess: a
module type, pooling mode, config key, weight type, precision or device it does not reproduce
makes ``load_query_encoder`` use the full ``InstructorEmbeddingFunction`` (reason logged).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from milvus_ingest.config import ModelSettings
from milvus_ingest.encoders.instructor import resolve_model_path
from milvus_ingest.errors import ModelError
from milvus_ingest.encoders.numpy_models import UnsupportedModel, load_encoder, load_weights

log = logging.getLogger(__name__)

#: ``FLOWS_QUERY_ENCODER=full`` forces the sentence-transformers encoder (a way out should the
#: NumPy path ever misbehave on a model); ``numpy`` refuses to fall back instead.
ENV_QUERY_ENCODER = "FLOWS_QUERY_ENCODER"

_ST = "sentence_transformers.models."
_TRANSFORMER_KEYS = {"max_seq_length", "do_lower_case"}
_POOLING_KEYS = {"word_embedding_dimension", "embedding_dimension", "pooling_mode", "include_prompt"}
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_DENSE_KEYS = {"in_features", "out_features", "bias", "activation_function"}


class UnsupportedPipeline(Exception):
    """The model folder holds something the NumPy encoder does not reproduce exactly."""


@dataclass
class PipelinePlan:
    """What modules.json asks for, checked: the NumPy encoder's recipe."""

    folder: Path
    transformer_dir: Path
    max_seq_length: int | None
    pooling_dim: int
    dense: list[dict[str, Any]] = field(default_factory=list)  # config + folder of each Dense
    normalize: bool = False


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedPipeline(f"{path.name} cannot be read: {exc}") from None


def plan_pipeline(folder: str | Path) -> PipelinePlan:
    """Read and check modules.json and each module's config; raise ``UnsupportedPipeline``."""
    root = Path(folder)
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        raise UnsupportedPipeline("no modules.json (a plain transformers folder)")
    modules = _read_json(modules_file)
    if not isinstance(modules, list) or not modules:
        raise UnsupportedPipeline("modules.json is not a list of modules")
    modules = sorted(modules, key=lambda m: m.get("idx", 0))
    kinds = [str(m.get("type", "")).removeprefix(_ST) for m in modules]
    if kinds[0] != "Transformer" or len(kinds) < 2 or kinds[1] != "Pooling":
        raise UnsupportedPipeline(f"pipeline {kinds} does not start with Transformer, Pooling")

    transformer_dir = root / (modules[0].get("path") or "")
    st_config_file = transformer_dir / "sentence_bert_config.json"
    st_config = _read_json(st_config_file) if st_config_file.is_file() else {}
    unknown = {k for k, v in st_config.items() if k not in _TRANSFORMER_KEYS and v not in ({}, None, [])}
    if unknown:
        raise UnsupportedPipeline(f"Transformer settings {sorted(unknown)} are not reproduced")
    if st_config.get("do_lower_case"):
        raise UnsupportedPipeline("do_lower_case is not reproduced")

    pooling = _read_json(root / (modules[1].get("path") or "") / "config.json")
    legacy = {k: v for k, v in pooling.items() if k in _LEGACY_POOLING}
    unknown = set(pooling) - _POOLING_KEYS - set(_LEGACY_POOLING)
    if unknown:
        raise UnsupportedPipeline(f"Pooling settings {sorted(unknown)} are not reproduced")
    mode = pooling.get("pooling_mode")
    if mode is None:
        active = [name for key, name in _LEGACY_POOLING.items() if legacy.get(key)]
        mode = active[0] if len(active) == 1 else (tuple(active) if active else "mean")
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if mode != "mean":
        raise UnsupportedPipeline(f"pooling mode {mode!r} (only mean pooling is reproduced)")
    dim = pooling.get("embedding_dimension", pooling.get("word_embedding_dimension"))
    if not isinstance(dim, int) or dim < 1:
        raise UnsupportedPipeline("Pooling config has no embedding dimension")

    plan = PipelinePlan(root, transformer_dir, st_config.get("max_seq_length"), dim)
    for module, kind in zip(modules[2:], kinds[2:]):
        if plan.normalize:
            raise UnsupportedPipeline(f"module {kind} after Normalize is not reproduced")
        sub = root / (module.get("path") or "")
        if kind == "Dense":
            config = _read_json(sub / "config.json")
            if set(config) - _DENSE_KEYS:
                raise UnsupportedPipeline(f"Dense settings {sorted(set(config) - _DENSE_KEYS)} are not reproduced")
            plan.dense.append({"config": config, "folder": sub})
        elif kind == "Normalize":
            plan.normalize = True
        else:
            raise UnsupportedPipeline(f"module type {module.get('type')!r} is not reproduced")
    return plan


def _dense_layer(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """A Dense module's weight, bias and activation (Identity or Tanh, as sentence-transformers saves)."""
    config, folder = spec["config"], Path(spec["folder"])
    weights = load_weights(folder)
    weight, bias = weights.get("linear.weight"), weights.get("linear.bias")
    shape = (int(config["out_features"]), int(config["in_features"]))
    if weight is None or weight.shape != shape or (bias is None) == bool(config.get("bias", True)):
        raise UnsupportedPipeline(f"Dense weights in {folder.name} do not fit its config")
    activation = config.get("activation_function", "torch.nn.modules.activation.Tanh")
    if activation not in _DENSE_ACTIVATIONS:
        raise UnsupportedPipeline(f"Dense activation {activation!r} is not reproduced")
    return weight.astype(np.float32), None if bias is None else bias.astype(np.float32), _DENSE_ACTIVATIONS[activation]


_DENSE_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": lambda x: x,
    "torch.nn.modules.activation.Tanh": np.tanh,
}


class _TokenizerView:
    """What ``milvus_ingest.chunking.TokenCounter`` needs from a tokenizer: the Rust ``backend_tokenizer``."""

    def __init__(self, backend: Any):
        self.backend_tokenizer = backend


class NumpyQueryEncoder:
    """Query side of ``InstructorEmbeddingFunction`` in NumPy: no torch, no transformers import.

    Same surface the search code uses: ``model_name``, ``query_instruction``, ``dim``,
    ``max_seq_length``, ``tokenizer``, ``encode_queries(texts)``, ``encode_array(texts, instruction)``.
    """

    def __init__(
        self,
        model_name: str,
        query_instruction: str,
        batch_size: int = 32,
        normalize_embeddings: bool = True,
        threads: int = 0,
        plan: PipelinePlan | None = None,
    ):
        self.model_name = model_name
        self.query_instruction = query_instruction
        self.batch_size = batch_size
        self.normalize_embeddings = normalize_embeddings
        #: BLAS threads while encoding; 0 (``model.threads``) means every core but one here:
        #: on our 2-core machines two BLAS threads beside other busy processes made one question take
        #: 250-1600 ms instead of 26-41 ms.
        self.threads = threads if threads > 0 else _spare_cores()
        plan = plan or plan_pipeline(resolve_model_path(model_name))
        if not plan.max_seq_length:
            raise UnsupportedPipeline("no max_seq_length in sentence_bert_config.json")
        tokenizer_file = plan.transformer_dir / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise UnsupportedPipeline("no tokenizer.json (a slow tokenizer)")
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(tokenizer_file))
            self._encoder = load_encoder(plan.transformer_dir)
            self._dense = [_dense_layer(spec) for spec in plan.dense]
        except UnsupportedModel as exc:
            raise UnsupportedPipeline(str(exc)) from None
        except Exception as exc:
            raise ModelError(f"model {model_name!r} could not be loaded from {plan.transformer_dir}: {exc}") from None
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=int(plan.max_seq_length), strategy="longest_first")
        self._max_seq_length = int(plan.max_seq_length)
        self._special_ids = {t.id for t in _added_tokens(tokenizer_file) if t.special}
        self._normalize = plan.normalize
        self._dim = int(plan.dense[-1]["config"]["out_features"]) if plan.dense else plan.pooling_dim
        self._prompt_lengths: dict[str, int] = {}

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @property
    def tokenizer(self) -> Any:
        return _TokenizerView(self._tok)

    def _prompt_length(self, instruction: str) -> int:
        """Tokens of the instruction, minus a trailing special token (as sentence-transformers counts)."""
        if instruction not in self._prompt_lengths:
            ids = self._tok.encode(instruction).ids
            self._prompt_lengths[instruction] = len(ids) - (1 if ids and ids[-1] in self._special_ids else 0)
        return self._prompt_lengths[instruction]

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        for text in queries:
            if self._tok.encode(self.query_instruction + str(text).strip()).overflowing:
                log.warning("query is cut to the model's %d tokens: %.60r…", self._max_seq_length, text)
        return list(self.encode_array(queries, self.query_instruction))

    def encode_array(self, texts: list[str], instruction: str) -> np.ndarray:
        """``(n, dim)`` float32 rows; batches are length-sorted and padded like sentence-transformers'."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        stripped = [str(t).strip() for t in texts]
        order = np.argsort([-len(t) for t in stripped], kind="stable")
        prompt_length = self._prompt_length(instruction) if instruction else 0
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with _blas_threads(self.threads):
            self._encode_sorted(instruction, stripped, order, prompt_length, out)
        return out

    def _encode_sorted(
        self, instruction: str, stripped: list[str], order: np.ndarray, prompt_length: int, out: np.ndarray
    ) -> None:
        for start in range(0, len(stripped), self.batch_size):
            index = order[start : start + self.batch_size]
            encodings = self._tok.encode_batch([instruction + stripped[i] for i in index])
            width = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(index), width), dtype=np.int64)
            types = np.zeros((len(index), width), dtype=np.int64)
            mask = np.zeros((len(index), width), dtype=np.int64)
            for row, e in enumerate(encodings):
                ids[row, : len(e.ids)] = e.ids
                types[row, : len(e.ids)] = e.type_ids
                mask[row, : len(e.ids)] = 1
            out[index] = self._pool(self._encoder(ids, mask, types), mask, prompt_length)

    def _pool(self, tokens: np.ndarray, mask: np.ndarray, prompt_length: int) -> np.ndarray:
        """Mean over the text's tokens (not the instruction's), then Dense, then L2 normalisation."""
        weights = mask.astype(np.float32)
        if prompt_length:
            weights[:, :prompt_length] = 0.0  # right padding: the instruction comes first
        summed = (tokens * weights[:, :, None]).sum(axis=1, dtype=np.float32)
        vectors = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        for weight, bias, activation in self._dense:
            vectors = activation(vectors @ weight.T + (bias if bias is not None else 0.0)).astype(np.float32)
        if self._normalize or self.normalize_embeddings:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors.astype(np.float32)


def _added_tokens(tokenizer_file: Path) -> list[Any]:
    """The tokenizer's added tokens with their ``special`` flag (tokenizer.json's own record)."""
    data = _read_json(tokenizer_file)
    return [_AddedToken(int(t["id"]), bool(t.get("special"))) for t in data.get("added_tokens", [])]


@dataclass(frozen=True)
class _AddedToken:
    id: int
    special: bool


def _spare_cores() -> int:
    """Every core this process may use but one, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _blas_threads(threads: int) -> Any:
    """Limit NumPy's BLAS threads for a block (threadpoolctl, which sentence-transformers brings)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - without it BLAS keeps its default
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def _cpu_only(device: str) -> bool:
    """NumPy runs on the CPU: used for ``cpu``, and for ``auto`` when no GPU can be present."""
    if device == "cpu":
        return True
    if device != "auto":
        return False
    gpu_signs = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd")
    return sys.platform != "darwin" and not any(os.path.exists(p) for p in gpu_signs)


def load_query_encoder(model: ModelSettings, query_instruction: str | None = None, light: bool | None = None) -> Any:
    """The encoder for questions: ``NumpyQueryEncoder`` where it is exact, else the full one.

    ``light`` asks for the NumPy encoder (True) or the full one (False); None follows
    ``FLOWS_QUERY_ENCODER`` (``full`` or ``numpy``; unset: NumPy when the model, precision and
    device allow it).  ``query_instruction`` overrides the configured one (the search passes the
    collection's).
    """
    instruction = model.query_instruction if query_instruction is None else query_instruction
    choice = os.environ.get(ENV_QUERY_ENCODER, "").strip().lower()
    if light is None:
        light = choice != "full"
    if light:
        try:
            if model.precision != "fp32":
                raise UnsupportedPipeline(f"precision {model.precision} (the NumPy encoder is fp32 only)")
            if not _cpu_only(model.device):
                raise UnsupportedPipeline(f"device {model.device!r} may be a GPU (the NumPy encoder runs on the CPU)")
            return NumpyQueryEncoder(
                model.name,
                instruction,
                batch_size=model.batch_size,
                normalize_embeddings=model.normalize_embeddings,
                threads=model.threads,
                plan=plan_pipeline(resolve_model_path(model.name)),
            )
        except UnsupportedPipeline as exc:
            if choice == "numpy":
                raise ModelError(f"model {model.name!r} cannot use the NumPy query encoder: {exc}") from None
            log.info("query encoder: using sentence-transformers for %s (%s)", model.name, exc)
    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    return InstructorEmbeddingFunction.from_settings(model, query_instruction=instruction)
