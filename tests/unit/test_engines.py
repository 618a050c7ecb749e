"""Engine choice and the embedding function on each engine: config combinations, ``auto`` on
mocked machines, parity of the ONNX engine behind ``InstructorEmbeddingFunction``, bf16
agreement, the tokenizer for chunking, and the fallback to torch for what ONNX does not run.

Exports go to the session's temporary cache (``MILVUS_INGEST_CACHE``, set in conftest).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from milvus_ingest.chunking import TokenCounter
from milvus_ingest.config import settings_from_dict, settings_with_overrides
from milvus_ingest.encoders import measured
from milvus_ingest.encoders.engines import combo_problem, decide_engine
from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction, resolve_model_path
from milvus_ingest.encoders.torch_engine import TorchEngine
from milvus_ingest.encoders.torchscript_engine import TorchScriptEncoder
from milvus_ingest.errors import ConfigError, ModelError, UsageError
from tests.support.corpus import FIXTURES, MINILM_MODEL, REPO, T5_MODEL

PARITY = 1e-5  # unit vectors: ~100 float32 ulps
REFERENCES = {"t5": (str(T5_MODEL), "tiny-instructor-t5.json"), "minilm": (MINILM_MODEL, "all-minilm-l6-v2.json")}
#: torch bf16 against the fp32 reference rows, (cosine min, mean).  Measured on AVX512-BF16:
#: MiniLM 0.99935 / 0.99967, tiny T5 0.99986 / 0.99994; bf16 keeps 8 bits of mantissa (2^-8 ≈ 0.004
#: relative per value), so the bounds leave room for other CPUs' kernels and emulated bf16.
BF16_BOUNDS = {"t5": (0.999, 0.9995), "minilm": (0.995, 0.998)}

AVX2 = {"avx2", "fma"}
VNNI = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
BF16 = VNNI | {"avx512_bf16"}
NO_GPU = (False, False)


def _reference(name: str) -> tuple[list[list[str]], np.ndarray]:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data["pairs"], np.asarray(data["embeddings"], dtype=np.float32)


def _grouped(ef: InstructorEmbeddingFunction, pairs: list[list[str]]) -> np.ndarray:
    out = np.zeros((len(pairs), ef.dim), dtype=np.float32)
    for instruction in {i for i, _ in pairs}:
        index = [k for k, (i, _) in enumerate(pairs) if i == instruction][::-1]
        out[index] = ef.encode_array([pairs[k][1] for k in index], instruction)
    return out


@pytest.fixture(scope="module")
def functions() -> dict[tuple[str, str, str], InstructorEmbeddingFunction]:
    return {}


def _function(functions: dict, model: str, backend: str, precision: str) -> InstructorEmbeddingFunction:
    key = (model, backend, precision)
    if key not in functions:
        functions[key] = InstructorEmbeddingFunction(
            REFERENCES[model][0], batch_size=4, device="cpu", backend=backend, precision=precision
        )
    return functions[key]


# -- configuration ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"backend": "torch", "precision": "int8"}, "int8 runs on the ONNX engine only"),
        ({"backend": "onnx", "precision": "bf16"}, "the ONNX engine runs fp32 or int8, not bf16"),
        ({"backend": "onnx", "precision": "fp16"}, "not fp16"),
        ({"device": "cpu", "precision": "fp16"}, "fp16 needs a GPU"),
        ({"device": "cuda", "backend": "onnx"}, "the ONNX engine runs on the CPU"),
        ({"device": "cuda:1", "precision": "int8"}, "the ONNX engine runs on the CPU"),
        ({"backend": "tensorrt"}, "model.backend"),
        ({"precision": "int4"}, "model.precision"),
    ],
)
def test_bad_engine_combinations_are_one_line(model, expected):
    with pytest.raises(ConfigError) as err:
        settings_from_dict({"model": model}, origin="test.yaml")
    message = str(err.value)
    assert expected in message and "test.yaml" in message and "\n" not in message
    assert "Value error" not in message


@pytest.mark.parametrize(
    "model",
    [{}, {"backend": "onnx", "precision": "int8"}, {"backend": "torch", "precision": "bf16", "device": "cpu"},
     {"precision": "fp16", "device": "cuda"}, {"backend": "onnx", "device": "cpu"}, {"precision": "fp32"}],
)
def test_good_engine_combinations_validate(model):
    settings = settings_from_dict({"model": model})
    assert combo_problem(settings.model.backend, settings.model.precision, settings.model.device) is None
    assert settings.model.backend == model.get("backend", "auto")
    assert settings.model.precision == model.get("precision", "auto")


def test_flags_override_backend_and_precision_together(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backend: torch\n  precision: bf16\n", encoding="utf-8")
    both = settings_with_overrides(str(config), backend="onnx", precision="int8")  # each alone would be refused
    assert (both.model.backend, both.model.precision) == ("onnx", "int8")
    with pytest.raises(UsageError, match="^bad --backend/--precision: model.precision int8 runs on the ONNX"):
        settings_with_overrides(str(config), precision="int8")


# -- auto, on mocked machines -----------------------------------------------------------------
@pytest.fixture
def table(monkeypatch):
    """A measured table of one fake model, edited per test."""
    entry = {"names": ["fake/model"], "quality": {}, "speed": {}}
    monkeypatch.setattr(measured, "MODELS", {"fake": entry})
    return entry


def _choice(features, gpu=NO_GPU, name="fake/model", **kw):
    choice = decide_engine(name, features=features, gpu=gpu, **kw)
    return choice.backend, choice.precision


def test_auto_without_measurements_follows_the_cpu(table):
    assert _choice(BF16) == ("torch", "bf16")
    assert _choice(VNNI) == ("onnx", "fp32")  # int8 needs proof
    assert _choice(AVX2) == ("onnx", "fp32")
    assert _choice(AVX2, gpu=(True, True)) == ("torch", "bf16")
    assert _choice(AVX2, gpu=(True, False)) == ("torch", "fp16")
    choice = decide_engine("fake/model", features=BF16, gpu=NO_GPU)
    assert "avx512_bf16" in choice.reason and choice.cpu_features == tuple(sorted(BF16))
    assert set(choice.as_dict()) == {"backend", "precision", "reason", "cpu_features"}


def test_auto_takes_int8_only_within_the_ndcg_tolerance(table):
    table["quality"]["onnx-int8-s8"] = {"ndcg_delta": 0.004, "cosine": (0.99, 0.993)}
    table["quality"]["onnx-int8-u8"] = {"ndcg_delta": 0.009, "cosine": (0.99, 0.993)}
    assert _choice(VNNI) == ("onnx", "int8")  # s8 weights on VNNI: proven
    assert _choice(AVX2) == ("onnx", "fp32")  # u8 weights elsewhere: lost too much
    assert decide_engine("fake/model", features=VNNI, gpu=NO_GPU).as_dict()["int8_weights"] == "s8"
    table["quality"]["onnx-int8-s8"]["ndcg_delta_fp32_queries"] = 0.02  # the worse of both settings counts
    assert _choice(VNNI) == ("onnx", "fp32")


def test_with_native_bf16_the_faster_measured_engine_wins(table):
    table["quality"]["onnx-int8-s8"] = {"ndcg_delta": 0.001, "cosine": (0.99, 0.993)}
    assert _choice(BF16) == ("torch", "bf16")  # no speed measured: bf16, the rule without one
    table["speed"]["avx512_bf16+vnni"] = {"torch-bf16": 1.7, "onnx-int8": 2.0, "onnx-fp32": 1.0}
    assert _choice(BF16) == ("onnx", "int8")
    table["speed"]["avx512_bf16+vnni"] = {"torch-bf16": 2.2, "onnx-int8": 2.0, "onnx-fp32": 1.0}
    assert _choice(BF16) == ("torch", "bf16")
    table["quality"]["torch-bf16"] = {"ndcg_delta": 0.011, "cosine": (0.99, 0.99)}  # bf16 measured bad
    assert _choice(BF16) == ("onnx", "int8")
    del table["quality"]["onnx-int8-s8"]
    assert _choice(BF16) == ("onnx", "fp32")
    assert _choice(BF16, gpu=(True, True)) == ("torch", "fp32")  # bf16 is bad on a GPU too


def test_onnx_fp32_must_be_as_fast_as_torch_fp32(table):
    table["speed"]["avx2"] = {"onnx-fp32": 0.97}
    assert _choice(AVX2) == ("onnx", "fp32")  # within the noise band
    table["speed"]["avx2"] = {"onnx-fp32": 0.8}
    assert _choice(AVX2) == ("torch", "fp32")
    assert _choice(AVX2, precision="fp32") == ("torch", "fp32")


def test_partly_given_engines(table):
    assert _choice(AVX2, precision="int8") == ("onnx", "int8")  # what the user asked, proven or not
    assert _choice(AVX2, precision="bf16") == ("torch", "bf16")
    assert _choice(BF16, precision="fp32") == ("onnx", "fp32")
    assert _choice(AVX2, precision="fp32", gpu=(True, True)) == ("torch", "fp32")
    assert _choice(BF16, backend="torch") == ("torch", "bf16")
    assert _choice(AVX2, backend="torch") == ("torch", "fp32")
    assert _choice(VNNI, backend="onnx") == ("onnx", "fp32")
    table["quality"]["onnx-int8-s8"] = {"ndcg_delta": 0.0, "cosine": (0.99, 0.99)}
    assert _choice(VNNI, backend="onnx") == ("onnx", "int8")
    with pytest.raises(ModelError, match="fp16 needs a GPU and none is visible"):
        decide_engine("fake/model", precision="fp16", features=AVX2, gpu=NO_GPU)


def test_questions_run_on_onnx_like_the_documents_or_in_fp32(table):
    assert _choice(AVX2, for_queries=True) == ("onnx", "fp32")
    assert _choice(BF16, for_queries=True) == ("onnx", "fp32")  # documents would run torch bf16 here
    assert _choice(BF16, for_queries=True, gpu=(True, True)) == ("onnx", "fp32")  # never a GPU for a question
    table["quality"]["onnx-int8-s8"] = {"ndcg_delta": 0.0, "cosine": (0.99, 0.99)}
    assert _choice(VNNI, for_queries=True) == ("onnx", "int8")  # same engine as documents: measured so
    assert _choice(VNNI, for_queries=True, precision="fp32") == ("onnx", "fp32")
    assert _choice(BF16, for_queries=True, backend="torch") == ("torch", "bf16")  # the config said torch
    assert _choice(AVX2, for_queries=True, precision="bf16") == ("torch", "bf16")


def test_the_shipped_table_keeps_auto_within_the_tolerance():
    """Every measured model's figures are well formed, and what ``auto`` picks from them is proven."""
    from milvus_ingest.encoders.cpu import NDCG_TOLERANCE, int8_scheme

    assert measured.MODELS, "the package ships measured figures for its local model"
    for entry in measured.MODELS.values():
        for key, row in entry["quality"].items():
            assert key in {"torch-bf16", "torch-fp16", "onnx-fp32", "onnx-int8-s8", "onnx-int8-u8"}, key
            assert 0.9 < row["cosine"][0] <= row["cosine"][1] <= 1.0 + 1e-6
        for features in (AVX2, VNNI, BF16, BF16 | {"amx_bf16", "amx_int8"}):
            for name in entry["names"]:
                choice = decide_engine(name, features=features, gpu=NO_GPU)
                key = {"int8": f"onnx-int8-{int8_scheme(features)}", "bf16": "torch-bf16"}.get(choice.precision)
                row = entry["quality"].get(key) if key else None
                assert row is not None or choice.precision != "int8", (name, features)  # int8 needs proof
                if row is not None:
                    worst = max(row["ndcg_delta"], row.get("ndcg_delta_fp32_queries", row["ndcg_delta"]))
                    assert worst <= NDCG_TOLERANCE, (name, key)


