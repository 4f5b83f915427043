"""What the tests of deploy/ share: metric names and settings the code knows, promtool.

Rules, dashboards and manifests may only name metrics (and label values) that the
worker's and the API's registries really export, or recording rules defined in
deploy/prometheus/rules/.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from producer.deliveries import AttemptOutcome
from producer.http.metrics import ApiMetrics
from producer.http.state import SERVE_OPTIONS, ApiSettings
from producer.http.throttle import Surface
from worker.metrics import STATUS_CLASSES, Metrics
from worker.settings import WORKER_OPTIONS, WorkerSettings
from worker.supervisor import KILL_MARGIN_S

from support import PROJECT

DEPLOY = PROJECT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))

# Label values the code sets with literals (the rest come from enums and constants).
KNOWN_LABEL_VALUES: dict[str, set[str]] = {
    "outcome": {k.value for k in AttemptOutcome} | {"duplicate"},
    "status_class": set(STATUS_CLASSES),
    "state": {"queued", "scheduled", "wait", "active", "delayed", "failed", "prioritized"},
    "result": {"sent", "outbox", "failed"},
    "to": {"failing", "active", "disabled"},
    "queue": {"deliveries", "notifications"},
    "surface": {surface.value for surface in Surface},
}
# Series Prometheus adds itself to every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
_METRIC = re.compile(r"\b(cliq(?::[a-z0-9_]+)+|cliq_[a-z0-9_]+)\b")
_SELECTOR = re.compile(r"\b(cliq_[a-z0-9_]+|up)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def exported_series() -> dict[str, set[str]]:
    """Every series name the worker and the API export -> the label names it carries."""
    series: dict[str, set[str]] = {}
    for registry in (Metrics().registry, ApiMetrics().registry):
        for collector in list(registry._collector_to_names):
            labels = set(getattr(collector, "_labelnames", ()))
            for family in collector.collect():
                for suffix in _SUFFIXES[family.type]:
                    extra = {"le"} if suffix == "_bucket" else set()
                    series[family.name + suffix] = labels | extra
    return series


def recording_rules() -> dict[str, set[str]]:
    """Recording rule name -> the label names its series carry (from ``by`` and ``labels``)."""
    recorded: dict[str, set[str]] = {}
    for path in RULE_FILES:
        for rule in rules_of(path):
            if "record" in rule:
                by = re.search(r"\bby\s*\(([^)]*)\)", rule["expr"])
                labels = {name.strip() for name in by.group(1).split(",")} if by else set()
                labels |= set(rule.get("labels", {}))
                recorded.setdefault(rule["record"], set()).update(labels)
    return recorded


def rules_of(path: Path) -> Iterator[dict[str, Any]]:
    """The rules of every group of a Prometheus rule file."""
    for group in load_yaml(path)["groups"]:
        yield from group["rules"]


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text())


def unknown_names(promql: str) -> list[str]:
    """Problems with the metric names, label names and label values ``promql`` uses."""
    known = {**exported_series(), **recording_rules()}
    problems = [f"unknown metric {name}" for name in _METRIC.findall(promql) if name not in known]
    for name, matchers in _SELECTOR.findall(promql):
        labels = known.get(name, set()) | {"job", "instance"}
        for label, op, value in _MATCHER.findall(matchers):
            if label not in labels:
                problems.append(f"{name} has no label {label}")
            elif op in ("=", "=~") and label in KNOWN_LABEL_VALUES:
                for alternative in value.split("|"):
                    if alternative not in KNOWN_LABEL_VALUES[label]:
                        problems.append(f'{name}{{{label}="{alternative}"}} is never exported')
    return problems


def promtool() -> str:
    """Path of ``promtool`` (Debian's ``prometheus`` package); fails the test if missing."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: `make system-deps` installs it", pytrace=False)
    return path


def setting_names() -> set[str]:
    """Every environment variable the API and the workers read."""
    return {option.env for option in SERVE_OPTIONS + WORKER_OPTIONS}


def check_settings(env: dict[str, str]) -> None:
    """Assert that ``env`` names only real settings and that the API and workers accept it."""
    assert set(env) <= setting_names(), f"unknown settings: {set(env) - setting_names()}"
    ApiSettings.from_env(env)
    WorkerSettings.from_env(env)


def drain_grace_s(shutdown_grace_s: float | None = None) -> float:
    """The longest a process may take to stop after SIGTERM.

    ``SHUTDOWN_GRACE`` (default: its default) plus the margin the ``--processes``
    supervisor adds before it kills its children.
    """
    if shutdown_grace_s is None:
        shutdown_grace_s = WorkerSettings.from_env({}).shutdown_grace
    return shutdown_grace_s + KILL_MARGIN_S


def venv_tool(name: str) -> str:
    """A console script installed with the test extras (beside this Python)."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: pip install -e '.[test]'", pytrace=False)
    return found


def procfile_command(process: str) -> list[str]:
    """A Procfile process's command, without the variable assignments before it."""
    lines = (PROJECT / "Procfile").read_text().splitlines()
    commands = {name: command for name, _, command in (line.partition(":") for line in lines)}
    argv = shlex.split(commands[process])
    while argv and re.fullmatch(r"[A-Z_]+=.*", argv[0]):
        argv.pop(0)
    return argv
