"""The NumPy query encoder: parity with ``InstructorEmbeddingFunction`` to 1e-5, and its refusals.

Parity is checked on both test models (tiny T5 + Dense, MiniLM), against the original
InstructorEmbedding package's vectors, and on BERT/T5 variants built here from small random
configs (gated-GELU T5 saved as ``pytorch_model.bin``, a ReLU BERT saved with a ``bert.`` prefix),
so that every code path the encoder accepts has been compared with transformers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from milvus_ingest.config import ModelSettings
from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction, resolve_model_path
from milvus_ingest.encoders.numpy_models import (
    UnsupportedModel,
    gelu,
    gelu_tanh,
    read_torch_checkpoint,
    relative_position_buckets,
)
from milvus_ingest.encoders.query_encoder import (
    NumpyQueryEncoder,
    UnsupportedPipeline,
    load_query_encoder,
    plan_pipeline,
)
from milvus_ingest.errors import ModelError
from tests.support.corpus import FIXTURES, MINILM_MODEL, REPO, T5_MODEL

TEXTS = [
    "Who was thrown into the den of lions?",
    "  leading and trailing spaces  ",
    "a",
    "ünïcode, 中文 and emoji 🙂?",
    "A long question that goes on and on about the harbour and the glacier. " * 40,  # truncated
]
INSTRUCTIONS = [
    "Represent the question for retrieval:",
    "",
    "Represent the Wikipedia question for retrieving supporting documents: ",
]


def assert_parity(light: NumpyQueryEncoder, full: InstructorEmbeddingFunction) -> None:
    assert (light.dim, light.max_seq_length) == (full.dim, full.max_seq_length)
    for instruction in INSTRUCTIONS:
        got, expected = light.encode_array(TEXTS, instruction), full.encode_array(TEXTS, instruction)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-5, instruction
    one_by_one = np.stack([light.encode_array([t], INSTRUCTIONS[0])[0] for t in TEXTS])  # no padding at all
    assert np.abs(one_by_one - full.encode_array(TEXTS, INSTRUCTIONS[0])).max() <= 1e-5


@pytest.mark.parametrize("model", [str(T5_MODEL), MINILM_MODEL], ids=["tiny-t5", "minilm"])
def test_numpy_encoder_matches_the_full_one_and_the_original_package(model, t5_embedder, minilm_embedder):
    full = t5_embedder if model == str(T5_MODEL) else minilm_embedder
    light = load_query_encoder(ModelSettings(name=model, device="cpu", batch_size=2))
    assert isinstance(light, NumpyQueryEncoder)
    assert_parity(light, full)
    for text in TEXTS:  # same token ids as the model's own tokenizer, truncation included
        expected = full.tokenizer(INSTRUCTIONS[0] + text.strip(), truncation=True, max_length=full.max_seq_length)
        assert light.tokenizer.backend_tokenizer.encode(INSTRUCTIONS[0] + text.strip()).ids == expected["input_ids"]
    name = "tiny-instructor-t5.json" if full is t5_embedder else "all-minilm-l6-v2.json"
    reference = json.loads((FIXTURES / name).read_text())
    for (instruction, text), row in zip(reference["pairs"], np.asarray(reference["embeddings"], dtype=np.float32)):
        assert np.abs(light.encode_array([text], instruction)[0] - row).max() <= 1e-5


def _variant(tmp_path: Path, base: str) -> Path:
    """A sentence-transformers folder: ``base``'s tokenizer and modules, without its transformer."""
    folder, root = tmp_path / "variant", resolve_model_path(base)
    transformer = {"model.safetensors", "pytorch_model.bin", "config.json"}
    shutil.copytree(root, folder, ignore=lambda where, names: transformer & set(names) if where == root else set())
    return folder


def test_gated_gelu_t5_from_a_torch_checkpoint(tmp_path):
    import torch
    from transformers import T5Config, T5EncoderModel

    base = json.loads((T5_MODEL / "config.json").read_text())
    base = {k: v for k, v in base.items() if k not in ("dense_act_fn", "is_gated_act")}
    config = T5Config(**{**base, "feed_forward_proj": "gated-gelu", "num_layers": 3})
    folder = _variant(tmp_path, str(T5_MODEL))
    model = T5EncoderModel(config)
    config.save_pretrained(str(folder))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # shared.weight and embed_tokens share storage
    light = NumpyQueryEncoder(str(folder), INSTRUCTIONS[0], batch_size=2)
    assert light._encoder.gated and light._encoder.layers == 3
    assert_parity(light, InstructorEmbeddingFunction(str(folder), device="cpu", batch_size=2))


