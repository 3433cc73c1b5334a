"""docker-compose.yml, Dockerfile and .env.example agree with the code and the README.

There is no Docker engine where the tests run, so this checks what can be
checked without one: every command is a real `sweep` command with real
options, every setting is one sweep reads, and the image installs what the
README says it installs.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweep.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SWEEP_SERVICES = ["migrate", "api", "worker", "dashboard"]
VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def substitute(value: str, env: dict[str, str]) -> str:
    """What compose makes of ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if "?" in match.group(0):
            raise AssertionError(f"{name} is required: {default}")
        return default or ""

    return VARIABLE.sub(one, value)


def test_the_services_and_their_order() -> None:
    assert set(SERVICES) == {"postgres", "pgbouncer", *SWEEP_SERVICES}
    migrate_needs = SERVICES["migrate"]["depends_on"]
    assert migrate_needs == {"postgres": {"condition": "service_healthy"}}
    assert SERVICES["migrate"]["restart"] == "no"  # once, not in a loop
    for name in ("api", "worker", "dashboard"):
        needs = SERVICES[name]["depends_on"]
        assert needs == {"migrate": {"condition": "service_completed_successfully"}}, name
    postgres = SERVICES["postgres"]
    assert "healthcheck" in postgres and "pg_isready" in str(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in COMPOSE["volumes"]


@pytest.mark.parametrize("service", SWEEP_SERVICES)
def test_each_command_is_a_real_sweep_command(service: str) -> None:
    command = SERVICES[service]["command"]
    assert command[0] == "sweep"
    # --help after the full command: click rejects an unknown subcommand or option first.
    result = subprocess.run(
        [sys.executable, "-m", "sweep", *command[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Usage:" in result.stdout


def test_the_worker_reserves_nvidia_gpus_and_uses_them_all() -> None:
    worker = SERVICES["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert worker["command"][:4] == ["sweep", "worker", "--gpus", "all"]
    assert "ports" not in worker  # so that `--scale worker=N` does not collide on a host port


def test_environment_names_only_settings_and_holds_no_secret() -> None:
    fields = {f"SWEEP_{name.upper()}" for name in Settings.model_fields}
    for name, service in SERVICES.items():
        for key, value in service.get("environment", {}).items():
            if key.startswith("SWEEP_"):
                assert key in fields, f"{name}: {key} is not a setting sweep reads"
            if name == "pgbouncer" and not key.startswith("DB_"):
                continue  # its pooling knobs are not secrets; its database login is
            assert "${" in str(value), f"{name}: {key} is written in the file, not taken from .env"


def test_env_example_defines_every_variable_and_makes_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = env_example()
    text = (ROOT / "docker-compose.yml").read_text()
    used = {m.group(1) for m in VARIABLE.finditer(text)}
    assert used <= set(env), f"not in .env.example: {sorted(used - set(env))}"
    settings_env = {
        key: substitute(str(value), env)
        for key, value in SERVICES["api"]["environment"].items()
        if key.startswith("SWEEP_")
    }
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in settings.database_url  # the compose service's name
    assert env["POSTGRES_PASSWORD"] in settings.database_url  # the same credentials


def test_pgbouncer_is_an_opt_in_transaction_pooler_in_front_of_postgres() -> None:
    bouncer = SERVICES["pgbouncer"]
    assert bouncer["profiles"] == ["pgbouncer"]  # not started unless asked for
    assert bouncer["environment"]["POOL_MODE"] == "transaction"
    assert substitute(bouncer["environment"]["DB_HOST"], env_example()) == "postgres"
    assert "SWEEP_TRANSACTION_POOLER" in SERVICES["worker"]["environment"]


def test_the_dashboard_and_api_are_published_on_loopback_by_default() -> None:
    for name in ("dashboard", "api", "postgres", "pgbouncer"):
        published = substitute(SERVICES[name]["ports"][0], {})
        assert published.startswith("127.0.0.1:"), f"{name} is published as {published}"


def test_the_image_is_built_from_the_repository_dockerfile() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in SWEEP_SERVICES:
        assert SERVICES[name]["build"] == ".", name
        assert SERVICES[name]["image"] == SERVICES["api"]["image"], name
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"


def dockerfile_installs() -> list[str]:
    """The Dockerfile's `pip install` commands, with its ARG defaults filled in."""
    text = (ROOT / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    commands = re.findall(r"^RUN (pip install .+)$", text, flags=re.M)
    return [" ".join(shlex.split(substitute(command, args))) for command in commands]


def test_the_dockerfile_installs_what_the_readme_says() -> None:
    installs = dockerfile_installs()
    assert installs == ["pip install torch==2.13.0", "pip install ."]
    readme = (ROOT / "README.md").read_text()
    deployment = readme.split("## Deployment", 1)[1].split("\n## ", 1)[0]
    for command in installs:
        assert command in deployment, f"README's Deployment section does not say `{command}`"
    makefile_torch = re.search(r"^TORCH\s*\?=\s*(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_torch is not None
    assert installs[0] == f"pip install {makefile_torch.group(1)}"  # one torch pin for both
