"""Where a test's collection lives: a fresh Milvus Lite folder or the session's real server."""

from __future__ import annotations

import os
from dataclasses import dataclass

from milvus_ingest.config import Settings, settings_from_dict
from tests.support.corpus import T5_MODEL, unique_name


@dataclass
class Backend:
    """Where a test's collection lives."""

    name: str
    uri: str
    token: str = ""
    server: object | None = None

    def settings(self, collection: str | None = None, **overrides: object) -> Settings:
        data: dict = {
            "milvus": {"uri": self.uri, "token": self.token, "collection": collection or unique_name(), "timeout": 60},
            "model": {"name": str(T5_MODEL), "batch_size": 16, "device": "cpu"},
            "chunking": {"chunk_tokens": 48, "overlap_tokens": 8},
        }
        for key, value in overrides.items():
            section, _, field = key.partition("__")
            data.setdefault(section, {})[field] = value
        saved = {k: os.environ.pop(k) for k in ("MILVUS_URI", "MILVUS_TOKEN") if k in os.environ}
        try:
            return settings_from_dict(data)
        finally:
            os.environ.update(saved)
