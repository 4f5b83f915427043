"""Call signatures of the factory fixtures, for typing tests that use them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from .node_receiver import NodeReceiver
from .receiver import HANG_CAP_S, Receiver, ScriptedResponse
from .redis_server import RedisServer


class RedisServerFactory(Protocol):
    """``redis_server_factory("--appendonly", "yes")``: another private, started server."""

    def __call__(self, *extra_args: str) -> RedisServer: ...


class ReceiverFactory(Protocol):
    """``await receiver_factory()``: another started HTTP receiver."""

    async def __call__(
        self, default: ScriptedResponse | None = None, hang_cap_s: float = HANG_CAP_S
    ) -> Receiver: ...


class NodeReceiverFactory(Protocol):
    """``await node_receiver_factory(secret)``: a started ``node receiver.js`` (or
    ``script``, with ``env`` added to its environment)."""

    async def __call__(
        self, secret: str, script: Path | None = None, env: Mapping[str, str] | None = None
    ) -> NodeReceiver: ...
