"""deploy/docker: hadolint checks the Dockerfile, the compose-spec schema the compose file.

Nothing is built or pulled here; `docker compose config` runs only where the compose
plugin is installed.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from deploy_checks import (
    DEPLOY,
    PROMETHEUS,
    check_settings,
    drain_grace_s,
    load_yaml,
    venv_tool,
)
from harness.redis_server import free_port
from support import PROJECT

DOCKER = DEPLOY / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
BASE_IMAGE = "python:3.11-slim-bookworm"
BUILD_TOOLS = ("gcc", "build-essential", "make ", "g++", "-dev ")


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), one list per stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


def expand(env: dict[str, Any]) -> dict[str, str]:
    """Compose's ``${VAR:-default}`` replaced by the default, as with an empty shell."""
    return {key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)) for key, value in env.items()}


def test_hadolint_accepts_the_dockerfile() -> None:
    done = subprocess.run(
        [venv_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_image_is_small_pinned_non_root_and_healthchecked() -> None:
    *build, final = stages()
    assert build, "multi-stage: dependencies are installed in a build stage"
    for stage in stages():
        assert stage[0].split()[1] == BASE_IMAGE
    runs = " ".join(line for line in final if line.upper().startswith("RUN "))
    assert not any(tool in runs for tool in BUILD_TOOLS)
    assert "apt-get install" not in runs
    (user,) = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert user.split(":")[0] not in ("root", "0")
    assert any(line.upper().startswith("HEALTHCHECK ") for line in final)
    assert any("COPY --from=build /opt/venv" in line for line in final)
    ignored = (PROJECT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


async def test_the_healthcheck_passes_only_while_healthz_answers_200() -> None:
    status = 200

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(status=status)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    script = str(DOCKER / "healthcheck.py")

    async def check(env: dict[str, str]) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable, script, env={"PATH": "/usr/bin:/bin", **env}
        )
        return int(await process.wait())

    try:
        nothing = str(free_port())
        assert await check({"PORT": str(port), "METRICS_PORT": nothing}) == 0  # the API
        assert await check({"PORT": nothing, "METRICS_PORT": str(port)}) == 0  # a worker
        status = 503
        assert await check({"PORT": str(port), "METRICS_PORT": nothing}) == 1
        assert await check({"PORT": nothing, "METRICS_PORT": nothing}) == 1
    finally:
        await runner.cleanup()


def test_the_compose_file_matches_the_compose_spec() -> None:
    done = subprocess.run(
        [venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_spec_check_notices_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("replicas: 2", "replica: 2"))
    done = subprocess.run(
        [venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0


def test_compose_runs_redis_with_aof_scalable_workers_prometheus_and_an_smtp_catcher() -> None:
    services = compose()["services"]
    assert {"redis", "api", "worker", "log-writer", "prometheus", "mailpit"} <= set(services)
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    worker = services["worker"]
    assert worker["command"] == ["python", "-m", "worker"]
    assert services["api"]["command"] == ["python", "-m", "producer"]
    # The workers leave the delivery log to the log-writer service.
    assert services["log-writer"]["command"] == ["python", "-m", "cli", "log-writer"]
    assert expand(worker["environment"])["LOG_WRITER"] == "separate"
    # Scalable: replicas, and nothing that would clash between them.
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker
    assert "ports" not in worker
    for name in ("api", "worker", "log-writer"):
        env = expand(services[name]["environment"])
        check_settings(env)
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert env["SMTP_URL"] == "smtp://mailpit:1025"
        seconds = float(services[name]["stop_grace_period"].rstrip("s"))
        assert seconds > drain_grace_s(float(env["SHUTDOWN_GRACE"]))


def test_compose_prometheus_uses_deploy_prometheus_and_scrapes_the_compose_services() -> None:
    services = compose()["services"]
    mounts = services["prometheus"]["volumes"]
    assert "../prometheus:/etc/prometheus:ro" in mounts
    assert (COMPOSE.parent / "../prometheus").resolve() == PROMETHEUS
    jobs = {
        job["job_name"]: job for job in load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]
    }
    api_env = expand(services["api"]["environment"])
    assert jobs["cliq-webhooks-api"]["static_configs"][0]["targets"] == [f"api:{api_env['PORT']}"]
    for job, service in (
        ("cliq-webhooks-worker", "worker"),
        ("cliq-webhooks-log-writer", "log-writer"),
    ):
        (discovery,) = jobs[job]["dns_sd_configs"]
        assert discovery["names"] == [service]
        assert discovery["port"] == int(expand(services[service]["environment"])["METRICS_PORT"])


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    plugin = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30
    )
    if plugin.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_keeps_the_delivery_log_in_postgresql_migrated_before_the_processes() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    migrate = services["migrate"]
    assert migrate["command"] == ["python", "-m", "cli", "migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    database_url = expand(migrate["environment"])["DATABASE_URL"]
    assert database_url.startswith("postgresql://cliq:")
    assert database_url.endswith("@postgres:5432/cliq")
    for name in ("api", "worker", "log-writer"):
        assert expand(services[name]["environment"])["DATABASE_URL"] == database_url
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
