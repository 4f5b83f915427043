"""The webhook-token system wired together for the API: users, 2FA, tokens, one clock.

Built at startup from the API's :class:`~producer.context.Producer` (its Redis, key
layout and secret box), after the producer itself (cleanup contexts run in order).
Tests replace :data:`CLOCK` on the application before starting it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from producer.context import Producer
from producer.http.state import PRODUCER
from producer.tokens.registry import TokenRegistry
from producer.tokens.twofactor import TwoFactor
from producer.tokens.users import UserDirectory

Clock = Callable[[], float]


@dataclass(frozen=True)
class TokenSystem:
    """Everything the token and incoming-webhook routes use."""

    producer: Producer
    users: UserDirectory
    twofactor: TwoFactor
    tokens: TokenRegistry

    @classmethod
    def build(cls, producer: Producer, clock: Clock) -> TokenSystem:
        """The parts over ``producer``'s Redis, all reading ``clock``."""
        users = UserDirectory(producer.redis, producer.keys, clock)
        return cls(
            producer=producer,
            users=users,
            twofactor=TwoFactor(producer.redis, producer.keys, users, producer.secret_box, clock),
            tokens=TokenRegistry(producer.redis, producer.keys, users, clock),
        )


# Seconds since the epoch; time.time unless a test injects another clock.
CLOCK: web.AppKey[Clock] = web.AppKey("token_clock")
TOKEN_SYSTEM = web.AppKey("token_system", TokenSystem)


async def token_context(app: web.Application) -> AsyncIterator[None]:
    """Build the :class:`TokenSystem` once the producer is open (nothing to close)."""
    app[TOKEN_SYSTEM] = TokenSystem.build(app[PRODUCER], app.get(CLOCK, time.time))
    yield


def install(app: web.Application) -> None:
    """Have ``app`` build the token system at startup (after its producer)."""
    app.cleanup_ctx.append(token_context)
