"""Exports a sentence-transformers model folder once, into a content-keyed cache: ONNX for ONNX
Runtime (``fp32``, ``int8-s8``, ``int8-u8``) and TorchScript for torch (``torchscript-fp32``,
``torchscript-bf16``).

An entry (``<cache>/<key>/``) holds ``model.onnx`` or ``model.pt`` (the transformer: token ids →
token embeddings; ONNX weights in ``model.onnx.data`` when the graph is large), the Dense weights as
``.npy``, the tokenizer.json and ``manifest.json`` (what the engine needs, and every file's
size).  An int8 entry is quantized from the fp32 entry of the same model (built first if
missing), so a model is exported by torch once whatever precisions it runs in.  The key hashes the model folder's files and the versions of the tools that built the
entry, so a changed weight file or a library upgrade builds a new entry.  Entries are written in
a temporary folder and renamed into place: two processes never see half an entry.

Importing this module must stay cheap (no torch, transformers or onnx at import time): the engine
imports it on every start.  Only ``build_entry`` needs torch + transformers, and only once per
model.  This module never decides which engine to use (that is ``cpu.choose_engine``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from milvus_ingest.encoders.layout import EXTERNAL_DATA_FILE, MODEL_FILE, ModelLayout
from milvus_ingest.errors import ModelError

log = logging.getLogger(__name__)

ENV_CACHE = "MILVUS_INGEST_CACHE"
#: Bump when what ``torch_export`` writes changes: old entries then get new keys.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Graphs whose parameters exceed this are saved with ONNX external data (protobuf's hard limit
#: is 2 GiB; leave room for the graph itself).
EXTERNAL_DATA_BYTES = 1_800_000_000
#: Files up to this size are hashed whole; larger ones (weights) by size, mtime and their first
#: and last MiB, so a start does not read gigabytes.
_HASH_WHOLE_BYTES = 16 * 2**20
_SAMPLE_BYTES = 2**20
_TOOLS = ("torch", "transformers", "onnx", "onnxruntime")

#: int8 weight schemes for ``onnxruntime.quantization.quantize_dynamic`` (activations are always
#: uint8).  ``s8``: signed weights, the u8×s8 VNNI/AMX path.  ``u8``: unsigned weights, for CPUs
#: without VNNI, where u8×s8 goes through VPMADDUBSW, which can saturate (ONNX Runtime's advice).
INT8_SCHEMES: dict[str, dict[str, Any]] = {
    "s8": {"weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    "u8": {"weight_type": "QUInt8", "per_channel": True, "reduce_range": False},
}

#: Variants that are TorchScript traces: ``torchscript-fp32``, ``torchscript-bf16``.
TORCHSCRIPT_PREFIX = "torchscript-"

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """A usable cache entry: its folder and its manifest."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def model_file(self) -> Path:
        """The graph: ``model.onnx`` or, for a TorchScript entry, ``model.pt``."""
        return self.folder / self.manifest.get("graph_file", MODEL_FILE)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: the argument, else ``$MILVUS_INGEST_CACHE``, else ~/.cache/milvus_ingest/onnx."""
    chosen = cache_dir or os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "milvus_ingest" / "onnx"
    return Path(chosen).expanduser()


def _file_digest(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= _HASH_WHOLE_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(_SAMPLE_BYTES))
            handle.seek(max(0, size - _SAMPLE_BYTES))
            digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def model_fingerprint(folder: Path) -> str:
    """A hash of every file under ``folder`` (hidden ones skipped): name, size, mtime, content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        stat = path.stat()
        mtime = stat.st_mtime_ns if stat.st_size > _HASH_WHOLE_BYTES else 0
        digest.update(f"{relative.as_posix()}\0{stat.st_size}\0{mtime}\0{_file_digest(path, stat.st_size)}\n".encode())
    return digest.hexdigest()


def _tool_versions() -> dict[str, str]:
    versions = {}
    for name in _TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def cache_key(layout: ModelLayout, precision: str) -> str:
    """The entry name for this model folder, variant (``fp32``, ``int8-<scheme>``, ``torchscript-<precision>``) and toolset."""
    payload = json.dumps(
        {
            "format": FORMAT_VERSION,
            "model": model_fingerprint(layout.folder),
            "precision": precision,
            **_tool_versions(),
        },
        sort_keys=True,
    )
    return f"{layout.folder.name[:40]}-{precision}-{hashlib.sha256(payload.encode()).hexdigest()[:20]}"


