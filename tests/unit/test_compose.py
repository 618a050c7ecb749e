"""Static checks of docker-compose.milvus.yml (no Docker needed: the file is parsed with yaml)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.milvus.yml"

# ${VAR}, ${VAR:-default}, ${VAR-default}: resolve to the default (what `docker compose` uses
# when the variable is unset).
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def _interpolate(value: str) -> str:
    return _VAR_RE.sub(lambda m: m.group(3) if m.group(2) else "", value)


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE.is_file(), f"{COMPOSE} is missing"
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "compose file must be a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose) -> dict:
    services = compose.get("services")
    assert isinstance(services, dict) and services, "no services defined"
    return services


def _milvus_service(services: dict) -> tuple:
    found = [
        (name, svc)
        for name, svc in services.items()
        if str(svc.get("image", "")).split(":")[0].endswith("milvusdb/milvus")
    ]
    assert len(found) == 1, f"expected exactly one milvusdb/milvus service, got {found}"
    return found[0]


def _environment(svc: dict) -> dict:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, _, val = str(item).partition("=")
            out[key] = val
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _split_image(image: str) -> tuple:
    """('quay.io/coreos/etcd', 'v3.5.18', digest-or-None). A registry port is not a tag."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
    else:
        repo, tag = image, None
    return repo, tag, digest


def test_has_milvus_etcd_minio(services):
    repos = {_split_image(str(s.get("image", "")))[0].split("/")[-1] for s in services.values()}
    assert {"milvus", "etcd", "minio"} <= repos, repos


@pytest.mark.parametrize(
    "image,ok",
    [
        ("milvusdb/milvus:v2.5.16", True),
        ("quay.io/coreos/etcd:v3.5.18", True),
        ("minio/minio:RELEASE.2024-05-28T17-19-04Z", True),
        ("milvusdb/milvus", False),
        ("milvusdb/milvus:latest", False),
        ("localhost:5000/milvus", False),
        ("milvusdb/milvus:${TAG}", False),
        ("milvusdb/milvus:v2.5", False),
    ],
)
def test_pin_checker_itself(image, ok):
    """The checker used below must reject what it is meant to reject."""
    assert _is_pinned(image) is ok


def _is_pinned(image: str) -> bool:
    if "$" in image:  # a variable can be anything at run time
        return False
    repo, tag, digest = _split_image(image)
    if digest:
        return bool(re.fullmatch(r"sha256:[0-9a-f]{64}", digest))
    if not tag or tag.lower() in {"latest", "stable", "main", "master", "nightly"}:
        return False
    # A concrete release has at least major.minor.patch or a date stamp (MinIO's RELEASE.*).
    return bool(re.search(r"\d+\.\d+\.\d+", tag) or re.search(r"\d{4}-\d{2}-\d{2}", tag))


def test_every_image_pinned(services):
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"service {name} has no image"
        assert _is_pinned(str(image)), f"service {name}: image {image!r} is not pinned to a release"


def test_milvus_is_2_5_or_2_6(services):
    _, svc = _milvus_service(services)
    _, tag, _ = _split_image(svc["image"])
    assert re.fullmatch(r"v2\.[56]\.\d+(-[\w.]+)?", tag), tag


def test_healthchecks_on_every_service(services):
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        assert isinstance(hc, dict), f"service {name} has no healthcheck"
        assert not hc.get("disable"), f"service {name} disables its healthcheck"
        test = hc.get("test")
        assert test and test not in (["NONE"], "NONE"), f"service {name}: empty healthcheck test"
        for key in ("interval", "timeout", "retries"):
            assert key in hc, f"service {name}: healthcheck has no {key}"


def test_milvus_healthcheck_uses_healthz(services):
    _, svc = _milvus_service(services)
    test = svc["healthcheck"]["test"]
    text = " ".join(test) if isinstance(test, list) else str(test)
    assert "9091/healthz" in text


