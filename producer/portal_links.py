"""Portal magic links: single-use URLs that open the dashboard bound to one workspace.

A link's value (``pl_<43 characters>``) is shown once; Redis keeps what it grants under
the SHA-256 of the value (``LAYOUT["portal_link"]``), with its expiry both as a field
(checked against the injected clock) and as the key's TTL (so unused links leave).
Redeeming reads and deletes it in one transaction: a second use, even concurrent, finds
nothing. What the grant allows in the dashboard is :mod:`producer.dashboard.portal`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from producer.keys import Keys
from producer.redis.clients import RedisClient

LINK_PATTERN = re.compile(r"pl_[A-Za-z0-9_-]{43}")
DEFAULT_LINK_TTL_S = 15 * 60
MAX_LINK_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True)
class PortalGrant:
    """What a link (and the session it opens) may see: a workspace, maybe one user only."""

    workspace_id: str
    read_only: bool = False
    # Set for a user's own link: the Webhook Tokens screens of that user alone.
    user_id: str | None = None

    def to_hash(self) -> dict[str, str]:
        """The fields stored for the grant (in the link, then in the session)."""
        fields = {"w": self.workspace_id, "r": "1" if self.read_only else "0"}
        if self.user_id is not None:
            fields["u"] = self.user_id
        return fields

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> PortalGrant:
        """Parse :meth:`to_hash`'s fields."""
        return cls(fields["w"], fields.get("r") == "1", fields.get("u"))


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class PortalLinks:
    """Issues and redeems portal links."""

    def __init__(
        self, redis: RedisClient, keys: Keys, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock

    async def issue(self, grant: PortalGrant, ttl_s: int) -> tuple[str, int]:
        """A new link's value and its expiry (ms since the epoch)."""
        link = "pl_" + secrets.token_urlsafe(32)
        expires_ms = int(self._clock() * 1000) + ttl_s * 1000
        key = self._keys.portal_link(_digest(link))
        async with self._redis.pipeline(transaction=True) as pipe:
            for name, value in {**grant.to_hash(), "x": str(expires_ms)}.items():
                pipe.hset(key, name, value)
            pipe.expire(key, ttl_s)
            await pipe.execute()
        return link, expires_ms

    async def redeem(self, value: str) -> PortalGrant | None:
        """The grant of an unused, unexpired link, now used up; ``None`` otherwise."""
        if not LINK_PATTERN.fullmatch(value):
            return None
        key = self._keys.portal_link(_digest(value))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.delete(key)
            fields, _ = cast(tuple[dict[str, str], int], await pipe.execute())
        if "x" not in fields or int(fields["x"]) <= int(self._clock() * 1000):
            return None
        return PortalGrant.from_hash(fields)
