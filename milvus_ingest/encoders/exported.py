"""What every engine over a cached export shares: tokenising, batching, pooling, Dense, L2.

An ``ExportedEncoder`` computes what the sentence-transformers pipeline (Transformer → mean
Pooling → Dense → Normalize) computes for Instructor models: the model sees ``instruction +
text.strip()``, mean pooling skips the instruction's tokens (its token count without a trailing
special token, as sentence-transformers' ``Pooling(include_prompt=False)`` counts), then the
Dense modules and L2 normalisation.  Only the transformer itself runs in the runtime of the
subclass: ONNX Runtime (``onnx_engine``) or TorchScript (``torchscript_engine``), from an entry
of the export cache (``export``).  Tokenising is ``tokenizers``, the rest NumPy in float32.

This module must never import torch, transformers, onnx or sentence-transformers, and never pad
a batch beyond its longest item.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from milvus_ingest.encoders import export
from milvus_ingest.encoders.layout import read_layout
from milvus_ingest.encoders.pool import BatchPool, Call, Ready, finish
from milvus_ingest.errors import ModelError

_ACTIVATIONS = {"identity": lambda x: x, "tanh": np.tanh}


def _load_dense(entry: export.Entry) -> list[tuple[np.ndarray, np.ndarray | None, Any]]:
    layers = []
    for record in entry.manifest["dense"]:
        bias = np.load(entry.folder / record["bias"]) if record["bias"] else None
        layers.append((np.load(entry.folder / record["weight"]), bias, _ACTIVATIONS[record["activation"]]))
    return layers


class PendingRows:
    """A call's rows being encoded by the workers: ``result()`` puts them in input order.

    ``started``/``ended`` are the workers' (``pool.Call``); ``cancel()`` starts no further batch."""

    def __init__(self, n: int, dim: int, batches: list[np.ndarray], call: Call[np.ndarray, np.ndarray]):
        self._n, self._dim, self._batches, self._call = n, dim, batches, call

    def result(self) -> np.ndarray:
        return _in_order(self._n, self._dim, self._batches, self._call.result())

    def stop(self) -> None:
        self._call.stop()

    def cancel(self) -> None:
        self._call.cancel()

    @property
    def started(self) -> float | None:
        return self._call.started

    @property
    def ended(self) -> float | None:
        return self._call.ended


def _in_order(n: int, dim: int, batches: list[np.ndarray], rows: list[np.ndarray]) -> np.ndarray:
    """The batches' rows back in input order, as one ``(n, dim)`` float32 array."""
    out = np.zeros((n, dim), dtype=np.float32)
    for index, vectors in zip(batches, rows):
        out[index] = vectors
    return out


