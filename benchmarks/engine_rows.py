"""The engine rows of ``python -m benchmarks.ingest``: every backend × precision on the same chunks.

For each engine this machine can run (``benchmarks.quality.engine_specs``): its raw encode speed
over exactly the chunks the pipeline cuts (one ``encode_array`` call, after a warm-up), the
speed-up over torch fp32, cosine agreement of its rows with torch fp32's, and nDCG@10 on the
evaluation sets with its delta to torch fp32 (through ``benchmarks.quality.evaluate_engines``).
The row ``auto`` resolves to is marked.  Also the whole-process ingest: ``python -m flows.ingest
--no-flow`` into a new collection, timed from outside, against the raw encode of the same engine.
This module must never report a figure it did not measure in the run that calls it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.measure import Result, measure, note
from benchmarks.precision import cosine_rows
from benchmarks.quality import BASELINE, evaluate_engines, load_engine

REPO = Path(__file__).resolve().parent.parent


def spec_of(engine: dict[str, Any]) -> str:
    """``backend precision`` of an engine (``engine_info`` / ``EngineChoice.as_dict()``), int8 with its weights."""
    precision = engine["precision"]
    if precision == "int8":
        precision = f"int8-{engine['int8_weights']}"
    return f"{engine['backend']} {precision}"


def engine_rows(
    settings: Any,
    texts: list[str],
    specs: Sequence[str],
    loaded: dict[str, Any],
    auto_spec: str,
    datasets: Sequence[Path],
) -> list[dict[str, Any]]:
    """One row per engine; ``loaded`` holds functions already built (reused, and extended)."""
    vectors: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for spec in specs:
        if spec not in loaded:
            note(f"engine {spec}: loading")
            with measure() as load:
                loaded[spec] = load_engine(settings.model, spec)
            load_s = load.wall
        else:
            load_s = None
        ef = loaded[spec]
        ef.encode_array(texts[: ef.batch_size], ef.doc_instruction)  # warm-up: first-call allocations
        note(f"engine {spec}: encoding {len(texts)} chunks")
        with measure() as phase:
            vectors[spec] = ef.encode_array(texts, ef.doc_instruction)
        rows.append({"engine": spec, "auto": spec == auto_spec, "chunks": len(texts), "seconds": round(phase.wall, 3),
                     "chunks_per_second": round(len(texts) / phase.wall, 2), "load_seconds": load_s,
                     "cpu_share": round(phase.cpu_share, 2)})
    base = next(r for r in rows if r["engine"] == BASELINE)
    for row in rows:
        cosine = cosine_rows(vectors[row["engine"]], vectors[BASELINE])
        row["vs_torch_fp32"] = round(row["chunks_per_second"] / base["chunks_per_second"], 3)
        row["cosine_min"], row["cosine_mean"] = round(float(cosine.min()), 6), round(float(cosine.mean()), 6)
    if datasets:
        scores = evaluate_engines(settings, {s: loaded[s] for s in specs}, datasets)
        for row in rows:
            per_set = scores[row["engine"]]
            row["ndcg"] = {name: round(r["ndcg"], 4) for name, r in per_set.items()}
            row["ndcg_delta"] = {name: round(r["ndcg"] - scores[BASELINE][name]["ndcg"], 4)
                                 for name, r in per_set.items()}
            row["ndcg_delta_worst"] = min(row["ndcg_delta"].values())
    return rows


def whole_process_ingest(corpus: Path, config_file: Path, uri: str, threads: int | None) -> Result:
    """``python -m flows.ingest --no-flow`` into a new collection: the wall time of the whole process."""
    note("ingest, whole process (python -m flows.ingest --no-flow, a new process and collection)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "flows.ingest", str(corpus), "--config", str(config_file), "--uri", uri,
               "--no-flow", "--json"]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    summary = json.loads(proc.stdout)
    engine = summary.get("engine") or {}
    return Result("ingest, whole process (CLI, new collection)", int(summary["chunks"]), wall,
                  stages=summary["stages"], threads=threads,
                  extra={"rows": summary["rows_in_collection"], "engine": f"{engine.get('backend')} "
                         f"{engine.get('precision')}", "in_process_seconds": summary["seconds"]})


def format_engine_rows(rows: list[dict[str, Any]], peer_loop: float | None) -> str:
    """The engine table; ``peer_loop`` is the peers' fp32 loop in chunks/s, when it ran."""
    from benchmarks.measure import format_rows

    table = []
    for r in rows:
        vs_peer = f"{r['chunks_per_second'] / peer_loop:.2f}×" if peer_loop else None
        delta = None if r["engine"] == BASELINE or "ndcg_delta_worst" not in r else f"{r['ndcg_delta_worst']:+.4f}"
        table.append([r["engine"] + (" (auto)" if r["auto"] else ""), r["chunks_per_second"],
                      f"{r['vs_torch_fp32']:.2f}×", vs_peer, delta, f"{r['cosine_min']:.4f}", f"{r['cosine_mean']:.5f}"])
    return format_rows(["engine", "chunks/s (encode)", "× torch fp32", "× peers' fp32 loop",
                        "nDCG@10 Δ to fp32 (worst set, − = loss)", "cos min", "cos mean"], table)
