"""Error types the command lines map to one clear line and an exit code.

Every failure a user can cause or fix (a bad path, a bad config key, an unreachable Milvus, a
collection built with another model) is raised as one of these, with a message that names the
thing and the fix.  Nothing here may print or exit: ``flows.cli.run_cli`` does that, for every command line.
"""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """Base of the errors a user can act on; ``exit_code`` is what the CLI returns."""

    exit_code = 2


class ConfigError(PipelineError):
    """The config file or an environment override is invalid."""


class UsageError(PipelineError):
    """A command-line flag or a flow parameter is invalid (named with its value)."""


class SourceError(PipelineError):
    """A source given on the command line cannot be used at all (missing path, nothing matched)."""


class ModelError(PipelineError):
    """The embedding model cannot be loaded, or does not fit the collection or the chunking."""


class StoreError(PipelineError):
    """Milvus is unreachable, busy, refused a request, or holds an incompatible collection."""


class CollectionMismatchError(StoreError):
    """An existing collection was built with another model, instruction or dimension."""


class CollectionBusyError(StoreError):
    """Another ingest holds the collection's write lease (and ``lock_wait_seconds`` ran out)."""


class LeaseLostError(StoreError):
    """This ingest could not renew its write lease in time; it stops before writing more."""


class PruneRefusedError(PipelineError):
    """``--prune`` would remove more of the collection than ``sources.prune_max_share`` allows."""


class BadFilterError(ConfigError):
    """Milvus could not parse or type-check the filter expression."""


class ShardsFailedError(PipelineError):
    """One or more shard runs ended in a state other than Completed."""


class DatasetError(PipelineError, ValueError):
    """The dataset on disk is missing a file or holds a line that cannot be used as is.

    A ``ValueError`` because the input is wrong, and a ``PipelineError`` so that the command
    lines print it as one line with an exit code instead of a traceback.
    """

    def __init__(self, path: Path, line: int | None, problem: str, fix: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}; fix: {fix}")


class MetricError(PipelineError, ValueError):
    """A metric was asked for something it cannot answer (a bad k, an unknown metric, no queries)."""
