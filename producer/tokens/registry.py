"""Webhook tokens (seed 001): per-user keys that authenticate incoming webhooks.

A token reads ``<token id>.<secret>``: the id (``tok_...``) is public (listings show
it), the secret is 256 random bits shown once at creation and stored only as its
SHA-256 digest, compared in constant time. A user holds at most :data:`MAX_TOKENS`
tokens at any time, enforced in the Lua script that creates them.

Every use of a token that reaches its owner's account (accepted, or refused because the
token is disabled or aimed at someone else's resource) goes into the token's usage
history, newest first, capped at :data:`USAGE_HISTORY`. Accepted uses also count an
invocation and set "last invoked", atomically (no lost increments).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

import orjson

from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from producer.tokens.users import UserDirectory, digest, same_digest

MAX_TOKENS = 5
USAGE_HISTORY = 100
MAX_NAME_LENGTH = 100
TOKEN_ID_PREFIX = "tok_"
SECRET_BYTES = 32


class TokenStatus(StrEnum):
    """A disabled token authenticates nothing until enabled again."""

    ACTIVE = "active"
    DISABLED = "disabled"


class TokenError(ValueError):
    """Invalid input; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TokenNotFound(LookupError):
    """The user has no token with this id."""

    def __init__(self, token_id: str) -> None:
        super().__init__(f"no token with id {token_id!r}")
        self.token_id = token_id


class TokenLimitReached(Exception):
    """The user already holds :data:`MAX_TOKENS` tokens."""


class TokenGone(Exception):
    """The token was deleted, or disabled, while a use of it was being accepted."""

    def __init__(self, disabled: bool) -> None:
        super().__init__("disabled" if disabled else "deleted")
        self.disabled = disabled


def validate_name(raw: object) -> str:
    """A token name: 1 to :data:`MAX_NAME_LENGTH` printable characters."""
    if not isinstance(raw, str):
        raise TokenError("name", "must be a string")
    name = raw.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH or not name.isprintable():
        raise TokenError("name", f"must be 1 to {MAX_NAME_LENGTH} printable characters")
    return name


def split_token(presented: str) -> tuple[str, str] | None:
    """``(token id, secret)`` of a presented token, or ``None`` if it is not shaped like one."""
    token_id, dot, secret = presented.partition(".")
    if not dot or not token_id.startswith(TOKEN_ID_PREFIX) or not secret:
        return None
    if not token_id.isascii() or not token_id[len(TOKEN_ID_PREFIX) :].isalnum():
        return None
    return token_id, secret


@dataclass(frozen=True)
class WebhookToken:
    """One token as stored (its secret only as a digest)."""

    id: str
    user_id: str
    name: str
    status: TokenStatus
    digest: str
    created_ms: int
    invocations: int
    last_invoked_ms: int

    def matches(self, secret: str) -> bool:
        """Whether ``secret`` is this token's (constant time)."""
        return same_digest(secret, self.digest)

    @classmethod
    def from_hash(cls, token_id: str, fields: Mapping[str, str]) -> WebhookToken:
        """Parse the Redis hash (see ``LAYOUT["token"]``)."""
        return cls(
            id=token_id,
            user_id=fields["u"],
            name=fields["m"],
            status=TokenStatus(fields["s"]),
            digest=fields["h"],
            created_ms=int(fields["c"]),
            invocations=int(fields["i"]),
            last_invoked_ms=int(fields["l"]),
        )


