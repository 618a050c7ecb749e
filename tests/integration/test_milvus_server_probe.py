"""Quick end-to-end check of the real-server test helper (tests/milvus_server.py).

Starts a Milvus 2.3.5 standalone server on free ports, writes and counts through pymilvus,
stops it and checks that no process is left behind.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

try:
    from tests.support.milvus_server import SKIP_REASON, is_available, start_milvus_server
except ImportError:  # tests/ imported as a package
    from tests.milvus_server import SKIP_REASON, is_available, start_milvus_server

pytestmark = pytest.mark.skipif(not is_available(), reason=SKIP_REASON)


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fp:
            state = fp.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:  # not Linux: fall back to a signal-0 probe
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


def _group_members(pgid: int) -> list:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if fields[0] != b"Z" and int(fields[2]) == pgid:  # fields[2] is the pgid
            members.append(int(entry.name))
    return members


def test_server_roundtrip_and_clean_stop(tmp_path):
    from pymilvus import DataType, MilvusClient

    server = start_milvus_server(tmp_path / "milvus", timeout=180)
    pid = server.pid
    try:
        assert server.uri.startswith("http://127.0.0.1:")
        assert server.port != 19530  # never the default: a user's own Milvus may be there
        assert len(set(server.ports.values())) == len(server.ports)
        assert _alive(pid)

        client = MilvusClient(uri=server.uri, timeout=30)
        try:
            assert client.get_server_version(timeout=30).startswith("v2.3.5")
            schema = MilvusClient.create_schema(auto_id=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("source", DataType.VARCHAR, max_length=512)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
            index = client.prepare_index_params()
            index.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
            client.create_collection("probe", schema=schema, index_params=index, timeout=60)
            rows = [
                {"id": f"r{i}", "source": f"doc{i % 3}", "vector": [1.0, float(i), 0.5, 0.25]}
                for i in range(10)
            ]
            assert client.insert("probe", rows, timeout=60)["insert_count"] == 10
            count = client.query(
                "probe", filter="", output_fields=["count(*)"],
                consistency_level="Strong", timeout=60,
            )
            assert count[0]["count(*)"] == 10
            hits = client.query(
                "probe", filter='source == "doc1"', output_fields=["id"],
                consistency_level="Strong", timeout=60,
            )
            assert sorted(h["id"] for h in hits) == ["r1", "r4", "r7"]
        finally:
            client.close()
    finally:
        server.stop()

    assert server.pid is None
    deadline = time.monotonic() + 10
    while (_alive(pid) or _group_members(pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), f"server process {pid} still alive after stop()"
    assert not _group_members(pid), f"processes left in group {pid}: {_group_members(pid)}"
    server.stop()  # idempotent
