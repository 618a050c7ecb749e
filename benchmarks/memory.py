"""``python -m benchmarks.memory``: peak RSS of a real ingest at two corpus sizes (default 10 and 200 MB).

Each size is a generated corpus of many files, ingested by a *new process* that runs
``milvus_ingest.ingest.run_ingest`` exactly as ``python -m flows.ingest --no-flow`` does; its resident
memory is sampled every 0.2 s, next to the kernel's own high-water mark (``VmHWM``).  Two places
for Milvus:

- ``server`` (default): a ``milvus-lite server`` process on a local port, so the ingest process
  holds only the pipeline and the database's memory is reported in its own column;
- ``inprocess``: Milvus Lite inside the ingest process (what ``uri: ./milvus.db`` does), so the
  figure includes the database's own tables and index, which grow with the rows it holds.

``--encoder stub`` (default) replaces the forward pass with a hash and the tokenizer with a
whitespace one (``benchmarks.stub``): on a 2-core box a real model makes 200 MB take hours, and a
model's memory depends on batch and sequence length, not on corpus size.  ``--encoder model``
uses the config's model (default: the tiny T5 test fixture) for machines with time to spare.
This module must never run two ingests at once and never leave a server process behind.
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

from benchmarks.measure import stop_process
from flows.cli import run_cli

REPO = Path(__file__).resolve().parent.parent
TINY_T5 = REPO / "tests" / "fixtures" / "tiny-instructor-t5"


def tiny_settings(uri: str) -> dict[str, Any]:
    """The memory run's config: tiny T5 (48-d), large batches, ordinary chunk sizes."""
    return {
        "milvus": {"uri": uri, "collection": "memory_bench", "index_type": "HNSW", "timeout": 600},
        "model": {"name": str(TINY_T5), "batch_size": 64, "device": "cpu", "threads": 1},
        "chunking": {"chunk_tokens": 256, "overlap_tokens": 32},
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiteServer:
    """``milvus-lite server`` in a child process (same engine as ``./milvus.db``, over TCP)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LiteServer:
        exe = Path(sys.executable).with_name("milvus-lite")
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "milvus_lite"]
        self.process = subprocess.Popen(
            [*command, "server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        from pymilvus import MilvusClient

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"milvus-lite server exited with {self.process.returncode}")
            try:
                MilvusClient(uri=self.uri, timeout=2).close()
                return self
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError("milvus-lite server did not start within 60 s")

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)


def child_main(corpus: str, config: str, encoder: str) -> int:
    """The measured process: one ``run_ingest`` (as ``flows.ingest --no-flow``), summary as JSON."""
    from milvus_ingest.config import load_settings
    from flows.cli import quiet_environment
    from milvus_ingest.ingest import run_ingest

    quiet_environment(one_off=True)
    settings = load_settings(config)
    embedder = None
    if encoder == "stub":
        from benchmarks.stub import StubEmbedder

        embedder = StubEmbedder(doc_instruction=settings.model.instructions.doc)
    report = run_ingest(settings, [corpus], embedder=embedder)
    print(json.dumps(report.as_dict()))
    return report.exit_code


def run_ingest_process(corpus: Path, config: Path, encoder: str, db_pid: int | None, log: Path) -> dict[str, Any]:
    """Run one ingest process; sample its RSS (and the database server's) until it exits."""
    from benchmarks.measure import RssSampler

    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    env.pop("MILVUS_URI", None)
    env.pop("MILVUS_TOKEN", None)
    started = time.perf_counter()
    with open(log, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.memory", "--child", str(corpus), str(config), encoder],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err,
        )
        db = RssSampler(db_pid, interval=0.2) if db_pid else None
        if db:
            db.__enter__()
        with RssSampler(process.pid, interval=0.2, children=True) as sampler:
            out, _ = process.communicate()
        if db:
            db.__exit__()
    wall = time.perf_counter() - started
    if process.returncode not in (0, 1):
        raise RuntimeError(f"ingest exited with {process.returncode}: {log.read_text(errors='replace')[-500:]}")
    summary = json.loads(out)
    return {
        "seconds": round(wall, 1),
        "chunks": summary["chunks"],
        "rows": summary["rows_in_collection"],
        "mb_per_second": None,
        "ingest_peak_rss_mib": round(sampler.peak / (1 << 20), 1),
        "ingest_vmhwm_mib": round(sampler.high_water / (1 << 20), 1),
        "db_server_peak_rss_mib": round(db.peak / (1 << 20), 1) if db else None,
        "stages": summary["stages"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,200", help="corpus sizes in MB, comma-separated (default 10,200)")
    parser.add_argument("--backend", choices=["server", "inprocess", "both"], default="server")
    parser.add_argument("--encoder", choices=["stub", "model"], default="stub",
                        help="stub: hash vectors, whitespace tokens (default); model: the config's model")
    parser.add_argument("--config", help="YAML config to use instead of the tiny T5 settings (milvus.uri is replaced)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    try:
        args.size_list = [float(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes numbers separated by commas, e.g. 10,200")
    if not args.size_list or any(s <= 0 for s in args.size_list):
        parser.error("--sizes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"] and len(argv) == 4:
        return child_main(*argv[1:])
    args = parse_args(argv)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # keepalive chatter of the idle readiness probe
    import yaml

    from benchmarks.corpus import generate_corpus
    from benchmarks.measure import describe_machine, format_rows, machine_info, note
    from milvus_ingest.config import load_settings, settings_from_dict

    base = load_settings(args.config).model_dump(mode="json") if args.config else None
    work = Path(tempfile.mkdtemp(prefix="flows-memory-"))
    backends = ["server", "inprocess"] if args.backend == "both" else [args.backend]
    rows: list[dict[str, Any]] = []
    info = machine_info()
    try:
        for size in args.size_list:
            corpus = work / f"corpus-{size:g}mb"
            t0 = time.perf_counter()
            files = generate_corpus(corpus, int(size * 1_000_000))
            note(f"{size:g} MB corpus: {len(files)} files in {time.perf_counter() - t0:.0f} s")
            for backend in backends:
                db_dir = work / f"db-{backend}-{size:g}.db"
                config = work / f"config-{backend}-{size:g}.yaml"

                def write_config(uri: str, config: Path = config) -> None:
                    data = dict(base) if base else tiny_settings(uri)
                    data["milvus"] = dict(data["milvus"], uri=uri)
                    settings_from_dict(data)  # validate before a process is started
                    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

                note(f"{size:g} MB, Milvus {backend}: ingesting")
                if backend == "server":
                    with LiteServer(db_dir) as server:
                        write_config(server.uri)
                        assert server.process is not None
                        row = run_ingest_process(corpus, config, args.encoder, server.process.pid, work / "ingest.log")
                else:
                    write_config(str(db_dir))
                    row = run_ingest_process(corpus, config, args.encoder, None, work / "ingest.log")
                row.update(size_mb=size, files=len(files), backend=backend, encoder=args.encoder)
                row["mb_per_second"] = round(size / row["seconds"], 3)
                note(f"  {row['chunks']} chunks in {row['seconds']:.0f} s, ingest peak RSS {row['ingest_peak_rss_mib']:.0f} MiB")
                rows.append(row)
                shutil.rmtree(db_dir, ignore_errors=True)
            shutil.rmtree(corpus, ignore_errors=True)
    finally:
        if args.keep:
            note(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {describe_machine(info)}")
    print(format_rows(
        ["corpus MB", "files", "Milvus", "chunks", "s", "MB/s", "ingest peak RSS MiB", "DB server peak RSS MiB"],
        [[r["size_mb"], r["files"], r["backend"], r["chunks"], r["seconds"], r["mb_per_second"], r["ingest_peak_rss_mib"],
          r["db_server_peak_rss_mib"]] for r in rows],
    ))
    for backend in backends:
        peaks = [r["ingest_peak_rss_mib"] for r in rows if r["backend"] == backend]
        if len(peaks) > 1:
            sizes = ", ".join(f"{r['size_mb']:g} MB" for r in rows if r["backend"] == backend)
            print(f"{backend}: ingest peak RSS spread {max(peaks) - min(peaks):.0f} MiB across {sizes}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "runs": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    run_cli(main)
