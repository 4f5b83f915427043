"""The second factor of the webhook-token module: TOTP enrolment and 2FA sessions.

A user enrols (a secret and its ``otpauth://`` URI are returned once), confirms with a
first code, and from then on verifies a code to open a **2FA session**: a bearer value
(``tfs_...``) valid for :data:`SESSION_S` (15 minutes) from the verification, not
extended by use. Every token-management call presents it; after it expires the caller
must verify a new code.

Each code is accepted once (the last accepted step is kept per user, in the same Lua
call that accepts a code, so two concurrent uses of one code cannot both win), and
:data:`MAX_FAILURES` wrong codes lock the user out for :data:`LOCKOUT_S`.

The clock is injected (seconds since the epoch): tests move it instead of sleeping.
Sessions are also given a Redis TTL, for cleanup only; expiry is decided on the clock.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from producer.secretbox import TOTP_ASSOCIATED_DATA, SecretBox
from producer.tokens import totp
from producer.tokens.users import UserDirectory, digest

SESSION_S = 15 * 60
MAX_FAILURES = 10
LOCKOUT_S = 15 * 60
ISSUER = "cliq-webhooks"
SESSION_PREFIX = "tfs_"


class TwoFactorFailure(StrEnum):
    """Why a code or a session was refused."""

    NOT_ENROLLED = "not_enrolled"
    NOTHING_TO_CONFIRM = "nothing_to_confirm"
    WRONG_CODE = "wrong_code"
    REPLAYED = "replayed"
    LOCKED = "locked"
    SESSION_REQUIRED = "session_required"


class TwoFactorError(Exception):
    """A refused code or session; ``failure`` says why, the message says what to do."""

    def __init__(self, failure: TwoFactorFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


@dataclass(frozen=True)
class Enrolment:
    """What enrolling returns, once: the secret and the URI an authenticator imports."""

    secret: str
    otpauth_uri: str


@dataclass(frozen=True)
class Session:
    """An open 2FA session: its bearer value (shown once) and when it expires."""

    token: str
    user_id: str
    expires_ms: int


class TwoFactor:
    """Enrol, confirm, verify, and check sessions."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        users: UserDirectory,
        box: SecretBox,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._users = users
        self._box = box
        self._clock = clock
        self._accept = load_script(redis, keys, "producer.tokens", "totp_accept.lua")

    async def enroll(self, user_id: str) -> Enrolment:
        """A new secret awaiting confirmation (it replaces any earlier unconfirmed one).

        A user already enrolled keeps using the current secret until the new one is
        confirmed; the API lets them re-enrol only within a 2FA session.
        """
        await self._users.get(user_id)
        secret = totp.new_secret()
        await self._redis.hset(
            self._keys.user(user_id), "p", self._box.seal(secret, TOTP_ASSOCIATED_DATA)
        )
        return Enrolment(secret, totp.otpauth_uri(secret, user_id, ISSUER))

    async def enrolled(self, user_id: str) -> bool:
        """Whether the user has a confirmed secret."""
        return bool(await self._redis.hget(self._keys.user(user_id), "s"))

    async def confirm(self, user_id: str, code: str) -> Session:
        """Check a first code of the pending secret, make it the user's, open a session."""
        await self._users.get(user_id)
        pending = cast(str | None, await self._redis.hget(self._keys.user(user_id), "p"))
        if not pending:
            raise TwoFactorError(
                TwoFactorFailure.NOTHING_TO_CONFIRM,
                "There is no enrolment to confirm: enrol first.",
            )
        session = await self._accept_code(user_id, self._open(pending), code)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.user(user_id), "s", pending)
            pipe.hdel(self._keys.user(user_id), "p")
            await pipe.execute()
        return session

    async def verify(self, user_id: str, code: str) -> Session:
        """Check a code of the user's secret and open a session."""
        await self._users.get(user_id)
        stored = cast(str | None, await self._redis.hget(self._keys.user(user_id), "s"))
        if not stored:
            raise TwoFactorError(
                TwoFactorFailure.NOT_ENROLLED,
                "No second factor is enrolled: enrol, then confirm with a first code.",
            )
        return await self._accept_code(user_id, self._open(stored), code)

    async def check(self, user_id: str, token: str | None) -> Session:
        """The session ``token`` of ``user_id`` if it is open now, else :class:`TwoFactorError`."""
        now_ms = int(self._clock() * 1000)
        if token:
            key = self._keys.twofa_session(digest(token))
            fields = cast(dict[str, str], await self._redis.hgetall(key))
            if fields.get("u") == user_id:
                expires_ms = int(fields["v"]) + SESSION_S * 1000
                if now_ms < expires_ms:
                    return Session(token, user_id, expires_ms)
        raise TwoFactorError(
            TwoFactorFailure.SESSION_REQUIRED,
            "Re-authenticate: this call needs a 2FA session verified within the last "
            f"{SESSION_S // 60} minutes. Verify a TOTP code (POST /v1/users/{user_id}/2fa/"
            "verify) and send the session it returns as the X-Cliq-2FA-Session header.",
        )

    def _open(self, stored: str) -> str:
        return self._box.open(stored, TOTP_ASSOCIATED_DATA)

    async def _accept_code(self, user_id: str, secret: str, code: str) -> Session:
        """Accept ``code`` once (replay and lockout rules), then open a session."""
        now = self._clock()
        valid = code.isascii() and code.isdigit()
        step = totp.matching_step(secret, code, now) if valid else None
        result = await self._accept(user_id, -1 if step is None else step, MAX_FAILURES, LOCKOUT_S)
        if result == -2:
            raise TwoFactorError(
                TwoFactorFailure.LOCKED,
                f"Too many wrong codes: verification is locked for up to {LOCKOUT_S // 60} "
                "minutes.",
            )
        if result == -1:
            raise TwoFactorError(TwoFactorFailure.WRONG_CODE, "The code is not valid now.")
        if result == 0:
            raise TwoFactorError(
                TwoFactorFailure.REPLAYED,
                "This code was already used: wait for the next one.",
            )
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        now_ms = int(now * 1000)
        key = self._keys.twofa_session(digest(token))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"u": user_id, "v": now_ms})
            pipe.expire(key, SESSION_S)
            await pipe.execute()
        return Session(token, user_id, now_ms + SESSION_S * 1000)
