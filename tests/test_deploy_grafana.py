"""deploy/grafana: the dashboard parses, its queries are valid PromQL (promtool parses them)
and name only exported metrics or recording rules, and it covers what the issue asks for."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from deploy_checks import DEPLOY, promtool, recording_rules, unknown_names

DASHBOARD = DEPLOY / "grafana" / "cliq-webhooks.json"
# What the dashboard must show, by the series it reads.
REQUIRED = {
    "throughput": "cliq:deliveries:rate5m",
    "success ratio": "cliq:delivery_success_ratio:rate5m",
    "latency percentiles": "cliq:delivery_attempt_duration_seconds:quantile",
    "queue depth by state": "cliq:queue_deliveries:max",
    "failing endpoints": "cliq:endpoints_failing:max",
}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_panels_are_laid_out_with_unique_ids_and_the_datasource_variable() -> None:
    data = dashboard()
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    assert data["uid"] == "cliq-webhooks"
    assert [v["name"] for v in data["templating"]["list"]] == ["datasource"]
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]


def test_queries_name_only_exported_metrics_and_recording_rules() -> None:
    problems = [f"{expr}: {problem}" for expr in expressions() for problem in unknown_names(expr)]
    assert problems == []
    assert set(REQUIRED.values()) <= set(recording_rules())
    for topic, series in REQUIRED.items():
        assert any(series in expr for expr in expressions()), f"no panel for {topic}"


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": expr}
                    for n, expr in enumerate(expressions())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
