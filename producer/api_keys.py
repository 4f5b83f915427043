"""Workspace-scoped API keys: made by the operator, shown once, kept as a digest.

A key reads ``ak_<16 hex>.<secret>``: the id before the dot names its record
(``LAYOUT["api_key"]``), which holds the workspace, the name, the scopes, the SHA-256 of
the secret (compared in constant time) and when it was created and last used. The
operator's own keys (``API_KEYS``) are not stored here: they are settings, with every
scope. What a scope allows is :mod:`producer.http.access`; this module only keeps keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import cast

from producer.endpoint_rules import validate_workspace
from producer.keys import Keys
from producer.redis.clients import RedisClient

KEY_ID_PREFIX = "ak_"
KEY_PATTERN = re.compile(r"(ak_[0-9a-f]{16})\.([A-Za-z0-9_-]{43})")
MAX_NAME_LENGTH = 200
# A key used again within this many milliseconds keeps its "last used": one write per
# key per minute at most, not one per request.
LAST_USED_RESOLUTION_MS = 60_000


class ApiKeyError(ValueError):
    """A field of a new key is invalid: ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ApiKeyNotFound(LookupError):
    """No key with this id (never made, or revoked)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key with id {key_id!r}")
        self.key_id = key_id


@dataclass(frozen=True)
class ApiKey:
    """A workspace-scoped key as listed (never its secret)."""

    id: str
    workspace_id: str
    name: str
    scopes: tuple[str, ...]
    created_ms: int
    last_used_ms: int

    def allows(self, scope: str) -> bool:
        """Whether the key holds ``scope``."""
        return scope in self.scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _from_hash(key_id: str, fields: dict[str, str]) -> ApiKey:
    return ApiKey(
        id=key_id,
        workspace_id=fields["w"],
        name=fields["m"],
        scopes=tuple(s for s in fields["s"].split(",") if s),
        created_ms=int(fields["c"]),
        last_used_ms=int(fields.get("l") or 0),
    )


class ApiKeyStore:
    """API keys in Redis, under one key prefix."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        grantable: Collection[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._grantable = frozenset(grantable)
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def check(self, workspace_id: object, name: object, scopes: object) -> list[ApiKeyError]:
        """Every problem of these fields of a new key (empty: they are valid)."""
        errors: list[ApiKeyError] = []
        try:
            validate_workspace(cast(str, workspace_id))
        except ValueError:
            errors.append(
                ApiKeyError("workspace_id", "must be 1-128 characters of A-Z, a-z, 0-9, _, -")
            )
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
            errors.append(ApiKeyError("name", f"must be 1-{MAX_NAME_LENGTH} characters"))
        if (
            not isinstance(scopes, list)
            or not scopes
            or not all(isinstance(s, str) for s in scopes)
        ):
            errors.append(ApiKeyError("scopes", "must be a non-empty list of scope names"))
        else:
            unknown = sorted(set(scopes) - self._grantable)
            if unknown:
                known = ", ".join(sorted(self._grantable))
                errors.append(
                    ApiKeyError("scopes", f"unknown scope {', '.join(unknown)}; known: {known}")
                )
        return errors

    async def create(
        self, workspace_id: str, name: str, scopes: Sequence[str]
    ) -> tuple[ApiKey, str]:
        """A new key and its value (shown this once); fields as :meth:`check` allows."""
        key_id = KEY_ID_PREFIX + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=key_id,
            workspace_id=workspace_id,
            name=name.strip(),
            scopes=tuple(sorted(set(scopes))),
            created_ms=self._now_ms(),
            last_used_ms=0,
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._keys.api_key(key_id),
                mapping={
                    "w": key.workspace_id,
                    "m": key.name,
                    "s": ",".join(key.scopes),
                    "h": _digest(secret),
                    "c": str(key.created_ms),
                },
            )
            pipe.zadd(self._keys.api_keys, {key_id: key.created_ms})
            await pipe.execute()
        return key, f"{key_id}.{secret}"

    async def all(self, workspace_id: str | None = None) -> list[ApiKey]:
        """Every key, oldest first; only ``workspace_id``'s when given."""
        ids = cast(list[str], await self._redis.zrange(self._keys.api_keys, 0, -1))
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hgetall(self._keys.api_key(key_id))
            records = cast(list[dict[str, str]], await pipe.execute())
        found = [_from_hash(i, r) for i, r in zip(ids, records, strict=True) if "h" in r]
        return [k for k in found if workspace_id is None or k.workspace_id == workspace_id]

    async def get(self, key_id: str) -> ApiKey:
        """One key, or :class:`ApiKeyNotFound`."""
        fields = cast(dict[str, str], await self._redis.hgetall(self._keys.api_key(key_id)))
        if "h" not in fields:
            raise ApiKeyNotFound(key_id)
        return _from_hash(key_id, fields)

    async def revoke(self, key_id: str) -> None:
        """Forget the key: it authenticates nothing from now on (:class:`ApiKeyNotFound`)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.api_key(key_id))
            pipe.zrem(self._keys.api_keys, key_id)
            deleted, _ = await pipe.execute()
        if not deleted:
            raise ApiKeyNotFound(key_id)

    async def authenticate(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is the value of, its "last used" updated; else ``None``."""
        matched = KEY_PATTERN.fullmatch(presented)
        if matched is None:
            return None
        key_id, secret = matched.groups()
        record = self._keys.api_key(key_id)
        fields = cast(dict[str, str], await self._redis.hgetall(record))
        if "h" not in fields or not hmac.compare_digest(_digest(secret), fields["h"]):
            return None
        key = _from_hash(key_id, fields)
        now_ms = self._now_ms()
        # A revoke between the read and this write leaves a record without a digest,
        # which authenticates nothing.
        if now_ms - key.last_used_ms >= LAST_USED_RESOLUTION_MS:
            await self._redis.hset(record, "l", str(now_ms))
        return key
