"""The rows of a webhook's delivery log: its attempts, and its test sends among them.

Test sends are kept apart from the log (:mod:`producer.testlog`), so a page of the log
(newest deliveries first, from either store) gets the tests made within the time its
attempts span, each placed before the first attempt older than it and marked as a test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from producer.dashboard.webhook_forms import LogQuery
from producer.testlog import TestSend


def with_tests(
    entries: list[dict[str, Any]],
    tests: Sequence[TestSend],
    query: LogQuery,
    *,
    first_page: bool,
    last_page: bool,
) -> list[dict[str, Any]]:
    """``entries`` (one page of the log) with the tests that fall within it.

    The first page takes every test newer than its oldest attempt, the last every test
    older than its newest; an empty log (first and last page at once) takes them all.
    """
    times = [entry["at_ms"] for entry in entries]
    newest = float("inf") if first_page or not times else max(times)
    oldest = float("-inf") if last_page or not times else min(times)
    chosen = [
        t for t in tests if oldest <= t.at_ms < newest + 1 and query.selected.matches(t.attempt)
    ]
    rows = list(entries)
    for test in sorted(chosen, key=lambda t: t.at_ms):
        at = next((i for i, row in enumerate(rows) if row["at_ms"] < test.at_ms), len(rows))
        rows.insert(at, test.log_entry())
    return rows
