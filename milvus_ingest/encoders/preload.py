"""Loading the questions' encoder on a second thread while a search connects to Milvus.

A cold one-question search spends ~0.3 s building the ONNX Runtime session of the question
encoder and ~1 s importing pymilvus, starting Milvus Lite and checking the collection, one after
the other.  ONNX Runtime releases the GIL while it builds a session, so on a second core the two
overlap (measured: a session built beside a pure-Python loop adds nothing to the loop's time).

Only what needs no import runs on the thread: this module imports everything the ONNX engine
loads with before the thread starts, and a model that would import anything more is not
preloaded at all — one that runs on torch, or whose ONNX export is not cached yet (its first use
exports it, which imports torch), or a hub id not in the local Hugging Face cache.  Then the
search loads it when it first needs it, as it always did.  Two threads importing at once can
trip the import system's deadlock guard; the loader thread never imports.

The thread only loads; whoever takes the ``result()`` checks what was loaded (model name, dim)
against the collection, exactly as for an encoder loaded on the spot, and an error on the
thread is raised there, in the caller's thread.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from milvus_ingest.encoders import export
from milvus_ingest.encoders.engines import decide_engine
from milvus_ingest.encoders.instructor import PACKAGE_SCHEME, InstructorEmbeddingFunction, resolve_model_path
from milvus_ingest.encoders.layout import read_layout


def local_model_path(name: str) -> str:
    """The model's folder without a download: a folder, ``package://``, or the local hub cache."""
    if name.startswith(PACKAGE_SCHEME) or Path(name).expanduser().exists():
        return resolve_model_path(name)
    from huggingface_hub import snapshot_download  # a hub id: the same lookup the load makes first

    return str(snapshot_download(name, local_files_only=True))


def cached_query_export(model: Any) -> Path | None:
    """The cached ONNX export the questions of ``model`` (``Settings.model``) would run on, or None
    when loading them would need more than the export (torch, an export, a download)."""
    if model.backend == "torch" or model.device not in ("auto", "cpu"):
        return None
    try:
        path = local_model_path(model.name)
        choice = decide_engine(model.name, model.backend, model.precision, model.device, for_queries=True)
        if choice.backend != "onnx":
            return None
        from milvus_ingest.encoders.onnx_engine import variant_for

        folder = export.cache_root() / export.cache_key(read_layout(path), variant_for(choice.precision))
        export.read_entry(folder)  # its manifest and file sizes: a broken entry is rebuilt on the spot, not here
    except Exception:  # noqa: BLE001 - any doubt: load on the spot, where errors are reported as always
        return None
    return folder


class QueryEncoderPreload:
    """Starts loading ``model``'s question encoder on a thread when it needs no import (see module).

    ``started`` says whether it did; ``result()`` waits for it and returns the encoder (None when
    not started), or raises what the load raised.
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self._encoder: InstructorEmbeddingFunction | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if cached_query_export(model) is None:
            return
        import onnxruntime  # noqa: F401 - imported here, so that the thread imports nothing
        import tokenizers  # noqa: F401

        self._thread = threading.Thread(target=self._load, name="query-encoder-preload")
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def _load(self) -> None:
        try:
            self._encoder = InstructorEmbeddingFunction.from_settings(self._model, for_queries=True)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by result()
            self._error = exc

    def result(self) -> InstructorEmbeddingFunction | None:
        """The loaded encoder (waits for the thread), None when nothing was preloaded."""
        if self._thread is None:
            return None
        self._thread.join()
        if self._error is not None:
            error, self._error, self._thread = self._error, None, None
            raise error
        return self._encoder
