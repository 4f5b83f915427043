"""Loading the Lua scripts, each prefixed with the key layout of :mod:`producer.keys`."""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.typing import EncodableT

from producer.keys import Keys, lua_prelude
from producer.redis.clients import RedisClient


def _read(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text()


# Lua functions shared by the scripts of a package, placed before each of them:
# producer/outbox.lua (outbox jobs, the ready list) everywhere, producer/fifo.lua (the
# lines of FIFO endpoints) where deliveries start or end, producer/pause.lua (the paused
# backlog) where deliveries are stored or moved, producer/markers.lua (idempotency
# markers) where they are written or read, how a delivery ends and its record leaves
# Redis (forget.lua, finish.lua) in the producer's and the worker's, poll endpoints'
# feeds (feed.lua) in the producer's, and the worker's batch loading in its own. A
# package is named as importlib names it.
_SHARED = (
    ("producer", "outbox.lua"),
    ("producer", "fifo.lua"),
    ("producer", "pause.lua"),
    ("producer", "markers.lua"),
)
_ENDINGS = (("producer", "forget.lua"), ("producer", "finish.lua"))
LIBRARIES: dict[str, tuple[tuple[str, str], ...]] = {
    "producer": (*_SHARED, *_ENDINGS, ("producer", "feed.lua")),
    "producer.tokens": (("producer", "outbox.lua"),),
    "worker": (*_SHARED, ("worker", "batch.lua"), *_ENDINGS),
}


class Script:
    """One of our Lua scripts, registered on a client: call it with its arguments.

    It receives the key prefix first (``ARGV[1]``), from which it builds every key it
    touches. The prefix is also its one declared key (``KEYS[1]``): Redis Cluster runs a
    script on the node that serves its declared keys (one without any goes to a random
    node, which refuses ours), and every key of ours has the prefix's hash tag, hence
    its slot.
    """

    def __init__(self, redis: RedisClient, keys: Keys, source: str) -> None:
        self._script = redis.register_script(source)
        self._prefix = keys.prefix

    async def __call__(self, *args: EncodableT) -> Any:
        """Run the script (loading it first on a server that does not know it)."""
        return await self._script(keys=[self._prefix], args=[self._prefix, *args])


def load_script(redis: RedisClient, keys: Keys, package: str, name: str) -> Script:
    """Register ``<package>/<name>`` (a ``.lua`` file shipped with the package).

    Every script can use ``K`` (the key layout) and the functions of its package's
    :data:`LIBRARIES`.
    """
    parts = [lua_prelude(), *(_read(*library) for library in LIBRARIES[package])]
    return Script(redis, keys, "".join(parts) + _read(package, name))
