"""``python -m benchmarks.query``: latency per question, one at a time vs. 100 in one batch, model loaded.

Ingests a small generated corpus (or ``--corpus DIR``) into a fresh Milvus Lite folder, then, for
each engine the search can encode questions with (``onnx``: ONNX Runtime, what ``flows.search``
loads under ``model.backend: auto``; ``torch``: sentence-transformers), measures with the encoder
already loaded:

- one question: ``encode_array([q])`` and ``Searcher.search([q])`` (encode + Milvus), median of
  ``--single`` calls;
- a batch: the same for ``--questions`` questions in one call, reported per question;
- apart: how long a new process takes to import and load that encoder (what ``flows.search`` pays
  before its first answer).

This module must never count a model load in a latency (loads are reported on their own) and
never search a collection it did not create.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flows.cli import quiet_environment, run_cli

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "config" / "local.yaml"


def make_questions(n: int, seed: int = 11) -> list[str]:
    """Deterministic questions in the corpus generator's vocabulary."""
    import random

    from benchmarks.corpus import _ADJECTIVES, _NOUNS, _VERBS

    rng = random.Random(seed)
    return [
        f"Which {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_VERBS)} the {rng.choice(_NOUNS)}?"
        for _ in range(n)
    ]


def engine_model(model: Any, kind: str) -> Any:
    """The config's model settings on the ``onnx`` or ``torch`` engine (precision: that engine's auto)."""
    return model.model_copy(update={"backend": kind, "precision": "auto"})


def cold_load_seconds(config: str, kind: str) -> float | None:
    """Seconds a *new* process takes to import and load this query encoder (what a search pays)."""
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from milvus_ingest.config import load_settings\n"
        "from milvus_ingest.retrieval import load_query_encoder\n"
        "m = load_settings(sys.argv[1]).model\n"
        "m = m.model_copy(update={'backend': sys.argv[2], 'precision': 'auto'})\n"
        "load_query_encoder(m, m.query_instruction)\n"
        "print(time.perf_counter() - t)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code, config, kind], cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _timed(fn: Any, *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.query", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: config/local.yaml)")
    parser.add_argument("--corpus", help="folder to ingest first (default: generated prose, --size-mb)")
    parser.add_argument("--size-mb", type=float, default=0.2, help="generated corpus size (default 0.2)")
    parser.add_argument("--questions", type=int, default=100, help="questions in the batch (default 100)")
    parser.add_argument("--single", type=int, default=20, help="one-question calls to take the median of")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--encoders", default="onnx,torch", help="onnx, torch, or both (default onnx,torch)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    args = parser.parse_args(argv)
    args.encoder_list = [e.strip() for e in args.encoders.split(",") if e.strip()]
    if not args.encoder_list or set(args.encoder_list) - {"onnx", "torch"}:
        parser.error("--encoders takes onnx and/or torch, e.g. onnx,torch")
    if args.questions < 1 or args.single < 1:
        parser.error("--questions and --single must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_environment(one_off=True)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    for name in ("MILVUS_URI", "MILVUS_TOKEN"):
        os.environ.pop(name, None)
    from benchmarks.measure import describe_machine, format_rows, machine_info, median, note
    from milvus_ingest.config import load_settings
    from milvus_ingest.ingest import run_ingest
    from milvus_ingest.sources import discover_sources

    settings = load_settings(args.config)
    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="flows-query-bench-"))
    rows: list[dict[str, Any]] = []
    try:
        if args.corpus:
            corpus = Path(args.corpus).resolve()
            discover_sources([str(corpus)], settings.sources.include, settings.sources.exclude)
        else:
            from benchmarks.corpus import generate_corpus

            corpus = work / "corpus"
            generate_corpus(corpus, int(args.size_mb * 1_000_000))
        settings.milvus.uri = str(work / "query.db")
        note("ingesting the corpus")
        report = run_ingest(settings, [str(corpus)])
        note(f"{report.chunks} chunks in {report.seconds:.0f} s")
        questions = make_questions(args.questions)
        from milvus_ingest.retrieval import Searcher, load_query_encoder

        for kind in args.encoder_list:
            note(f"encoder: {kind}")
            load_s = cold_load_seconds(args.config, kind)
            encoder = load_query_encoder(engine_model(settings.model, kind), settings.model.instructions.query)
            with Searcher(settings, encoder=encoder) as searcher:
                instruction = searcher.query_instruction
                encoder.encode_array(questions[:2], instruction)  # warm-up
                searcher.search(questions[:1], args.top_k)
                one_encode = [_timed(encoder.encode_array, [q], instruction) for q in questions[: args.single]]
                one_search = [_timed(searcher.search, [q], args.top_k) for q in questions[: args.single]]
                batch_encode = _timed(encoder.encode_array, questions, instruction)
                batch_search = _timed(searcher.search, questions, args.top_k)
            rows.append({
                "encoder": kind,
                "class": f"{encoder.backend} {encoder.precision}",
                "cold_load_seconds": round(load_s, 3) if load_s is not None else None,
                "one_encode_ms": round(1000 * median(one_encode), 2),
                "one_search_ms": round(1000 * median(one_search), 2),
                "batch_encode_ms_per_question": round(1000 * batch_encode / len(questions), 2),
                "batch_search_ms_per_question": round(1000 * batch_search / len(questions), 2),
                "questions": len(questions),
                "single_calls": args.single,
            })
    finally:
        try:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(settings.milvus.uri)
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {describe_machine(info)}")
    print(f"model: {settings.model.name}; collection of {report.chunks} chunks (Milvus Lite, "
          f"{settings.milvus.index_type}); top {args.top_k}")
    print(format_rows(
        ["encoder", "load s (new process)", "1 question: encode ms", "1 question: search ms",
         f"{args.questions} batched: encode ms/q", f"{args.questions} batched: search ms/q"],
        [[r["encoder"] + f" ({r['class']})", r["cold_load_seconds"], r["one_encode_ms"], r["one_search_ms"],
          r["batch_encode_ms_per_question"], r["batch_search_ms_per_question"]] for r in rows],
    ))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "model": settings.model.name, "chunks": report.chunks,
                                               "results": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    run_cli(main)