def test_what_auto_picks_for_the_local_model_from_its_measurements():
    """MiniLM (docs/engines.md, benchmarks.quality 2026-12-03): bf16 lost ≤ 0.0017 nDCG@10; int8
    with s8 weights 0.0225 (0.0249 with fp32 questions), with u8 weights 0.0161: both refused.  So
    native-bf16 CPUs run torch bf16, and VNNI and AVX2 CPUs ONNX fp32, each reason naming the loss."""
    assert _choice(BF16, name=MINILM_MODEL) == ("torch", "bf16")
    assert _choice(VNNI, name=MINILM_MODEL) == ("onnx", "fp32")
    assert _choice(AVX2, name=MINILM_MODEL) == ("onnx", "fp32")
    assert "int8 loses 0.0249 nDCG@10 to fp32 at worst (tolerance 0.005)" in decide_engine(MINILM_MODEL, features=VNNI, gpu=NO_GPU).reason
    assert "int8 loses 0.0161 nDCG@10" in decide_engine(MINILM_MODEL, features=AVX2, gpu=NO_GPU).reason


# -- the embedding function on each engine ----------------------------------------------------
@pytest.mark.parametrize("model", ["t5", "minilm"])
def test_onnx_behind_the_embedding_function_matches_the_reference(functions, model):
    ef = _function(functions, model, "onnx", "fp32")
    pairs, expected = _reference(REFERENCES[model][1])
    assert (ef.backend, ef.precision, ef.device) == ("onnx", "fp32", "cpu")
    assert ef.dim == expected.shape[1]
    assert np.abs(_grouped(ef, pairs) - expected).max() <= PARITY
    for (instruction, text), row in zip(pairs, expected):
        assert np.abs(ef.encode([text], instruction)[0] - row).max() <= PARITY
    assert ef.encode_documents([]) == [] and ef.encode_queries([]) == []
    doc = ef.encode_documents([pairs[0][1]])[0]
    assert np.abs(doc - ef.encode_array([pairs[0][1]], ef.doc_instruction)[0]).max() == 0


