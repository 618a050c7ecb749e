"""``python -m benchmarks.gpu [--quick] [--tiny]``: instructor-xl's shape on a GPU, through our encode path.

No download: the encoder is built from a config with random weights, in the shape of
``hkunlp/instructor-xl`` (GTR-T5-XL, i.e. the encoder of the original T5-3B: 24 layers, d_model
1024, 32 heads of d_kv 128, d_ff 16384, ReLU, vocab 32128, 1.24 B parameters) plus Instructor's
``2_Dense`` (1024 → 768, no bias) and ``Normalize``.  It is saved as a sentence-transformers
folder (tokenizer copied from ``tests/fixtures/tiny-instructor-t5``, whose 2,112 ids all fall
inside the 32,128-row embedding) and loaded by ``InstructorEmbeddingFunction`` exactly as the
pipeline loads a model.  For each precision and batch size it reports:

- ``encode_array`` (the pipeline's call: tokenize, sort, pad, forward, pool, normalise, copy back);
- the forward pass alone on pre-tokenized batches (the chip's share);
- real tokens/s, padded token slots/s, achieved FLOP/s (2 × matmul parameters per token slot plus
  attention) and that as a fraction of the chip's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s);
- cosine agreement of bf16/fp16 rows with fp32 rows.

``--tiny`` shrinks the shape so the script can be checked on a CPU in seconds.  Never run in CI on
a GPU-less machine without ``--tiny``; this module must never download anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOKENIZER_FROM = REPO / "tests" / "fixtures" / "tiny-instructor-t5"
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")
INSTRUCTION = "Represent the document for retrieval:"

#: Dense bf16 peak TFLOP/s by GPU name fragment (vendor datasheets, no sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10G": 70.0, "A10": 125.0, "B200": 2250.0}


@dataclass(frozen=True)
class Shape:
    """A T5 encoder + Instructor head."""

    layers: int
    d_model: int
    heads: int
    d_kv: int
    d_ff: int
    vocab: int
    out_dim: int
    feed_forward: str = "relu"

    @property
    def inner(self) -> int:
        return self.heads * self.d_kv

    def matmul_params(self) -> int:
        """Weights every token slot multiplies through (not the embedding lookup)."""
        attention = 4 * self.d_model * self.inner
        ffn = (3 if self.feed_forward.startswith("gated") else 2) * self.d_model * self.d_ff
        return self.layers * (attention + ffn) + self.d_model * self.out_dim

    def parameters(self) -> int:
        return self.matmul_params() + self.vocab * self.d_model

    def flops(self, batch: int, seq: int) -> float:
        """Forward FLOPs of one padded batch: 2 per multiply-add, attention scores and mixing included."""
        dense = 2.0 * self.matmul_params() * batch * seq
        attention = self.layers * 4.0 * batch * seq * seq * self.inner
        return dense + attention


INSTRUCTOR_XL = Shape(layers=24, d_model=1024, heads=32, d_kv=128, d_ff=16384, vocab=32128, out_dim=768)
TINY = Shape(layers=2, d_model=64, heads=4, d_kv=16, d_ff=128, vocab=32128, out_dim=48)


def build_model(shape: Shape, folder: Path, device: str) -> Path:
    """Write a sentence-transformers folder: random T5 encoder, tokenizer, Pooling, Dense, Normalize."""
    import torch
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=shape.vocab, d_model=shape.d_model, d_kv=shape.d_kv, d_ff=shape.d_ff, num_layers=shape.layers,
        num_heads=shape.heads, feed_forward_proj=shape.feed_forward, relative_attention_num_buckets=32,
        relative_attention_max_distance=128, dropout_rate=0.0, is_encoder_decoder=False, use_cache=False,
        pad_token_id=0, eos_token_id=1,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = T5EncoderModel(config)
    model.save_pretrained(folder, safe_serialization=True)
    del model
    for name in TOKENIZER_FILES:
        if (TOKENIZER_FROM / name).exists():
            shutil.copy(TOKENIZER_FROM / name, folder / name)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": shape.d_model, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    }))
    (folder / "2_Dense").mkdir(exist_ok=True)
    (folder / "2_Dense" / "config.json").write_text(json.dumps({
        "in_features": shape.d_model, "out_features": shape.out_dim, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    }))
    weight = torch.randn(shape.out_dim, shape.d_model, generator=torch.Generator().manual_seed(1)) / shape.d_model**0.5
    torch.save({"linear.weight": weight}, folder / "2_Dense" / "pytorch_model.bin")
    (folder / "3_Normalize").mkdir(exist_ok=True)
    return folder


def make_texts(tokenizer: Any, count: int, tokens: int) -> list[str]:
    """``count`` texts of about ``tokens`` tokens each (with the instruction), cut from generated prose."""
    import random

    from benchmarks.corpus import _SentencePool

    pool = _SentencePool(seed=3, size=2_000)
    rng = random.Random(5)
    budget = max(8, tokens - len(tokenizer(INSTRUCTION)["input_ids"]))
    texts: list[str] = []
    while len(texts) < count:
        words = pool.paragraph(rng, f"({len(texts)})").split()
        while len(words) < budget * 2:
            words += pool.paragraph(rng, "").split()
        text = " ".join(words[:budget])
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: budget - 1]
        texts.append(tokenizer.decode(ids))
    return texts


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    for fragment, peak in PEAK_BF16_TFLOPS.items():
        if fragment in device_name:
            return peak
    return None


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from benchmarks.precision import cosine_rows
    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    shape = TINY if args.tiny else INSTRUCTOR_XL
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device_name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    peak = peak_tflops(device_name, args.peak_tflops)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (torch's default)
    work = Path(tempfile.mkdtemp(prefix="flows-gpu-bench-"))
    rows: list[dict[str, Any]] = []
    try:
        started = time.perf_counter()
        folder = build_model(shape, work / "instructor-xl-shape", device)
        build_s = time.perf_counter() - started
        print(f"[gpu] built {shape.parameters() / 1e9:.3f} B-parameter model in {build_s:.1f} s on {device_name}",
              file=sys.stderr, flush=True)
        reference: np.ndarray | None = None
        for precision in args.precisions:
            if precision == "bf16" and device == "cpu" and not args.tiny:
                print("[gpu] note: bf16 on this CPU may be emulated", file=sys.stderr)
            started = time.perf_counter()
            ef = InstructorEmbeddingFunction(str(folder), doc_instruction=INSTRUCTION, batch_size=args.batch_sizes[0],
                                             device=device, precision=precision, backend="torch",
                                             trust_remote_code=False)  # an ST option: ST itself, not the CPU trace
            load_s = time.perf_counter() - started
            texts = make_texts(ef.tokenizer, args.texts, args.seq_len)
            model = ef._model
            for batch in args.batch_sizes:
                ef.batch_size = batch
                ef.encode_array(texts[: batch], INSTRUCTION)  # warm-up: kernels, allocator
                _sync(device)
                t0 = time.perf_counter()
                vectors = ef.encode_array(texts, INSTRUCTION)
                _sync(device)
                encode_s = time.perf_counter() - t0
                # The forward pass alone, on batches tokenized beforehand (as encode_array pads them).
                batches = []
                for start in range(0, len(texts), batch):
                    features = model.preprocess(texts[start : start + batch], prompt=INSTRUCTION)
                    batches.append({k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()})
                slots = sum(int(f["input_ids"].numel()) for f in batches)
                real = sum(int(f["attention_mask"].sum()) for f in batches)
                flops = sum(shape.flops(*f["input_ids"].shape) for f in batches)
                with torch.inference_mode():
                    model(batches[0])
                    _sync(device)
                    t0 = time.perf_counter()
                    for features in batches:
                        model(features)
                    _sync(device)
                forward_s = time.perf_counter() - t0
                row: dict[str, Any] = {
                    "precision": precision, "batch_size": batch, "texts": len(texts), "seq_len_target": args.seq_len,
                    "load_seconds": round(load_s, 2),
                    "encode_array_seconds": round(encode_s, 4),
                    "encode_array_texts_per_s": round(len(texts) / encode_s, 1),
                    "encode_array_tokens_per_s": round(real / encode_s, 0),
                    "forward_seconds": round(forward_s, 4),
                    "forward_tokens_per_s": round(real / forward_s, 0),
                    "forward_slots_per_s": round(slots / forward_s, 0),
                    "forward_tflops": round(flops / forward_s / 1e12, 4),
                    "encode_array_tflops": round(flops / encode_s / 1e12, 4),
                    "padding_waste": round(1 - real / slots, 4) if slots else 0.0,
                    "nan_rows": int(np.isnan(vectors).any(axis=1).sum()),
                }
                if peak:
                    row["forward_mfu_vs_bf16_peak"] = round(row["forward_tflops"] / peak, 4)
                    row["encode_array_mfu_vs_bf16_peak"] = round(row["encode_array_tflops"] / peak, 4)
                if precision == "fp32" and reference is None:
                    reference = vectors
                if reference is not None:
                    cos = cosine_rows(reference, vectors)
                    row["cosine_vs_fp32_min"] = round(float(np.nanmin(cos)), 6)
                    row["cosine_vs_fp32_mean"] = round(float(np.nanmean(cos)), 6)
                rows.append(row)
                print(f"[gpu] {precision} batch {batch}: {row['encode_array_tokens_per_s']:.0f} tok/s encode_array, "
                      f"{row['forward_tflops']} TFLOP/s forward", file=sys.stderr, flush=True)
            del ef, model
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "device": device, "device_name": device_name, "peak_bf16_tflops": peak, "torch": torch.__version__,
        "shape": shape.__dict__, "parameters": shape.parameters(), "model_build_seconds": round(build_s, 1),
        "results": rows,
    }


def print_report(result: dict[str, Any]) -> None:
    from benchmarks.measure import format_rows

    print(f"device: {result['device_name']} (bf16 dense peak {result['peak_bf16_tflops'] or 'unknown'} TFLOP/s); "
          f"torch {result['torch']}; model {result['parameters'] / 1e9:.2f} B parameters (random weights)")
    headers = ["precision", "batch", "encode_array tok/s", "forward tok/s", "forward TFLOP/s", "of bf16 peak",
               "encode_array TFLOP/s", "padding", "cos vs fp32 (min)"]
    rows = []
    for r in result["results"]:
        mfu = r.get("forward_mfu_vs_bf16_peak")
        rows.append([r["precision"], r["batch_size"], r["encode_array_tokens_per_s"], r["forward_tokens_per_s"],
                     r["forward_tflops"], f"{100 * mfu:.1f}%" if mfu is not None else None, r["encode_array_tflops"],
                     f"{100 * r['padding_waste']:.1f}%", f"{r['cosine_vs_fp32_min']:.5f}" if "cosine_vs_fp32_min" in r else None])
    print(format_rows(headers, rows))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer texts and batch sizes (a few minutes on one GPU)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer toy shape (checks the script on a CPU)")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when present)")
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--batch-sizes", help="comma-separated (default 32,64,128,256; --quick 32,128)")
    parser.add_argument("--texts", type=int, help="texts per measurement (default 2048; --quick 512; --tiny 64)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per text incl. the instruction (default 256)")
    parser.add_argument("--peak-tflops", type=float, help="the chip's dense bf16 peak, if not in the built-in table")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    args = parser.parse_args(argv)
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not args.precisions or set(args.precisions) - {"fp32", "bf16", "fp16"}:
        parser.error("--precisions takes fp32, bf16, fp16")
    if args.precisions[0] != "fp32" and "fp32" in args.precisions:
        args.precisions.remove("fp32")
        args.precisions.insert(0, "fp32")  # the reference for the cosine comparison comes first
    default_batches = "4,8" if args.tiny else ("32,128" if args.quick else "32,64,128,256")
    try:
        args.batch_sizes = [int(b) for b in (args.batch_sizes or default_batches).split(",") if b.strip()]
    except ValueError:
        parser.error("--batch-sizes takes numbers, e.g. 32,128")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error("--batch-sizes must be positive")
    args.texts = args.texts or (64 if args.tiny else 512 if args.quick else 2048)
    if args.tiny:
        args.seq_len = min(args.seq_len, 64)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Quiet, offline, and no dependency beyond torch, transformers, sentence-transformers and numpy
    # (no flows.cli: it would pull pydantic and yaml onto a bare GPU image).
    for key, value in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
                       "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}.items():
        os.environ.setdefault(key, value)
    result = run(args)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