@dataclass(frozen=True)
class Usage:
    """One use of a token, as its usage history shows it."""

    at_ms: int
    module: str
    resource: str
    source: str
    outcome: str
    event_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The entry as stored and shown."""
        return {
            "at_ms": self.at_ms,
            "module": self.module,
            "resource": self.resource,
            "source": self.source,
            "outcome": self.outcome,
            "event_id": self.event_id,
        }

    @classmethod
    def from_json(cls, raw: str | bytes) -> Usage:
        """Parse a stored entry."""
        return cls(**orjson.loads(raw))


class TokenRegistry:
    """Create, list, rename, enable, disable and delete tokens; authenticate and record uses."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        users: UserDirectory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._users = users
        self._clock = clock
        self._create = load_script(redis, keys, "producer.tokens", "token_create.lua")
        self._record = load_script(redis, keys, "producer.tokens", "token_record.lua")

    def now_ms(self) -> int:
        """The registry's clock, in ms (tokens and uses are stamped with it)."""
        return int(self._clock() * 1000)

    async def create(self, user_id: str, name: str) -> tuple[WebhookToken, str]:
        """A new token and its full value (returned this once).

        Raises :class:`TokenLimitReached` when the user holds :data:`MAX_TOKENS` already.
        """
        name = validate_name(name)
        await self._users.get(user_id)
        token_id = TOKEN_ID_PREFIX + secrets.token_hex(8)
        secret = secrets.token_urlsafe(SECRET_BYTES)
        now_ms = self.now_ms()
        created = await self._create(user_id, token_id, name, digest(secret), now_ms, MAX_TOKENS)
        if not created:
            raise TokenLimitReached
        token = WebhookToken(
            token_id, user_id, name, TokenStatus.ACTIVE, digest(secret), now_ms, 0, 0
        )
        return token, f"{token_id}.{secret}"

    async def all(self, user_id: str) -> list[WebhookToken]:
        """The user's tokens, oldest first."""
        ids = cast(list[str], await self._redis.zrange(self._keys.user_tokens(user_id), 0, -1))
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_id in ids:
                pipe.hgetall(self._keys.token(token_id))
            rows: list[dict[str, str]] = await pipe.execute()
        return [WebhookToken.from_hash(i, row) for i, row in zip(ids, rows, strict=True) if row]

    async def get(self, user_id: str, token_id: str) -> WebhookToken:
        """The user's token ``token_id``, or :class:`TokenNotFound`."""
        fields = cast(dict[str, str], await self._redis.hgetall(self._keys.token(token_id)))
        if fields.get("u") != user_id:
            raise TokenNotFound(token_id)
        return WebhookToken.from_hash(token_id, fields)

    async def rename(self, user_id: str, token_id: str, name: str) -> WebhookToken:
        """Give the token a new name."""
        name = validate_name(name)
        await self.get(user_id, token_id)
        await self._redis.hset(self._keys.token(token_id), "m", name)
        return await self.get(user_id, token_id)

    async def set_status(self, user_id: str, token_id: str, status: TokenStatus) -> WebhookToken:
        """Enable or disable the token."""
        await self.get(user_id, token_id)
        await self._redis.hset(self._keys.token(token_id), "s", status.value)
        return await self.get(user_id, token_id)

    async def delete(self, user_id: str, token_id: str) -> None:
        """Delete the token and its history: it authenticates nothing, its slot is free."""
        await self.get(user_id, token_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.token(token_id), self._keys.token_usage(token_id))
            pipe.zrem(self._keys.user_tokens(user_id), token_id)
            await pipe.execute()

    async def usage(self, user_id: str, token_id: str, limit: int) -> list[Usage]:
        """The token's latest ``limit`` uses, newest first."""
        await self.get(user_id, token_id)
        rows = cast(
            list[str], await self._redis.lrange(self._keys.token_usage(token_id), 0, limit - 1)
        )
        return [Usage.from_json(row) for row in rows]

    async def authenticate(self, presented: str) -> WebhookToken | None:
        """The token whose full value is ``presented`` (whatever its status), or ``None``."""
        parts = split_token(presented)
        if parts is None:
            return None
        token_id, secret = parts
        fields = cast(dict[str, str], await self._redis.hgetall(self._keys.token(token_id)))
        if not fields:
            return None
        token = WebhookToken.from_hash(token_id, fields)
        return token if token.matches(secret) else None

    async def record(self, token: WebhookToken, usage: Usage, *, counted: bool) -> int:
        """Add ``usage`` to the history; ``counted`` also counts an invocation.

        Returns the invocation count; raises :class:`TokenGone` when the token was
        deleted (or, for a counted use, disabled) meanwhile: then nothing is recorded.
        """
        result = int(
            await self._record(
                token.id,
                token.user_id,
                int(counted),
                usage.at_ms,
                orjson.dumps(usage.to_dict()),
                USAGE_HISTORY,
            )
        )
        if result < 0:
            raise TokenGone(disabled=result == -2)
        return result
