"""Reads a sentence-transformers model folder into the recipe the ONNX engine reproduces.

The supported pipeline is what Instructor and MiniLM-style models use: a root ``Transformer``
(BERT-like or a T5 encoder) → ``Pooling`` (mean) → optional ``Dense`` modules → optional
``Normalize``.  This module only reads JSON configs: it must never import torch, transformers
or sentence-transformers, and never guess — a module, pooling mode or setting it does not
reproduce raises ``ModelError`` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milvus_ingest.errors import ModelError

_ST_PREFIX = "sentence_transformers.models."
_TRANSFORMER_KEYS = {"max_seq_length", "do_lower_case"}
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_POOLING_KEYS = {"word_embedding_dimension", "embedding_dimension", "pooling_mode", "include_prompt"}
_DENSE_KEYS = {"in_features", "out_features", "bias", "activation_function"}
#: Dense activations the engine applies in NumPy, by the name sentence-transformers saves.
DENSE_ACTIVATIONS = {"torch.nn.modules.linear.Identity": "identity", "torch.nn.modules.activation.Tanh": "tanh"}

#: The files of an exported engine entry (written by ``torch_export``, read by ``export``).
MODEL_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"
TORCHSCRIPT_FILE = "model.pt"


@dataclass
class DenseSpec:
    """One Dense module: its config and the folder holding its weights."""

    folder: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str  # a value of DENSE_ACTIVATIONS


@dataclass
class ModelLayout:
    """What modules.json asks for, checked."""

    folder: Path
    transformer_dir: Path
    max_seq_length: int
    do_lower_case: bool
    pooling_dim: int
    dense: list[DenseSpec] = field(default_factory=list)
    normalize: bool = False

    @property
    def dim(self) -> int:
        return self.dense[-1].out_features if self.dense else self.pooling_dim


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model file {path} cannot be read: {exc}") from None


def _pooling_dim(config: dict[str, Any], where: Path) -> int:
    """The pooling dimension, after checking the mode is plain mean pooling."""
    unknown = set(config) - _POOLING_KEYS - set(_LEGACY_POOLING)
    if unknown:
        raise ModelError(f"{where}: Pooling settings {sorted(unknown)} are not supported by the ONNX engine")
    mode = config.get("pooling_mode")
    if mode is None:
        mode = [name for key, name in _LEGACY_POOLING.items() if config.get(key)] or ["mean"]
    if isinstance(mode, str):
        mode = [mode]
    if list(mode) != ["mean"]:
        raise ModelError(f"{where}: pooling mode {mode!r} is not supported by the ONNX engine (mean only)")
    dim = config.get("embedding_dimension", config.get("word_embedding_dimension"))
    if not isinstance(dim, int) or dim < 1:
        raise ModelError(f"{where}: Pooling config has no embedding dimension")
    return dim


def _dense_spec(folder: Path) -> DenseSpec:
    config = _read_json(folder / "config.json")
    if set(config) - _DENSE_KEYS:
        raise ModelError(f"{folder}: Dense settings {sorted(set(config) - _DENSE_KEYS)} are not supported")
    activation = config.get("activation_function", "torch.nn.modules.activation.Tanh")
    if activation not in DENSE_ACTIVATIONS:
        raise ModelError(f"{folder}: Dense activation {activation!r} is not supported by the ONNX engine")
    return DenseSpec(
        folder,
        int(config["in_features"]),
        int(config["out_features"]),
        bool(config.get("bias", True)),
        DENSE_ACTIVATIONS[activation],
    )


def _transformer_settings(transformer_dir: Path) -> tuple[int, bool]:
    config_file = transformer_dir / "sentence_bert_config.json"
    config = _read_json(config_file) if config_file.is_file() else {}
    unknown = {k for k, v in config.items() if k not in _TRANSFORMER_KEYS and v not in ({}, None, [])}
    if unknown:
        raise ModelError(f"{config_file}: Transformer settings {sorted(unknown)} are not supported")
    if not config.get("max_seq_length"):
        raise ModelError(f"{config_file}: no max_seq_length (the ONNX engine needs the model's limit)")
    return int(config["max_seq_length"]), bool(config.get("do_lower_case", False))


def read_layout(folder: str | Path) -> ModelLayout:
    """Read and check modules.json and each module's config; raise ``ModelError`` if unsupported."""
    root = Path(folder)
    modules = _read_json(root / "modules.json") if (root / "modules.json").is_file() else None
    if not isinstance(modules, list) or len(modules) < 2:
        raise ModelError(f"{root}: no usable modules.json (not a sentence-transformers model folder)")
    modules = sorted(modules, key=lambda m: m.get("idx", 0))
    kinds = [str(m.get("type", "")).removeprefix(_ST_PREFIX) for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"]:
        raise ModelError(f"{root}: pipeline {kinds} does not start with Transformer, Pooling")
    transformer_dir = root / (modules[0].get("path") or "")
    max_seq_length, lower = _transformer_settings(transformer_dir)
    pooling_dir = root / (modules[1].get("path") or "")
    layout = ModelLayout(
        root, transformer_dir, max_seq_length, lower, _pooling_dim(_read_json(pooling_dir / "config.json"), pooling_dir)
    )
    for module, kind in zip(modules[2:], kinds[2:]):
        if layout.normalize:
            raise ModelError(f"{root}: module {kind} after Normalize is not supported")
        if kind == "Dense":
            layout.dense.append(_dense_spec(root / (module.get("path") or "")))
        elif kind == "Normalize":
            layout.normalize = True
        else:
            raise ModelError(f"{root}: module type {module.get('type')!r} is not supported by the ONNX engine")
    if not (transformer_dir / "tokenizer.json").is_file():
        raise ModelError(f"{transformer_dir}: no tokenizer.json (the ONNX engine needs a fast tokenizer)")
    return layout
