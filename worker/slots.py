"""The worker's HTTP slots: at most ``WORKER_CONCURRENCY`` requests at once, in order.

Every item of every running batch waits here for a slot, so hundreds of waiters are
normal under load. ``asyncio.Semaphore`` (3.11, 3.12) scans all of its waiters on
every acquire, which cost about 5% of a busy worker's CPU; these slots cost O(1) per
acquire and release, and are handed over first come, first served.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Slots:
    """An async context manager that admits at most ``count`` holders at once."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        """Take a slot, waiting behind everyone who came first."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot, then cancelled: pass it on
            raise

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        """Give the slot back, to the longest waiter if there is one."""
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter is skipped
                waiter.set_result(None)
                return
        self._free += 1
