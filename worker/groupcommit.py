"""Group commit: many concurrent writers, one Redis round trip per flush.

Each attempt's outcome is recorded as soon as the attempt ends (so a crash
mid-batch does not repeat the finished part), yet outcomes that finish while a
flush is in progress are written together by the next one. When the worker is
idle a flush carries one outcome and adds no delay; under load it carries many.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Coalesces :meth:`submit` calls into calls of ``flush(items) -> results``."""

    def __init__(
        self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], max_items: int
    ) -> None:
        self._flush = flush
        self._max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next flush and wait for its result (or the flush's error)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        # Each caller has its own future: cancelling one cancels no flush, and its item
        # is still written by the flush that took it.
        return await future

    async def _run(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_items]
            del self._pending[: self._max_items]
            try:
                results = await self._flush([item for item, _ in batch])
            except Exception as exc:  # every waiter gets the error; the next batch tries again
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        """Wait for the flushes already started."""
        if self._runner is not None:
            await self._runner
