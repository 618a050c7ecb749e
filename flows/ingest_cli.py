"""``python -m flows.ingest``: arguments, the one-off run (flow or not), the summary, exit codes.

Kept apart from the flow module so that ``--no-flow`` never imports Prefect, and a bad argument,
config key or path is reported before any flow run, model or Milvus connection is started.
This module must never hold pipeline logic.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flows.cli import ProgressBar, format_table, quiet_environment
from milvus_ingest.config import settings_with_overrides
from milvus_ingest.ingest import IngestOptions, parse_shard, run_ingest
from milvus_ingest.sources import discover_sources


def print_summary(summary: dict[str, Any], stream: Any = sys.stdout) -> None:
    rows = [
        ("collection", f"{summary['collection']} at {summary['uri']}"),
        ("files read", f"{summary['files_read']} (new {summary['new']}, updated {summary['updated']}, unchanged {summary['unchanged']})"),
        ("skipped", summary["skipped"]),
    ]
    rows += [(f"  {s['source']}", s["reason"]) for s in summary["skipped_sources"]]
    rows += [("pruned", summary["pruned"])]
    if summary["stale_not_pruned"]:
        rows.append(("gone, not pruned", f"{summary['stale_not_pruned']} (rerun with --prune to remove them)"))
    stages = summary["stages"]
    rows += [
        ("chunks", summary["chunks"]),
        ("rows now", summary["rows_in_collection"]),
        ("seconds", f"{summary['seconds']:.2f} (model load {stages['model_load']:.2f}, encode {stages['encode']:.2f}, write {stages['write']:.2f})"),
        ("chunks/s", f"{summary['chunks_per_second']:.1f}"),
    ]
    print(format_table(rows), file=stream)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.ingest",
        description="Chunk, embed (Instructor, document instruction) and upsert sources into Milvus.",
        epilog="Exit codes: 0 all sources in, 1 some sources skipped, 2 usage/config/Milvus error.",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="files, folders (recursive) or glob patterns")
    parser.add_argument("--config", help="YAML config (default: config/default.yaml)")
    parser.add_argument("--uri", help="Milvus URI: ./milvus.db (Lite) or http://host:19530")
    parser.add_argument("--collection", help="collection name")
    parser.add_argument("--model", help="model: hub id, local folder, or package://PKG/SUBDIR")
    parser.add_argument("--full", action="store_true", help="re-embed everything, changed or not")
    parser.add_argument(
        "--prune", action="store_true",
        help="remove stored sources whose files no longer exist within these sources (see README: Prune)",
    )
    parser.add_argument("--yes", action="store_true", help="confirm a prune over sources.prune_max_share")
    parser.add_argument("--shard", help="i/N: ingest only this worker's share of the sources")
    parser.add_argument(
        "--recreate", action="store_true",
        help="with --full: drop the collection (one this pipeline made) and rebuild it from these sources",
    )
    parser.add_argument("--no-flow", action="store_true", help="run without Prefect (no flow run, no artifacts)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    quiet_environment(one_off=True)  # before Prefect or transformers are imported
    args = parse_args(argv)
    settings = settings_with_overrides(args.config, args.uri, args.collection, args.model)  # fail fast
    options = IngestOptions(
        full=args.full, prune=args.prune, yes=args.yes, shard=parse_shard(args.shard), recreate=args.recreate
    )
    # A typo in a path is a one-line error before any flow run, model or Milvus is started.
    s = settings.sources
    discover_sources(args.sources, s.include, s.exclude, s.follow_symlinks)
    bar = ProgressBar()
    try:
        if args.no_flow:
            summary = run_ingest(settings, args.sources, options, progress=bar).as_dict()
        else:
            from flows import ingest as flow_module

            flow_module.CLI_PROGRESS["bar"] = bar
            params = flow_module.IngestParams(
                sources=args.sources, config=args.config, uri=args.uri, collection=args.collection,
                model=args.model, full=args.full, prune=args.prune, yes=args.yes, shard=args.shard,
                recreate=args.recreate,
            )
            summary = flow_module.ingest(params)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
    return 1 if summary["skipped"] else 0
