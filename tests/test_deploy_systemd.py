"""deploy/systemd: the units parse, name what the issue asks for, and systemd accepts them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import build_parser

from deploy_checks import DEPLOY, check_settings, drain_grace_s, procfile_command

SYSTEMD = DEPLOY / "systemd"
API_UNIT = SYSTEMD / "cliq-webhooks-api.service"
WORKER_UNIT = SYSTEMD / "cliq-webhooks-worker@.service"
LOG_WRITER_UNIT = SYSTEMD / "cliq-webhooks-log-writer.service"
ENV_EXAMPLE = SYSTEMD / "cliq-webhooks.env.example"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "SystemCallFilter": "@system-service",
}
# systemd-analyze security's scale: up to 2 is "OK", 10 is "UNSAFE".
MAX_EXPOSURE = 2.0

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Sections -> key -> values (a key may repeat); comments and blank lines skipped."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = unit.setdefault(line.strip("[]"), {})
            continue
        assert section is not None, f"{path.name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def seconds(value: str) -> float:
    """A systemd time span such as ``40``, ``40s`` or ``1min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, value
    return sum(float(number) * units[unit] for number, unit in parts)


@pytest.mark.parametrize("path", [API_UNIT, WORKER_UNIT, LOG_WRITER_UNIT], ids=lambda p: p.name)
def test_units_restart_on_failure_stop_after_the_drain_and_are_hardened(path: Path) -> None:
    service = parse_unit(path)["Service"]
    assert service["Restart"] == ["on-failure"]
    assert seconds(service["TimeoutStopSec"][0]) > drain_grace_s()
    assert service["KillSignal"] == ["SIGTERM"]
    user = service["User"][0]
    assert user not in ("", "root", "0")
    assert service["EnvironmentFile"] == ["/etc/cliq-webhooks/cliq-webhooks.env"]
    for key, value in HARDENING.items():
        assert value in service.get(key, []), f"{path.name}: {key}={value} missing"
    assert parse_unit(path)["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_api_unit_runs_the_procfiles_web_process() -> None:
    (command,) = parse_unit(API_UNIT)["Service"]["ExecStart"]
    # The same command, with the venv's python.
    assert shlex.split(command)[1:] == procfile_command("web")[1:]


def test_the_log_writer_unit_runs_the_procfiles_log_writer_on_a_port_of_its_own() -> None:
    (command,) = parse_unit(LOG_WRITER_UNIT)["Service"]["ExecStart"]
    argv = shlex.split(command)
    assert argv[1:2] == procfile_command("log-writer")[1:]
    args = build_parser().parse_args(argv[1:])
    assert args.command == "log-writer"
    assert args.setting_metrics_port == "9474"


def test_the_worker_template_takes_its_metrics_port_from_the_instance_name() -> None:
    service = parse_unit(WORKER_UNIT)["Service"]
    (command,) = service["ExecStart"]
    argv = shlex.split(command.replace("%i", "9464"))
    assert argv[0].endswith("/cliq-webhooks")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "worker"
    assert args.setting_metrics_port == "9464"
    # The supervisor of `--processes N` passes SIGTERM on: only it is signalled.
    assert service["KillMode"] == ["mixed"]


def test_the_environment_example_holds_only_settings_the_processes_accept() -> None:
    env: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    assert {"REDIS_URL", "SECRET_ENCRYPTION_KEY", "SMTP_URL", "SHUTDOWN_GRACE"} <= set(env)
    check_settings(env)
    stop_timeout_s = seconds(parse_unit(WORKER_UNIT)["Service"]["TimeoutStopSec"][0])
    assert drain_grace_s(float(env["SHUTDOWN_GRACE"])) < stop_timeout_s


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (the units are still parsed above)")
    return found


def runnable_copy(path: Path, folder: Path, name: str) -> Path:
    """The unit with its ExecStart binary replaced by one that exists here.

    ``systemd-analyze verify`` insists that the binary exists; everything else is as
    shipped. ``name`` gives a template an instance.
    """
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable}", path.read_text(), flags=re.M)
    copy = folder / name
    copy.write_text(text)
    return copy


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (API_UNIT, API_UNIT.name),
        (WORKER_UNIT, "cliq-webhooks-worker@9464.service"),
        (LOG_WRITER_UNIT, LOG_WRITER_UNIT.name),
    ],
    ids=["api", "worker", "log-writer"],
)
def test_systemd_analyze_verifies_the_units_and_rates_them_safe(
    path: Path, name: str, tmp_path: Path
) -> None:
    analyze = systemd_analyze()
    copy = runnable_copy(path, tmp_path, name)
    verify = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    security = subprocess.run(
        [analyze, "security", "--offline=true", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert exposure is not None, security.stdout + security.stderr
    assert float(exposure.group(1)) <= MAX_EXPOSURE


def test_systemd_analyze_notices_a_misspelt_key(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    copy = runnable_copy(API_UNIT, tmp_path, API_UNIT.name)
    copy.write_text(copy.read_text().replace("RestartSec=", "RestartSecs="))
    verify = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert "Unknown key" in verify.stdout + verify.stderr
