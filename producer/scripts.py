"""Loading the Lua scripts, each prefixed with the key layout of :mod:`producer.keys`."""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from producer.keys import lua_prelude


def _read(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text()


# Lua functions shared by the scripts of a package, placed before each of them:
# producer/outbox.lua (outbox jobs, the doorbell) everywhere, and the worker's batch
# loading in the worker's scripts.
LIBRARIES: dict[str, tuple[tuple[str, str], ...]] = {
    "producer": (("producer", "outbox.lua"),),
    "worker": (("producer", "outbox.lua"), ("worker", "batch.lua")),
}


def load_script(redis: aioredis.Redis, package: str, name: str) -> AsyncScript:
    """Register ``<package>/<name>`` (a ``.lua`` file shipped with the package).

    Every script can use ``K`` (the key layout) and the functions of its package's
    :data:`LIBRARIES`.
    """
    parts = [lua_prelude(), *(_read(*library) for library in LIBRARIES[package])]
    return redis.register_script("".join(parts) + _read(package, name))