@pytest.mark.parametrize("model", ["t5", "minilm"])
def test_bf16_agrees_with_fp32(functions, model):
    ef = _function(functions, model, "torch", "bf16")
    pairs, expected = _reference(REFERENCES[model][1])
    cosine = (_grouped(ef, pairs).astype(np.float64) * expected).sum(axis=1)
    low, mean = BF16_BOUNDS[model]
    assert cosine.min() >= low and cosine.mean() >= mean, (cosine.min(), cosine.mean())


def _sentence_transformers(functions: dict, model: str) -> TorchEngine:
    """The model on sentence-transformers itself (fp32, CPU): the reference the exported engines follow."""
    key = (model, "sentence-transformers", "fp32")
    if key not in functions:
        functions[key] = TorchEngine(resolve_model_path(REFERENCES[model][0]), "fp32", "cpu", batch_size=4)
    return functions[key]


@pytest.mark.parametrize("model", ["t5", "minilm"])
def test_onnx_tokenizer_counts_like_the_torch_one(functions, model):
    from tokenizers import Tokenizer

    onnx, torch_ef = _function(functions, model, "onnx", "fp32"), _sentence_transformers(functions, model)
    assert isinstance(onnx.tokenizer, Tokenizer)
    assert onnx.max_seq_length == torch_ef.max_seq_length
    pairs, _ = _reference(REFERENCES[model][1])
    texts = [i + t for i, t in pairs] + ["ünïcode, 中文 and emoji 🙂?", "  spaces  ", "word " * 700]
    ours, theirs = TokenCounter(onnx.tokenizer), TokenCounter(torch_ef.tokenizer)
    assert ours.count(texts) == theirs.count(texts)  # never truncated: the long text counts whole
    assert ours.count_with_specials(texts) == theirs.count_with_specials(texts)
    assert max(ours.count(texts)) > onnx.max_seq_length
    # The same ids (transformers 5 rebuilds a SentencePiece tokenizer with another pre-tokenizer,
    # whose offsets may leave out a token's leading space: the chunker uses the engine's own).
    for text in texts:
        ids = torch_ef.tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(ids) <= onnx.max_seq_length:
            assert onnx.tokenizer.encode(text).ids == ids
    assert len(onnx.tokenizer.encode(texts[-1]).ids) == onnx.max_seq_length  # the engine's copy truncates


