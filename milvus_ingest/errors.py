"""Error types the command lines map to one clear line and an exit code.

Every failure a user can cause or fix (a bad path, a bad config key, an unreachable Milvus, a
collection built with another model) is raised as one of these, with a message that names the
thing and the fix.  Nothing here may print or exit: the CLIs in ``flows.cli`` do that.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of the errors a user can act on; ``exit_code`` is what the CLI returns."""

    exit_code = 2


class ConfigError(PipelineError):
    """The config file, a flag or an environment override is invalid."""


class SourceError(PipelineError):
    """A source given on the command line cannot be used at all (missing path, nothing matched)."""


class ModelError(PipelineError):
    """The embedding model cannot be loaded, or does not fit the collection or the chunking."""


class StoreError(PipelineError):
    """Milvus is unreachable, busy, refused a request, or holds an incompatible collection."""


class CollectionMismatchError(StoreError):
    """An existing collection was built with another model, instruction or dimension."""
