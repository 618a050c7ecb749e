"""A fast-starting query encoder: the model folder's modules.json pipeline, run with transformers.

Why it exists: the search CLI is interactive, and ``import sentence_transformers`` alone costs
6-12 s on our 2-core machines (it pulls in sklearn and scipy through its utilities) where
``torch`` + ``transformers`` cost ~3 s.  ``LightQueryEncoder`` loads the same files a
sentence-transformers model folder holds (Transformer → Pooling(mean) → optional Dense →
optional Normalize) and computes what ``flows.embedding.InstructorEmbeddingFunction`` computes:
the model sees ``instruction + text.strip()``, mean pooling skips the instruction's tokens, rows are
L2-normalised float32.  ``tests/test_search.py`` checks the two agree to 1e-5 on both test models.

This module must never import sentence_transformers, and never guess: a module type, pooling
mode, config key or precision it does not know makes ``load_query_encoder`` use the full
``InstructorEmbeddingFunction`` instead (with the reason logged), never an approximation.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flows.config import ModelSettings
from flows.embedding import pick_device, resolve_model_path
from flows.errors import ModelError

log = logging.getLogger(__name__)

#: ``FLOWS_QUERY_ENCODER=full`` forces the sentence-transformers encoder (a way out if the light
#: path ever misbehaves on a model; ``light`` refuses to fall back instead).
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
#: Encoder-only classes sentence-transformers uses for encoder-decoder configs (the rest: AutoModel).
_ENCODER_CLASSES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


class UnsupportedPipeline(Exception):
    """The model folder holds something the light encoder does not reproduce exactly."""


@dataclass
class PipelinePlan:
    """What modules.json asks for, checked: the light encoder's recipe."""

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


def _activation(name: str | None) -> Any:
    """The Dense activation, as sentence-transformers builds it: a ``torch.*`` nn.Module class."""
    import torch

    if name is None:
        return torch.nn.Tanh()  # sentence-transformers' default
    if not name.startswith("torch."):
        raise UnsupportedPipeline(f"Dense activation {name!r} is not a torch class")
    module_name, _, class_name = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise UnsupportedPipeline(f"Dense activation {name!r} cannot be imported") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise UnsupportedPipeline(f"Dense activation {name!r} is not an nn.Module")
    return cls()


def _load_dense(spec: dict[str, Any]) -> Any:
    import torch

    config, folder = spec["config"], Path(spec["folder"])
    linear = torch.nn.Linear(int(config["in_features"]), int(config["out_features"]), bias=bool(config.get("bias", True)))
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise UnsupportedPipeline(f"Dense module {folder.name} has no weights file")
    prefixed = {k.removeprefix("linear."): v for k, v in state.items() if k.startswith("linear.")}
    try:
        linear.load_state_dict(prefixed, strict=True)
    except RuntimeError as exc:
        raise UnsupportedPipeline(f"Dense weights in {folder.name} do not fit: {str(exc).splitlines()[0]}") from None
    return torch.nn.Sequential(linear, _activation(config.get("activation_function")))


