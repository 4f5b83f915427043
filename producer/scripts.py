"""Loading the Lua scripts, each prefixed with the key layout of :mod:`producer.keys`."""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from producer.keys import lua_prelude


def _read(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text()


def load_script(redis: aioredis.Redis, package: str, name: str) -> AsyncScript:
    """Register ``<package>/<name>`` (a ``.lua`` file shipped with the package).

    Every script can use ``K`` (the key layout) and ``batch_writer`` (outbox jobs).
    """
    prelude = lua_prelude() + _read("producer", "outbox.lua")
    return redis.register_script(prelude + _read(package, name))
