"""An index the connected Milvus cannot build is refused in one line, found by asking the server."""

from __future__ import annotations

import pytest

from milvus_ingest.errors import ConfigError
from milvus_ingest.ingest import run_ingest
from milvus_ingest.store import MilvusStore
from milvus_ingest.store.capabilities import PROBE_PREFIX, known_unbuildable
from tests.support.backend import Backend
from tests.support.corpus import sample_corpus


def _leftover_probes(settings) -> list[str]:
    with MilvusStore(settings.milvus) as store:
        return [c for c in store.client.list_collections() if c.startswith(PROBE_PREFIX)]


def test_the_server_is_asked_and_its_answer_names_what_it_builds(backend, tmp_path, t5_embedder):
    settings = backend.settings()
    with MilvusStore(settings.milvus) as store:
        supported = store.supported_index_types(dim=48)
    assert {"FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "AUTOINDEX"} <= supported
    if backend.name == "server":  # asked: 2.3.5 builds IVF_PQ, and says yes to DISKANN but never builds it
        assert "IVF_PQ" in supported and "DISKANN" not in supported
    assert not _leftover_probes(settings)


@pytest.mark.parametrize(
    "index_type,params,expected",
    [
        ("IVF_PQ", {"M": 16, "efConstruction": 200}, "nlist"),  # the HNSW parameters left in the config
        ("IVF_PQ", {"nlist": 16, "m": 5, "nbits": 8}, "IVF_PQ"),  # m must divide the dimension (48)
    ],
)
@pytest.mark.server
def test_parameters_the_server_refuses_are_refused_before_the_collection_exists(
    milvus_server_process, tmp_path, t5_embedder, index_type, params, expected
):
    server = Backend("server", milvus_server_process.uri, milvus_server_process.token, milvus_server_process)
    settings = server.settings(milvus__index_type=index_type, milvus__index_params=params)
    with pytest.raises(ConfigError) as err:
        run_ingest(settings, [str(sample_corpus(tmp_path / "c"))], embedder=t5_embedder)
    message = str(err.value)
    assert message.startswith(f"milvus.index_type={index_type} cannot be built on Milvus v2.3") and "\n" not in message
    assert "the server says" in message and expected in message and "use one of" in message
    with MilvusStore(settings.milvus) as store:
        assert not store.exists()
    assert not _leftover_probes(settings)


def test_known_unbuildable_is_only_diskann_before_2_4():
    assert known_unbuildable("DISKANN", "server", "v2.3.5")
    assert not known_unbuildable("DISKANN", "server", "v2.6.22")
    assert not known_unbuildable("HNSW", "server", "v2.3.5")
    assert not known_unbuildable("DISKANN", "lite", "milvus_lite-3.2.2")
