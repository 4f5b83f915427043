"""Dashboard sessions: an opaque id in a cookie, the state in Redis, a CSRF token each.

The cookie carries 32 random bytes (URL-safe base64) and nothing else. Redis keeps the
session under the SHA-256 of that value (``LAYOUT["dashboard_session"]``), so a Redis
dump or replica holds no cookie that would sign anyone in. A session expires when it
has not been used for ``DASHBOARD_SESSION_TTL`` seconds; one that never signed in (it
only carries the login form's CSRF token) after :data:`ANONYMOUS_TTL_S`.

Every session has its own synchronizer token: forms carry it in a hidden ``csrf``
field (scripts in an ``X-CSRF-Token`` header) and every POST is refused without it
(:func:`producer.dashboard.app.session_gate`). Signing in replaces the session with a
new id, so an id planted before sign-in (session fixation) never becomes signed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from producer.http.state import SETTINGS
from producer.keys import Keys
from producer.portal_links import PortalGrant
from producer.redis.clients import RedisClient

COOKIE_NAME = "cliq_ui"
COOKIE_PATH = "/ui/"
ANONYMOUS_TTL_S = 900
# Session fields of a portal grant: this + PortalGrant.to_hash's names.
_PORTAL = "portal:"
_ID_BYTES = 32


@dataclass(frozen=True)
class Flash:
    """A notice for the next page: the outcome of an action, or a warning."""

    message: str
    warning: bool = False


@dataclass(frozen=True)
class Session:
    """One browser's session: its cookie value, CSRF token and whether it signed in."""

    cookie: str
    csrf: str
    signed_in: bool
    # True when the cookie must be (re)sent with the response.
    new: bool = False
    # A session a portal link opened: bound to its workspace (maybe one user, read only).
    portal: PortalGrant | None = None

    def csrf_matches(self, presented: str) -> bool:
        """Whether ``presented`` is this session's CSRF token (constant time)."""
        return hmac.compare_digest(presented.encode(), self.csrf.encode())


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class SessionStore:
    """Sessions in Redis under one key prefix."""

    def __init__(self, redis: RedisClient, keys: Keys, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s

    def _key(self, cookie: str) -> str:
        return self._keys.dashboard_session(_digest(cookie))

    async def load(self, cookie: str | None) -> Session | None:
        """The session of this cookie value, its expiry pushed back; ``None`` if unknown."""
        if not cookie or len(cookie) > 100:
            return None
        key = self._key(cookie)
        fields = cast(dict[str, str], await self._redis.hgetall(key))
        if "csrf" not in fields:
            return None
        signed_in = fields.get("auth") == "1"
        await self._redis.expire(key, self._ttl_s if signed_in else ANONYMOUS_TTL_S)
        portal = {name[len(_PORTAL) :]: v for name, v in fields.items() if name.startswith(_PORTAL)}
        return Session(
            cookie=cookie,
            csrf=fields["csrf"],
            signed_in=signed_in,
            portal=PortalGrant.from_hash(portal) if portal else None,
        )

    async def create(self, *, signed_in: bool, portal: PortalGrant | None = None) -> Session:
        """A new session with a fresh id and CSRF token (bound to ``portal``'s grant)."""
        session = Session(
            cookie=secrets.token_urlsafe(_ID_BYTES),
            csrf=secrets.token_urlsafe(_ID_BYTES),
            signed_in=signed_in,
            new=True,
            portal=portal,
        )
        key = self._key(session.cookie)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "csrf": session.csrf,
                    "auth": "1" if signed_in else "0",
                    "c": str(int(time.time() * 1000)),
                },
            )
            for name, value in (portal.to_hash() if portal else {}).items():
                pipe.hset(key, _PORTAL + name, value)
            pipe.expire(key, self._ttl_s if signed_in else ANONYMOUS_TTL_S)
            await pipe.execute()
        return session

    async def destroy(self, session: Session) -> None:
        """Forget the session (sign out, or replaced at sign-in)."""
        await self._redis.delete(self._key(session.cookie))

    async def read(self, session: Session, name: str) -> str | None:
        """A value the dashboard keeps in the session (see ``LAYOUT["dashboard_session"]``)."""
        return cast(str | None, await self._redis.hget(self._key(session.cookie), name))

    async def write(self, session: Session, name: str, value: str) -> None:
        """Keep ``value`` in the session as ``name``."""
        await self._redis.hset(self._key(session.cookie), name, value)

    async def flash(self, session: Session, message: str, *, warning: bool = False) -> None:
        """A notice shown once, on the next page this session renders."""
        kind = "warning" if warning else "done"
        await self._redis.hset(
            self._key(session.cookie), mapping={"flash": message, "flash_kind": kind}
        )

    async def pop_flash(self, session: Session) -> Flash | None:
        """The pending notice, removed."""
        key = self._key(session.cookie)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(key, "flash", "flash_kind")
            pipe.hdel(key, "flash", "flash_kind")
            (message, kind), _ = await pipe.execute()
        return None if message is None else Flash(message, warning=kind == "warning")


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    """Send the session's cookie: HttpOnly, SameSite=Lax, Secure when served over https.

    Lax rather than Strict: a link into the dashboard from elsewhere (an email about a
    failing endpoint) finds the user signed in; GETs change nothing, and every POST needs
    the CSRF token besides. When another site may frame the dashboard
    (``PORTAL_FRAME_ANCESTORS``) the cookie must travel in that frame: ``SameSite=None``,
    which browsers take only with ``Secure`` (they keep it on ``http://localhost`` too).
    """
    embeddable = request.config_dict[SETTINGS].portal_embeddable
    response.set_cookie(
        COOKIE_NAME,
        session.cookie,
        path=COOKIE_PATH,
        httponly=True,
        samesite="None" if embeddable else "Lax",
        secure=embeddable or served_over_https(request),
    )


def clear_cookie(response: web.StreamResponse) -> None:
    """Remove the session cookie from the browser."""
    response.del_cookie(COOKIE_NAME, path=COOKIE_PATH)


def served_over_https(request: web.Request) -> bool:
    """Whether the browser reached us over https (directly, or through a TLS proxy).

    Trusting ``X-Forwarded-Proto`` here is safe: it can only add the Secure flag.
    """
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"
