"""Ending a process's own loops (a worker's, a log-writer's) at shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

log = structlog.get_logger("cliq.worker.loops")

# How long a loop may take to end once cancelled before it is cancelled again.
CANCEL_AGAIN_S = 0.5


async def cancel_until_done(task: asyncio.Task[Any]) -> None:
    """Cancel one of the worker's loops and wait until it has ended (its outcome, even an
    error, is of no interest by then).

    A cancellation can be lost inside a blocking Redis call whose reply (a BRPOP's or
    BLMOVE's timeout) comes at the same moment: the call returns as if nothing happened,
    and the loop goes on, which held the shutdown for 13 s and more. So it is sent again.
    """
    while True:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_AGAIN_S)
        if done:
            if not task.cancelled():
                task.exception()  # retrieved: not reported as never retrieved
            return
        log.warning(
            "cancel_repeated", task=getattr(task.get_coro(), "__qualname__", task.get_name())
        )
