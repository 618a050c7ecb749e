"""The ingest command line as a user runs it: exit codes, one-line errors, the summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.cli_support import cli_env, run_module, write_config
from tests.support.corpus import REPO, sample_corpus, write_corpus


def _one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_ingest_through_the_prefect_flow_prints_a_summary(tmp_path):
    corpus = sample_corpus(tmp_path / "corpus")
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "milvus.db"))
    result = run_module("flows.ingest", str(corpus), "--config", str(config), "--json", "--flow",
                        PREFECT_HOME=str(tmp_path / "prefect"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["new"] == 5 and summary["skipped"] == 0
    assert summary["rows_in_collection"] == summary["chunks"] > 0
    assert "Traceback" not in result.stderr


def test_exit_codes_without_prefect(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {"good.md": "Good text.", "also.txt": "More good text."})
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "milvus.db"))
    ok = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow")
    assert ok.returncode == 0, ok.stderr
    assert "files read" in ok.stdout and "rows now" in ok.stdout

    (corpus / "bad.txt").write_bytes(b"\xff\xfe\x00\x00binary")
    some_skipped = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow")
    assert some_skipped.returncode == 1, some_skipped.stderr
    assert "bad.txt" in some_skipped.stdout

    missing = run_module("flows.ingest", str(tmp_path / "nope"), "--config", str(config), "--no-flow")
    assert missing.returncode == 2
    assert "does not exist" in _one_line_error(missing)

    usage = run_module("flows.ingest", "--config", str(config))
    assert usage.returncode == 2


def test_milvus_uri_from_the_environment_may_be_a_lite_folder(tmp_path):
    """pymilvus parses MILVUS_URI when imported and refuses anything but http(s)://: a Lite folder
    there (our environment override) must still work, for ingest and search alike."""
    corpus = write_corpus(tmp_path / "corpus", {"ark.txt": "Noah built the ark of gopher wood."})
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "from-config.db"))
    lite = str(tmp_path / "from-env.db")
    ingest = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--json", MILVUS_URI=lite)
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["new"] == 1
    assert (tmp_path / "from-env.db").is_dir() and not (tmp_path / "from-config.db").exists()
    found = run_module("flows.search", "Who built the ark?", "--config", str(config), "--json", MILVUS_URI=lite)
    assert found.returncode == 0, found.stderr
    assert "ark.txt" in json.loads(found.stdout.splitlines()[0])["hits"][0]["source"]


def test_config_and_model_errors_are_one_line(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {"a.txt": "text"})
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("milvus:\n  urii: ./x.db\n")
    result = run_module("flows.ingest", str(corpus), "--config", str(bad_key), "--no-flow")
    assert result.returncode == 2 and "milvus.urii" in _one_line_error(result)

    too_big = write_config(tmp_path / "big.yaml", str(tmp_path / "m.db"), chunking={"chunk_tokens": 600, "overlap_tokens": 8})
    result = run_module("flows.ingest", str(corpus), "--config", str(too_big), "--no-flow")
    assert result.returncode == 2 and "chunk_tokens=600" in _one_line_error(result)

    config = write_config(tmp_path / "c.yaml", str(tmp_path / "m2.db"))
    result = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--model", "hkunlp/instructor-xl")
    assert result.returncode == 2 and "local model folder" in _one_line_error(result)

    result = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--uri", "http://127.0.0.1:9")
    line = _one_line_error(result)
    assert result.returncode == 2 and "127.0.0.1:9" in line

    result = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--shard", "3/2")
    assert result.returncode == 2 and "--shard" in _one_line_error(result)


def test_refusals_name_the_real_cause_and_the_value(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {"a.txt": "Some text about rivers."})
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "m.db"))
    a_file = tmp_path / "not-a-db"
    a_file.write_text("x")
    result = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--uri", str(a_file))
    line = _one_line_error(result)
    assert result.returncode == 2 and "is a file" in line and str(a_file) in line and "in use" not in line

    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--uri", str(locked / "m.db"))
        if os.geteuid() != 0:  # root writes anywhere
            line = _one_line_error(result)
            assert result.returncode == 2 and "not writable" in line and "in use" not in line
    finally:
        locked.chmod(0o755)

    for bad in ("bad name!", "x" * 300, "", "1abc"):
        result = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--collection", bad)
        line = _one_line_error(result)
        assert result.returncode == 2 and f"--collection {bad!r}" in line and "pydantic" not in line, line
        assert "collection name is 1-255 ASCII" in line


def test_minor_refusals(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {"a.txt": "Some text about rivers."})
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n# nothing here\n")
    result = run_module("flows.ingest", str(corpus), "--config", str(empty), "--no-flow")
    assert result.returncode == 2 and "is empty" in _one_line_error(result)

    (tmp_path / "nothing").mkdir()
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "m.db"))
    result = run_module("flows.ingest", str(tmp_path / "nothing"), "--config", str(config), "--no-flow")
    assert result.returncode == 2 and "holds no files" in _one_line_error(result)

    # Refused for the chunk budget: nothing is created.
    db = tmp_path / "budget.db"
    too_big = write_config(tmp_path / "big.yaml", str(db), chunking={"chunk_tokens": 600, "overlap_tokens": 8})
    result = run_module("flows.ingest", str(corpus), "--config", str(too_big), "--no-flow")
    assert result.returncode == 2 and "chunk_tokens=600" in _one_line_error(result)
    from milvus_ingest.config import load_settings
    from milvus_ingest.store import MilvusStore

    with MilvusStore(load_settings(too_big).milvus) as store:
        assert not store.exists()


def test_a_plain_run_never_imports_prefect(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {"a.txt": "Some text about rivers."})
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "m.db"))
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['flows.ingest', {str(corpus)!r}, '--config', {str(config)!r}]\n"
        "try:\n    runpy.run_module('flows.ingest', run_name='__main__')\n"
        "except SystemExit as exit:\n    code = exit.code\n"
        "print('EXIT', code, 'prefect' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env=cli_env(PREFECT_HOME=str(tmp_path / "no-prefect-here")), timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "EXIT 0 False", result.stdout + result.stderr


def test_an_onnx_ingest_reports_its_engine_and_imports_no_torch(tmp_path, t5_onnx):
    """With the export cached (t5_onnx made it), an ONNX ingest needs neither torch nor sentence-transformers."""
    from milvus_ingest.encoders.cpu import cpu_features

    corpus = sample_corpus(tmp_path / "corpus")
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "milvus.db"), model={"backend": "onnx", "precision": "fp32"})
    result = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--json",
                        PYTHONPROFILEIMPORTTIME="1")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["new"] == 5 and summary["rows_in_collection"] == summary["chunks"] > 0
    engine = summary["engine"]
    assert (engine["backend"], engine["precision"]) == ("onnx", "fp32") and "ONNX Runtime fp32" in engine["reason"]
    assert engine["cpu_features"] == sorted(cpu_features())
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "onnxruntime" in imported
    assert not imported & {"torch", "transformers", "sentence_transformers", "prefect"}

    (corpus / "new.md").write_text("A new page about the copper engine.", encoding="utf-8")
    table = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow")
    assert table.returncode == 0, table.stderr
    assert "engine" in table.stdout and "onnx fp32: " in table.stdout
    unchanged = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--json")
    assert json.loads(unchanged.stdout)["engine"] is None  # nothing to encode: no model loaded


def test_a_torch_ingest_says_how_many_batches_ran_at_a_time(tmp_path):
    """The summary names the split of the cores (``model.workers``), in the table and the JSON."""
    corpus = sample_corpus(tmp_path / "corpus")
    model = {"backend": "torch", "precision": "fp32", "threads": 2, "workers": 2}
    config = write_config(tmp_path / "c.yaml", str(tmp_path / "milvus.db"), model=model)
    result = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow", "--json")
    assert result.returncode == 0, result.stderr
    engine = json.loads(result.stdout)["engine"]
    assert engine["backend"] == "torch" and engine["batches_at_a_time"] == 2 and engine["threads_per_batch"] == [1, 1]
    (corpus / "new.md").write_text("A new page about the copper engine.", encoding="utf-8")
    table = run_module("flows.ingest", str(corpus), "--config", str(config), "--no-flow")
    assert table.returncode == 0, table.stderr
    assert "torch fp32: " in table.stdout and "2 batches at a time, 1/1 threads each" in table.stdout
