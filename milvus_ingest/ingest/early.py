"""Chunking the first sources in a child process while the model loads (``chunk_worker``).

Before its first batch a one-off ingest opens Milvus, plans, imports torch and loads the model
for ~2 s, every step holding the GIL, on one core; the other is idle.  A chunker thread cannot
use it (it needs the GIL too: tried, the load grew by what the chunking hid), a process can.
So a run that will load its model starts ``chunk_worker`` as it begins (``start_early``), with a
chunker predicted from the model's folder (its ``tokenizer.json`` and ``max_seq_length``); once
planned, the child gets the first group of sources to chunk (``submit``), or is ended when there
is nothing to write, and the stream takes those sources' chunks from it.

Nothing is taken on trust: once the model is loaded, its own chunker must match the prediction
(the tokenizer's fingerprint and every limit), else the child is ended and the stream chunks
in its thread as always.  A child that dies or stops short leaves the rest to that thread too,
from the first source it did not deliver, so the rows are the same either way.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from milvus_ingest.chunk_worker import RECORD, ChunkerSpec
from milvus_ingest.chunking import Chunker
from milvus_ingest.config import Settings
from milvus_ingest.ingest.plan import SourcePlan
from milvus_ingest.sources import SourceFile

log = logging.getLogger(__name__)

#: ``0`` never starts the child; ``1`` starts it even on one core (tests); unset: from two cores up.
ENV = "MILVUS_INGEST_EARLY_CHUNKING"


def predict_spec(settings: Settings) -> ChunkerSpec | None:
    """The chunker the loaded model will make, read from its folder without loading it; None
    when that cannot be known without the load (a hub id not cached locally, an odd layout)."""
    try:
        from milvus_ingest.encoders.layout import read_layout
        from milvus_ingest.encoders.preload import local_model_path

        layout = read_layout(local_model_path(settings.model.name))
    except Exception:  # noqa: BLE001 - any doubt: the stream chunks in its thread as always
        return None
    c = settings.chunking
    return ChunkerSpec(str(layout.transformer_dir / "tokenizer.json"), c.chunk_tokens, c.overlap_tokens,
                       settings.milvus.text_max_bytes, settings.model.instructions.doc, layout.max_seq_length,
                       c.context_tokens if c.contextual else 0)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worth_it(plans: Sequence[SourcePlan]) -> bool:
    """Whether the child may chunk these: files, not in-memory texts (which it could not read)."""
    return bool(plans) and all(isinstance(p.item, SourceFile) for p in plans)


class EarlyChunks:
    """The child process chunking ``plans``, its records taken by source, in order.

    The parent reads nothing while the model loads: the child spools its records to a file they
    share and says on a pipe where each one ends (``chunk_worker``), so a thread reading them
    would only take the GIL from the load.  ``usable_for`` reads the first record, ``take`` the
    rest, from whichever one thread runs the stream's chunker.
    """

    def __init__(self, spec: ChunkerSpec):
        self.spec = spec
        self._names: set[str] = set()
        self._spool = tempfile.TemporaryFile(prefix="milvus-ingest-chunks-")
        fd = self._spool.fileno()
        head = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
        os.pwrite(fd, head, 0)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "milvus_ingest.chunk_worker", str(fd), str(len(head)), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, pass_fds=(fd,),
        )
        self._ended = False

    def submit(self, plans: Sequence[SourcePlan]) -> None:
        """Hand the child the sources to chunk, in the stream's order (once)."""
        self._names = {p.item.source for p in plans}
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(pickle.dumps([(p.item, p.format, p.sha256) for p in plans],
                                                protocol=pickle.HIGHEST_PROTOCOL))
            self._proc.stdin.close()
        except OSError:  # it died already: the stream will find it ended
            self._ended = True

    def _next(self) -> tuple[Any, ...] | None:
        """The child's next record, waiting for it; None once it ended (or died) without one."""
        if self._ended:
            return None
        try:
            assert self._proc.stdout is not None
            where = self._proc.stdout.read(RECORD.size)
            if len(where) == RECORD.size:
                offset, length = RECORD.unpack(where)
                record = pickle.loads(os.pread(self._spool.fileno(), length, offset))
                if record[0] != "done":
                    return record
        except Exception as exc:  # noqa: BLE001 - whatever stopped it, the stream chunks the rest
            log.debug("the early chunker stopped short (%s): the rest is chunked in the stream", exc)
        self._ended = True
        return None

    def usable_for(self, chunker: Chunker) -> bool:
        """Whether the loaded model's ``chunker`` is the one the child chunks with (waits for its word)."""
        record = self._next()
        usable = (record is not None and record[0] == "ready" and record[1] == chunker.counter.fingerprint()
                  and self.spec.matches(chunker))
        if not usable:
            log.debug("the early chunker's prediction differs from the loaded model's chunker: not used")
            self.close()
        return usable

    def take(self, source: str) -> tuple[Any, ...] | None:
        """``source``'s record (``chunk_worker``), waiting for it; None once the child ended without it.
        Records of sources the stream no longer has (the probe's failures) are passed over."""
        if source not in self._names:
            return None
        while (record := self._next()) is not None:
            if record[1] == source:
                return record
        return None

    def close(self) -> None:
        """End the child (if still running) and drop its spool."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        self._spool.close()
        self._ended = True


def start_early(settings: Settings) -> EarlyChunks | None:
    """The child, started as a run begins (it builds its chunker while the run opens Milvus and
    plans), or None: turned off, one core (no idle one to fill), or no prediction."""
    setting = os.environ.get(ENV, "")
    if setting == "0" or (setting != "1" and _cores() < 2):
        return None
    spec = predict_spec(settings)
    if spec is None:
        return None
    try:
        return EarlyChunks(spec)
    except (OSError, ValueError) as exc:  # no process to spare (or no pass_fds): the stream chunks
        log.debug("the early chunker did not start (%s)", exc)
        return None