def read_entry(folder: Path) -> Entry:
    """The entry's manifest, after checking every file it lists is there with its size."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT_VERSION}")
    for name, size in manifest["files"].items():
        actual = (folder / name).stat().st_size
        if actual != size:
            raise ValueError(f"{name} has {actual} bytes, the manifest says {size}")
    return Entry(folder, manifest)


def open_entry(
    layout: ModelLayout,
    precision: str,
    load: Callable[[Entry], T],
    cache_dir: str | Path | None = None,
    force_external_data: bool = False,
) -> tuple[Entry, T]:
    """The cached entry for ``layout`` and ``load(entry)``; builds (or rebuilds) it when needed.

    ``load`` opens the entry (the engine's ONNX Runtime session or TorchScript module): when it or the manifest check
    fails, the entry is corrupt; it is discarded with a warning and built again.
    """
    root = cache_root(cache_dir)
    folder = root / cache_key(layout, precision)
    if folder.is_dir():
        try:
            entry = read_entry(folder)
            return entry, load(entry)
        except Exception as exc:  # noqa: BLE001 - bad manifest, missing/truncated file, ORT refusal
            log.warning("cached model export %s is unusable (%s): rebuilding it", folder, exc)
            _discard(folder)
    build_entry(layout, precision, folder, force_external_data)
    entry = read_entry(folder)
    return entry, load(entry)


def _discard(folder: Path) -> None:
    """Remove an entry without ever leaving a half-removed one under its own name."""
    trash = folder.with_name(f".trash-{folder.name}-{os.getpid()}")
    try:
        folder.rename(trash)
    except OSError:
        return  # another process already moved it away
    shutil.rmtree(trash, ignore_errors=True)


def build_entry(layout: ModelLayout, precision: str, folder: Path, force_external_data: bool = False) -> None:
    """Export (fp32, TorchScript) or quantize (int8, from the fp32 entry) into a temporary folder, then rename it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    try:
        log.info("exporting %s (%s, once) to %s", layout.folder, precision, folder)
        if precision == "fp32" or precision.startswith(TORCHSCRIPT_PREFIX):
            manifest = _export(layout, staging, precision, force_external_data)
        else:
            manifest = _quantize_from_fp32(layout, staging, precision, folder.parent, force_external_data)
        manifest["files"] = {p.name: p.stat().st_size for p in sorted(staging.iterdir())}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        try:
            staging.rename(folder)
        except OSError:  # another process finished first: keep its entry if it is sound
            read_entry(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _export(layout: ModelLayout, staging: Path, variant: str, force_external_data: bool) -> dict[str, Any]:
    """The fp32 ONNX graph or a TorchScript trace, straight from the model folder (torch + transformers)."""
    from milvus_ingest.encoders import torch_export

    if variant.startswith(TORCHSCRIPT_PREFIX):
        manifest = torch_export.export_torchscript(layout, staging, variant.removeprefix(TORCHSCRIPT_PREFIX))
    else:
        manifest = torch_export.export_model(layout, staging, force_external_data, EXTERNAL_DATA_BYTES)
    manifest.update(format=FORMAT_VERSION, precision=variant, source=str(layout.folder), tools=_tool_versions())
    return manifest


def _quantize_from_fp32(
    layout: ModelLayout, staging: Path, precision: str, root: Path, force_external_data: bool
) -> dict[str, Any]:
    """int8 from the fp32 entry (built first if missing): no second torch export, and the search's
    fp32 entry exists once an int8 ingest has run.  A cached fp32 graph that cannot be quantized is
    taken for corrupt: rebuilt once, with a warning."""
    from milvus_ingest.encoders import torch_export

    scheme = precision.removeprefix("int8-")
    if scheme not in INT8_SCHEMES:
        raise ModelError(f"precision {precision!r} is not fp32 or int8-<{'|'.join(INT8_SCHEMES)}>")
    for attempt in (1, 2):
        source, _ = open_entry(layout, "fp32", lambda entry: None, root, force_external_data)
        for name in source.manifest["files"]:
            if name not in (MODEL_FILE, EXTERNAL_DATA_FILE):
                shutil.copyfile(source.folder / name, staging / name)
        try:
            torch_export.quantize(
                source.model_file, staging / MODEL_FILE, INT8_SCHEMES[scheme], source.manifest["external_data"]
            )
            break
        except Exception as exc:  # noqa: BLE001 - an unreadable graph: the fp32 entry is damaged
            if attempt == 2:
                raise ModelError(f"model {layout.folder}: int8 quantization failed: {exc}") from None
            log.warning("cached ONNX export %s cannot be quantized (%s): rebuilding it", source.folder, exc)
            _discard(source.folder)
    manifest = {k: v for k, v in source.manifest.items() if k != "files"}
    manifest.update(precision=precision, tools=_tool_versions())
    return manifest