@pytest.mark.parametrize("model", ["t5", "minilm"])
def test_torch_on_a_cpu_is_a_torchscript_trace_matching_the_reference(functions, model):
    """torch fp32 on a CPU runs the cached trace; it matches the original vectors like ONNX does."""
    ef = _function(functions, model, "torch", "fp32")
    pairs, expected = _reference(REFERENCES[model][1])
    assert isinstance(ef.engine, TorchScriptEncoder) and (ef.backend, ef.precision, ef.device) == ("torch", "fp32", "cpu")
    assert ef.engine.entry.model_file.name == "model.pt"
    assert np.abs(_grouped(ef, pairs) - expected).max() <= PARITY
    for (instruction, text), row in zip(pairs, expected):
        assert np.abs(ef.encode([text], instruction)[0] - row).max() <= PARITY


@pytest.mark.parametrize("model", ["t5", "minilm"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_trace_agrees_with_sentence_transformers(functions, model, precision):
    """Same texts, same instruction, batches of mixed lengths: the trace against sentence-transformers."""
    trace, st = _function(functions, model, "torch", precision), _sentence_transformers(functions, model)
    pairs, _ = _reference(REFERENCES[model][1])
    texts = [t for _, t in pairs] + ["short", "a somewhat longer text " * 9, "word " * 600]
    ours, theirs = trace.encode_array(texts, pairs[0][0]), st.encode_array(texts, pairs[0][0])
    if precision == "fp32":
        assert np.abs(ours - theirs).max() <= PARITY
    else:
        cosine = (ours.astype(np.float64) * theirs).sum(axis=1)
        low, mean = BF16_BOUNDS[model]
        assert cosine.min() >= low and cosine.mean() >= mean, (cosine.min(), cosine.mean())


def test_sentence_transformers_options_keep_torch_on_sentence_transformers():
    ef = InstructorEmbeddingFunction(str(T5_MODEL), device="cpu", backend="torch", precision="fp32", trust_remote_code=False)
    assert isinstance(ef.engine, TorchEngine)


def test_a_cached_torch_engine_imports_no_sentence_transformers(functions):
    """A fresh process loads torch bf16 from the cached trace: no transformers, no sentence-transformers."""
    _function(functions, "minilm", "torch", "bf16")
    script = (
        "import sys\n"
        "from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction\n"
        f"ef = InstructorEmbeddingFunction({MINILM_MODEL!r}, device='cpu', backend='torch', precision='bf16')\n"
        "ef.encode_documents(['a document'])\n"
        "print(type(ef.engine).__name__, sorted({'transformers', 'sentence_transformers', 'onnx'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "TorchScriptEncoder []", done.stdout


def test_a_model_onnx_does_not_run_falls_back_to_torch_under_auto(tmp_path):
    folder = tmp_path / "cls-pooling"
    shutil.copytree(T5_MODEL, folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    pooling.write_text(json.dumps(config))
    ef = InstructorEmbeddingFunction(str(folder), device="cpu", precision="fp32")
    assert ef.backend == "torch" and "ONNX engine" in ef.engine_info["reason"] and "mean only" in ef.engine_info["reason"]
    assert isinstance(ef.engine, TorchEngine)  # nor the trace: sentence-transformers pools it
    with pytest.raises(ModelError, match="mean only"):
        InstructorEmbeddingFunction(str(folder), device="cpu", backend="onnx")


def test_sentence_transformers_options_are_refused_by_onnx():
    with pytest.raises(ModelError, match="trust_remote_code: sentence-transformers options"):
        InstructorEmbeddingFunction(str(T5_MODEL), backend="onnx", trust_remote_code=False)


def test_a_cached_query_encoder_imports_no_torch(functions):
    """A fresh process loads the search's encoder from the cache and encodes without torch."""
    _function(functions, "minilm", "onnx", "fp32")
    _function(functions, "t5", "onnx", "fp32")
    script = (
        "import sys\n"
        "from milvus_ingest.config import ModelSettings\n"
        "from milvus_ingest.retrieval import load_query_encoder\n"
        f"for name in ({MINILM_MODEL!r}, {str(T5_MODEL)!r}):\n"
        "    m = ModelSettings(name=name, precision='fp32')\n"
        "    e = load_query_encoder(m, 'Represent the question for retrieval:')\n"
        "    e.encode_queries(['a question?'])\n"
        "    print(e.backend, e.precision)\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers', 'onnx', 'prefect', 'sklearn'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["onnx fp32", "onnx fp32", "[]"], result.stdout + result.stderr


def test_quality_evidence_says_loss_in_words_not_a_signed_delta():
    from milvus_ingest.encoders.cpu import half_verdict, int8_verdict

    ok, why = int8_verdict({"int8_ndcg_delta": 0.0249})
    assert not ok and why == "int8 loses 0.0249 nDCG@10 to fp32 at worst (tolerance 0.005)"
    ok, why = half_verdict("bf16", {"bf16_ndcg_delta": 0.0017})
    assert ok and why.startswith("bf16 loses 0.0017 nDCG@10")
    ok, why = half_verdict("bf16", {"bf16_ndcg_delta": -0.002})
    assert ok and why == "bf16 loses no nDCG@10 to fp32 (0.0020 better at worst; tolerance 0.005)"
    assert "+" not in why


def test_workers_reach_the_torch_engine_and_the_run_summary(request):
    """``model.workers`` is the TorchScript engine's batches at a time; the summary says how
    the threads were shared, and says nothing when one batch runs at a time."""
    import torch

    before = torch.get_num_threads()
    request.addfinalizer(lambda: torch.set_num_threads(before))
    settings = settings_from_dict(
        {"model": {"name": str(T5_MODEL), "backend": "torch", "precision": "fp32", "threads": 2, "workers": 2}}
    )
    ef = InstructorEmbeddingFunction.from_settings(settings.model)
    assert isinstance(ef.engine, TorchScriptEncoder) and ef.workers == 2
    assert ef.engine_info["batches_at_a_time"] == 2 and ef.engine_info["threads_per_batch"] == [1, 1]
    one = InstructorEmbeddingFunction(str(T5_MODEL), backend="torch", precision="fp32", threads=2, workers=1)
    assert one.workers == 1 and "batches_at_a_time" not in one.engine_info
    onnx = InstructorEmbeddingFunction(str(T5_MODEL), backend="onnx", precision="fp32", workers=2)
    assert onnx.workers == 1  # ONNX Runtime runs one batch at a time (no gain measured)
