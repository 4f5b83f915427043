"""The table's rows: how a metric's runs become one (median, min, max, ratio, notes), and
the plain text they are printed as."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from bench.results import Results

HEADERS = ("scenario", "runs", "median", "min", "max", "unit", "ratio", "notes")
# Numbers read best right-aligned; text left-aligned.
RIGHT_ALIGNED = {"runs", "median", "min", "max"}


@dataclass(frozen=True)
class Row:
    """One line of the table (numbers already formatted)."""

    scenario: str
    runs: str
    median: str
    min: str
    max: str
    unit: str
    ratio: str
    notes: str

    def to_dict(self) -> dict[str, Any]:
        """The row as written to the JSON record."""
        return asdict(self)


def number(value: float, decimals: int = 0) -> str:
    """``12,345`` or ``12.3``; ``-`` for a missing value."""
    if math.isnan(value):
        return "-"
    return f"{value:,.{decimals}f}"


def percent(value: float) -> str:
    """A share of one core, e.g. ``97%``."""
    return "-" if math.isnan(value) else f"{value:.0%}"


class TableBuilder:
    """Turns :class:`Results` into rows; a scenario that did not run gives none."""

    def __init__(self, results: Results) -> None:
        self.results = results
        self.rows: list[Row] = []

    def ran(self, scenario: str) -> bool:
        """Whether the scenario was selected."""
        return scenario in self.results.scenarios

    def has(self, scenario: str, metric: str) -> bool:
        """Whether the scenario's runs measure ``metric`` (not every one measures Redis)."""
        return any(metric in run for run in self.results.scenarios[scenario].runs.values())

    def m(self, scenario: str, metric: str) -> float:
        """Median of a metric."""
        return self.results.median(scenario, metric)

    def ratio(self, scenario: str, reference: str, label: str, metric: str = "rate") -> str:
        """Median of the per-round ratios of ``metric`` to ``reference``'s."""
        if not self.ran(reference):
            return ""
        ratios = self.results.ratios(scenario, reference, metric)
        return f"{statistics.median(ratios):.2f}x {label}" if ratios else "-"

    def own_ratio(self, scenario: str, metric: str, label: str) -> str:
        """The median of a ratio a scenario measured itself (both sides in one run)."""
        values = self.results.values(scenario, metric)
        return f"{statistics.median(values):.2f}x {label}" if values else "-"

    def add(
        self,
        scenario: str,
        metric: str,
        unit: str,
        *,
        label: str | None = None,
        decimals: int = 0,
        ratio: str = "",
        notes: str = "",
    ) -> None:
        """A row for ``metric`` of ``scenario`` (``label`` names the row, default the scenario)."""
        runs = self.results.scenarios[scenario]
        values = self.results.values(scenario, metric)
        text = notes if values else ""
        if runs.errors:
            first = next(iter(runs.errors.values())).splitlines()[0]
            text = f"{len(runs.errors)} run(s) failed: {first}" + (f"; {text}" if text else "")
        self.rows.append(
            Row(
                scenario=label or scenario,
                runs=str(len(values)),
                median=number(statistics.median(values), decimals) if values else "-",
                min=number(min(values), decimals) if values else "-",
                max=number(max(values), decimals) if values else "-",
                unit=unit,
                ratio=ratio if values else "",
                notes=text,
            )
        )


def render(rows: list[Row]) -> str:
    """A plain aligned text table."""
    cells = [list(HEADERS)] + [[getattr(row, h) for h in HEADERS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]

    def line(values: list[str]) -> str:
        parts = [
            value.rjust(width) if header in RIGHT_ALIGNED else value.ljust(width)
            for header, value, width in zip(HEADERS, values, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(values) for values in cells[1:])])
