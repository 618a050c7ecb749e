"""BERT and T5 encoder forward passes in NumPy, for encoding questions without importing torch.

The search command answers one question from a cold start; importing torch and transformers'
modelling code costs ~6-9 s on our 2-core machines, while a question needs a few milliseconds of
arithmetic.  These are the same computations as transformers' ``BertModel`` and ``T5EncoderModel``
(inference only: no dropout, fp32), checked against them to 1e-5 in ``tests/test_search.py``.
Weights come from ``model.safetensors`` or a zip-format ``pytorch_model.bin`` read by a restricted
unpickler that builds arrays and nothing else.

This module must never import torch or transformers, and never guess: a config value or a
checkpoint it does not know raises ``UnsupportedModel``, and the caller uses the full encoder.
"""

from __future__ import annotations

import collections
import json
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


class UnsupportedModel(Exception):
    """The model or checkpoint is outside what this module reproduces exactly."""


# -- weights ------------------------------------------------------------------------------
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def read_torch_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """Arrays of a zip-format ``torch.save`` state dict, without torch (and without running code).

    Only the handful of globals a plain tensor state dict pickles are allowed; anything else is
    refused, as is the pre-1.6 legacy format.
    """
    if not zipfile.is_zipfile(path):
        raise UnsupportedModel(f"{path.name} is not a zip-format torch checkpoint")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise UnsupportedModel(f"{path.name} has no single data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise UnsupportedModel(f"{path.name} is not little-endian")
        storages: dict[str, np.ndarray] = {}

        def load_storage(kind: str, key: str) -> np.ndarray:
            if key not in storages:
                storages[key] = np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=_STORAGE_DTYPES[kind])
            return storages[key]

        def rebuild_tensor(storage: np.ndarray, offset: int, size: Any, stride: Any, *_: Any) -> np.ndarray:
            shape, steps = tuple(size), tuple(stride)
            if not shape:
                return np.array(storage[offset])
            count = int(np.prod(shape))
            if count == 0:
                return np.zeros(shape, dtype=storage.dtype)
            last = offset + sum((dim - 1) * step for dim, step in zip(shape, steps))
            if offset < 0 or min(steps) < 0 or last >= storage.size:  # as_strided would read past the buffer
                raise UnsupportedModel(f"checkpoint {path.name} has a tensor beyond its storage")
            contiguous = tuple(int(np.prod(shape[i + 1 :])) for i in range(len(shape)))
            if steps == contiguous:  # the usual case: a read-only view, no copy of a large model
                return storage[offset : offset + count].reshape(shape)
            itemsize = storage.itemsize
            view = np.lib.stride_tricks.as_strided(
                storage[offset:], shape=shape, strides=tuple(s * itemsize for s in steps), writeable=False
            )
            return np.array(view)

        def rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
            return data

        class _Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if module == "collections" and name == "OrderedDict":
                    return collections.OrderedDict
                if module == "torch._utils" and name == "_rebuild_tensor_v2":
                    return rebuild_tensor
                if module == "torch._utils" and name == "_rebuild_parameter":
                    return rebuild_parameter
                if module == "torch" and name in _STORAGE_DTYPES:
                    return name
                raise UnsupportedModel(f"checkpoint {path.name} needs {module}.{name}")

            def persistent_load(self, pid: Any) -> Any:
                if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
                    raise UnsupportedModel(f"checkpoint {path.name} has an unknown storage record")
                kind, key = pid[1], str(pid[2])
                if kind not in _STORAGE_DTYPES:
                    raise UnsupportedModel(f"checkpoint {path.name} holds {kind} tensors")
                return load_storage(kind, key)

        with archive.open(pickles[0]) as handle:
            state = _Unpickler(handle).load()
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise UnsupportedModel(f"{path.name} is not a plain state dict of tensors")
    return dict(state)


def load_weights(folder: Path) -> dict[str, np.ndarray]:
    """The arrays in ``model.safetensors`` (preferred) or ``pytorch_model.bin`` of ``folder``."""
    if (folder / "model.safetensors").is_file():
        from safetensors.numpy import load_file

        try:
            return load_file(str(folder / "model.safetensors"))
        except Exception as exc:  # e.g. bf16 tensors, which NumPy has no type for
            raise UnsupportedModel(f"{folder.name}/model.safetensors: {exc}") from None
    if (folder / "pytorch_model.bin").is_file():
        return read_torch_checkpoint(folder / "pytorch_model.bin")
    raise UnsupportedModel(f"no model.safetensors or pytorch_model.bin in {folder}")