class ExportedEncoder:
    """Encodes texts with one instruction into ``(n, dim)`` float32 L2-normalised rows.

    Subclasses set ``backend`` and implement ``_open(entry)`` (the runtime's handle on the graph;
    raising there marks the cache entry corrupt, so it is rebuilt) and ``_run(feeds)`` (token
    embeddings as float32 ``(batch, sequence, hidden)``).  ``variant`` names the cache entry.
    """

    backend = ""
    device = "cpu"
    #: Batches encoded at a time (``pool``); a subclass that gains from more sets it.
    workers = 1
    #: Batches per worker a call needs before they go side by side, cut into a batch count the
    #: workers share evenly (else one idles while another ends the last batch on its share of
    #: the cores).  Measured on 2 cores (bf16, real chunks, caller's thread against two workers,
    #: 3 rounds): 2 batches 1.09×, 3 batches 1.22×, 4 batches 0.98×, 6 0.96×, 8 0.98×, 14
    #: 0.94×; 1,024-chunk windows (32 batches) won 7-10% (docs/engines.md).  The workers' first
    #: call also costs ~0.25 s more, so a small re-run's window of a few batches stays here.
    POOL_MIN_BATCHES = 4
    _workers: BatchPool | None = None

    def __init__(
        self,
        model_path: str | Path,
        variant: str,
        precision: str,
        threads: int = 0,
        batch_size: int = 32,
        cache_dir: str | Path | None = None,
        force_external_data: bool = False,
        normalize: bool = True,
    ):
        if batch_size < 1 or threads < 0:
            raise ModelError(f"batch_size must be >= 1 and threads >= 0 (got {batch_size}, {threads})")
        layout = read_layout(model_path)
        self.model_path = Path(model_path)
        self.precision = precision
        self.batch_size = batch_size
        self.threads = threads
        self._normalize = normalize or layout.normalize
        self.entry, self._graph = export.open_entry(layout, variant, self._open, cache_dir, force_external_data)
        manifest = self.entry.manifest
        self._input_names: list[str] = manifest["input_names"]
        self._pad_id = int(manifest["pad_id"])
        self._special_ids = set(manifest["special_ids"])
        self._lower = bool(manifest["do_lower_case"])
        self._dense = _load_dense(self.entry)
        self._dim = int(manifest["dim"])
        self._max_seq_length = int(manifest["max_seq_length"])
        self._tokenizer = self._load_tokenizer()
        self._prompt_lengths: dict[str, int] = {}

    # -- what a runtime provides ----------------------------------------------------------
    def _open(self, entry: export.Entry) -> Any:
        raise NotImplementedError

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _worker_setup(self, index: int) -> None:
        """Runs in each of the ``workers`` threads before its first batch."""

    def _workers_started(self) -> None:
        """Runs in the caller's thread each time the workers (re)start."""

    # -- the rest -----------------------------------------------------------------------
    def _load_tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.entry.folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self._max_seq_length, strategy="longest_first")
        return tokenizer

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @property
    def tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer``, truncating at ``max_seq_length``, not padding."""
        return self._tokenizer

    def prompt_length(self, instruction: str) -> int:
        """The instruction's tokens that pooling skips: all but a trailing special token."""
        if instruction not in self._prompt_lengths:
            ids = self._tokenizer.encode(self._prepare(instruction)).ids
            self._prompt_lengths[instruction] = len(ids) - (1 if ids and ids[-1] in self._special_ids else 0)
        return self._prompt_lengths[instruction]

    def _prepare(self, text: str) -> str:
        return text.lower() if self._lower else text

    def encode_array(self, texts: list[str], instruction: str = "", encodings: list[Any] | None = None) -> np.ndarray:
        """Rows in input order; batches are length-sorted and padded to their longest item.

        ``encodings`` are ``instruction + text`` already tokenized by an untruncated copy of
        ``self.tokenizer`` (the chunker's exact check): used as given when each fits the model
        and this model does not lowercase before tokenizing, else the texts are tokenized here."""
        return finish(self.submit_array(texts, instruction, encodings))

    def submit_array(
        self, texts: list[str], instruction: str = "", encodings: list[Any] | None = None, followed: bool = False
    ) -> PendingRows | Ready[np.ndarray]:
        """``encode_array``, handed to the workers: ``result()`` waits for the rows.

        A call of enough batches for the workers is queued behind the calls already queued, so
        a caller that submits its next window before taking this one's rows keeps every worker
        busy between them (``pool``); a smaller call runs here, now, unless another follows it
        (``followed``: a stream's first window, whose tail the next one fills) or the workers
        are still on one (it would run beside them, on the same cores): then it has a batch per
        worker at least, and goes to them."""
        started = time.perf_counter()
        if not texts:
            return Ready(np.zeros((0, self.dim), dtype=np.float32), started)
        skip = self.prompt_length(instruction) if instruction else 0
        if not self._usable(encodings, len(texts)):
            encodings = self._tokenizer.encode_batch([self._prepare(instruction + str(t).strip()) for t in texts])
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        count = -(-len(order) // self.batch_size)
        pooled = self.workers > 1 and (
            count >= self.POOL_MIN_BATCHES * self.workers
            or followed
            or (self._workers is not None and self._workers.busy())
        )
        if pooled:  # as many batches per worker, each at most batch_size, sizes within one
            batches = np.array_split(order, min(len(order), -(-count // self.workers) * self.workers))
        else:
            batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]

        def encode(index: np.ndarray) -> np.ndarray:
            return self._encode_batch([encodings[i] for i in index], skip)

        # Longest first, taken one by one: the workers end a call within a short batch of each other.
        if pooled:
            return PendingRows(len(texts), self.dim, batches, self._batch_pool().submit(encode, batches))
        return Ready(_in_order(len(texts), self.dim, batches, [encode(index) for index in batches]), started)

    def _batch_pool(self) -> BatchPool:
        if self._workers is None:
            self._workers = BatchPool(
                self.workers, self._worker_setup, self._workers_started, name=f"{self.backend}-encoder"
            ).start()
        return self._workers

    def _usable(self, encodings: list[Any] | None, n: int) -> bool:
        return (
            encodings is not None
            and len(encodings) == n
            and not self._lower
            and all(e is not None and len(e.ids) <= self._max_seq_length for e in encodings)
        )

    def _encode_batch(self, encodings: list[Any], skip: int) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            types[row, : len(encoding.ids)] = encoding.type_ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        tokens = self._run({name: feeds[name] for name in self._input_names})
        return self._pool(tokens, mask, skip)

    def _pool(self, tokens: np.ndarray, mask: np.ndarray, skip: int) -> np.ndarray:
        """Mean over the text's tokens (right padding: the instruction comes first), Dense, L2."""
        weights = mask.astype(np.float32)
        weights[:, :skip] = 0.0
        vectors = np.einsum("bsh,bs->bh", tokens, weights) / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        for weight, bias, activation in self._dense:
            vectors = activation(vectors @ weight.T + (0.0 if bias is None else bias))
        if not self._normalize:
            return vectors.astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
