"""Deployments, schedules, artifacts, secrets and the shard fan-out, against real Prefect and Milvus.

The ``prefect``-marked tests share one real Prefect server per module (``tests/prefect_server.py``):
it creates the ``milvus-ingest`` process pool, runs ``prefect deploy --all`` on the repository's
own ``prefect.yaml``, and starts two workers, exactly as the README tells a newcomer.  Runs are
started the way a user starts them (``prefect deployment run`` and ``run_deployment``), and
checked through the Prefect REST API and in Milvus.  Everything started is stopped by PID (process
groups, flow-run subprocesses included) and the module fails if anything survives.

The tests without the marker check the pieces without any server: shard split, fan-out
parameters and its Lite refusal, the serve plan, and that ``prefect.yaml`` matches the flows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from flows.fanout import (
    FanoutParams,
    failure_message,
    refuse_lite,
    resolve_target,
    shard_parameters,
    summarize_shards,
)
from flows.ingest import IngestParams
from flows.serve import plan_serve
from milvus_ingest.config import settings_from_dict
from milvus_ingest.errors import ConfigError
from milvus_ingest.ingest import run_ingest, select_shard, shard_of
from milvus_ingest.sources import Discovery, Scope, Skipped, SourceFile
from tests.support.cli_support import run_module, write_config
from tests.support.corpus import REPO, sample_corpus, unique_name, write_corpus
from tests.support.prefect_server import PrefectServer, start_prefect_server

POOL = "milvus-ingest"
#: Shard workers take one run at a time from the default queue, so two shards must use both;
#: the fan-out parent waits on its own queue, served by a third worker.
WORKERS = ("worker-a", "worker-b")
COORDINATOR = "worker-fanout"
#: Set in the workers' environment, as an operator would: it must never show up in the API.
#: user:password form: the test Milvus server (auth off) ignores it, Lite ignores any token.
ENV_PASSWORD = "env-password-" + uuid.uuid4().hex
ENV_TOKEN = "tester:" + ENV_PASSWORD
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# -- no server: the pieces ----------------------------------------------------------------


def test_shards_are_disjoint_cover_the_set_and_do_not_depend_on_the_process(tmp_path):
    sources = [f"/data/{d}/file-{i}.txt" for d in ("a", "b", "ünï 中文") for i in range(400)]
    for n in (1, 2, 3, 7):
        parts = [{s for s in sources if shard_of(s, n) == i} for i in range(n)]
        assert set().union(*parts) == set(sources)
        assert sum(len(p) for p in parts) == len(sources)  # disjoint
        assert all(len(p) > len(sources) / n / 2 for p in parts)  # and roughly even
    # select_shard splits files and skipped sources alike, and every source lands in exactly one shard.
    discovery = Discovery(
        files=[SourceFile(Path(s), s) for s in sources[:50]],
        skipped=[Skipped(s, "empty") for s in sources[50:60]],
        scopes=[Scope("folder", "/data")],
    )
    picked = [select_shard(discovery, (i, 3)) for i in range(3)]
    assert sorted(f.source for d in picked for f in d.files) == sorted(sources[:50])
    assert sorted(s.source for d in picked for s in d.skipped) == sorted(sources[50:60])
    # Stable across processes: a worker with another hash seed computes the same split.
    code = "import json,sys; from milvus_ingest.ingest import shard_of; print(json.dumps([shard_of(s, 7) for s in json.load(sys.stdin)]))"
    other = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(sources), capture_output=True, text=True, check=True,
        cwd=REPO, env={**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)},
    )
    assert json.loads(other.stdout) == [shard_of(s, 7) for s in sources]


def _settings(uri: str, collection: str = "docs"):
    return settings_from_dict({"milvus": {"uri": uri, "collection": collection}})


def test_fanout_refuses_milvus_lite_with_a_reason():
    with pytest.raises(ConfigError) as err:
        refuse_lite(_settings("./milvus.db"))
    message = str(err.value)
    assert "Milvus Lite" in message and "one process" in message and "--uri" in message
    refuse_lite(_settings("http://milvus:19530"))  # a server is fine


def test_fanout_cli_refuses_lite_in_one_line_before_any_flow_run(tmp_path):
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "milvus.db"))
    result = run_module("flows.fanout", str(tmp_path), "--config", str(config), "--shards", "2", timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ingest-fanout needs a Milvus server"), result.stderr
    assert not (tmp_path / "milvus.db").exists()  # nothing was opened
    server = write_config(tmp_path / "s.yaml", "http://127.0.0.1:9")
    result = run_module("flows.fanout", str(tmp_path), "--config", str(server), timeout=120, PREFECT_API_URL="")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "needs the Prefect API" in lines[0], result.stderr


def test_shard_parameters_are_complete_and_carry_no_secret():
    params = FanoutParams(sources=["/data"], shards=3, config="c.yaml", uri="http://m:19530", token_secret="milvus-token")
    shards = shard_parameters(params, _settings("http://m:19530", "col"))
    assert [s["shard"] for s in shards] == ["0/3", "1/3", "2/3"]
    for shard in shards:
        checked = IngestParams.model_validate(shard)  # each is a valid ingest run, every field given
        assert set(shard) == set(IngestParams.model_fields)
        assert checked.uri == "http://m:19530" and checked.collection == "col" and checked.token_secret == "milvus-token"
    with_password = _settings("http://root:hunter2@m:19530")
    assert all(s["uri"] is None for s in shard_parameters(params, with_password))
    with pytest.raises(ConfigError, match="Milvus Lite"):
        resolve_target(FanoutParams(sources=["/data"], uri=str(Path("/tmp/x.db"))))


def test_fanout_summary_sums_shards_and_names_the_failed_ones():
    runs = [
        {"shard": "0/3", "flow_run_id": "a", "state": "COMPLETED", "message": ""},
        {"shard": "1/3", "flow_run_id": "b", "state": "FAILED", "message": "StoreError: Milvus at http://m:19530 …"},
        {"shard": "2/3", "flow_run_id": "c", "state": "CRASHED", "message": ""},
    ]
    summary = summarize_shards(runs, {"a": {"chunks": 10, "files_read": 2, "collection": "x"}, "b": {"chunks": 3}})
    assert (summary["completed"], summary["failed"], summary["chunks"], summary["files_read"]) == (1, 2, 13, 2)
    assert failure_message(summary) == (
        "2 of 3 shards did not complete (shard 1/3 failed: StoreError: Milvus at http://m:19530 …; "
        "shard 2/3 crashed: no message)"
    )


def test_serve_plan_takes_the_schedule_from_the_config(tmp_path):
    settings = settings_from_dict({
        "milvus": {"uri": "http://m:19530"},
        "schedule": {"ingest_cron": "*/15 * * * *", "sources": ["./docs", "/abs/notes"], "prune": True},
    })
    plan = plan_serve(settings, "config/x.yaml", cwd=tmp_path)
    assert plan.cron == "*/15 * * * *" and plan.interval is None and plan.limit is None
    assert plan.ingest_parameters == {
        "params": {"sources": [str(tmp_path / "docs"), "/abs/notes"], "config": str(tmp_path / "config/x.yaml"), "prune": True}
    }
    IngestParams.model_validate(plan.ingest_parameters["params"])
    assert plan_serve(settings, None, interval=30).interval == 30 and plan_serve(settings, None, interval=30).cron is None

    lite = settings_from_dict({"schedule": {"ingest_cron": "0 * * * *", "sources": ["d"]}})
    assert plan_serve(lite, None).limit == 1  # a Lite database is one process at a time
    with pytest.raises(ConfigError, match="one process per database"):
        plan_serve(lite, None, limit=2)
    with pytest.raises(ConfigError, match="schedule.sources is empty"):
        plan_serve(settings_from_dict({"schedule": {"ingest_cron": "0 * * * *"}}), None)
    with pytest.raises(ConfigError, match="not a valid cron"):
        plan_serve(settings_from_dict({"schedule": {"ingest_cron": "every hour", "sources": ["d"]}}), None)
    unscheduled = plan_serve(settings_from_dict({}), None)
    assert unscheduled.cron is None and unscheduled.ingest_parameters == {}


def test_serve_cli_errors_are_one_line(tmp_path):
    config = write_config(tmp_path / "c.yaml", "http://m:19530", schedule={"ingest_cron": "61 * * * *", "sources": ["x"]})
    result = run_module("flows.serve", "--config", str(config), timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: schedule.ingest_cron '61 * * * *' is not a valid cron string (five fields, e.g. '0 * * * *' = hourly)"
    ]
    # Without a Prefect API, Prefect would start a temporary server whose schedules never fire.
    good = write_config(tmp_path / "ok.yaml", "http://m:19530", schedule={"ingest_cron": "0 * * * *", "sources": ["x"]})
    result = run_module("flows.serve", "--config", str(good), timeout=120, PREFECT_HOME=str(tmp_path / "home"), PREFECT_API_URL="")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "needs a running Prefect API" in lines[0], result.stderr


def test_prefect_yaml_matches_the_flows():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    pull = spec["pull"][0]["prefect.deployments.steps.set_working_directory"]
    assert pull["directory"] == "{{ clone.stdout }}"  # the clone `prefect deploy` ran in
    assert spec["build"][0]["prefect.deployments.steps.run_shell_script"]["script"] == "pwd"
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"ingest", "ingest-shard", "search", "fanout"}
    for d in deployments.values():
        assert d["work_pool"]["name"] == POOL
        path, _, name = d["entrypoint"].partition(":")
        assert (REPO / path).is_file() and re.search(rf"^def {name}\(", (REPO / path).read_text(), re.MULTILINE)
    assert deployments["ingest"]["schedules"][0]["cron"] == "0 * * * *"
    IngestParams.model_validate(deployments["ingest"]["parameters"]["params"])
    FanoutParams.model_validate(deployments["fanout"]["parameters"]["params"])
    # Runs of one collection's ingest take turns; the fan-out's shards (no schedule) run at once.
    assert deployments["ingest"]["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    shard = deployments["ingest-shard"]
    assert shard["entrypoint"] == deployments["ingest"]["entrypoint"] and "concurrency_limit" not in shard
    assert not shard.get("schedules") and IngestParams.model_validate(shard["parameters"]["params"]).shard
    assert deployments["fanout"]["parameters"]["params"]["deployment"] == "ingest/ingest-shard"
    assert FanoutParams.model_fields["deployment"].default == "ingest/ingest-shard"
    from flows.search import SearchParams

    SearchParams.model_validate(deployments["search"]["parameters"]["params"])


# -- a real Prefect server: deploy, workers, runs -----------------------------------------


@dataclass
class Stack:
    server: PrefectServer
    tmp: Path
    deploy_output: str
    seconds: dict[str, float]

    def deployment(self, name: str) -> dict:
        return self.server.api("GET", f"/deployments/name/{name}")

    def runs_of(self, deployment: str) -> list[dict]:
        dep = self.deployment(deployment)
        return self.server.api("POST", "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}})

    def run_cli(self, deployment: str, params: dict) -> subprocess.CompletedProcess[str]:
        return self.server.cli("deployment", "run", deployment, "--param", "params=" + json.dumps(params))

    def start_run(self, deployment: str, params: dict) -> str:
        result = self.run_cli(deployment, params)
        assert result.returncode == 0, result.stdout + result.stderr
        match = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
        assert match, result.stdout
        return match.group(1)

    def wait(self, flow_run_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.server.api("GET", f"/flow_runs/{flow_run_id}")
            if run["state"] and run["state"]["type"] in FINAL:
                return run
            if time.monotonic() > deadline:
                logs = "\n".join(p.log_tail(3000) for p in self.server.others)
                raise AssertionError(f"flow run {flow_run_id} still {run['state']['type']} after {timeout:.0f} s\n{logs}")
            time.sleep(1)

    def logs(self, flow_run_id: str) -> list[dict]:
        return self.server.api("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})

    def artifacts(self, flow_run_id: str) -> list[dict]:
        return self.server.api("POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """One Prefect server, the pool, ``prefect deploy --all`` from the repository, two workers."""
    tmp = tmp_path_factory.mktemp("prefect-stack")
    seconds: dict[str, float] = {}
    started = time.monotonic()
    server = start_prefect_server(tmp / "prefect-home")
    seconds["server_healthy"] = server.started_in
    survivors: list[int] = []
    try:
        step = time.monotonic()
        created = server.cli("work-pool", "create", POOL, "--type", "process")
        assert created.returncode == 0, created.stdout + created.stderr
        deployed = server.cli("deploy", "--all")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        seconds["pool_and_deploy"] = time.monotonic() - step
        # The hourly schedule is part of what was deployed (checked below); it must not fire mid-test.
        ingest = server.api("GET", "/deployments/name/ingest/ingest")
        for schedule in ingest["schedules"]:
            server.api("PATCH", f"/deployments/{ingest['id']}/schedules/{schedule['id']}", {"active": False})
        step = time.monotonic()
        worker_env = server.env(MILVUS_TOKEN=ENV_TOKEN, PREFECT_RESULTS_PERSIST_BY_DEFAULT="true")
        for name in WORKERS:
            server.start_worker(POOL, name, env=worker_env, limit=1, queue="default")
        server.start_worker(POOL, COORDINATOR, env=worker_env, queue="fanout")
        server.wait_for_worker(POOL, [*WORKERS, COORDINATOR])
        seconds["workers_polling"] = time.monotonic() - step
        seconds["stack_ready"] = time.monotonic() - started
        yield Stack(server, tmp, deployed.stdout, seconds)
    finally:
        survivors = server.stop()
        print(f"\nprefect stack timings (s): { {k: round(v, 1) for k, v in seconds.items()} }")
    assert not survivors, f"processes outlived the test module: {survivors}"


@dataclass
class IngestRun:
    flow_run: dict
    config: Path
    corpus: Path
    db: Path
    collection: str
    secret_name: str
    secret_value: str
    seconds: float


@pytest.fixture(scope="module")
def ingest_run(stack: Stack) -> IngestRun:
    """One ``prefect deployment run 'ingest/ingest'`` with parameters: a small corpus into Lite.

    The run names a Prefect Secret block for the Milvus token (Lite ignores tokens), and the
    workers have ``MILVUS_TOKEN`` in their environment: the secret tests scan this run.
    """
    corpus = sample_corpus(stack.tmp / "corpus")
    write_corpus(corpus, {"empty.txt": ""})  # skipped: shows up in the skipped-sources artifact
    (corpus / "binary.txt").write_bytes(b"\x00\x01binary")
    db = stack.tmp / "milvus.db"
    collection = unique_name()
    config = write_config(stack.tmp / "ingest.yaml", str(db), collection)
    secret_name, secret_value = "milvus-token-test", "secret-token-" + uuid.uuid4().hex
    with stack.server.client_settings():
        from prefect.blocks.system import Secret

        Secret(value=secret_value).save(secret_name, overwrite=True)
    started = time.monotonic()
    run_id = stack.start_run("ingest/ingest", {"sources": [str(corpus)], "config": str(config), "token_secret": secret_name})
    run = stack.wait(run_id)
    return IngestRun(run, config, corpus, db, collection, secret_name, secret_value, time.monotonic() - started)


@pytest.mark.prefect
def test_deploy_all_created_the_deployments_from_prefect_yaml(stack):
    ingest = stack.deployment("ingest/ingest")
    assert [s["schedule"]["cron"] for s in ingest["schedules"]] == ["0 * * * *"]
    assert ingest["work_pool_name"] == POOL and ingest["enforce_parameter_schema"]
    assert ingest["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
    ]
    assert "params" in ingest["parameter_openapi_schema"]["properties"]
    for name in ("search/search", "ingest-fanout/fanout", "ingest/ingest-shard"):
        assert stack.deployment(name)["work_pool_name"] == POOL
    assert stack.deployment("ingest-fanout/fanout")["work_queue_name"] == "fanout"
    assert ingest["global_concurrency_limit"]["limit"] == 1
    assert ingest["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert stack.deployment("ingest/ingest-shard")["global_concurrency_limit"] is None


@pytest.mark.prefect
def test_ingest_deployment_run_writes_the_rows(stack, ingest_run):
    run = ingest_run.flow_run
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["parameters"]["params"]["sources"] == [str(ingest_run.corpus)]
    from milvus_ingest.store import MilvusStore

    settings = settings_from_dict({"milvus": {"uri": str(ingest_run.db), "collection": ingest_run.collection}})
    with MilvusStore(settings.milvus) as store:
        rows = list(store._iterate(["source", "text"]))
    assert {r["source"] for r in rows} == {str(p.resolve()) for p in ingest_run.corpus.rglob("doc*")}
    summary = _summary(stack.artifacts(run["id"]))
    assert summary["rows_in_collection"] == summary["chunks"] == len(rows) > 10
    assert summary["new"] == 5 and summary["skipped"] == 2


def _summary(artifacts: list[dict]) -> dict:
    table = next(a for a in artifacts if a["key"] == "ingest-summary")
    data = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    return {row["metric"]: row["value"] for row in data}


@pytest.mark.prefect
def test_two_runs_of_the_ingest_deployment_take_turns(stack, tmp_path):
    """ENQUEUE: a run started while another runs waits for the slot, then completes after it.

    Both write one Milvus Lite folder, which two processes at once could not even open: both
    completing, one after the other, is what the concurrency limit buys.
    """
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    config = write_config(tmp_path / "turns.yaml", str(tmp_path / "milvus.db"), unique_name(), model={"threads": 1})
    params = {"sources": [str(corpus)], "config": str(config)}
    ids = [stack.start_run("ingest/ingest", params), stack.start_run("ingest/ingest", params)]
    runs = [stack.wait(run_id, timeout=420) for run_id in ids]
    assert [r["state"]["type"] for r in runs] == ["COMPLETED", "COMPLETED"], [r["state"]["message"] for r in runs]
    first, second = sorted(runs, key=lambda r: r["start_time"])
    assert datetime.fromisoformat(second["start_time"]) >= datetime.fromisoformat(first["end_time"])
    states = stack.server.api("GET", f"/flow_run_states/?flow_run_id={second['id']}")
    assert "AwaitingConcurrencySlot" in {s["name"] for s in states}
    summaries = [_summary(stack.artifacts(r["id"])) for r in (first, second)]
    assert (summaries[0]["new"], summaries[1]["new"], summaries[1]["unchanged"]) == (5, 0, 5)


@pytest.mark.prefect
def test_ingest_run_publishes_progress_summary_and_skipped_artifacts(stack, ingest_run):
    artifacts = {a["key"]: a for a in stack.artifacts(ingest_run.flow_run["id"])}
    assert {"ingest-progress", "ingest-summary", "ingest-skipped"} <= set(artifacts)
    assert artifacts["ingest-progress"]["type"] == "progress"
    assert float(artifacts["ingest-progress"]["data"]) == pytest.approx(100.0)
    assert artifacts["ingest-summary"]["type"] == "table"
    skipped = artifacts["ingest-skipped"]
    assert skipped["type"] == "markdown"
    assert "binary.txt" in skipped["data"] and "empty.txt" in skipped["data"]
    # The keyed artifacts are also findable by key, as the UI's artifact pages list them.
    # (Not /artifacts/latest: later tests' runs publish newer versions of the same key.)
    keyed = stack.server.api("POST", "/artifacts/filter", {"artifacts": {"key": {"any_": ["ingest-summary"]}}})
    assert any(a["flow_run_id"] == ingest_run.flow_run["id"] for a in keyed)


@pytest.mark.prefect
def test_milvus_token_never_reaches_logs_parameters_or_artifacts(stack, ingest_run):
    run_id = ingest_run.flow_run["id"]
    assert ingest_run.flow_run["state"]["type"] == "COMPLETED"  # so Secret.load succeeded in the run
    flow_run = stack.server.api("GET", f"/flow_runs/{run_id}")
    task_runs = stack.server.api("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    logs = stack.logs(run_id)
    artifacts = stack.artifacts(run_id)
    scanned = {
        "flow run (parameters, job variables, state)": json.dumps(flow_run),
        "task runs": json.dumps(task_runs),
        "logs": json.dumps(logs),
        "artifacts": json.dumps(artifacts),
        "worker output": "\n".join(p.log.read_text(errors="replace") for p in stack.server.others),
    }
    # The scan looks at real content: the run logged, made tasks and artifacts, and its
    # parameters name the Secret block (the name, never the value).
    assert logs and task_runs and len(artifacts) >= 3
    assert flow_run["parameters"]["params"]["token_secret"] == ingest_run.secret_name
    for where, text in scanned.items():
        assert ingest_run.secret_value not in text, f"the Secret block's token leaked into {where}"
        assert ENV_PASSWORD not in text, f"MILVUS_TOKEN from the environment leaked into {where}"


@pytest.mark.prefect
def test_bad_parameters_are_refused_before_a_run_is_created(stack):
    before = len(stack.runs_of("ingest/ingest"))
    for bad, expected in [
        ({"sources": []}, "sources"),
        ({"sources": ["x"], "shard": "two"}, "shard"),
        ({"sources": ["x"], "chunk_size": 5}, "chunk_size"),
    ]:
        result = stack.run_cli("ingest/ingest", bad)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "Traceback" not in output and expected in output, output
    assert len(stack.runs_of("ingest/ingest")) == before


@pytest.mark.prefect
def test_search_deployment_returns_the_ingested_rows(stack, ingest_run):
    from milvus_ingest.store import MilvusStore

    settings = settings_from_dict({"milvus": {"uri": str(ingest_run.db), "collection": ingest_run.collection}})
    with MilvusStore(settings.milvus) as store:
        stored = {r["id"]: r for r in store._iterate(["source", "text"])}
    some_text = min(stored.values(), key=lambda r: r["id"])["text"]
    with stack.server.client_settings():
        from prefect.deployments import run_deployment

        run = run_deployment(
            "search/search",
            parameters={"params": {"questions": [some_text], "config": str(ingest_run.config), "top_k": 3}},
            timeout=300, poll_interval=1, as_subflow=False,
        )
        assert run.state.is_completed(), run.state
        result = run.state.result()  # the workers persist results (PREFECT_RESULTS_PERSIST_BY_DEFAULT)
    assert [answer["question"] for answer in result] == [some_text]
    hits = result[0]["hits"]
    assert len(hits) == 3
    for hit in hits:
        assert hit["id"] in stored and hit["text"] == stored[hit["id"]]["text"]
        assert hit["source"] == stored[hit["id"]]["source"]
    table = next(a for a in stack.artifacts(str(run.id)) if a["key"] == "search-hits")
    assert hits[0]["source"] in json.dumps(table["data"])
    # The same ranking as searching in this process with the same config.
    from milvus_ingest.config import load_settings
    from milvus_ingest.retrieval import search_questions

    local = search_questions(load_settings(ingest_run.config), [some_text], top_k=3)[0]
    assert [h["id"] for h in hits] == [h.id for h in local]


@pytest.mark.prefect
def test_fanout_refuses_lite_and_a_missing_deployment_before_any_shard_run(stack, tmp_path):
    lite = write_config(tmp_path / "lite.yaml", str(tmp_path / "milvus.db"))
    server = write_config(tmp_path / "server.yaml", "http://127.0.0.1:9")
    runs = {
        "needs a Milvus server, not Milvus Lite": stack.start_run(
            "ingest-fanout/fanout", {"sources": [str(tmp_path)], "config": str(lite), "shards": 2}
        ),
        "deployment 'ingest/nope' does not exist: run `prefect deploy --all`": stack.start_run(
            "ingest-fanout/fanout", {"sources": [str(tmp_path)], "config": str(server), "deployment": "ingest/nope"}
        ),
    }
    for expected, run_id in runs.items():
        run = stack.wait(run_id, timeout=180)
        assert run["state"]["type"] == "FAILED" and expected in run["state"]["message"], run["state"]["message"]
        children = stack.server.api("POST", "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}})
        assert children == []  # refused before any shard run was created


@pytest.mark.prefect
def test_fanout_fails_when_its_shards_fail_and_names_them(stack, tmp_path):
    config = write_config(tmp_path / "server.yaml", "http://127.0.0.1:9")  # never reached: discovery fails first
    missing = str(tmp_path / "no-such-folder")
    run_id = stack.start_run(
        "ingest-fanout/fanout", {"sources": [missing], "config": str(config), "shards": 2, "poll_seconds": 1}
    )
    run = stack.wait(run_id, timeout=240)
    message = run["state"]["message"]
    assert run["state"]["type"] == "FAILED" and "2 of 2 shards did not complete" in message, message
    assert "shard 0/2 failed" in message and "shard 1/2 failed" in message and "does not exist" in message
    children = stack.server.api("POST", "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}})
    assert sorted(c["state"]["type"] for c in children) == ["FAILED", "FAILED"]


@pytest.mark.prefect
@pytest.mark.server
def test_fanout_over_two_workers_into_a_milvus_server(stack, milvus_server_process, tmp_path, t5_embedder):
    """Two shard runs on two workers into a real Milvus server (auth on: the token comes from a Secret)."""
    from milvus_ingest.config import load_settings
    from milvus_ingest.store import MilvusStore

    server = milvus_server_process
    token = server.token or "unused:token"  # the session's server has auth on (root:Milvus)
    with stack.server.client_settings():
        from prefect.blocks.system import Secret

        Secret(value=token).save("milvus-server-token", overwrite=True)
    corpus = sample_corpus(tmp_path / "corpus", paragraphs=8)
    write_corpus(corpus, {f"more/extra{i}.md": f"Extra file {i} about lanterns, harbours and copper." for i in range(7)})
    collection = unique_name()
    config = write_config(tmp_path / "fanout.yaml", server.uri, collection, model={"threads": 1})  # no token in it
    started = time.monotonic()
    parent_id = stack.start_run(
        "ingest-fanout/fanout",
        {"sources": [str(corpus)], "config": str(config), "uri": server.uri, "shards": 2, "poll_seconds": 1,
         "token_secret": "milvus-server-token"},
    )
    parent = stack.wait(parent_id, timeout=420)
    elapsed = time.monotonic() - started
    assert parent["state"]["type"] == "COMPLETED", parent["state"]["message"]
    children = stack.server.api("POST", "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}})
    assert sorted(c["name"] for c in children) == [f"{parent['name']}-shard-0-of-2", f"{parent['name']}-shard-1-of-2"]
    assert all(c["state"]["type"] == "COMPLETED" for c in children)
    assert sorted(c["parameters"]["params"]["shard"] for c in children) == ["0/2", "1/2"]
    summaries = [_summary(stack.artifacts(c["id"])) for c in children]
    assert sum(s["files_read"] for s in summaries) == 12  # disjoint and complete: every file once

    # The collection equals a single-process ingest of the same corpus, row for row.
    def rows(settings):
        with MilvusStore(settings.milvus) as store:
            return {r["id"]: (r["source"], r["text"], r["chunk_index"]) for r in store._iterate(["source", "text", "chunk_index"])}

    fanned = load_settings(write_config(tmp_path / "read.yaml", server.uri, collection, milvus={"token": server.token}))
    single = load_settings(write_config(tmp_path / "single.yaml", server.uri, unique_name(), milvus={"token": server.token}))
    run_ingest(single, [str(corpus)], embedder=t5_embedder)
    fanned_rows = rows(fanned)
    assert fanned_rows == rows(single)
    assert sum(s["chunks"] for s in summaries) == len(fanned_rows)
    table = next(a for a in stack.artifacts(parent_id) if a["key"] == "ingest-fanout-shards")
    assert json.dumps(table["data"]).count("COMPLETED") == 2
    for run_id in [parent_id, *(c["id"] for c in children)]:  # the Secret's value went nowhere
        seen = json.dumps([stack.server.api("GET", f"/flow_runs/{run_id}"), stack.logs(run_id), stack.artifacts(run_id)])
        assert token not in seen
    placed = {
        worker.name: re.findall(rf"Flow run '({re.escape(parent['name'])}-shard-\d-of-2)' submitted to", worker.log.read_text())
        for worker in stack.server.others if worker.name in WORKERS
    }
    assert sorted(len(shards) for shards in placed.values()) == [1, 1], placed  # one shard on each worker
    print(f"\nfan-out of 12 files over 2 shard runs: {elapsed:.1f} s; shards per worker: {placed}")


@pytest.mark.prefect
def test_serve_fires_a_scheduled_ingest(stack, tmp_path):
    corpus = write_corpus(tmp_path / "served", {"a.txt": "Served on a schedule: copper and lanterns.", "b.md": "Another file."})
    db = tmp_path / "milvus.db"
    collection = unique_name()
    config = write_config(
        tmp_path / "serve.yaml", str(db), collection, schedule={"ingest_cron": "0 0 1 1 *", "sources": [str(corpus)]}
    )
    name = "serve-test"
    started = time.monotonic()
    serve = stack.server.start(
        "serve", [sys.executable, "-m", "flows.serve", "--config", str(config), "--name", name, "--interval", "10"]
    )
    try:
        completed = None
        deadline = time.monotonic() + 240
        while completed is None and time.monotonic() < deadline:
            assert serve.popen.poll() is None, serve.log_tail()
            try:
                runs = stack.runs_of(f"ingest/{name}")
            except urllib.error.HTTPError:  # not registered yet
                runs = []
            completed = next((r for r in runs if r["state"]["type"] == "COMPLETED"), None)
            failed = [r for r in runs if r["state"]["type"] in {"FAILED", "CRASHED"}]
            assert not failed, f"{failed[0]['state']}\n{serve.log_tail()}"
            time.sleep(2)
        assert completed, f"no scheduled run completed within 240 s\n{serve.log_tail()}"
        fired_after = time.monotonic() - started
        assert completed["auto_scheduled"]  # started by the schedule, not by hand
        assert completed["parameters"]["params"]["sources"] == [str(corpus)]
        deployment = stack.deployment(f"ingest/{name}")
        assert deployment["schedules"][0]["schedule"]["interval"] == 10
        assert stack.deployment(f"search/{name}")["name"] == name  # both flows are served
    finally:
        serve.stop()
    assert not serve.survivors()
    from milvus_ingest.store import MilvusStore

    settings = settings_from_dict({"milvus": {"uri": str(db), "collection": collection}})
    with MilvusStore(settings.milvus) as store:
        assert {r["source"] for r in store._iterate(["source"])} == {str(corpus / "a.txt"), str(corpus / "b.md")}
    print(f"\nserve: first scheduled run completed {fired_after:.1f} s after start")