def test_milvus_waits_for_healthy_dependencies(services):
    name, svc = _milvus_service(services)
    deps = svc.get("depends_on")
    assert isinstance(deps, dict), "depends_on should use the long form with conditions"
    others = set(services) - {name}
    assert set(deps) == others
    for dep, cond in deps.items():
        assert cond.get("condition") == "service_healthy", dep


def _published(svc: dict) -> dict:
    """{container_port: host_port} with variables resolved to their defaults."""
    out = {}
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            out[int(p["target"])] = int(_interpolate(str(p.get("published", p["target"]))))
            continue
        text = _interpolate(str(p)).split("/")[0]
        parts = text.split(":")
        container = int(parts[-1])
        host = int(parts[-2]) if len(parts) >= 2 else container
        out[container] = host
    return out


def test_ports_19530_and_9091_published(services):
    _, svc = _milvus_service(services)
    ports = _published(svc)
    assert ports.get(19530) == 19530, ports
    assert ports.get(9091) == 9091, ports


def test_named_volumes_declared_and_used(compose, services):
    declared = compose.get("volumes")
    assert isinstance(declared, dict) and declared, "no top-level named volumes"
    used = set()
    for name, svc in services.items():
        vols = svc.get("volumes") or []
        assert vols, f"service {name} keeps no data in a volume"
        for v in vols:
            source = v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
            assert source and not source.startswith((".", "/", "~", "$")), (
                f"service {name}: {v!r} is a bind mount, expected a named volume"
            )
            assert source in declared, f"service {name}: volume {source!r} not declared"
            used.add(source)
    assert used == set(declared), f"declared but unused: {set(declared) - used}"


def test_auth_switch(services):
    _, svc = _milvus_service(services)
    env = _environment(svc)
    assert "COMMON_SECURITY_AUTHORIZATIONENABLED" in env
    raw = env["COMMON_SECURITY_AUTHORIZATIONENABLED"]
    m = _VAR_RE.fullmatch(raw)
    assert m and m.group(1) == "MILVUS_AUTH_ENABLED", raw
    assert _interpolate(raw) == "false", "authentication should be off unless switched on"


def test_milvus_points_at_etcd_and_minio(services):
    _, svc = _milvus_service(services)
    env = _environment(svc)
    assert env.get("ETCD_ENDPOINTS", "").split(":")[0] in services
    assert env.get("MINIO_ADDRESS", "").split(":")[0] in services


def test_usage_documented():
    text = COMPOSE.read_text(encoding="utf-8")
    for needle in (
        "docker compose -f docker-compose.milvus.yml up -d",
        "MILVUS_URI=http://localhost:19530",
        "MILVUS_TOKEN=root:Milvus",
        "MILVUS_AUTH_ENABLED=true",
    ):
        assert needle in text, f"usage comment lacks {needle!r}"


def test_message_queue_is_pinned_to_what_the_previous_release_used(services):
    """An upgrade must keep the message queue (2.5 -> 2.6): it is set, not left to the image's default."""
    _, svc = _milvus_service(services)
    raw = _environment(svc).get("MQ_TYPE", "")
    m = _VAR_RE.fullmatch(raw)
    assert m and m.group(1) == "MILVUS_MQ_TYPE", raw
    assert _interpolate(raw) == "rocksmq"


def test_management_port_is_published_on_localhost_only(services):
    """9091 serves /healthz, metrics and the WebUI without authentication (CVE-2026-26190 on 2.6.0-2.6.9)."""
    _, svc = _milvus_service(services)
    mappings = [_interpolate(str(p)) for p in svc.get("ports") or [] if str(p).rstrip('"').endswith(":9091")]
    assert mappings and all(m.startswith("127.0.0.1:") for m in mappings), mappings
    _, tag, _ = _split_image(svc["image"])
    major, minor, patch = (int(x) for x in re.match(r"v(\d+)\.(\d+)\.(\d+)", tag).groups())
    assert (major, minor) != (2, 6) or patch >= 10, tag
