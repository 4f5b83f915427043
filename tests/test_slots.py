"""The worker's HTTP slots: a cap, first come first served, and no slot lost to a cancel."""

from __future__ import annotations

import asyncio

from worker.slots import Slots


async def hold(slots: Slots, name: str, order: list[str], release: asyncio.Event) -> None:
    async with slots:
        order.append(name)
        await release.wait()


async def settle() -> None:
    """Let every task that can run, run (a few loop turns, no wall-clock wait)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_count_holders_admitted_in_arrival_order() -> None:
    slots, order, release = Slots(2), list[str](), asyncio.Event()
    tasks = [asyncio.create_task(hold(slots, str(n), order, release)) for n in range(5)]
    await settle()
    assert order == ["0", "1"]
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["0", "1", "2", "3", "4"]


async def test_a_cancelled_waiter_takes_no_slot_and_loses_none() -> None:
    slots, order, release = Slots(1), list[str](), asyncio.Event()
    first = asyncio.create_task(hold(slots, "first", order, release))
    gone = asyncio.create_task(hold(slots, "gone", order, release))
    last = asyncio.create_task(hold(slots, "last", order, release))
    await settle()
    gone.cancel()
    await settle()
    release.set()
    await asyncio.gather(first, last)
    assert gone.cancelled()
    assert order == ["first", "last"]
    async with slots:  # the one slot is free again
        pass


async def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    slots, order, release = Slots(1), list[str](), asyncio.Event()
    release.set()
    await slots.__aenter__()  # this test holds the only slot
    handed = asyncio.create_task(hold(slots, "handed", order, release))
    after = asyncio.create_task(hold(slots, "after", order, release))
    await settle()
    await slots.__aexit__(None, None, None)  # hands the slot to "handed", not yet resumed
    handed.cancel()
    # Were the slot lost with "handed", "after" would wait forever.
    await asyncio.wait_for(asyncio.gather(handed, after, return_exceptions=True), 5)
    assert handed.cancelled()
    assert order == ["after"]
