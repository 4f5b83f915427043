"""What commands print: a readable table by default, JSON with ``--json``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from producer.events import iso_time


def emit(args: argparse.Namespace, value: Any, table: Callable[[], str]) -> None:
    """Print ``value`` as JSON with ``--json``, else the readable ``table()``."""
    if getattr(args, "json", False):
        print(json.dumps(value, indent=2, ensure_ascii=False))
    else:
        print(table())


def human(value: Any) -> str:
    """A value as people read it: lists as ``issue.*, comment.created``, a mapping as
    ``Name: value`` pairs (empty: ``none``), a flag as ``yes``/``no``, nothing as ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(human(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {human(item)}" for key, item in value.items()) or "none"
    return str(value)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 delivery``, ``2 deliveries``: the count with its noun agreeing."""
    if count == 1:
        return f"1 {word}"
    return f"{count} {words or word + 's'}"


def render_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[human(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_fields(fields: Iterable[tuple[str, Any]]) -> str:
    """``name  value`` lines; a ``…_ms`` time since the epoch shows as an ISO 8601 time
    named without the suffix (``created  2025-01-15T10:30:00.000Z``)."""
    pairs = [
        (name.removesuffix("_ms"), when(value))
        if name.endswith("_ms") and isinstance(value, int) and not isinstance(value, bool)
        else (name, human(value))
        for name, value in fields
    ]
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


def when(ms: int | None) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC, as the API and the dashboard show it."""
    if not ms:
        return ""
    return iso_time(ms)


def progress(done: int, total: int, started: float) -> None:
    """A one-line progress bar on stderr (only on a terminal)."""
    if not sys.stderr.isatty() or total == 0:
        return
    width = 30
    filled = int(width * done / total)
    rate = done / max(time.monotonic() - started, 1e-9)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:,.0f}/s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()
