"""deploy/prometheus: promtool checks the config and rules and runs their unit tests."""

from __future__ import annotations

import re
import subprocess

from deploy_checks import (
    PROMETHEUS,
    RULE_FILES,
    exported_series,
    load_yaml,
    promtool,
    rules_of,
    unknown_names,
)
from support import PROJECT

ALERTS = PROMETHEUS / "rules" / "alerts.yml"
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
# The alerts the operations issue asks for, by what they watch.
REQUIRED_ALERTS = {
    "CliqEndpointsFailing",
    "CliqDeliverySuccessRatioLow",
    "CliqOldestWaitingDeliveryTooOld",
    "CliqQueueBacklogGrowing",
    "CliqWorkerDown",
    "CliqNotificationEmailsFailing",
    "CliqRedisDataLost",
    "CliqRedisEvicting",
}


def run(*args: str) -> str:
    """Run a promtool command from the project folder; fails with its output."""
    done = subprocess.run(
        [promtool(), *args], cwd=PROJECT, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def alert_names() -> list[str]:
    return [rule["alert"] for rule in rules_of(ALERTS) if "alert" in rule]


def test_promtool_accepts_the_config_and_its_rule_files() -> None:
    output = run("check", "config", str(PROMETHEUS / "prometheus.yml"))
    for path in RULE_FILES:
        assert f"Checking {path}" in output or path.name in output


def test_promtool_accepts_the_rules() -> None:
    output = run("check", "rules", *map(str, RULE_FILES))
    assert output.count("SUCCESS") == len(RULE_FILES)


def test_promtool_unit_tests_pass() -> None:
    assert UNIT_TESTS
    output = run("test", "rules", *map(str, UNIT_TESTS))
    assert "FAILED" not in output
    assert output.count("SUCCESS") == len(UNIT_TESTS)


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    names = alert_names()
    assert set(names) >= REQUIRED_ALERTS
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(names) <= firing, f"never tested firing: {set(names) - firing}"
    assert set(names) <= quiet, f"never tested quiet: {set(names) - quiet}"


def test_rules_use_only_exported_metrics_and_label_values() -> None:
    problems = [
        f"{path.name}: {rule.get('alert') or rule.get('record')}: {problem}"
        for path in RULE_FILES
        for rule in rules_of(path)
        for problem in unknown_names(rule["expr"])
    ]
    assert problems == []


def test_the_checker_would_notice_a_misspelt_metric_or_label_value() -> None:
    assert "cliq_deliveries_total" in exported_series()
    assert unknown_names('rate(cliq_deliveries_total{outcome="delivered"}[5m])') == []
    assert unknown_names("cliq_delivered_total") == ["unknown metric cliq_delivered_total"]
    assert unknown_names('cliq_deliveries_total{outcome="ok"}') != []
    assert unknown_names('cliq_worker_up{state="x"}') == ["cliq_worker_up has no label state"]


def test_every_alert_has_a_runbook_entry() -> None:
    docs = (PROJECT / "docs" / "operations.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in docs.splitlines()
        if line.startswith("#")
    }
    for rule in rules_of(ALERTS):
        if "alert" not in rule:
            continue
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md"
        assert anchor == rule["alert"].lower()
        assert anchor in headings, f"no runbook heading for {rule['alert']}"
