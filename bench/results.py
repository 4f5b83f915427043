"""Measurements of every run, grouped by scenario, and their JSON record."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One run of one scenario: metric name -> value (rates, CPU shares, bytes, ms).
Run = dict[str, float]


@dataclass
class ScenarioRuns:
    """The runs of one scenario, by round, and the errors of the rounds that failed."""

    runs: dict[int, Run] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


class Results:
    """Everything measured in one invocation."""

    def __init__(self, scenarios: list[str]) -> None:
        self.scenarios = {name: ScenarioRuns() for name in scenarios}

    def add(self, scenario: str, round_: int, run: Run) -> None:
        """Record a successful run."""
        self.scenarios[scenario].runs[round_] = run

    def fail(self, scenario: str, round_: int, error: str) -> None:
        """Record a run that could not be measured."""
        self.scenarios[scenario].errors[round_] = error

    def values(self, scenario: str, metric: str) -> list[float]:
        """``metric`` of every successful run of ``scenario``."""
        return [run[metric] for run in self.scenarios[scenario].runs.values()]

    def ratios(self, scenario: str, reference: str, metric: str) -> list[float]:
        """``scenario / reference`` of ``metric``, per round in which both succeeded.

        Rounds run every scenario back to back, so a ratio compares measurements
        taken under the same conditions (what else the machine was doing then).
        """
        ours, theirs = self.scenarios[scenario].runs, self.scenarios[reference].runs
        return [ours[r][metric] / theirs[r][metric] for r in sorted(ours.keys() & theirs.keys())]

    def median(self, scenario: str, metric: str) -> float:
        """The median of ``metric`` over the successful runs (NaN when there are none)."""
        values = self.values(scenario, metric)
        return statistics.median(values) if values else float("nan")

    @property
    def failed(self) -> int:
        """How many runs failed, over all scenarios."""
        return sum(len(s.errors) for s in self.scenarios.values())

    def to_json(self) -> dict[str, Any]:
        """Every run and every error, by scenario and round."""
        return {
            name: {
                "runs": [{"round": r, **run} for r, run in sorted(s.runs.items())],
                "errors": [{"round": r, "error": e} for r, e in sorted(s.errors.items())],
            }
            for name, s in self.scenarios.items()
        }


def write_json(
    path: Path, meta: dict[str, Any], results: Results, rows: list[dict[str, Any]]
) -> None:
    """Write the conditions, every run and the table's rows to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "scenarios": results.to_json(), "table": rows}
    path.write_text(json.dumps(document, indent=2) + "\n")
