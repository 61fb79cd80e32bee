"""docker/compose.yaml and docker/app/Dockerfile cannot run here (no registry): check that they parse, wire the
services together, keep secrets out, and name commands that really exist."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import REPO

COMPOSE = REPO / "docker" / "compose.yaml"
DOCKERFILE = REPO / "docker" / "app" / "Dockerfile"


def interpolate(value: str) -> str:
    """Resolve compose's `${VAR:-default}` to the default and `${VAR:?error}` to a placeholder."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "set-by-operator", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed compose file."""
    return yaml.safe_load(COMPOSE.read_text())


def check_command(argv: list[str]) -> None:
    """Fail unless `argv` is a `grader` subcommand with valid options or gunicorn serving a real app factory."""
    argv = [interpolate(arg) for arg in argv]
    if argv[0] == "grader":
        from grader.cli import cli

        result = CliRunner().invoke(cli, [*argv[1:], "--help"])
        assert result.exit_code == 0, f"{argv}: {result.output}"
        return
    assert argv[0] == "gunicorn", argv
    from gunicorn.config import Config

    parsed = Config().parser().parse_args(argv[1:])
    module_name, _, call = parsed.args[0].partition(":")
    factory = getattr(importlib.import_module(module_name), call.removesuffix("()"))
    assert callable(factory) and call.endswith("()"), parsed.args


def test_compose_defines_the_production_services(compose: dict[str, Any]) -> None:
    """Does the compose file define web, migrate, beat, CPU and GPU workers, Redis and PostgreSQL, wired together?"""
    services = compose["services"]
    assert {"web", "migrate", "beat", "worker", "worker-gpu", "redis", "postgres"} <= set(services)
    assert services["beat"]["command"] == ["grader", "beat"]
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert services["worker"]["command"][services["worker"]["command"].index("--queues") + 1] == "cpu"
    assert services["worker-gpu"]["command"][services["worker-gpu"]["command"].index("--queues") + 1] == "gpu"
    assert services["worker-gpu"]["environment"]["GRADER_GPUS"] == "all"
    for name in ("web", "worker", "worker-gpu", "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["BROKER_URL"].startswith("redis://redis:6379")
        assert "submissions:/var/lib/grader/submissions" in services[name]["volumes"]
    for name in ("worker", "worker-gpu"):
        assert "/var/run/docker.sock:/var/run/docker.sock" in services[name]["volumes"]
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_hard_codes_no_secret(compose: dict[str, Any]) -> None:
    """Are SECRET_KEY and the database password required from the operator, never written in the file?"""
    env = compose["services"]["web"]["environment"]
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", env["SECRET_KEY"])
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", compose["services"]["postgres"]["environment"][
        "POSTGRES_PASSWORD"])
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]


def test_compose_commands_exist(compose: dict[str, Any]) -> None:
    """Does every service built from our image run a command that exists (`grader …`, gunicorn's app factory)?"""
    checked = 0
    for service in compose["services"].values():
        if "build" in service:
            check_command(service["command"])
            checked += 1
    assert checked == 5  # migrate, web, worker, worker-gpu, beat


def test_dockerfile_default_command_exists() -> None:
    """Does the app image's default command serve a real app factory under gunicorn?"""
    text = DOCKERFILE.read_text()
    command = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert command, "the Dockerfile has no exec-form CMD"
    check_command(json.loads(command.group(1)))
    for source in re.findall(r"^COPY (\S+)/ ", text, re.MULTILINE):
        assert (REPO / source).is_dir(), f"the Dockerfile copies {source}/, which does not exist"
    assert (Path(REPO) / "pyproject.toml").is_file()
