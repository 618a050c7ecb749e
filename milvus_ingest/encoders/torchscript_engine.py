"""The torch engine on a CPU without sentence-transformers: a cached TorchScript trace.

Importing sentence-transformers (and through it transformers' model code) costs 5-10 s before a
single chunk is encoded; torch alone costs 1-3 s.  So on a CPU the torch engine runs the
transformer as a TorchScript trace (``torch.jit``, torch's own serialised-graph runtime), made
once per model and precision by ``torch_export.export_torchscript`` into the export cache (keyed
like the ONNX entries), in fp32 or bf16 (native on AVX512-BF16 / AMX CPUs).  Tokenising, pooling
(instruction excluded), Dense and normalising are ``exported.ExportedEncoder``'s, in float32.

The trace computes what the model computes in eager torch (tested against the reference vectors
and against sentence-transformers); models the layout check refuses, GPUs and
sentence-transformers options stay on ``torch_engine.TorchEngine``.  This module imports torch
when an engine is built, never transformers or sentence-transformers for a cached model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from milvus_ingest.encoders import export
from milvus_ingest.encoders.allocator import keep_freed_memory
from milvus_ingest.encoders.exported import ExportedEncoder
from milvus_ingest.errors import ModelError

PRECISIONS = ("fp32", "bf16")
#: Cache entry names of the traces, by precision.
VARIANTS = {"fp32": "torchscript-fp32", "bf16": "torchscript-bf16"}


class TorchScriptEncoder(ExportedEncoder):
    """``encode_array(texts, instruction)`` → ``(n, dim)`` float32 rows, on a TorchScript trace.

    ``threads`` sets torch's intra-op threads (0 keeps torch's default); ``workers`` is how many
    batches a call encodes at a time, the threads shared among them (0: ``auto_workers``; see
    ``pool`` for why); the other arguments are ``OnnxEncoder``'s.
    """

    backend = "torch"

    def __init__(
        self,
        model_path: str | Path,
        precision: str = "fp32",
        threads: int = 0,
        batch_size: int = 32,
        cache_dir: str | Path | None = None,
        normalize: bool = True,
        workers: int = 0,
    ):
        if precision not in PRECISIONS:
            raise ModelError(f"TorchScript precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        import torch

        keep_freed_memory()  # each batch's tensors reuse the last one's memory (allocator.py)
        self._torch = torch  # imported once here, not per batch in ``_run``
        if threads > 0:
            torch.set_num_threads(threads)
        self._workers_asked = workers
        self._share_threads(torch.get_num_threads())
        super().__init__(model_path, VARIANTS[precision], precision, threads, batch_size, cache_dir, False, normalize)
        self._warm_up()

    #: TorchScript's profiling executor runs a graph's first calls to record shapes and types,
    #: then optimises it: the first batch of 32 × 200 tokens took 1.37 s instead of 0.66 s on a
    #: 2-core Xeon (bf16).  Two calls on a few tokens do that for ~0.18 s at load.
    WARM_UP_CALLS = 2

    def _warm_up(self) -> None:
        """Run the graph's profiling calls on a tiny input now, not on the first real batch."""
        encoding = self._tokenizer.encode("warm up")
        for _ in range(self.WARM_UP_CALLS):
            self._encode_batch([encoding], 0)

    def _share_threads(self, threads: int) -> None:
        self._threads_total = threads
        self.workers = self._workers_asked if self._workers_asked > 0 else auto_workers(threads)
        self.worker_threads = split_threads(threads, self.workers)

    def set_threads(self, threads: int) -> None:
        """Run on ``threads`` intra-op threads from now on, shared among the workers again (the
        benchmark's thread sweep: ``torch.set_num_threads`` alone would not reach the workers)."""
        self._torch.set_num_threads(threads)
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        self._share_threads(threads)

    def _worker_setup(self, index: int) -> None:
        """This worker's intra-op threads, for this thread only.

        torch keeps the count per thread (OpenMP's and MKL's settings are the calling thread's)
        but also as the default a thread takes on its first op; so this thread takes that default
        first, then sets its own, and ``_workers_started`` puts the default back once every
        worker has."""
        self._torch.get_num_threads()
        self._torch.set_num_threads(self.worker_threads[index])

    def _workers_started(self) -> None:
        self._torch.set_num_threads(self._threads_total)  # the process's setting, as it was

    def _open(self, entry: export.Entry) -> Any:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notice is not the user's business
            module = torch.jit.load(str(entry.model_file), map_location="cpu")
        return module.eval()

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        inputs = [torch.from_numpy(feeds[name]) for name in self._input_names]
        with torch.inference_mode():
            tokens = self._graph(*inputs)
        return tokens.float().numpy()


def auto_workers(threads: int) -> int:
    """Batches at a time for ``threads`` intra-op threads: two from two threads up (measured on
    2 cores: 7-10% faster, ``pool``); more than two is not measured, so not the default."""
    return 2 if threads >= 2 else 1


def split_threads(threads: int, workers: int) -> list[int]:
    """Each worker's share of ``threads`` (at least one each; the first ones take any remainder)."""
    share, extra = divmod(max(threads, 1), workers)
    return [max(1, share + (1 if i < extra else 0)) for i in range(workers)]
