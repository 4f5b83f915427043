"""The seed's "Send Test Event": a signed test event, answered with the receiver's response.

The test event is signed and sent like a real delivery, but directly: it is not
queued, retried or counted, so it cannot turn an endpoint failing (the delivery log
keeps it apart, marked as a test: :mod:`producer.testlog`). The API's
``POST /v1/endpoints/{id}/test``, the dashboard and ``cliq-webhooks send-test`` all ask a
worker through Redis (:class:`SendTestListener`; the protocol is
:mod:`producer.testsends`), so the test goes out as deliveries do: from a worker, with
its destination policy and connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import structlog

from producer import testlog
from producer.endpoint import Endpoint
from producer.endpoint_rules import EndpointNotFound
from producer.endpoints import EndpointRegistry
from producer.events import Catalogue, EventError, example_data, parse_event
from producer.jobs import DeliveryItem
from producer.keys import Keys
from producer.messages import TestSendRequest, TestSendResult
from producer.publisher import new_delivery_id
from producer.redis.clients import RedisClient
from producer.signing import request_headers
from producer.testlog import TestSend
from producer.testsends import answer, take_request
from worker.sender import Sender

log = structlog.get_logger("cliq.worker.testsend")

CONCURRENT_TEST_SENDS = 4
# Short, so that a stopping worker is not held up by its wait for requests.
POLL_TIMEOUT_S = 1


async def deliver_test_event(
    endpoint: Endpoint,
    event_type: str,
    catalogue: Catalogue,
    sender: Sender,
    max_payload_bytes: int,
) -> tuple[TestSendResult, TestSend]:
    """POST a test event of ``event_type`` to ``endpoint``; return what came back, and
    the test as the delivery log keeps it (:mod:`producer.testlog`)."""
    event = parse_event(
        {
            "type": event_type,
            "workspace_id": endpoint.workspace_id,
            "data": example_data(event_type),
        },
        catalogue,
        max_payload_bytes=max_payload_bytes,
    )
    item = DeliveryItem(new_delivery_id(), 1)
    signed_s = time.time()
    headers = request_headers(endpoint, event.id, event.type, item, event.body, signed_s)
    response = await sender.post(endpoint.url, event.body, headers, endpoint.timeout_s)
    result = TestSendResult(
        endpoint_id=endpoint.id,
        event_id=event.id,
        event_type=event.type,
        ok=response.ok,
        status=response.status,
        error=response.error,
        latency_ms=round(response.duration_s * 1000, 3),
        response=response.excerpt,
    )
    sent = TestSend(
        endpoint_id=endpoint.id,
        delivery_id=item.delivery_id,
        event_id=event.id,
        event_type=event.type,
        workspace_id=endpoint.workspace_id,
        at_ms=int(signed_s * 1000),
        ok=response.ok,
        status=response.status,
        error=response.error,
        latency_ms=result.latency_ms,
        response=response.excerpt,
        body=event.body.decode(),
    )
    return result, sent


class SendTestListener:
    """Takes the API's test-send requests from Redis and writes back the answers."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        registry: EndpointRegistry,
        catalogue: Catalogue,
        sender: Sender,
        max_payload_bytes: int,
        retention_s: int,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._registry = registry
        self._catalogue = catalogue
        self._sender = sender
        self._max_payload_bytes = max_payload_bytes
        self._retention_s = retention_s  # how long the log keeps test sends
        self._slots = asyncio.Semaphore(CONCURRENT_TEST_SENDS)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Until cancelled: answer requests, a few at a time."""
        while True:
            try:
                raw = await take_request(self._redis, self._keys, POLL_TIMEOUT_S)
            except Exception as exc:  # Redis down: the API answers 504 meanwhile
                log.warning("test_send_poll_failed", error=str(exc))
                await asyncio.sleep(POLL_TIMEOUT_S)
                continue
            if raw is None:
                continue
            await self._slots.acquire()
            task = asyncio.create_task(self._answer(raw))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, raw: str) -> None:
        try:
            request = TestSendRequest.from_dict(orjson.loads(raw))
        except ValueError:  # orjson's JSONDecodeError included
            log.error("bad_test_send_request")
            return
        if time.time() * 1000 > request.deadline_ms:
            return  # the API has given up on it
        try:
            endpoint = await self._registry.get(request.endpoint_id)
            result, sent = await deliver_test_event(
                endpoint, request.event_type, self._catalogue, self._sender, self._max_payload_bytes
            )
        except (EndpointNotFound, EventError) as exc:
            result = TestSendResult.failed(request.endpoint_id, request.event_type, str(exc))
        else:
            try:
                await testlog.record(self._redis, self._keys, sent, self._retention_s)
            except Exception as exc:  # the answer matters more than its line in the log
                log.warning("test_send_not_logged", endpoint_id=sent.endpoint_id, error=str(exc))
        log.info(
            "test_send",
            endpoint_id=request.endpoint_id,
            event_id=result.event_id,
            status=result.status,
            error=result.error,
        )
        await answer(self._redis, self._keys, request, result)

    async def close(self) -> None:
        """Let the answers in progress finish."""
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks)
