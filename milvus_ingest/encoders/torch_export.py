"""The one-time build step of an export cache entry: torch + transformers → ONNX (optional int8)
or a TorchScript trace (fp32 or bf16).

Writes into a staging folder given by ``export.build_entry``: ``model.onnx`` or ``model.pt`` (inputs
``input_ids``, ``attention_mask`` and, for BERT-like models, ``token_type_ids``, all int64
``(batch, sequence)``; output ``token_embeddings``, the transformer's last hidden state, float32
``(batch, sequence, hidden)``; bf16 for a bf16 trace), the Dense weights as ``.npy`` and
tokenizer.json.  Pooling, Dense and normalisation stay in NumPy in the engine.

This is the only module of the exported engines that imports transformers and onnx (int8
quantization of an fp32 export needs onnx, not torch); it must never be imported at encode time
of an already-exported model, and it must never load sentence-transformers (the export works
from the folder's own files).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from milvus_ingest.encoders.layout import EXTERNAL_DATA_FILE, MODEL_FILE, TORCHSCRIPT_FILE, DenseSpec, ModelLayout
from milvus_ingest.errors import ModelError

OPSET = 17
_T5_TYPES = {"t5", "mt5", "umt5"}
_AXES = {0: "batch", 1: "sequence"}


def _load_transformer(layout: ModelLayout) -> Any:
    """The folder's transformer in fp32 eval mode: the T5 encoder alone for T5 models."""
    from transformers import AutoConfig, AutoModel, T5EncoderModel

    path = str(layout.transformer_dir)
    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(path)
            cls = T5EncoderModel if config.model_type in _T5_TYPES else AutoModel
            return cls.from_pretrained(path, attn_implementation="eager", dtype="float32").eval()
    except Exception as exc:  # noqa: BLE001 - any loader failure is one ModelError line
        raise ModelError(f"model {layout.folder} could not be loaded for export: {exc}") from None


@contextlib.contextmanager
def _quiet_transformers() -> Any:
    """Hold back transformers' notes on config keys it ignores and its weight-loading bar (in the
    middle of an ingest's output), then restore the caller's settings."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _token_embeddings(model: Any, input_names: list[str]) -> Any:
    """``model`` as a module taking positional id tensors and returning last_hidden_state."""
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(input_names, inputs))).last_hidden_state

    return TokenEmbeddings().eval()


def _input_names(model: Any) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")
    return names


def _special_ids(layout: ModelLayout) -> list[int]:
    """Ids the tokenizer calls special: a prompt's trailing one is not counted as the prompt's."""
    from transformers import AutoTokenizer

    return sorted(int(i) for i in AutoTokenizer.from_pretrained(str(layout.transformer_dir)).all_special_ids)


def _param_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _trace(model: Any, input_names: list[str], path: Path) -> None:
    import torch

    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in input_names)
    axes = {name: _AXES for name in [*input_names, "token_embeddings"]}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter about the TorchScript exporter
        torch.onnx.export(
            _token_embeddings(model, input_names),
            example,
            str(path),
            dynamo=False,
            input_names=input_names,
            output_names=["token_embeddings"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )


def _save_with_external_data(raw: Path, target: Path, data_name: str) -> None:
    """Re-save ``raw`` (and any tensor files beside it) as ``target`` + one external data file."""
    import onnx

    model = onnx.load(str(raw), load_external_data=True)
    onnx.save_model(
        model,
        str(target),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_name,
        size_threshold=1024,
    )


def _dense_weights(spec: DenseSpec) -> dict[str, np.ndarray]:
    """A Dense module's ``linear.weight`` / ``linear.bias`` from safetensors or a torch .bin file."""
    safetensors_file, bin_file = spec.folder / "model.safetensors", spec.folder / "pytorch_model.bin"
    if safetensors_file.is_file():
        from safetensors.numpy import load_file

        tensors = load_file(str(safetensors_file))
    elif bin_file.is_file():
        import torch

        tensors = {k: v.float().numpy() for k, v in torch.load(bin_file, map_location="cpu", weights_only=True).items()}
    else:
        raise ModelError(f"{spec.folder}: no Dense weights (model.safetensors or pytorch_model.bin)")
    weight, bias = tensors.get("linear.weight"), tensors.get("linear.bias")
    if weight is None or weight.shape != (spec.out_features, spec.in_features) or (bias is not None) != spec.bias:
        raise ModelError(f"{spec.folder}: Dense weights do not fit its config")
    return {"weight": weight, "bias": bias}