def test_relu_bert_with_a_prefixed_checkpoint(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    base = json.loads((Path(resolve_model_path(MINILM_MODEL)) / "config.json").read_text())
    config = BertConfig(
        **{
            **base,
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "hidden_act": "relu",
        }
    )
    folder = _variant(tmp_path, MINILM_MODEL)
    BertForMaskedLM(config).save_pretrained(str(folder))
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "word_embedding_dimension": 64}))
    light = NumpyQueryEncoder(str(folder), INSTRUCTIONS[0], batch_size=2)
    assert light.dim == 64
    assert_parity(light, InstructorEmbeddingFunction(str(folder), device="cpu", batch_size=2))


def test_relative_position_buckets_match_transformers():
    import torch
    from transformers.models.t5.modeling_t5 import T5Attention

    for buckets, distance in [(32, 128), (32, 64), (64, 256)]:
        length = 600
        relative = torch.arange(length)[None, :] - torch.arange(length)[:, None]
        expected = T5Attention._relative_position_bucket(relative, True, buckets, distance).numpy()
        assert (relative_position_buckets(length, buckets, distance) == expected).all()


def test_activations_match_torch():
    import torch

    x = np.linspace(-12, 12, 200_001, dtype=np.float32)
    t = torch.from_numpy(x)
    # A few float32 ulps of the value (CPUs differ in their exp/erf kernels: AVX2 vs AVX-512).
    bound = 8 * np.finfo(np.float32).eps * np.maximum(1.0, np.abs(x))
    assert (np.abs(gelu(x) - torch.nn.functional.gelu(t).numpy()) <= bound).all()
    assert (np.abs(gelu_tanh(x) - torch.nn.functional.gelu(t, approximate="tanh").numpy()) <= bound).all()


def test_torch_checkpoints_are_read_without_torch_and_without_running_code(tmp_path):
    import torch

    dense = T5_MODEL / "2_Dense" / "pytorch_model.bin"
    expected = torch.load(dense, map_location="cpu", weights_only=True)
    got = read_torch_checkpoint(dense)
    assert set(got) == set(expected)
    for key, tensor in expected.items():
        assert got[key].dtype == np.float32 and np.array_equal(got[key], tensor.numpy())

    strided = {"t": torch.arange(12, dtype=torch.float32).reshape(3, 4).t()}  # a non-contiguous view
    torch.save(strided, tmp_path / "strided.bin")
    assert np.array_equal(read_torch_checkpoint(tmp_path / "strided.bin")["t"], strided["t"].numpy())

    torch.save({"w": torch.zeros(2), "hook": print}, tmp_path / "code.bin")
    with pytest.raises(UnsupportedModel, match=r"needs .*print"):
        read_torch_checkpoint(tmp_path / "code.bin")
    torch.save({"w": torch.zeros(2, dtype=torch.bfloat16)}, tmp_path / "bf16.bin")
    with pytest.raises(UnsupportedModel, match="BFloat16Storage"):
        read_torch_checkpoint(tmp_path / "bf16.bin")


def test_what_it_cannot_reproduce_goes_to_sentence_transformers(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(T5_MODEL, folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "sentence_transformers.models.WeightedLayerPooling"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsupportedPipeline, match="WeightedLayerPooling"):
        plan_pipeline(folder)

    calls = []

    class FullEncoder:  # stands in for InstructorEmbeddingFunction: records what it was asked for
        @classmethod
        def from_settings(cls, model, query_instruction=None):
            calls.append({"model_name": model.name, "query_instruction": query_instruction})
            return "full"

    monkeypatch.setattr("milvus_ingest.encoders.instructor.InstructorEmbeddingFunction", FullEncoder)
    assert load_query_encoder(ModelSettings(name=str(folder), device="cpu")) == "full"
    assert calls[-1]["model_name"] == str(folder)
    assert load_query_encoder(ModelSettings(name=str(T5_MODEL), device="cpu", precision="bf16")) == "full"
    assert load_query_encoder(ModelSettings(name=str(T5_MODEL), device="cuda")) == "full"
    monkeypatch.setenv("FLOWS_QUERY_ENCODER", "full")
    assert load_query_encoder(ModelSettings(name=str(T5_MODEL), device="cpu")) == "full"

    monkeypatch.setenv("FLOWS_QUERY_ENCODER", "numpy")
    with pytest.raises(ModelError, match="NumPy query encoder"):
        load_query_encoder(ModelSettings(name=str(folder), device="cpu"))


def test_searching_from_python_imports_neither_torch_nor_prefect():
    """A QA step imports milvus_ingest.retrieval and milvus_ingest.context; the model path must stay this light."""
    code = (
        "import sys; import milvus_ingest.retrieval, milvus_ingest.context;"
        "from milvus_ingest.config import ModelSettings; from milvus_ingest.encoders.query_encoder import load_query_encoder;"
        f"e = load_query_encoder(ModelSettings(name={MINILM_MODEL!r}, device='cpu'));"
        "e.encode_queries(['a question']);"
        "heavy = ('torch', 'transformers', 'sentence_transformers', 'prefect', 'sklearn');"
        "heavy = [m for m in heavy if m in sys.modules];"
        "print(type(e).__name__, heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "NumpyQueryEncoder []"
