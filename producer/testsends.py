"""The seed's "Send Test Event" between the API and the workers, over Redis.

Test sends are performed by a worker, because signing and the guarded connections (the
destination policy checked on every connection) live there and the producer cannot
import them. The contract, both halves of it here:

* the API ``LPUSH``-es a :class:`~producer.messages.TestSendRequest` (JSON) to the list
  :attr:`producer.keys.Keys.test_requests` (:func:`request_test_send`);
* a worker ``BRPOP``-s it (:func:`take_request`), drops it if ``deadline_ms`` has
  passed, sends the test event, and ``SET``-s its
  :class:`~producer.messages.TestSendResult` plus the request's ``id`` at
  :meth:`producer.keys.Keys.test_result` of that id, with a TTL of
  :data:`TEST_RESULT_TTL_S` (:func:`answer`);
* the API polls that key until its wait has passed, then removes its request
  (``LREM``) and reports that nobody answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import cast

import orjson

from producer.backoff import TEST_POLL_FIRST_S, next_poll_s
from producer.endpoint import Endpoint
from producer.endpoint_kind import EndpointKind
from producer.keys import Keys
from producer.messages import TestSendRequest, TestSendResult
from producer.redis.clients import RedisClient
from producer.redis.errors import deadline

TEST_RESULT_TTL_S = 60


def untestable_reason(endpoint: Endpoint) -> str | None:
    """Why ``endpoint`` cannot get a test send, or ``None``: a test send POSTs to a URL
    and reports its answer, and a poll endpoint has neither (it gets the real events;
    ``cliq-webhooks listen`` forwards them to a local server)."""
    if endpoint.kind != EndpointKind.POLL:
        return None
    return (
        f"{endpoint.id} is a poll endpoint: it has no URL to send a test event to; "
        "publish an event of that type and fetch it from its feed instead"
    )


# A worker's pick-up and write-back time on top of DELIVERY_TIMEOUT: how much longer than
# one attempt the API and the CLI wait for a worker's answer.
TEST_SEND_MARGIN_S = 5.0
# The type of a test event when none is named (the API's empty body, the CLI without --type).
DEFAULT_TEST_EVENT_TYPE = "issue.created"


async def request_test_send(
    redis: RedisClient, keys: Keys, endpoint_id: str, event_type: str, wait_s: float
) -> TestSendResult | None:
    """Ask a worker to send a test event and wait for its answer.

    ``None`` when no worker answered within ``wait_s`` (the request is then withdrawn).
    Redis trouble raises :class:`~producer.redis.errors.RedisUnavailable` saying what
    was not done; a malformed answer ``ValueError``.
    """
    request = TestSendRequest.new(endpoint_id, event_type, wait_s)
    message = orjson.dumps(request.to_dict()).decode()
    async with deadline("Redis is unavailable; no test event was sent."):
        await redis.lpush(keys.test_requests, message)
    raw = await _await_result(redis, keys.test_result(request.id), wait_s)
    if raw is None:
        # Withdraw the request: a worker that starts later must not send a stale test.
        async with deadline("Redis is unavailable."):
            await redis.lrem(keys.test_requests, 1, message)
        return None
    # The request says what was asked; the answer what came back.
    answered = TestSendResult.from_dict(orjson.loads(raw))
    return dataclasses.replace(answered, endpoint_id=endpoint_id, event_type=event_type)


async def _await_result(redis: RedisClient, key: str, wait_s: float) -> str | None:
    """Poll ``key`` until it holds a result (read and deleted at once) or time runs out."""
    loop = asyncio.get_running_loop()
    until = loop.time() + wait_s
    interval = TEST_POLL_FIRST_S
    while True:
        async with (
            deadline("Redis is unavailable; the test result could not be read."),
            redis.pipeline(transaction=True) as pipe,
        ):
            pipe.get(key)
            pipe.delete(key)
            raw, _ = await pipe.execute()
        if raw is not None:
            return cast(str, raw)
        remaining = until - loop.time()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(interval, remaining))
        interval = next_poll_s(interval)


async def take_request(redis: RedisClient, keys: Keys, timeout_s: float) -> str | None:
    """The next request (its JSON) for a worker, waiting up to ``timeout_s``."""
    popped = await redis.brpop([keys.test_requests], timeout_s)
    return None if popped is None else str(popped[1])


async def answer(
    redis: RedisClient, keys: Keys, request: TestSendRequest, result: TestSendResult
) -> None:
    """Write a worker's answer where the API polls for it."""
    await redis.set(
        keys.test_result(request.id),
        orjson.dumps({"id": request.id, **result.to_dict()}),
        ex=TEST_RESULT_TTL_S,
    )
