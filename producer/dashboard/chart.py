"""An endpoint's deliveries over time, as a chart drawn on the server (SVG, no script).

Two charts on a webhook's page: its attempts per hour over the last 24 hours and per
day over the delivery log's retention (``DELIVERY_RETENTION``), each bar split into
delivered, retried and dead. The counts come from the delivery log, whichever store
holds it (:meth:`producer.deliveries.DeliveryLog.outcome_counts`).

Colour is not needed to read them: each outcome has its own fill pattern (solid,
stripes, cross-hatching) shown in the legend, every bar names its counts in a tooltip,
and the same numbers are in a table below the chart.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from producer.activity import DAY_MS, HOUR_MS, Bucket, bucket_start, buckets
from producer.context import Producer
from producer.events import iso_time

# The drawing is stretched to its column's width at a fixed height, text included: a
# width near the columns' (about 340 px on a phone, 520 on a desktop) keeps the labels'
# shapes close to their font's either way.
WIDTH = 420
HEIGHT = 180
LEFT = 30  # room for the count axis
BOTTOM = 24  # room for the time axis
TOP = 8
# The outcomes as stacked, bottom first: (field of Bucket, label, pattern suffix).
SERIES = (("delivered", "delivered"), ("retried", "retried"), ("dead", "dead"))


@dataclass(frozen=True)
class Segment:
    """One outcome's part of a bar."""

    series: str
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    """One hour or day."""

    x: float
    width: float
    label: str
    bucket: Bucket
    segments: tuple[Segment, ...]

    @property
    def title(self) -> str:
        """The tooltip: when, and every count."""
        b = self.bucket
        return f"{self.label}: {b.delivered} delivered, {b.retried} retried, {b.dead} dead"


@dataclass(frozen=True)
class Tick:
    """A label on an axis, at ``at`` (x for time, y for counts)."""

    at: float
    text: str


@dataclass(frozen=True)
class Chart:
    """Everything the template draws for one chart."""

    id: str
    caption: str
    bars: tuple[Bar, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: int = HEIGHT - BOTTOM

    @property
    def totals(self) -> dict[str, int]:
        """Each outcome's sum over the chart."""
        return {name: sum(getattr(bar.bucket, name) for bar in self.bars) for name, _ in SERIES}

    @property
    def summary(self) -> str:
        """What the chart shows, in words (its accessible name)."""
        t = self.totals
        return (
            f"{self.caption}: {t['delivered']} delivered, {t['retried']} retried, "
            f"{t['dead']} dead attempts"
        )


def _nice_max(value: int) -> int:
    """The top of the count axis: ``value`` rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 1:
        return 1
    power: int = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if value <= step * power)


def build_chart(
    chart_id: str, caption: str, found: list[Bucket], bucket_ms: int, tick_every: int
) -> Chart:
    """Lay out ``found`` (oldest first) as stacked bars; a time label every
    ``tick_every`` bars."""
    top = _nice_max(max((b.total for b in found), default=0))
    plot_height = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(found), 1)
    bars: list[Bar] = []
    x_ticks: list[Tick] = []
    for index, bucket in enumerate(found):
        x = LEFT + index * slot
        label = _label(bucket.start_ms, bucket_ms)
        y = float(HEIGHT - BOTTOM)
        segments: list[Segment] = []
        for name, _ in SERIES:
            count = getattr(bucket, name)
            if count:
                height = plot_height * count / top
                y -= height
                segments.append(Segment(name, round(y, 2), round(height, 2)))
        bars.append(
            Bar(round(x + slot * 0.1, 2), round(slot * 0.8, 2), label, bucket, tuple(segments))
        )
        if index % tick_every == 0:
            x_ticks.append(Tick(round(x + slot / 2, 2), _short(bucket.start_ms, bucket_ms)))
    y_ticks = tuple(
        Tick(round(HEIGHT - BOTTOM - plot_height * share, 2), f"{round(top * share):g}")
        for share in (0, 0.5, 1)
    )
    return Chart(chart_id, caption, tuple(bars), tuple(x_ticks), y_ticks)


def _label(start_ms: int, bucket_ms: int) -> str:
    """A bar's period in ISO 8601 UTC: ``2025-01-15T10:00Z`` or ``2025-01-15``."""
    text = iso_time(start_ms)
    return text[:10] if bucket_ms == DAY_MS else text[:16] + "Z"


def _short(start_ms: int, bucket_ms: int) -> str:
    """An axis label: the hour (``10:00``) or the day (``01-15``)."""
    text = iso_time(start_ms)
    return text[5:10] if bucket_ms == DAY_MS else text[11:16]


async def endpoint_charts(
    producer: Producer, endpoint_id: str, now_ms: int | None = None
) -> tuple[Chart, Chart]:
    """The endpoint's last 24 hours by hour, and its retention by day."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    retention_days = max(1, math.ceil(producer.settings.delivery_retention / 86400))
    hours_since = now - 23 * HOUR_MS
    days_since = now - (retention_days - 1) * DAY_MS
    # One read, by hour over the retention: the days are sums of their hours.
    hourly = await producer.deliveries.outcome_counts(
        endpoint_id, bucket_start(days_since, DAY_MS), HOUR_MS
    )
    daily: dict[tuple[int, str], int] = {}
    for (start, outcome), count in hourly.items():
        day = (bucket_start(start, DAY_MS), outcome)
        daily[day] = daily.get(day, 0) + count
    return (
        build_chart(
            "chart-hours",
            "Attempts per hour, last 24 hours (UTC)",
            buckets(hourly, hours_since, now, HOUR_MS),
            HOUR_MS,
            tick_every=6,
        ),
        build_chart(
            "chart-days",
            f"Attempts per day, last {retention_days} days (UTC)",
            buckets(daily, days_since, now, DAY_MS),
            DAY_MS,
            tick_every=max(1, retention_days // 7),
        ),
    )
