"""``python -m benchmarks.ingest [CORPUS_DIR]``: the pipeline against the model's own speed, and peers.

In one run, on one corpus (default: 0.5 MB of generated prose, about 760 chunks with
config/local.yaml: a full run is ~10 minutes on a loaded 2-core box; ``--size-mb`` for more), with
one loaded model:

- ceiling: ``InstructorEmbeddingFunction.encode_array`` over exactly the chunks the pipeline cuts,
  in one call (sorted by length over the whole corpus), same batch size and threads;
- ingest: ``run_ingest`` into a fresh Milvus Lite folder (discover, plan, read, chunk, encode,
  write, count: everything but the model load, which both share);
- optional: the same with synchronous writes (``--sync-writer``: is the writer thread worth it?);
- the unchanged re-run, in this process and as a new ``python -m flows.ingest`` process;
- the Prefect flow on a running Prefect server (its start-up reported apart);
- the whole-process ingest: ``python -m flows.ingest --no-flow`` into a new collection, timed
  from outside, against the ceiling (the raw encode of the same engine on the same chunks);
- peers: langchain-milvus ``Milvus.from_documents`` and a bare encode+insert loop, both on the
  torch fp32 model (what they run);
- one row per engine (backend × precision, ``benchmarks.engine_rows``): raw encode speed on the
  same chunks, × torch fp32, × the peers' fp32 loop, nDCG@10 delta to torch fp32 on the
  evaluation sets (``--eval-sets``), cosine agreement with torch fp32; the ``auto`` row marked;
- padding waste of each batching policy, and bf16/fp16 agreement with fp32 on a sample.

The pipeline phases run on the config's engine (``model.backend`` / ``model.precision``, ``auto``
by default).

It prints a table (stdout) and writes JSON (``--json``).  This module must never report a figure
it did not measure in this run, and never touch a Milvus database or Prefect server it did not
create: everything lives in a temporary folder that is removed at the end (``--keep`` keeps it).
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest",
        description="Measure ingest throughput against the model's raw encode speed and against peers.",
    )
    parser.add_argument("corpus", nargs="?", help="folder of text files (default: generated prose, see --size-mb)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: config/local.yaml)")
    parser.add_argument("--json", metavar="OUT", help="write the full results as JSON here")
    parser.add_argument("--size-mb", type=float, default=0.5, help="size of the generated corpus (default 0.5)")
    parser.add_argument("--threads", help="torch threads to compare, e.g. 1,2 (default: the config's model.threads)")
    parser.add_argument("--repeat", type=int, default=1, help="ceiling/ingest pairs per thread count (medians)")
    parser.add_argument("--sync-writer", action="store_true", help="also ingest with writes in the encoder's thread")
    parser.add_argument("--no-flow", action="store_true", help="skip the Prefect flow (it starts a Prefect server)")
    parser.add_argument("--no-peers", action="store_true", help="skip langchain-milvus and the bare loop")
    parser.add_argument("--precision-sample", type=int, default=32, help="chunks for the bf16/fp16 check (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (corpus, databases)")
    parser.add_argument("--engines", help="engine rows, e.g. 'torch fp32,onnx int8-s8' (default: all here; none: skip)")
    parser.add_argument("--eval-sets", nargs="+", default=[str(REPO / "tests" / "data" / d) for d in
                                                          ("beir-mini", "debian-faq", "zsh-faq", "ffmpeg-faq")],
                        help="BEIR folders for the engine rows' nDCG@10 (default: the four in tests/data; none: skip)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads:
        try:
            args.thread_list = [int(t) for t in args.threads.split(",") if t.strip()]
        except ValueError:
            parser.error("--threads takes numbers separated by commas, e.g. 1,2")
        if not args.thread_list or any(t < 0 for t in args.thread_list):
            parser.error("--threads takes numbers >= 0 (0: torch's default)")
    else:
        args.thread_list = None
    return args


def _release(uri: str) -> None:
    from benchmarks.peers import _release as release

    release(uri)


def _ceiling(ef: Any, texts: list[str], threads: int, round_index: int) -> Any:
    """The model alone: one ``encode_array`` call over every chunk the pipeline cuts."""
    from benchmarks.measure import Result, measure

    with measure() as phase:
        ef.encode_array(texts, ef.doc_instruction)
    return Result("ceiling: encode_array, one call", len(texts), phase.wall, stages={"encode": phase.wall},
                  peak_rss_mib=phase.peak_rss_mib, cpu_share=phase.cpu_share, threads=threads,
                  extra={"round": round_index + 1, "load_avg": round(phase.load_avg, 2)})


def _write_config(settings: Any, path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_environment(one_off=True)
    # gRPC logs keepalive "too_many_pings" chatter when a long encode leaves a connection idle.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    for name in ("MILVUS_URI", "MILVUS_TOKEN"):  # the benchmark writes only to its own Lite folders
        os.environ.pop(name, None)

    from benchmarks.measure import describe_machine, note
    from milvus_ingest.config import load_settings
    from milvus_ingest.sources import discover_sources

    settings = load_settings(args.config)
    work = Path(tempfile.mkdtemp(prefix="flows-bench-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    try:
        if args.corpus:
            corpus = Path(args.corpus).resolve()
            discover_sources([str(corpus)], settings.sources.include, settings.sources.exclude)  # one-line error
        else:
            from benchmarks.corpus import generate_corpus

            corpus = work / "corpus"
            generate_corpus(corpus, int(args.size_mb * 1_000_000))
        results = run_benchmark(args, settings, corpus, work)
        results["machine_text"] = describe_machine(results["machine"])
    finally:
        if args.keep:
            note(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
        note(f"wrote {args.json}")
    return 0


def run_benchmark(args: argparse.Namespace, settings: Any, corpus: Path, work: Path) -> dict[str, Any]:
    from benchmarks.measure import Result, machine_info, measure, median, note
    from benchmarks.padding import padding_reports
    from benchmarks.peers import BenchChunk

    info = machine_info()
    note(f"corpus {corpus}; loading the model {settings.model.name}")
    import torch  # the peers and the thread sweep need it whatever engine the pipeline runs

    default_threads = torch.get_num_threads()
    with measure() as load_phase:
        from milvus_ingest.encoders.instructor import InstructorEmbeddingFunction
        from milvus_ingest.ingest import IngestOptions, Ingestor, run_ingest
        from milvus_ingest.ingest.report import StageTimes
        from milvus_ingest.ingest.stream import timed_blocks
        from milvus_ingest.readers import UnreadableDocument
        from milvus_ingest.reading import inspect_source, read_source, source_format
        from milvus_ingest.sources import discover_sources

        m = settings.model
        ef = InstructorEmbeddingFunction(
            model_name=m.name, query_instruction=m.query_instruction, doc_instruction=m.doc_instruction,
            batch_size=m.batch_size, device=m.device, normalize_embeddings=m.normalize_embeddings,
            precision=m.precision, threads=m.threads, backend=m.backend, workers=m.workers,
        )
    note(f"engine: {ef.backend} {ef.precision} ({ef.engine_info['reason']})")
    threads_list = args.thread_list or [m.threads]
    primary = threads_list[0]

    def set_threads(t: int) -> int:
        n = t or default_threads  # 0 means what the pipeline does with model.threads: 0
        getattr(ef.engine, "set_threads", torch.set_num_threads)(n)  # the TorchScript engine's workers too
        return n

    # -- the chunks the pipeline will cut, timed as stages of their own --------------------
    class _NoStore:  # Ingestor.chunker needs only the model; no database for this pass
        collection = "none"

    chunker = Ingestor(settings, store=_NoStore(), embedder=ef).chunker  # type: ignore[arg-type]
    discovery = discover_sources([str(corpus)], settings.sources.include, settings.sources.exclude)
    chunks: list[BenchChunk] = []
    chunk_s = 0.0
    #: Reader throughput per format, timed in the chunk pass (opening + drawing blocks).
    readers: dict[str, dict[str, Any]] = {}
    total_bytes = 0
    for source in discovery.files:
        fmt = source_format(source, settings.sources.formats)
        if inspect_source(source, fmt).reason:  # empty, binary, not UTF-8: the pipeline skips it too
            continue
        reader = readers.setdefault(fmt, {"format": fmt, "files": 0, "bytes": 0, "pages": 0, "seconds": 0.0})
        pages: set[int] = set()
        t0 = time.perf_counter()
        try:
            document = read_source(source, fmt)[0]
            blocks = document.blocks
            reader["seconds"] += time.perf_counter() - t0
            cut_source: list[BenchChunk] = []
            times = StageTimes()  # what the reader takes, apart from what the chunker takes
            t0 = time.perf_counter()
            for c in chunker.chunk_document(timed_blocks(blocks, times), document.title):
                # what the pipeline embeds: the chunk after its context line (``Chunk.embedded``)
                cut_source.append(BenchChunk(c.embedded, source.source, len(cut_source)))
                pages.add(c.page)
            chunk_s += time.perf_counter() - t0 - times.read
            reader["seconds"] += times.read
        except UnreadableDocument:  # a bad PDF, say: the pipeline skips it too
            continue
        chunks.extend(cut_source)
        size = source.path.stat().st_size
        total_bytes += size
        reader["files"] += 1
        reader["bytes"] += size
        reader["pages"] += len(pages - {0})
    read_s = sum(r["seconds"] for r in readers.values())
    texts = [c.text for c in chunks]
    note(f"{len(discovery.files)} files, {total_bytes / 1e6:.1f} MB, {len(chunks)} chunks "
         f"(read {read_s:.1f} s, chunk {chunk_s:.1f} s)")

    from milvus_ingest.chunking import TokenCounter

    counter = TokenCounter(ef.tokenizer)
    token_counts = counter.count_with_specials([ef.doc_instruction + t.strip() for t in texts])
    window = m.batch_size * m.window_batches
    padding = [p.as_dict() for p in padding_reports(token_counts, [len(ef.doc_instruction + t.strip()) for t in texts],
                                                   m.batch_size, window, ef.workers)]

    ef.encode_array(texts[: m.batch_size], ef.doc_instruction)  # warm-up (first-call allocations)
    results: list[Result] = []
    ceilings: dict[int, list[Result]] = {}
    ingests: dict[int, list[Result]] = {}
    last_uri = ""
    for t in threads_list:
        n = set_threads(t)
        for r in range(args.repeat):
            # Alternate the order (ceiling first, then ingest first, ...) so that a drift in the
            # machine's load does not favour one of the two.
            for what in (("ceiling", "ingest") if r % 2 == 0 else ("ingest", "ceiling")):
                note(f"threads {n}, round {r + 1}/{args.repeat}: {what}")
                if what == "ceiling":
                    results.append(_ceiling(ef, texts, n, r))
                    ceilings.setdefault(n, []).append(results[-1])
                    continue
                s = settings.model_copy(deep=True)
                s.milvus.uri = str(work / f"ingest-t{n}-r{r}.db")
                with measure() as phase:
                    report = run_ingest(s, [str(corpus)], IngestOptions(), embedder=ef)
                _release(s.milvus.uri)
                last_uri = s.milvus.uri
                results.append(Result("ingest: run_ingest", report.chunks, phase.wall, stages=report.stages.as_dict(),
                                      peak_rss_mib=phase.peak_rss_mib, cpu_share=phase.cpu_share, threads=n,
                                      extra={"round": r + 1, "rows": report.rows, "load_avg": round(phase.load_avg, 2)}))
                ingests.setdefault(n, []).append(results[-1])
                if report.chunks != len(texts):
                    note(f"WARNING: the pipeline cut {report.chunks} chunks, the chunk pass {len(texts)}")

    n_primary = set_threads(primary)
    notes: list[str] = []
    if args.sync_writer:
        note("ingest with writes in the encoder's thread (ablation)")
        s = settings.model_copy(deep=True)
        s.milvus.uri = str(work / "ingest-sync.db")
        with measure() as phase:
            inline = Ingestor(s, embedder=ef, overlap_writes=False)
            report = run_ingest(s, [str(corpus)], IngestOptions(), ingestor=inline)
            inline.close()
        _release(s.milvus.uri)
        results.append(Result("ingest, writes not overlapped", report.chunks, phase.wall,
                              stages=report.stages.as_dict(), peak_rss_mib=phase.peak_rss_mib,
                              cpu_share=phase.cpu_share, threads=n_primary,
                              extra={"rows": report.rows, "load_avg": round(phase.load_avg, 2)}))

    # -- the unchanged re-run: same folder, nothing to do, the model must not even load ----
    s = settings.model_copy(deep=True)
    s.milvus.uri = last_uri
    note("unchanged re-run (in process, fresh Ingestor without a model)")
    with measure() as phase:
        rerun = run_ingest(s, [str(corpus)], IngestOptions())
    _release(s.milvus.uri)
    results.append(Result("re-run, unchanged (in process)", rerun.chunks, phase.wall, stages=rerun.stages.as_dict(),
                          peak_rss_mib=phase.peak_rss_mib, cpu_share=phase.cpu_share, threads=n_primary,
                          extra={"unchanged_files": len(rerun.unchanged), "model_loaded": rerun.stages.model_load > 0,
                                 "load_avg": round(phase.load_avg, 2)}))
    config_file = _write_config(s, work / "bench-config.yaml")
    note("unchanged re-run (python -m flows.ingest --no-flow, a new process)")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "flows.ingest", str(corpus), "--config", str(config_file), "--no-flow", "--json"],
        cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), check=False,
    )
    cli_wall = time.perf_counter() - started
    if proc.returncode == 0:
        cli = json.loads(proc.stdout)
        results.append(Result("re-run, unchanged (CLI process)", int(cli["chunks"]), cli_wall, stages=cli["stages"],
                              threads=n_primary, extra={"unchanged_files": cli["unchanged"]}))
    else:
        notes.append(f"CLI re-run failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")

    # -- the whole process: a new CLI process ingesting into a new collection -----------------
    from benchmarks.engine_rows import engine_rows, spec_of, whole_process_ingest

    try:
        results.append(whole_process_ingest(corpus, config_file, str(work / "whole.db"), n_primary))
        if ef.backend == "onnx":
            notes.append("the ONNX engine runs model.threads intra-op threads (0: all cores); --threads sweeps torch")
    except RuntimeError as exc:
        notes.append(f"whole-process ingest failed: {exc}")

    # -- the Prefect flow -------------------------------------------------------------------
    if not args.no_flow:
        from benchmarks.flowrun import run_flow

        s = settings.model_copy(deep=True)
        s.milvus.uri = str(work / "flow.db")
        s.model.threads = n_primary
        note("Prefect flow (starting a Prefect server first; its start-up is not charged)")
        try:
            flow_result, _ = run_flow(corpus, _write_config(s, work / "flow-config.yaml"), work / "prefect-server")
            flow_result.threads = n_primary
            results.append(flow_result)
        except Exception as exc:  # noqa: BLE001 - reported, the other figures still stand
            notes.append(f"Prefect flow not measured: {type(exc).__name__}: {str(exc)[:200]}")
        _release(s.milvus.uri)
        set_threads(primary)
    else:
        notes.append("Prefect flow skipped (--no-flow)")

    # -- peers --------------------------------------------------------------------------------
    index_params = {"index_type": settings.milvus.index_type, "metric_type": settings.milvus.metric_type,
                    "params": dict(settings.milvus.index_params)}
    from benchmarks.quality import PEER_SPEC, load_engine

    loaded = {spec_of(ef.engine_info): ef}
    peer_ef = load_engine(m, PEER_SPEC) if not args.no_peers else None
    if not args.no_peers:
        from benchmarks.peers import langchain_missing, run_bare_loop, run_langchain

        missing = langchain_missing()
        if missing:
            notes.append(f"langchain-milvus peer skipped: {missing}")
        else:
            note("peer: langchain-milvus")
            try:
                results.append(run_langchain(peer_ef, chunks, str(work / "langchain.db"), index_params))
                results[-1].threads = n_primary
            except Exception as exc:  # noqa: BLE001
                notes.append(f"langchain-milvus peer failed: {type(exc).__name__}: {str(exc)[:200]}")
        note("peer: bare loop")
        results.append(run_bare_loop(peer_ef, chunks, str(work / "loop.db"), index_params, m.batch_size))
        results[-1].threads = n_primary
    else:
        notes.append("peers skipped (--no-peers)")

    precision: list[dict[str, Any]] = []
    if args.precision_sample > 0:
        from benchmarks.precision import compare_precisions, sample_texts

        note(f"precision check on {args.precision_sample} chunks")
        from benchmarks.quality import BASELINE

        base_ef = loaded.get(BASELINE) or loaded.setdefault(BASELINE, load_engine(m, BASELINE))
        precision = compare_precisions(base_ef, m, sample_texts(texts, args.precision_sample))

    engines: list[dict[str, Any]] = []
    if args.engines != "none":
        from benchmarks.quality import chosen_specs
        from milvus_ingest.encoders.engines import decide_engine

        auto_spec = spec_of(decide_engine(m.name, "auto", "auto", m.device).as_dict())
        specs = chosen_specs(args.engines, m)
        eval_sets = [] if args.eval_sets == ["none"] else [Path(d) for d in args.eval_sets]
        set_threads(primary)
        engines = engine_rows(settings, texts, specs, loaded, auto_spec, eval_sets)

    ceiling_by_threads = {t: median([x.seconds for x in v]) for t, v in ceilings.items()}
    ingest_by_threads = {t: median([x.seconds for x in v]) for t, v in ingests.items()}
    ceiling_cpu = {t: median([x.cpu_seconds for x in v]) for t, v in ceilings.items()}
    ingest_cpu = {t: median([x.cpu_seconds for x in v]) for t, v in ingests.items()}
    first = ingest_by_threads.get(n_primary, 0.0)
    rerun_s = next((r.seconds for r in results if r.name.startswith("re-run, unchanged (in")), 0.0)
    summary = {
        "ingest_vs_ceiling": {
            str(t): round(ceiling_by_threads[t] / ingest_by_threads[t], 3) for t in ceiling_by_threads if ingest_by_threads.get(t)
        },
        # CPU seconds are less disturbed by other processes on a shared box than wall seconds:
        # the ratio says how much extra work (read, chunk, write, Milvus) the ingest does.
        "ingest_vs_ceiling_cpu": {
            str(t): round(ceiling_cpu[t] / ingest_cpu[t], 3) for t in ceiling_cpu if ingest_cpu.get(t)
        },
        "ceiling_seconds_median": {str(t): round(v, 3) for t, v in ceiling_by_threads.items()},
        "ingest_seconds_median": {str(t): round(v, 3) for t, v in ingest_by_threads.items()},
        "rerun_speedup": round(first / rerun_s, 1) if rerun_s else None,
        "repeat": args.repeat,
        **_engine_summary(results, engines, ceiling_by_threads.get(n_primary), spec_of(ef.engine_info)),
    }
    for r in results:
        base = ceiling_by_threads.get(r.threads or n_primary)
        r.extra["vs_ceiling"] = round(base / r.seconds, 3) if base and r.seconds and r.chunks == len(texts) else None
    return {
        "machine": info,
        "config": str(args.config),
        "model": {"name": m.name, "device": ef.device, "dim": ef.dim, "batch_size": m.batch_size,
                  "precision": ef.precision, "backend": ef.backend, "engine": ef.engine_info,
                  "threads_config": m.threads, "torch_default_threads": default_threads,
                  "load_seconds": round(load_phase.wall, 3)},
        "chunking": settings.chunking.model_dump(),
        "milvus": {"backend": "lite", "index_type": settings.milvus.index_type, "metric_type": settings.milvus.metric_type},
        "corpus": {"path": str(corpus) if args.corpus else f"generated ({args.size_mb} MB)", "files": len(discovery.files),
                   "bytes": total_bytes, "chunks": len(texts),
                   "tokens_mean": round(sum(token_counts) / max(1, len(token_counts)), 1),
                   "read_seconds": round(read_s, 3), "chunk_seconds": round(chunk_s, 3),
                   "readers": [dict(r, seconds=round(r["seconds"], 4)) for r in readers.values()]},
        "window": window,
        "results": [r.as_dict() for r in results],
        "summary": summary,
        "padding": padding,
        "precision": precision,
        "engines": engines,
        "notes": notes,
    }


def _engine_summary(results: list[Any], engines: list[dict[str, Any]], ceiling: float | None, spec: str) -> dict[str, Any]:
    """The engine figures the issue asks for: auto against the peers' loop, whole process against the ceiling."""
    by_name = {r.name: r for r in results}
    loop = by_name.get("bare loop: ST encode + insert")
    ingest = by_name.get("ingest: run_ingest")
    whole = by_name.get("ingest, whole process (CLI, new collection)")
    auto = next((e for e in engines if e["auto"]), None)
    out: dict[str, Any] = {"pipeline_engine": spec}
    if loop and loop.seconds:
        if auto:
            out["auto_encode_vs_peers_loop"] = round(auto["chunks_per_second"] / loop.chunks_per_second, 3)
        if ingest:
            out["ingest_vs_peers_loop"] = round(ingest.chunks_per_second / loop.chunks_per_second, 3)
    if whole and ceiling:
        out["whole_process_vs_ceiling"] = round(ceiling / whole.seconds, 3)
        out["whole_process_model_load"] = whole.stages.get("model_load")
    return out


