"""Wait for a condition with a deadline instead of sleeping for a fixed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float,  # noqa: ASYNC109  # a deadline for a poll, not a cancel scope
    interval: float = 0.02,
    message: str = "condition was not met",
) -> None:
    """Poll ``predicate`` (sync or async) every ``interval`` s until it is true.

    Raises ``AssertionError`` with ``message`` once ``timeout`` s have passed without the
    predicate holding. The predicate is always checked once more at the deadline, so a
    condition that became true during the last interval is not missed. Exceptions raised
    by the predicate propagate unchanged.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{message} (waited {timeout:.2f} s)")
        await asyncio.sleep(min(interval, remaining))


def wait_until_sync(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.02,
    message: str = "condition was not met",
) -> None:
    """The blocking twin of :func:`wait_until`, for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{message} (waited {timeout:.2f} s)")
        time.sleep(min(interval, remaining))
