"""Two writers into one collection on a server: they take turns on the write lease, and converge.

Real ``python -m flows.ingest`` processes against the session's Milvus 2.3.5 server: two at once
on overlapping sources (the second waits, then plans against what the first wrote), a second one
refused in one line while the lease is held, a holder killed with ``kill -9`` that blocks others
for one lease at most, and shard runs of one split that write together.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from milvus_ingest.config import load_settings
from milvus_ingest.errors import LeaseLostError
from milvus_ingest.store import MilvusStore
from milvus_ingest.store.lease import LEASE_COLLECTION, WriteLease, scopes_conflict
from tests.support.cli_support import cli_env, run_module, write_config
from tests.support.corpus import REPO, sample_corpus, unique_name, write_corpus
from tests.support.snapshots import clean_snapshot, snapshot

pytestmark = pytest.mark.server


@pytest.fixture
def server(milvus_server_process):
    return milvus_server_process


def _config(tmp_path, server, name="c.yaml", **milvus):
    return write_config(
        tmp_path / name, server.uri, unique_name(), milvus={"token": server.token, "timeout": 60, **milvus},
        model={"threads": 1, "window_batches": 8},  # several encoder windows: a crash lands mid-run
    )


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.ingest", *args, "--no-flow", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=cli_env(),
    )


def _finish(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out)


def _lease_rows(settings) -> list[dict]:
    with MilvusStore(settings.milvus) as store:
        if not store.client.has_collection(LEASE_COLLECTION):
            return []
        store.client.load_collection(LEASE_COLLECTION)
        return store.client.query(
            LEASE_COLLECTION, filter=f'target == "{settings.milvus.collection}"', output_fields=["scope", "expires_ms"],
            consistency_level="Strong",
        )


def test_scopes_conflict_unless_two_shards_of_one_split():
    assert scopes_conflict("all", "all") and scopes_conflict("all", "0/2") and scopes_conflict("1/2", "all")
    assert scopes_conflict("0/2", "0/2") and scopes_conflict("0/2", "1/3")
    assert not scopes_conflict("0/2", "1/2") and not scopes_conflict("3/4", "1/4")


def test_two_ingests_at_once_on_overlapping_sources_take_turns_and_equal_a_clean_ingest(server, tmp_path, t5_embedder):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    write_corpus(corpus, {f"bulk/f{i:02d}.txt": f"Bulk file {i} about harbours, lanterns and copper wire. " * 30 for i in range(30)})
    extra = write_corpus(tmp_path / "extra", {"e.md": "An extra file about orchards.", "f.md": "And one about glaciers."})
    config = _config(tmp_path, server)
    settings = load_settings(config)
    first = _start(str(corpus), "--config", str(config), "--wait", "300")
    deadline = time.monotonic() + 120
    while not _lease_rows(settings):  # the first holds the lease: the second must wait for it
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.poll() is not None else ""
        time.sleep(0.2)
    second = _start(str(corpus / "sub"), str(corpus / "doc1.md"), str(extra), "--config", str(config), "--wait", "300")
    a, b = _finish(first), _finish(second)
    assert b["stages"]["lock_wait"] > 0  # it waited for the first ...
    assert (a["new"], b["new"], b["unchanged"]) == (35, 2, 4)  # ... then planned against what it wrote
    assert _lease_rows(settings) == []  # both released
    specs = [str(corpus), str(extra)]
    assert snapshot(settings) == clean_snapshot(None, settings, specs, t5_embedder)


def test_a_second_ingest_is_refused_in_one_line_while_the_lease_is_held(server, tmp_path):
    corpus = write_corpus(tmp_path / "c", {"a.txt": "Some text about meadows.", "b.txt": "More text about rivers."})
    config = _config(tmp_path, server)
    settings = load_settings(config)
    with MilvusStore(settings.milvus) as store:
        lease = WriteLease(store).acquire()
        try:
            refused = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow")
            lines = refused.stderr.strip().splitlines()
            assert refused.returncode == 2 and len(lines) == 1 and "Traceback" not in refused.stderr
            assert f"collection '{settings.milvus.collection}' is being written by another ingest" in lines[0]
            assert "--wait SECONDS" in lines[0]
            # A shard run conflicts with an unsharded holder too.
            shard = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--shard", "0/2")
            assert shard.returncode == 2 and "being written by another ingest" in shard.stderr
        finally:
            lease.release()
    done = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["new"] == 2, done.stderr


def test_shards_of_one_split_write_together(server, tmp_path):
    corpus = write_corpus(tmp_path / "c", {f"f{i}.txt": f"File {i} about lanterns number {i}." for i in range(6)})
    config = _config(tmp_path, server)
    settings = load_settings(config)
    with MilvusStore(settings.milvus) as store:
        lease = WriteLease(store, "0/2").acquire()
        try:
            other = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--shard", "1/2", "--json")
            assert other.returncode == 0, other.stderr
            same = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--shard", "0/2")
            assert same.returncode == 2 and "(shard 0/2)" in same.stderr
        finally:
            lease.release()


def test_a_killed_holder_blocks_others_for_one_lease_at_most(server, tmp_path, t5_embedder):
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    config = _config(tmp_path, server, lock_ttl_seconds=20, write_batch_rows=4)
    settings = load_settings(config)
    killed = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", FLOWS_CRASH_AT="after_upsert:2")
    assert killed.returncode == -signal.SIGKILL
    started = time.monotonic()
    refused = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow")
    if time.monotonic() - started < 15:  # still within the dead holder's lease
        assert refused.returncode == 2 and "being written by another ingest" in refused.stderr
    rerun = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--wait", "60", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert snapshot(settings) == clean_snapshot(None, settings, [str(corpus)], t5_embedder)


def test_a_lease_that_cannot_be_renewed_is_lost_and_stops_the_run(server, tmp_path):
    config = _config(tmp_path, server, lock_ttl_seconds=6)
    settings = load_settings(config)
    with MilvusStore(settings.milvus) as store:
        lease = WriteLease(store).acquire()
        try:
            lease.check()
            store.client.delete(LEASE_COLLECTION, ids=[lease.token])  # as another ingest would, after expiry
            deadline = time.monotonic() + 20
            while not lease.lost and time.monotonic() < deadline:
                time.sleep(0.2)
            with pytest.raises(LeaseLostError, match="was lost .*stopped before writing more"):
                lease.check()
        finally:
            lease.release()


def test_two_shards_at_once_check_only_their_own_sources_and_equal_a_clean_ingest(server, tmp_path, t5_embedder):
    corpus = write_corpus(tmp_path / "c", {f"f{i:02d}.txt": f"File {i} about copper, lanterns and rivers. " * 40 for i in range(24)})
    config = _config(tmp_path, server, write_batch_rows=8)
    settings = load_settings(config)
    seed = run_module("flows.ingest", str(corpus / "f00.txt"), "--config", str(config), "--no-flow")
    assert seed.returncode == 0, seed.stderr  # the collection exists: both shards plan while the other writes
    shards = [_start(str(corpus), "--config", str(config), "--shard", f"{i}/2") for i in range(2)]
    outputs = [proc.communicate(timeout=600) for proc in shards]
    for proc, (out, err) in zip(shards, outputs):
        assert proc.returncode == 0, err[-2000:]
        assert "reading every row" not in err  # each checked its own sources, and they added up
    summaries = [json.loads(out) for out, _ in outputs]
    assert sum(s["new"] for s in summaries) == 23 and sum(s["unchanged"] for s in summaries) == 1
    assert snapshot(settings) == clean_snapshot(None, settings, [str(corpus)], t5_embedder)
