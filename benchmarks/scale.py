"""``python -m benchmarks.scale``: what a re-run costs as the collection grows, 10⁴ to 10⁶ chunks.

For each size, a generated corpus of the *same number of sources* (``--sources``, default 1000:
many small files of a few chunks, and ``--large`` big ones holding the rest) is ingested into a
fresh collection, then four re-runs are measured, each a new ``run_ingest`` process as
``python -m flows.ingest --no-flow`` would be:

- unchanged: nothing changed on disk (seconds and the process's peak RSS, ``VmHWM``);
- one changed source (a small one);
- 1% of the sources changed (small ones);
- ``--prune`` after deleting 1% of the sources.

Beside them, the full scan of every row that planning used before commit marks
(``MilvusStore.source_states``), timed in its own process, for comparison.

The encoder is ``benchmarks.stub`` (hash vectors, whitespace tokens, 48-d): what is measured is
the pipeline's and Milvus's cost, not a model's, and the build of 10⁶ chunks stays within reach
of a 2-core box.  The index is FLAT (no index build competing with the measured runs).  Milvus:
the real 2.3.5 server the tests use (``tests.support.milvus_server``, started here in a
temporary folder), or ``--uri`` for a running one; ``--backend lite`` measures an embedded Milvus
Lite folder instead, up to ``--lite-max`` chunks.  It prints a table (stdout), writes JSON
(``--json``) and never reports a figure it did not measure in this run.  This module must never
touch a collection it did not create, nor leave a server process behind.
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

from flows.cli import run_cli

REPO = Path(__file__).resolve().parent.parent
WORDS = (
    "river mountain ledger harbour lantern orchard signal engine copper meadow thunder violin granite compass "
    "falcon glacier archive bridge candle desert forest garden island journey kettle library market needle "
    "ocean pencil quarry railway saddle tower valley window anchor basket canyon ember feather gravel hammer"
).split()
#: Words per paragraph; with ``chunk_tokens`` 32 and no overlap, one paragraph is one chunk.
PARAGRAPH_WORDS = 30


def paragraph(file_index: int, index: int, salt: str = "") -> str:
    n = len(WORDS)
    words = [WORDS[(file_index * 7 + index * 13 + k * (k + 3)) % n] for k in range(PARAGRAPH_WORDS - 3)]
    return f"File {file_index} part {index}{salt}: " + " ".join(words) + "."


def generate_corpus(root: Path, chunks: int, sources: int, large: int, small_chunks: int) -> list[Path]:
    """``sources`` files holding about ``chunks`` paragraphs: ``large`` big ones, the rest small."""
    small = sources - large
    per_large = max(1, (chunks - small * small_chunks) // max(large, 1))
    files = []
    for i in range(sources):
        count = small_chunks if i < small else per_large
        path = root / f"d{i // 100:03d}" / (f"small{i:05d}.txt" if i < small else f"large{i:05d}.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            for p in range(count):
                handle.write(paragraph(i, p) + "\n\n")
        files.append(path)
    return files


def settings_dict(uri: str, collection: str, token: str = "") -> dict[str, Any]:
    return {
        "milvus": {"uri": uri, "token": token, "collection": collection, "index_type": "FLAT", "index_params": {},
                   "timeout": 600, "write_batch_rows": 2048},
        "model": {"name": "stub://whitespace-hash-48", "batch_size": 256, "device": "cpu"},
        "chunking": {"chunk_tokens": 32, "overlap_tokens": 0},
    }


# -- the measured process ---------------------------------------------------------------
def child_main(phase: str, config: str, corpus: str) -> int:
    """One measured process: an ingest (``build``/``rerun``/``prune``) or the full ``scan``."""
    from benchmarks.stub import StubEmbedder
    from flows.cli import quiet_environment
    from milvus_ingest.config import load_settings
    from milvus_ingest.ingest import IngestOptions, run_ingest

    quiet_environment(one_off=True)
    settings = load_settings(config)
    started = time.perf_counter()
    if phase == "scan":
        from milvus_ingest.store import MilvusStore

        with MilvusStore(settings.milvus) as store:
            states = store.source_states()
        out: dict[str, Any] = {"sources": len(states), "rows": sum(len(s.ids) for s in states.values())}
        out["seconds"] = round(time.perf_counter() - started, 3)
    else:
        options = IngestOptions(prune=phase == "prune", yes=True)
        report = run_ingest(settings, [corpus], options, embedder=StubEmbedder(dim=48))
        out = report.as_dict()
        for key in ("skipped_sources",):
            out.pop(key)
    out["run_seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(out))
    return 0


def run_phase(phase: str, config: Path, corpus: Path, log: Path) -> dict[str, Any]:
    """Run one measured process; its wall seconds, peak RSS (``VmHWM``) and summary."""
    from benchmarks.measure import RssSampler

    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", GRPC_VERBOSITY="NONE")
    env.pop("MILVUS_URI", None)
    env.pop("MILVUS_TOKEN", None)
    started = time.perf_counter()
    with open(log, "ab") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.scale", "--child", phase, str(config), str(corpus)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err,
        )
        with RssSampler(process.pid, interval=0.1) as sampler:
            out, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{phase} exited with {process.returncode}: {log.read_text(errors='replace')[-800:]}")
    summary = json.loads(out.decode().strip().splitlines()[-1])
    summary["process_seconds"] = round(time.perf_counter() - started, 2)
    summary["peak_rss_mib"] = round(sampler.high_water / (1 << 20), 1)
    return summary


def _expect(summary: dict[str, Any], what: str, **wanted: int) -> None:
    got = {k: summary[k] for k in wanted}
    if got != wanted:
        raise RuntimeError(f"{what}: expected {wanted}, the run reported {got}")


def measure_size(uri: str, token: str, chunks: int, args: argparse.Namespace, work: Path, backend: str,
                 server: Any = None) -> dict[str, Any]:
    """Build one collection of about ``chunks`` chunks and measure the re-runs on it."""
    import yaml

    from benchmarks.measure import note

    tag = f"{backend}-{chunks}"
    corpus = work / f"corpus-{tag}"
    files = generate_corpus(corpus, chunks, args.sources, args.large, args.small_chunks)
    config = work / f"config-{tag}.yaml"
    collection = f"scale_{backend}_{chunks}"
    config.write_text(yaml.safe_dump(settings_dict(uri, collection, token)), encoding="utf-8")
    log = work / f"{tag}.log"
    row: dict[str, Any] = {"backend": backend, "target_chunks": chunks, "sources": len(files)}
    small = [f for f in files if f.name.startswith("small")]
    step = max(1, len(small) // max(1, len(files) // 100))

    def phase(name: str, kind: str, expect: dict[str, int]) -> dict[str, Any]:
        note(f"{tag}: {name}")
        summary = run_phase(kind, config, corpus, log)
        if expect:
            _expect(summary, f"{tag} {name}", **expect)
        if server is not None and getattr(server, "rss_bytes", None):
            summary["server_rss_mib"] = round((server.rss_bytes() or 0) / (1 << 20), 1)
        row[name] = summary
        return summary

    built = phase("build", "build", {"new": len(files)})
    row["chunks"] = built["rows_in_collection"]
    phase("unchanged", "rerun", {"unchanged": len(files), "chunks": 0})
    one = small[0]
    with open(one, "a", encoding="utf-8") as handle:
        handle.write(paragraph(0, 10_000, " (changed)") + "\n\n")
    phase("one_changed", "rerun", {"updated": 1, "unchanged": len(files) - 1})
    changed = small[1::step][: max(1, len(files) // 100)]
    for path in changed:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(paragraph(1, 10_000, " (changed)") + "\n\n")
    phase("one_percent_changed", "rerun", {"updated": len(changed)})
    doomed = small[2::step][: max(1, len(files) // 100)]
    doomed = [p for p in doomed if p not in changed and p != one]
    for path in doomed:
        path.unlink()
    phase("prune_one_percent", "prune", {"pruned": len(doomed)})
    phase("full_scan_earlier_plan", "scan", {})
    row["changed_sources"] = len(changed)
    row["pruned_sources"] = len(doomed)
    if not args.keep:
        shutil.rmtree(corpus, ignore_errors=True)
    return row


#: Seconds are those ``run_ingest`` reports (connecting, the lease, planning, writing, counting),
#: or the scan's; the process start before it (Python, the stub's tokenizer) is in the JSON.
TABLE_HEADERS = (
    "Milvus", "chunks", "sources", "build s", "unchanged s", "unchanged plan s", "unchanged peak RSS MiB",
    "1 changed s", "1% changed s", "prune 1% s", "full scan s (earlier plan)", "full scan peak RSS MiB",
    "server RSS MiB",
)


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["backend"], r["target_chunks"], r["sources"], r["error"], *["-"] * (len(TABLE_HEADERS) - 4)])
            continue
        out.append([
            r["backend"], r["chunks"], r["sources"], r["build"]["seconds"], r["unchanged"]["seconds"],
            r["unchanged"]["stages"]["plan"], r["unchanged"]["peak_rss_mib"], r["one_changed"]["seconds"],
            r["one_percent_changed"]["seconds"], r["prune_one_percent"]["seconds"],
            r["full_scan_earlier_plan"]["seconds"], r["full_scan_earlier_plan"]["peak_rss_mib"],
            r["unchanged"].get("server_rss_mib"),
        ])
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="chunks per collection, comma-separated")
    parser.add_argument("--sources", type=int, default=1000, help="sources at every size (default 1000)")
    parser.add_argument("--large", type=int, default=10, help="how many of them are large (default 10)")
    parser.add_argument("--small-chunks", type=int, default=4, help="chunks of each small source (default 4)")
    parser.add_argument("--backend", choices=["server", "lite", "both"], default="server")
    parser.add_argument("--uri", help="a running Milvus server to use instead of starting the 2.3.5 test server")
    parser.add_argument("--token", default=os.environ.get("MILVUS_TOKEN", ""), help="its token (default: MILVUS_TOKEN)")
    parser.add_argument("--lite-max", type=int, default=100_000, help="largest size tried on Milvus Lite")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    try:
        args.size_list = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes numbers separated by commas, e.g. 10000,100000")
    if not args.size_list or any(s < 1 for s in args.size_list):
        parser.error("--sizes must be positive")
    if not 1 <= args.large < args.sources:
        parser.error("--large must be at least 1 and less than --sources")
    if args.sources < 3:
        parser.error("--sources must be at least 3")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"] and len(argv) == 4:
        return child_main(*argv[1:])
    args = parse_args(argv)
    from benchmarks.measure import describe_machine, format_rows, machine_info, note

    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="flows-scale-"))
    backends = ["server", "lite"] if args.backend == "both" else [args.backend]
    rows: list[dict[str, Any]] = []
    server = None
    try:
        for backend in backends:
            uri, token = args.uri or "", args.token
            if backend == "server" and not args.uri:
                from tests.support.milvus_server import start_milvus_server

                note("starting the Milvus 2.3.5 test server")
                server = start_milvus_server(work / "milvus-server")
                uri, token = server.uri, ""
            for size in args.size_list:
                if backend == "lite":
                    if size > args.lite_max:
                        rows.append({"backend": "lite", "target_chunks": size, "sources": args.sources,
                                     "error": f"not tried: over --lite-max {args.lite_max}"})
                        continue
                    uri = str(work / f"lite-{size}.db")
                started = time.perf_counter()
                rows.append(measure_size(uri, token, size, args, work, backend, server if backend == "server" else None))
                note(f"{backend} {size}: {time.perf_counter() - started:.0f} s")
            if server is not None:
                server.stop()
                server = None
        print(f"Machine: {describe_machine(info)}")
        print(format_rows(TABLE_HEADERS, table_rows(rows)))
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), "rows": rows}, indent=2, default=str))
        return 0
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            note(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run_cli(main)
