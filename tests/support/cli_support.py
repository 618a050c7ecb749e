"""Helpers for tests that run the command lines as real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.corpus import REPO, T5_MODEL


def write_config(path: Path, uri: str, collection: str = "docs", **sections: dict) -> Path:
    """A YAML config using the tiny T5 model, so a subprocess starts and encodes in seconds."""
    data = {
        "milvus": {"uri": uri, "collection": collection},
        "model": {"name": str(T5_MODEL), "batch_size": 16, "device": "cpu"},
        "chunking": {"chunk_tokens": 48, "overlap_tokens": 8},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MILVUS_URI", "MILVUS_TOKEN", "FLOWS_CRASH_AT")}
    env["PYTHONPATH"] = str(REPO)
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env


def run_module(module: str, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=cli_env(**env),
    )