# -- activations and norms ----------------------------------------------------------------
def _erf(x: np.ndarray) -> np.ndarray:
    """erf in float32 to an absolute error below 1.5e-7 (Abramowitz & Stegun 7.1.26), in place."""
    z = np.abs(x, dtype=np.float32)
    t = np.multiply(z, np.float32(0.3275911))
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = np.full_like(t, np.float32(1.061405429))
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly *= t
        poly += np.float32(coefficient)
    poly *= t
    np.multiply(z, z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z
    np.subtract(np.float32(1.0), poly, out=poly)  # erf(|x|)
    return np.copysign(poly, x, out=poly)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as ``torch.nn.functional.gelu``: 0.5 x (1 + erf(x / sqrt 2))."""
    x = x.astype(np.float32, copy=False)
    out = _erf(x * np.float32(1.0 / math.sqrt(2.0)))
    out += np.float32(1.0)
    out *= x
    out *= np.float32(0.5)
    return out


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """The tanh approximation (transformers' ``gelu_new`` / ``gelu_pytorch_tanh``)."""
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64**3)))).astype(np.float32)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0).astype(np.float32)


ACTIVATIONS = {"gelu": gelu, "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh, "relu": relu}


def _activation(name: str) -> Any:
    if name not in ACTIVATIONS:
        raise UnsupportedModel(f"activation {name!r} is not reproduced")
    return ACTIVATIONS[name]


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps) * weight + bias).astype(np.float32)


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """T5's LayerNorm: scale only, no mean subtraction, no bias."""
    variance = (x.astype(np.float32) ** 2).mean(axis=-1, keepdims=True)
    return (weight * (x / np.sqrt(variance + eps))).astype(np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    out = x @ weight.T
    return out + bias if bias is not None else out


def _heads(x: np.ndarray, heads: int) -> np.ndarray:
    batch, length, width = x.shape
    return x.reshape(batch, length, heads, width // heads).transpose(0, 2, 1, 3)


def _merge(x: np.ndarray) -> np.ndarray:
    batch, heads, length, size = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch, length, heads * size)


def _mask_bias(mask: np.ndarray) -> np.ndarray:
    """0 where attended, float32 min where padded, shaped to broadcast over heads and queries."""
    return ((1.0 - mask[:, None, None, :].astype(np.float32)) * np.finfo(np.float32).min).astype(np.float32)


def _require(weights: dict[str, np.ndarray], prefixes: tuple[str, ...], probe: str) -> str:
    for prefix in prefixes:
        if prefix + probe in weights:
            return prefix
    raise UnsupportedModel(f"checkpoint has no {probe!r} weight")


# -- BERT ---------------------------------------------------------------------------------
class BertEncoder:
    """``BertModel``'s last hidden state (absolute positions, post-norm layers)."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray]):
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise UnsupportedModel("BERT with relative position embeddings is not reproduced")
        if config.get("is_decoder") or config.get("add_cross_attention"):
            raise UnsupportedModel("a BERT decoder is not reproduced")
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.act = _activation(str(config.get("hidden_act", "gelu")))
        p = _require(weights, ("", "bert."), "embeddings.word_embeddings.weight")
        self.w = {k[len(p) :]: v.astype(np.float32, copy=False) for k, v in weights.items() if k.startswith(p)}
        for i in range(self.layers):
            _require(self.w, ("",), f"encoder.layer.{i}.attention.self.query.weight")

    def __call__(self, ids: np.ndarray, mask: np.ndarray, type_ids: np.ndarray) -> np.ndarray:
        w = self.w
        length = ids.shape[1]
        positions = np.arange(length)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions][None]
        x = x + w["embeddings.token_type_embeddings.weight"][type_ids]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        bias = _mask_bias(mask)
        scale = np.float32(1.0 / math.sqrt(x.shape[-1] // self.heads))
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = _heads(_linear(x, w[p + "attention.self.query.weight"], w[p + "attention.self.query.bias"]), self.heads)
            k = _heads(_linear(x, w[p + "attention.self.key.weight"], w[p + "attention.self.key.bias"]), self.heads)
            v = _heads(_linear(x, w[p + "attention.self.value.weight"], w[p + "attention.self.value.bias"]), self.heads)
            probs = softmax((q @ k.transpose(0, 1, 3, 2)) * scale + bias)
            attended = _linear(
                _merge(probs @ v), w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"]
            )
            x = layer_norm(
                attended + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            hidden = self.act(_linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
            out = _linear(hidden, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
            x = layer_norm(out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        return x.astype(np.float32)


# -- T5 -----------------------------------------------------------------------------------
def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """T5's bidirectional relative-position buckets, ``(query, key)``, computed as transformers does."""
    context = np.arange(length)[:, None]
    memory = np.arange(length)[None, :]
    relative = memory - context
    half = num_buckets // 2
    buckets = (relative > 0).astype(np.int64) * half
    distance = np.abs(relative)
    max_exact = half // 2
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.log(distance.astype(np.float32) / np.float32(max_exact)) / np.float32(
            math.log(max_distance / max_exact)
        )
        large = max_exact + np.nan_to_num(scaled * np.float32(half - max_exact), neginf=0.0).astype(np.int64)
    large = np.minimum(large, half - 1)
    return buckets + np.where(distance < max_exact, distance, large)


class T5Encoder:
    """``T5EncoderModel``'s last hidden state (relu or gated FF, RMS norms, shared position bias)."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray]):
        projection = str(config.get("feed_forward_proj", "relu"))
        gated = projection.startswith("gated-")
        act = projection.split("-", 1)[1] if gated else projection
        if act == "gelu" and gated:
            act = "gelu_new"  # as transformers' T5Config maps "gated-gelu"
        if config.get("dense_act_fn", act) != act or bool(config.get("is_gated_act", gated)) != gated:
            raise UnsupportedModel(f"T5 feed_forward_proj {projection!r} disagrees with dense_act_fn/is_gated_act")
        self.gated = gated
        self.act = _activation(act)
        self.heads = int(config["num_heads"])
        self.layers = int(config["num_layers"])
        self.eps = float(config.get("layer_norm_epsilon", 1e-6))
        self.num_buckets = int(config.get("relative_attention_num_buckets", 32))
        self.max_distance = int(config.get("relative_attention_max_distance", 128))
        w = {k: v.astype(np.float32, copy=False) for k, v in weights.items()}
        embed = w.get("shared.weight", w.get("encoder.embed_tokens.weight"))
        if embed is None:
            raise UnsupportedModel("T5 checkpoint has no shared.weight")
        self.embed = embed
        self.w = w
        for i in range(self.layers):
            _require(w, ("encoder.",), f"block.{i}.layer.0.SelfAttention.q.weight")
        _require(w, ("encoder.",), "block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        ff = "wi_0" if gated else "wi"
        _require(w, ("encoder.",), f"block.0.layer.1.DenseReluDense.{ff}.weight")

    def __call__(self, ids: np.ndarray, mask: np.ndarray, type_ids: np.ndarray | None = None) -> np.ndarray:
        w = self.w
        x = self.embed[ids].astype(np.float32)
        length = ids.shape[1]
        table = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        buckets = relative_position_buckets(length, self.num_buckets, self.max_distance)
        position_bias = table[buckets].transpose(2, 0, 1)[None] + _mask_bias(mask)
        for i in range(self.layers):
            p = f"encoder.block.{i}.layer."
            h = rms_norm(x, w[p + "0.layer_norm.weight"], self.eps)
            q = _heads(_linear(h, w[p + "0.SelfAttention.q.weight"]), self.heads)
            k = _heads(_linear(h, w[p + "0.SelfAttention.k.weight"]), self.heads)
            v = _heads(_linear(h, w[p + "0.SelfAttention.v.weight"]), self.heads)
            probs = softmax(q @ k.transpose(0, 1, 3, 2) + position_bias)  # T5 does not scale scores
            x = x + _linear(_merge(probs @ v), w[p + "0.SelfAttention.o.weight"])
            h = rms_norm(x, w[p + "1.layer_norm.weight"], self.eps)
            if self.gated:
                inner = self.act(_linear(h, w[p + "1.DenseReluDense.wi_0.weight"])) * _linear(
                    h, w[p + "1.DenseReluDense.wi_1.weight"]
                )
            else:
                inner = self.act(_linear(h, w[p + "1.DenseReluDense.wi.weight"]))
            x = x + _linear(inner, w[p + "1.DenseReluDense.wo.weight"])
        return rms_norm(x, w["encoder.final_layer_norm.weight"], self.eps)


def load_encoder(folder: Path) -> BertEncoder | T5Encoder:
    """The NumPy encoder for the transformers model in ``folder`` (config.json + weights)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedModel(f"config.json cannot be read: {exc}") from None
    kind = config.get("model_type")
    weights = load_weights(folder)
    floats = {v.dtype for v in weights.values() if v.dtype.kind == "f"}
    if floats - {np.dtype(np.float32)}:
        raise UnsupportedModel(f"weights of type {sorted(str(f) for f in floats)} (only float32 is reproduced)")
    if kind == "bert":
        return BertEncoder(config, weights)
    if kind == "t5":
        return T5Encoder(config, weights)
    raise UnsupportedModel(f"model type {kind!r} is not reproduced (bert and t5 are)")


__all__ = ["BertEncoder", "T5Encoder", "UnsupportedModel", "load_encoder", "load_weights", "read_torch_checkpoint"]
