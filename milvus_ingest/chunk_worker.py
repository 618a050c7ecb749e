"""The child process that reads and chunks sources while the parent loads the model.

A one-off ingest spends its first ~2 s importing torch and loading the model, on one core: every
step of that holds the GIL, so a chunker thread beside it only slows it (measured, docs/engines.md).
Chunking needs only the model's tokenizer, a file in the model's folder, so a separate process
can chunk on the core the load leaves idle.  ``ingest.early`` starts this module as
``python -m milvus_ingest.chunk_worker FD SIZE PID`` as a run starts: PID is the run's, FD a
spool file it shares with the run, whose first SIZE bytes are the pickled ``ChunkerSpec``.  It builds that chunker
while the parent opens Milvus and plans, then reads the sources to chunk from its stdin (the
plan's first group; none: it exits).  It appends one pickled record per message to the spool
and then writes the record's ``(offset, length)`` to its stdout, so the parent reads a record
only once it is whole, and the pipe never fills (16 bytes a source), so this process never
waits on the parent.  The messages, in order:

- ``("ready", fingerprint)``: the tokenizer's fingerprint, which the parent compares with the
  loaded model's before it uses a single chunk;
- ``("source", name, title, format, metadata, chunks, read_s, chunk_s)`` or
  ``("failed", name, reason)`` per source, in the order given (the same one-line reasons as the
  stream's chunker thread gives);
- ``("done",)``.

It runs at the run's own priority: at a lower one (niceness 10, as first built) it would get a
tenth of a core on a box whose cores are busy with another program, while the stream waits for
its chunks.  It ignores Ctrl-C (the parent handles it and ends this process) and dies with its
parent.  This module must never import pymilvus, torch or the ingest package: its start-up is
what it saves.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from milvus_ingest.chunking import Chunk, Chunker
from milvus_ingest.readers import Block
from milvus_ingest.reading import SourceReadError, read_failure_reason, read_source
from milvus_ingest.sources import SourceFile
from milvus_ingest.tokens import TokenCounter

#: What the child writes on its stdout per record: where the record lies in the spool.
RECORD = struct.Struct("<QQ")


@dataclass(frozen=True)
class ChunkerSpec:
    """What a ``Chunker`` is built from, without the model: its tokenizer file and its limits."""

    tokenizer_file: str
    chunk_tokens: int
    overlap_tokens: int
    max_bytes: int
    instruction: str
    max_seq_length: int
    context_tokens: int

    def build(self) -> Chunker:
        from tokenizers import Tokenizer

        counter = TokenCounter(Tokenizer.from_file(self.tokenizer_file))
        return Chunker(counter, self.chunk_tokens, self.overlap_tokens, self.max_bytes, self.instruction,
                       self.max_seq_length, self.context_tokens)

    def matches(self, chunker: Chunker) -> bool:
        """Whether ``chunker`` (the loaded model's) has these limits; the tokenizer is compared apart."""
        return (self.chunk_tokens, self.overlap_tokens, self.max_bytes, self.instruction, self.max_seq_length,
                self.context_tokens) == (chunker.chunk_tokens, chunker.overlap_tokens, chunker.max_bytes,
                                         chunker.instruction, chunker.max_seq_length, chunker.context_tokens)


class Tokens:
    """A chunk's exact-check tokens as the encoder reads them (``ids``, ``type_ids``): what crosses
    the pipe instead of a ``tokenizers.Encoding``, whose offsets and words make it 12× larger."""

    __slots__ = ("ids", "type_ids")

    def __init__(self, ids: Any, type_ids: Any):
        self.ids = ids
        self.type_ids = type_ids

    def __getstate__(self) -> tuple[Any, Any]:
        return self.ids, self.type_ids

    def __setstate__(self, state: tuple[Any, Any]) -> None:
        self.ids, self.type_ids = state


def _light(chunk: Chunk) -> Chunk:
    if chunk.encoding is None:
        return chunk
    import numpy as np

    encoding = chunk.encoding
    return replace(chunk, encoding=Tokens(np.asarray(encoding.ids, dtype=np.int32),
                                          np.asarray(encoding.type_ids, dtype=np.int32)))


def chunk_source(chunker: Chunker, item: SourceFile, fmt: str, sha256: str) -> tuple[Any, ...]:
    """One source's message: its chunks, or the one-line reason it could not be read."""
    read_s = 0.0

    def timed(blocks: Iterator[Block]) -> Iterator[Block]:
        nonlocal read_s
        while True:
            started = time.perf_counter()
            block = next(blocks, None)
            read_s += time.perf_counter() - started
            if block is None:
                return
            yield block

    started = time.perf_counter()
    try:
        document, bytes_read = read_source(item, fmt)
        read_s += time.perf_counter() - started
        chunks = [_light(c) for c in chunker.chunk_document(timed(document.blocks), document.title)]
        if sha256 and bytes_read() != sha256:
            raise SourceReadError("changed while being read; rerun to pick up the new version")
    except Exception as exc:  # noqa: BLE001 - one source's failure is that source's skip
        return ("failed", item.source, read_failure_reason(exc))
    chunk_s = time.perf_counter() - started - read_s
    return ("source", item.source, document.title, document.format, document.metadata, chunks, read_s, chunk_s)


def _die_with_parent() -> None:
    """Ask Linux to end this process when its parent ends (best effort; elsewhere a closed pipe does)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Spool:
    """Appends records to the spool file and says on ``out`` where each one is, once it is whole."""

    def __init__(self, fd: int, offset: int, out: BinaryIO):
        self.fd, self.offset, self.out = fd, offset, out

    def send(self, message: tuple[Any, ...]) -> None:
        record = memoryview(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        written = 0
        while written < len(record):
            written += os.pwrite(self.fd, record[written:], self.offset + written)
        self.out.write(RECORD.pack(self.offset, len(record)))
        self.out.flush()
        self.offset += len(record)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    fd, size, parent = int(argv[0]), int(argv[1]), int(argv[2])
    if os.getppid() != parent:  # it ended while this process was starting, before the ask above
        return 0
    spec: ChunkerSpec = pickle.loads(os.pread(fd, size, 0))
    spool = Spool(fd, size, sys.stdout.buffer)
    chunker = spec.build()  # while the parent opens Milvus and plans
    spool.send(("ready", chunker.counter.fingerprint()))
    try:
        sources: list[tuple[SourceFile, str, str]] = pickle.load(sys.stdin.buffer)
    except EOFError:  # the plan had nothing for it
        return 0
    for item, fmt, sha256 in sources:
        spool.send(chunk_source(chunker, item, fmt, sha256))
    spool.send(("done",))
    return 0


if __name__ == "__main__":
    from milvus_ingest import chunk_worker  # pickles name milvus_ingest.chunk_worker's classes, not __main__'s

    try:
        sys.exit(chunk_worker.main(sys.argv[1:]))
    except BrokenPipeError:  # the parent went away or stopped listening: nothing left to do
        os._exit(0)