class LightQueryEncoder:
    """Query side of ``InstructorEmbeddingFunction`` without sentence-transformers (fp32 only).

    Same surface the search code uses: ``model_name``, ``query_instruction``, ``dim``,
    ``max_seq_length``, ``tokenizer``, ``encode_queries(texts)`` and ``encode_array(texts, instruction)``.
    """

    def __init__(
        self,
        model_name: str,
        query_instruction: str,
        batch_size: int = 32,
        device: str = "auto",
        normalize_embeddings: bool = True,
        threads: int = 0,
        plan: PipelinePlan | None = None,
    ):
        self.model_name = model_name
        self.query_instruction = query_instruction
        self.batch_size = batch_size
        self.normalize_embeddings = normalize_embeddings
        plan = plan or plan_pipeline(resolve_model_path(model_name))
        import torch

        if threads and threads > 0:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        try:
            import transformers
            from transformers import AutoConfig, AutoTokenizer

            config = AutoConfig.from_pretrained(str(plan.transformer_dir))
            class_name = _ENCODER_CLASSES.get(config.model_type)
            if class_name is None and getattr(config, "is_encoder_decoder", False):
                raise UnsupportedPipeline(f"encoder-decoder model type {config.model_type!r} is not reproduced")
            model_class = getattr(transformers, class_name) if class_name else transformers.AutoModel
            tokenizer_kwargs = {"model_max_length": plan.max_seq_length} if plan.max_seq_length else {}
            self._tokenizer = AutoTokenizer.from_pretrained(str(plan.transformer_dir), **tokenizer_kwargs)
            self._model = model_class.from_pretrained(str(plan.transformer_dir), config=config)
        except UnsupportedPipeline:
            raise
        except Exception as exc:
            raise ModelError(f"model {model_name!r} could not be loaded from {plan.transformer_dir}: {exc}") from None
        self._model.to(self.device).eval()
        self._dense = [_load_dense(spec).to(self.device).eval() for spec in plan.dense]
        self._normalize = plan.normalize
        self._dim = int(plan.dense[-1]["config"]["out_features"]) if plan.dense else plan.pooling_dim
        self._prompt_lengths: dict[str, int] = {}

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_seq_length(self) -> int:
        return int(self._tokenizer.model_max_length)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def _tokenize(self, texts: list[str]) -> Any:
        return self._tokenizer(texts, padding=True, truncation="longest_first", return_tensors="pt")

    def _prompt_length(self, instruction: str) -> int:
        """Tokens of the instruction, minus a trailing special token (as sentence-transformers counts)."""
        if instruction not in self._prompt_lengths:
            ids = self._tokenize([instruction])["input_ids"][0]
            length = int(ids.shape[-1])
            if int(ids[-1]) in set(self._tokenizer.all_special_ids):
                length -= 1
            self._prompt_lengths[instruction] = length
        return self._prompt_lengths[instruction]

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        return list(self.encode_array(queries, self.query_instruction))

    def encode_array(self, texts: list[str], instruction: str) -> np.ndarray:
        """``(n, dim)`` float32 rows; batches are length-sorted like sentence-transformers does."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        stripped = [str(t).strip() for t in texts]
        order = np.argsort([-len(t) for t in stripped], kind="stable")
        prompt_length = self._prompt_length(instruction) if instruction else 0
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                index = order[start : start + self.batch_size]
                batch = [instruction + stripped[i] for i in index]
                features = {k: v.to(self.device) for k, v in self._tokenize(batch).items()}
                vectors = self._forward(features, prompt_length)
                out[index] = vectors.float().cpu().numpy()
        return out

    def _forward(self, features: dict[str, Any], prompt_length: int) -> Any:
        import torch

        tokens = self._model(**features).last_hidden_state
        mask = features["attention_mask"].clone()
        if prompt_length:
            pad_lengths = mask.to(torch.int32).argmax(dim=1)
            if int(pad_lengths.sum()) == 0:
                mask[:, :prompt_length] = 0
            else:  # left padding: the prompt starts after the pads
                positions = torch.arange(mask.size(1), device=mask.device).unsqueeze(0)
                mask[positions < (pad_lengths + prompt_length).unsqueeze(1)] = 0
        accumulate = torch.float32 if tokens.dtype in (torch.float16, torch.bfloat16) else tokens.dtype
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        summed = (tokens * weights).sum(dim=1, dtype=accumulate)
        counts = torch.clamp(weights.sum(dim=1, dtype=accumulate), min=1e-9)
        vectors = (summed / counts).to(tokens.dtype)
        for dense in self._dense:
            vectors = dense(vectors)
        if self._normalize or self.normalize_embeddings:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        return vectors


def load_query_encoder(model: ModelSettings, query_instruction: str | None = None, light: bool | None = None) -> Any:
    """The encoder for questions: ``LightQueryEncoder`` where it is exact, else the full one.

    ``light`` None follows ``FLOWS_QUERY_ENCODER`` (``full``/``light``; default: light when the
    model allows it).  ``query_instruction`` overrides the configured one (the collection's).
    """
    instruction = model.query_instruction if query_instruction is None else query_instruction
    choice = os.environ.get(ENV_QUERY_ENCODER, "").strip().lower()
    if light is None:
        light = choice != "full"
    if light:
        try:
            if model.precision != "fp32":
                raise UnsupportedPipeline(f"precision {model.precision} (the light encoder is fp32 only)")
            return LightQueryEncoder(
                model.name,
                instruction,
                batch_size=model.batch_size,
                device=model.device,
                normalize_embeddings=model.normalize_embeddings,
                threads=model.threads,
                plan=plan_pipeline(resolve_model_path(model.name)),
            )
        except UnsupportedPipeline as exc:
            if choice == "light":
                raise ModelError(f"model {model.name!r} cannot use the light query encoder: {exc}") from None
            log.info("query encoder: using sentence-transformers for %s (%s)", model.name, exc)
    from flows.embedding import InstructorEmbeddingFunction

    return InstructorEmbeddingFunction(
        model_name=model.name,
        query_instruction=instruction,
        doc_instruction=model.doc_instruction,
        batch_size=model.batch_size,
        device=model.device,
        normalize_embeddings=model.normalize_embeddings,
        precision=model.precision,
        threads=model.threads,
    )
