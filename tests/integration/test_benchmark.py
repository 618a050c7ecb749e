"""Smoke tests of the benchmarks: they run end to end on a tiny corpus with the tiny T5 model.

Figures are not checked (a shared 2-core box makes them noise at this size); what is checked is
that every phase runs, measures the same chunks, and reports consistent counts, so a change in
the pipeline, the store or the peers' APIs that breaks the benchmark fails here.  The Prefect
flow phase (it starts a Prefect server) and the 200 MB memory run are left to the real runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmarks.corpus import generate_corpus
from benchmarks.padding import padding_report, padding_reports
from tests.support.corpus import REPO, T5_MODEL

BEIR_MINI = REPO / "tests" / "data" / "beir-mini"


def tiny_config(path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "milvus": {"uri": "./unused.db", "collection": "bench", "index_type": "HNSW"},
        "model": {"name": str(T5_MODEL), "batch_size": 16, "device": "cpu", "threads": 1},
        "chunking": {"chunk_tokens": 48, "overlap_tokens": 8},
    }), encoding="utf-8")
    return path


def test_padding_policies_on_known_counts():
    # One long chunk among short ones: arrival order pads every short one in its batch to 100.
    counts = [100, 10, 10, 10, 90, 10, 10, 10]
    chars = [c * 5 for c in counts]
    arrival = padding_report("arrival", counts, chars, batch_size=4, window=None)
    assert arrival.slots == 4 * 100 + 4 * 90
    assert arrival.tokens == sum(counts)
    whole = padding_report("whole", counts, chars, batch_size=4, window=0)
    assert whole.slots == 4 * 100 + 4 * 10  # batches [100, 90, 10, 10] and [10, 10, 10, 10]
    windowed = padding_report("window", counts, chars, batch_size=4, window=4)
    assert windowed.slots == arrival.slots  # a window of one batch sorts nothing useful
    assert 0 < whole.waste < windowed.waste
    assert [r.policy for r in padding_reports(counts, chars, 4, 8)][1] == "sorted windows of 8, from 4 (pipeline)"
    two_workers = padding_reports(counts, chars, 2, 8, workers=2)[1]  # the ramp starts at a batch per worker
    assert two_workers.policy == "sorted windows of 8, from 4 (pipeline)"
    assert two_workers.slots == padding_report("from 4", counts, chars, batch_size=2, window=8, first_window=4).slots
    # The pipeline's ramp: windows of 2, 4, then 2 (the rest): [100, 10] [10, 10, 90, 10] [10, 10].
    ramp = padding_report("ramp", counts, chars, batch_size=2, window=4, first_window=2)
    assert (ramp.batches, ramp.slots) == (4, 2 * 100 + 2 * 90 + 2 * 10 + 2 * 10)


def test_generated_corpus_is_deterministic_and_sized(tmp_path):
    a = generate_corpus(tmp_path / "a", 30_000)
    b = generate_corpus(tmp_path / "b", 30_000)
    assert [p.name for p in a] == [p.name for p in b] and len(a) > 1
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    total = sum(p.stat().st_size for p in a)
    assert 30_000 <= total < 30_000 + 1_000
    assert generate_corpus(tmp_path / "c", 30_000, seed=8)[0].read_bytes() != a[0].read_bytes()


def test_ingest_benchmark_end_to_end(tmp_path, capsys):
    from benchmarks import ingest

    out = tmp_path / "bench.json"
    code = ingest.main([
        "--config", str(tiny_config(tmp_path / "tiny.yaml")), "--size-mb", "0.02", "--no-flow",
        "--sync-writer", "--precision-sample", "4", "--json", str(out), "--eval-sets", str(BEIR_MINI),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ceiling: encode_array" in printed and "ingest: run_ingest" in printed
    data = json.loads(out.read_text())
    chunks = data["corpus"]["chunks"]
    assert chunks > 50
    rows = {r["name"]: r for r in data["results"]}
    for name in ("ceiling: encode_array, one call", "ingest: run_ingest", "ingest, writes not overlapped",
                 "bare loop: ST encode + insert"):
        assert rows[name]["chunks"] == chunks, name
        assert rows[name]["seconds"] > 0 and rows[name]["vs_ceiling"] > 0
    assert rows["ingest: run_ingest"]["rows"] == chunks  # every chunk is in Milvus
    assert rows["bare loop: ST encode + insert"]["rows"] == chunks
    for name in ("re-run, unchanged (in process)", "re-run, unchanged (CLI process)"):
        assert rows[name]["chunks"] == 0 and rows[name]["unchanged_files"] == data["corpus"]["files"], name
    assert rows["re-run, unchanged (in process)"]["model_loaded"] is False
    if "langchain-milvus from_documents" in rows:
        assert rows["langchain-milvus from_documents"]["rows"] == chunks
    else:
        assert any("langchain-milvus peer skipped" in n for n in data["notes"])
    assert data["summary"]["ingest_vs_ceiling"] and data["summary"]["rerun_speedup"] > 1
    padding = [p["padding_waste"] for p in data["padding"]]
    assert 0 <= padding[2] <= padding[0] and 0 <= padding[1] <= padding[0]
    assert [p["precision"] for p in data["precision"]] == ["fp32", "bf16", "fp16"]
    assert all(p["cosine_min"] > 0.99 for p in data["precision"] if "cosine_min" in p)

    # One row per engine on the same chunks, the auto one marked, beside the peers' fp32 loop.
    engines = {e["engine"]: e for e in data["engines"]}
    assert {"torch fp32", "torch bf16", "onnx fp32"} <= set(engines)
    assert {name for name in engines if name.startswith("onnx int8-")} == {"onnx int8-s8", "onnx int8-u8"}
    assert [name for name, e in engines.items() if e["auto"]] == [data["summary"]["pipeline_engine"]]
    for name, e in engines.items():
        assert e["chunks"] == chunks and e["chunks_per_second"] > 0 and e["vs_torch_fp32"] > 0, name
        assert set(e["ndcg"]) == {"beir-mini"} and 0 < e["ndcg"]["beir-mini"] <= 1, name
        assert 0.99 < e["cosine_min"] <= e["cosine_mean"] <= 1 + 1e-6, name  # tiny T5: every engine agrees closely
    base = engines["torch fp32"]
    assert base["vs_torch_fp32"] == 1.0 and base["ndcg_delta"] == {"beir-mini": 0.0} and base["cosine_min"] > 0.99999
    assert engines["onnx fp32"]["cosine_min"] > 0.99999  # the same model to float32 resolution
    assert "× torch fp32" in printed and "× peers' fp32 loop" in printed
    whole = rows["ingest, whole process (CLI, new collection)"]
    assert whole["chunks"] == chunks and whole["rows"] == chunks and whole["vs_ceiling"] > 0
    assert whole["engine"] == data["summary"]["pipeline_engine"].replace("-s8", "").replace("-u8", "")
    assert data["summary"]["whole_process_vs_ceiling"] > 0 and data["summary"]["ingest_vs_peers_loop"] > 0


def test_gpu_script_runs_tiny_on_cpu():
    from benchmarks import gpu

    result = gpu.run(gpu.parse_args(["--tiny", "--device", "cpu", "--texts", "8", "--batch-sizes", "4",
                                     "--precisions", "fp32,bf16"]))
    rows = result["results"]
    assert [r["precision"] for r in rows] == ["fp32", "bf16"]
    for r in rows:
        assert r["encode_array_tokens_per_s"] > 0 and r["forward_tflops"] > 0 and r["nan_rows"] == 0
    assert rows[1]["cosine_vs_fp32_min"] > 0.99
    # The full shape is instructor-xl's: 1.24 B parameters (the T5-3B encoder + 1024→768 Dense).
    assert gpu.INSTRUCTOR_XL.parameters() == pytest.approx(1.24e9, rel=0.01)


def test_memory_benchmark_child_process(tmp_path, capsys):
    from benchmarks import memory

    out = tmp_path / "memory.json"
    assert memory.main(["--sizes", "0.05", "--backend", "inprocess", "--json", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["chunks"] > 10 and run["rows"] == run["chunks"]
    assert run["ingest_peak_rss_mib"] > 50 and run["encoder"] == "stub"
    assert "ingest peak RSS" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["lite", "server"])
def test_scale_benchmark_end_to_end_tiny(tmp_path, capsys, request, where):
    """Two tiny sizes with the same sources: every phase runs, and its counts are the ones asked for."""
    from benchmarks import scale

    args = ["--sizes", "200,400", "--sources", "30", "--large", "2", "--small-chunks", "3", "--json", str(tmp_path / "s.json")]
    if where == "server":
        server = request.getfixturevalue("milvus_server_process")
        args += ["--backend", "server", "--uri", server.uri, "--token", server.token]
    else:
        args += ["--backend", "lite"]
    assert scale.main(args) == 0
    printed = capsys.readouterr().out
    assert "unchanged peak RSS MiB" in printed and "Machine:" in printed
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert [(r["backend"], r["sources"]) for r in rows] == [(where, 30), (where, 30)]
    for r, size in zip(rows, (200, 400)):
        assert r["chunks"] == 28 * 3 + 2 * ((size - 28 * 3) // 2)  # the corpus holds what was asked
        assert r["unchanged"]["chunks"] == 0 and r["unchanged"]["unchanged"] == 30
        assert r["one_changed"]["updated"] == 1 and r["one_changed"]["chunks"] == 4
        assert r["one_percent_changed"]["updated"] == r["changed_sources"] >= 1
        assert r["prune_one_percent"]["pruned"] == r["pruned_sources"] >= 1
        assert r["full_scan_earlier_plan"]["rows"] == r["prune_one_percent"]["rows_in_collection"]
        assert r["unchanged"]["peak_rss_mib"] > 50 and r["unchanged"]["stages"]["encode"] == 0
