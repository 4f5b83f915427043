"""One workspace per event id across partitions (PARTITIONS > 1).

With one partition every event id is checked against every other in the one publish
script: an id one workspace published is a duplicate for all. With several, an event
is published in its workspace's partition, where another workspace's use of the same id
is not seen. So before publishing, each id is claimed for its workspace in the
partition of the id's own hash (``producer/claims.lua``, one script call per partition
touched): an id another workspace holds (within ``IDEMPOTENCY_WINDOW``) is refused as
a duplicate, as it would be with one partition, and no page of that id ever mixes two
workspaces' deliveries. A claim stays with its workspace, so a publish retried after a
failure passes its own claims; the workspace's partition then refuses what it already
stored, as always.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from producer.events import Event
from producer.partitioning import Partitions, partition_of
from producer.redis.clients import RedisClient
from producer.scripts import Script, load_script


def workspace_tag(workspace_id: str) -> str:
    """What a claim holds of its workspace: 8 hex digits of the SHA-1 of its id."""
    return hashlib.sha1(workspace_id.encode()).hexdigest()[:8]


class EventClaims:
    """Claims event ids for their workspaces, each in the partition of its hash."""

    def __init__(self, redis: RedisClient, partitions: Partitions, window_s: int) -> None:
        self._partitions = partitions
        self._window_s = window_s
        self._scripts: list[Script] = [
            load_script(redis, keys, "producer", "claims.lua") for keys in partitions.all
        ]

    async def claim(self, events: Sequence[Event]) -> list[bool]:
        """Whether each event's id is its workspace's (claimed now or before by it)."""
        by_partition: dict[int, list[int]] = {}
        for position, event in enumerate(events):
            k = partition_of(event.id, self._partitions.count)
            by_partition.setdefault(k, []).append(position)
        owned = [False] * len(events)
        for k, positions in sorted(by_partition.items()):
            args: list[str | int] = [self._window_s]
            for p in positions:
                args += [events[p].id, workspace_tag(events[p].workspace_id)]
            answers = await self._scripts[k](*args)
            for p, answer in zip(positions, answers, strict=True):
                owned[p] = answer == 1
        return owned