def _cos(value: float | None) -> str | None:
    return None if value is None else f"{value:.6f}"


def reader_line(corpus: dict[str, Any], ceiling_seconds: float | None) -> str:
    """Reader MB/s (and pages/s) per format beside the encoder's MB/s of source: which one is the bottleneck."""
    parts = []
    for r in corpus.get("readers", []):
        rate = r["bytes"] / 1e6 / r["seconds"] if r["seconds"] else float("inf")
        pages = f", {r['pages'] / r['seconds']:.0f} pages/s" if r["pages"] and r["seconds"] else ""
        parts.append(f"{r['format']} {rate:.1f} MB/s{pages}")
    encoder = f"{corpus['bytes'] / 1e6 / ceiling_seconds:.2f} MB/s of source" if ceiling_seconds else "n/a"
    return f"readers: {'; '.join(parts) or 'none'} | encoder (ceiling): {encoder}"


def print_report(results: dict[str, Any]) -> None:
    from benchmarks.measure import format_rows

    corpus = results["corpus"]
    model = results["model"]
    print(f"machine: {results['machine_text']}")
    print(f"model: {model['name']} on {model['device']} (dim {model['dim']}, batch {model['batch_size']}, "
          f"{model['precision']}), loaded in {model['load_seconds']:.1f} s")
    print(f"corpus: {corpus['path']}: {corpus['files']} files, {corpus['bytes'] / 1e6:.2f} MB, {corpus['chunks']} chunks "
          f"(mean {corpus['tokens_mean']:.0f} tokens with the instruction)")
    print(reader_line(corpus, next(iter(results["summary"]["ceiling_seconds_median"].values()), None)))
    print()
    rows = []
    for r in results["results"]:
        st = r["stages"]
        name = r["name"] + (f" #{r['round']}" if r.get("round") and results["summary"]["repeat"] > 1 else "")
        rows.append([
            name, r["threads"], r["chunks"], r["seconds"], r["chunks_per_second"],
            f"{r['vs_ceiling']:.2f}×" if r.get("vs_ceiling") else None,
            st.get("read"), st.get("chunk"), st.get("encode"), st.get("write"), r["peak_rss_mib"] or None,
            r["cpu_seconds"] or None, r["cpu_share"] or None,
        ])
    print(format_rows(["run", "threads", "chunks", "s", "chunks/s", "vs ceiling", "read s", "chunk s", "encode s",
                       "write s", "peak RSS MiB", "CPU s", "cores busy"], rows))
    s = results["summary"]
    print()
    print(f"ingest / ceiling (medians of {s['repeat']}): "
          + ", ".join(f"{v:.2f} at {t} thread(s)" for t, v in s["ingest_vs_ceiling"].items())
          + "; in CPU seconds: " + ", ".join(f"{v:.2f} at {t}" for t, v in s["ingest_vs_ceiling_cpu"].items()))
    if s["rerun_speedup"]:
        print(f"unchanged re-run: {s['rerun_speedup']}× faster than the first ingest")
    flow = next((r for r in results["results"] if r["name"].startswith("Prefect")), None)
    if flow:
        print(f"Prefect flow: server start-up {flow['server_startup_seconds']:.1f} s (once, not charged); flow run "
              f"{flow['wall_with_model_load']:.1f} s incl. model load {flow['model_load_in_flow']:.1f} s; overhead "
              f"around run_ingest {flow['flow_overhead_seconds']:.1f} s")
    print()
    print(format_rows(["batching policy", "batches", "tokens", "token slots", "padding"],
                      [[p["policy"], p["batches"], p["tokens"], p["slots"], f"{100 * p['padding_waste']:.1f}%"]
                       for p in results["padding"]]))
    if results["engines"]:
        from benchmarks.engine_rows import format_engine_rows

        loop = next((r for r in results["results"] if r["name"].startswith("bare loop")), None)
        print()
        print(format_engine_rows(results["engines"], loop["chunks_per_second"] if loop else None))
        print(f"CPU flags: {', '.join(results['model']['engine']['cpu_features'])}")
    for key, label in (("ingest_vs_peers_loop", f"ingest on {s['pipeline_engine']} / peers' fp32 loop"),
                       ("whole_process_vs_ceiling", "whole-process ingest / ceiling"),
                       ("whole_process_model_load", "whole-process model load, s")):
        if s.get(key) is not None:
            print(f"{label}: {s[key]}")
    if results["precision"]:
        print()
        print(format_rows(["precision", "device", "rows", "s", "speed vs fp32", "cosine min", "cosine mean", "note"],
                          [[p["precision"], p["device"], p["rows"], p.get("seconds"), p.get("speed_vs_fp32"),
                            _cos(p.get("cosine_min")), _cos(p.get("cosine_mean")), p.get("note") or p.get("error")]
                           for p in results["precision"]]))
    for line in results["notes"]:
        print(f"note: {line}")


if __name__ == "__main__":
    run_cli(main)
