"""Users of the webhook-token module, and the resources incoming webhooks post to.

A user is identified by an id chosen by the operator (the id of the account in the
system in front of this API) and belongs to exactly one workspace: every event an
incoming webhook of the user's tokens creates is published to that workspace.

Channels and bots are claimed by name: the first user to claim a name owns it, and a
token may post only to its own user's channels and bots. Extension apps are created
with two appkeys, one for the sandbox and one for the marketplace endpoint; both are
shown once and stored as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from producer.events import ID_PATTERN
from producer.keys import Keys
from producer.redis.clients import RedisClient

MAX_APP_NAME_LENGTH = 100
APPKEY_BYTES = 24


class ResourceKind(StrEnum):
    """What an incoming webhook posts to."""

    CHANNEL = "channel"
    BOT = "bot"
    APP = "app"


class AppEnvironment(StrEnum):
    """The two endpoints of an extension, each with its own appkey."""

    SANDBOX = "sandbox"
    MARKETPLACE = "marketplace"


APPKEY_PREFIXES = {AppEnvironment.SANDBOX: "sbx_", AppEnvironment.MARKETPLACE: "mkt_"}


class UserError(ValueError):
    """Invalid input; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UserNotFound(LookupError):
    """No user has this id."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"no user with id {user_id!r}")
        self.user_id = user_id


class ResourceTaken(Exception):
    """A channel or bot name that another user owns."""

    def __init__(self, kind: ResourceKind, name: str) -> None:
        super().__init__(f"the {kind.value} {name!r} belongs to another user")
        self.kind = kind
        self.name = name


def digest(secret: str) -> str:
    """The stored form of a high-entropy secret (token or appkey): SHA-256, hex.

    No salt or slow hash is needed: the secrets are 192+ random bits, not passwords.
    """
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def same_digest(secret: str, stored: str) -> bool:
    """Whether ``secret`` is the one ``stored`` was made from (constant time)."""
    return hmac.compare_digest(digest(secret).encode(), stored.encode())


def require_id(field: str, value: object) -> str:
    """An id or name shaped like every id of the API, or :class:`UserError`."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise UserError(field, "must be 1-128 characters of A-Z, a-z, 0-9, '_' or '-'")
    return value


@dataclass(frozen=True)
class User:
    """A user and what the API shows of them."""

    id: str
    workspace_id: str
    created_ms: int
    totp_enrolled: bool

    def public_dict(self, resources: list[str]) -> dict[str, object]:
        """The user as the API shows it, with the resources they own."""
        owned: dict[str, list[str]] = {"channels": [], "bots": [], "apps": []}
        for resource in sorted(resources):
            kind, _, name = resource.partition(":")
            owned[f"{kind}s"].append(name)
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "created_ms": self.created_ms,
            "totp_enrolled": self.totp_enrolled,
            **owned,
        }


@dataclass(frozen=True)
class App:
    """An extension app; ``environment_of`` tells which of its appkeys was presented."""

    id: str
    user_id: str
    name: str
    created_ms: int
    sandbox_digest: str
    marketplace_digest: str

    def environment_of(self, appkey: str) -> AppEnvironment | None:
        """The environment whose appkey ``appkey`` is, or ``None`` (both compared)."""
        sandbox = same_digest(appkey, self.sandbox_digest)
        marketplace = same_digest(appkey, self.marketplace_digest)
        if sandbox:
            return AppEnvironment.SANDBOX
        if marketplace:
            return AppEnvironment.MARKETPLACE
        return None

    def public_dict(self) -> dict[str, object]:
        """The app as the API shows it (appkeys only at creation)."""
        return {"id": self.id, "user_id": self.user_id, "name": self.name}

    @classmethod
    def from_hash(cls, app_id: str, fields: Mapping[str, str]) -> App:
        """Parse the Redis hash (see ``LAYOUT["app"]``)."""
        return cls(
            id=app_id,
            user_id=fields["u"],
            name=fields["m"],
            created_ms=int(fields["c"]),
            sandbox_digest=fields["ks"],
            marketplace_digest=fields["km"],
        )


class UserDirectory:
    """Users, their workspace, and the channels, bots and apps they own."""

    def __init__(
        self, redis: RedisClient, keys: Keys, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock

    async def put(self, user_id: str, workspace_id: str) -> tuple[User, bool]:
        """Create the user, or move them to ``workspace_id``; ``True`` when created."""
        require_id("user_id", user_id)
        require_id("workspace_id", workspace_id)
        key = self._keys.user(user_id)
        created = bool(await self._redis.hsetnx(key, "c", int(self._clock() * 1000)))
        await self._redis.hset(key, "w", workspace_id)
        return await self.get(user_id), created

    async def get(self, user_id: str) -> User:
        """The user, or :class:`UserNotFound`."""
        fields = cast(dict[str, str], await self._redis.hgetall(self._keys.user(user_id)))
        if "w" not in fields:
            raise UserNotFound(user_id)
        return User(user_id, fields["w"], int(fields["c"]), bool(fields.get("s")))

    async def resources(self, user_id: str) -> list[str]:
        """What the user owns, as ``kind:name`` strings."""
        members = cast(set[str], await self._redis.smembers(self._keys.user_resources(user_id)))
        return sorted(members)

    async def claim(self, user_id: str, kind: ResourceKind, name: str) -> bool:
        """Make ``user_id`` the owner of a channel or bot; ``True`` when newly claimed.

        Raises :class:`ResourceTaken` when another user owns the name.
        """
        require_id("name", name)
        await self.get(user_id)
        resource = f"{kind.value}:{name}"
        claimed = await self._redis.set(self._keys.resource_owner(resource), user_id, nx=True)
        if not claimed and await self.owner(kind, name) != user_id:
            raise ResourceTaken(kind, name)
        added = await self._redis.sadd(self._keys.user_resources(user_id), resource)
        return bool(claimed or added)

    async def owner(self, kind: ResourceKind, name: str) -> str | None:
        """The user owning a channel or bot, or ``None``."""
        return cast(str | None, await self._redis.get(self._keys.resource_owner(f"{kind}:{name}")))

    async def create_app(self, user_id: str, name: str) -> tuple[App, dict[AppEnvironment, str]]:
        """A new app of ``user_id`` and its two appkeys (returned this once)."""
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_APP_NAME_LENGTH:
            raise UserError("name", f"must be 1 to {MAX_APP_NAME_LENGTH} characters")
        await self.get(user_id)
        appkeys = {
            env: prefix + secrets.token_urlsafe(APPKEY_BYTES)
            for env, prefix in APPKEY_PREFIXES.items()
        }
        app = App(
            id="app_" + secrets.token_hex(8),
            user_id=user_id,
            name=name.strip(),
            created_ms=int(self._clock() * 1000),
            sandbox_digest=digest(appkeys[AppEnvironment.SANDBOX]),
            marketplace_digest=digest(appkeys[AppEnvironment.MARKETPLACE]),
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._keys.app(app.id),
                mapping={
                    "u": app.user_id,
                    "m": app.name,
                    "c": app.created_ms,
                    "ks": app.sandbox_digest,
                    "km": app.marketplace_digest,
                },
            )
            pipe.sadd(self._keys.user_resources(user_id), f"app:{app.id}")
            await pipe.execute()
        return app, appkeys

    async def app(self, app_id: str) -> App | None:
        """The app, or ``None``."""
        fields = cast(dict[str, str], await self._redis.hgetall(self._keys.app(app_id)))
        return App.from_hash(app_id, fields) if fields else None