def _save_dense(layout: ModelLayout, staging: Path) -> list[dict[str, Any]]:
    saved = []
    for index, spec in enumerate(layout.dense):
        record: dict[str, Any] = {"activation": spec.activation, "bias": None}
        for part, array in _dense_weights(spec).items():
            if array is not None:
                name = f"dense_{index}_{part}.npy"
                np.save(staging / name, np.ascontiguousarray(array, dtype=np.float32))
                record[part] = name
        saved.append(record)
    return saved


def _manifest_body(layout: ModelLayout, model: Any, input_names: list[str], staging: Path) -> dict[str, Any]:
    """What every entry's manifest says about the model, after copying its tokenizer and Dense weights."""
    shutil.copyfile(layout.transformer_dir / "tokenizer.json", staging / "tokenizer.json")
    return {
        "dim": layout.dim,
        "max_seq_length": layout.max_seq_length,
        "do_lower_case": layout.do_lower_case,
        "input_names": input_names,
        "pad_id": int(getattr(model.config, "pad_token_id", None) or 0),
        "special_ids": _special_ids(layout),
        "dense": _save_dense(layout, staging),
    }


def export_model(layout: ModelLayout, staging: Path, force_external_data: bool, external_bytes: int) -> dict[str, Any]:
    """Write the fp32 ONNX graph, Dense weights and tokenizer into ``staging``; return the manifest body."""
    model = _load_transformer(layout)
    input_names = _input_names(model)
    external = force_external_data or _param_bytes(model) > external_bytes
    raw_dir = staging / "raw"
    raw_dir.mkdir()
    _trace(model, input_names, raw_dir / MODEL_FILE)
    if external:
        _save_with_external_data(raw_dir / MODEL_FILE, staging / MODEL_FILE, EXTERNAL_DATA_FILE)
    else:
        (raw_dir / MODEL_FILE).rename(staging / MODEL_FILE)
    shutil.rmtree(raw_dir)
    return {**_manifest_body(layout, model, input_names, staging), "graph_file": MODEL_FILE, "external_data": external}


def export_torchscript(layout: ModelLayout, staging: Path, precision: str) -> dict[str, Any]:
    """Write a frozen TorchScript trace of the transformer in ``precision`` (fp32 / bf16) into ``staging``.

    Traced with eager attention on a (2, 8) example, as the ONNX export is: the graph keeps the
    batch and sequence dimensions symbolic (the parity tests encode other shapes).
    """
    import torch

    model = _load_transformer(layout)
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    input_names = _input_names(model)
    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in input_names)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter
        traced = torch.jit.trace(_token_embeddings(model, input_names), example, check_trace=False)
        frozen = torch.jit.freeze(traced)
        torch.jit.save(frozen, str(staging / TORCHSCRIPT_FILE))
    return {**_manifest_body(layout, model, input_names, staging), "graph_file": TORCHSCRIPT_FILE, "external_data": False}


@contextlib.contextmanager
def _quiet_root_logger() -> Any:
    """quantize_dynamic logs a line per tensor to the root logger at INFO/WARNING: hold those back."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def quantize(source: Path, target: Path, scheme: dict[str, Any], external: bool) -> None:
    """Write the dynamic-int8 version (MatMul weights, ``scheme``) of the graph ``source`` to ``target``.

    With external data, ONNX Runtime names the new data file after the target: model.onnx.data.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(
            source,
            target,
            op_types_to_quantize=["MatMul"],
            per_channel=scheme["per_channel"],
            reduce_range=scheme["reduce_range"],
            weight_type=getattr(QuantType, scheme["weight_type"]),
            use_external_data_format=external,
        )
