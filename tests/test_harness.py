"""The harness itself: each piece starts, answers and records for real."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib
import pytest
import redis.asyncio as aioredis

from harness import (
    NodeReceiverFactory,
    Receiver,
    ReceiverFactory,
    RedisServer,
    RedisServerFactory,
    ScriptedResponse,
    SmtpServer,
    wait_until,
)
from harness.redis_server import SYSTEM_REDIS_PORT, server_pid

# -- polling -------------------------------------------------------------------------


async def test_wait_until_accepts_sync_and_async_predicates() -> None:
    started = time.monotonic()

    def after_a_moment() -> bool:
        return time.monotonic() - started > 0.05

    async def async_after_a_moment() -> bool:
        return after_a_moment()

    await wait_until(after_a_moment, timeout=2)
    await wait_until(async_after_a_moment, timeout=2)


async def test_wait_until_raises_with_message_at_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match="never true"):
        await wait_until(lambda: False, timeout=0.1, message="never true")
    assert 0.1 <= time.monotonic() - started < 1.0


# -- redis ---------------------------------------------------------------------------


async def test_redis_is_private_and_flushed(
    redis_server: RedisServer, redis_url: str, redis: aioredis.Redis
) -> None:
    assert redis_server.port != SYSTEM_REDIS_PORT
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert await redis.ping()
    assert await redis.dbsize() == 0
    info = await redis.info("server")
    assert info["process_id"] == redis_server.pid
    await redis.set("harness:key", "value")
    assert await redis.get("harness:key") == "value"


async def test_redis_restart_keeps_port(redis_server: RedisServer, redis_url: str) -> None:
    port, pid = redis_server.port, redis_server.pid
    redis_server.restart()
    assert redis_server.port == port
    assert redis_server.url == redis_url
    assert redis_server.pid != pid
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await client.ping()
        assert (await client.info("server"))["process_id"] == redis_server.pid
    finally:
        await client.aclose()


async def test_redis_with_appendonly_keeps_data_over_restart(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory("--appendonly", "yes", "--appendfsync", "always")
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        await client.set("survives", "yes")
    finally:
        await client.aclose()
    port = server.port
    server.restart()
    assert server.port == port
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        assert await client.get("survives") == "yes"
    finally:
        await client.aclose()


def test_redis_stop_ends_our_process_and_restart_brings_it_back(
    redis_server: RedisServer,
) -> None:
    port, pid = redis_server.port, redis_server.pid
    redis_server.stop()
    assert not redis_server.running
    assert server_pid(port) is None  # nothing answers on our port any more
    redis_server.restart()  # redis_url does this too if a test left the server stopped
    assert redis_server.running
    assert server_pid(port) == redis_server.pid != pid


# -- http receiver -------------------------------------------------------------------


async def test_receiver_records_a_post(receiver: Receiver) -> None:
    payload = {"id": "evt_1", "type": "issue.created"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            receiver.url("/webhooks/cliq?x=1"), json=payload, headers={"X-Test": "yes"}
        ) as response,
    ):
        assert response.status == 200
        assert await response.text() == "ok"
    (request,) = await receiver.wait_for(1, timeout=5)
    assert request.method == "POST"
    assert request.path == "/webhooks/cliq"
    assert request.query_string == "x=1"
    assert request.headers["x-test"] == "yes"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == payload
    assert request.received_at <= time.monotonic()
    assert abs(request.received_at_wall - time.time()) < 60


async def test_receiver_honours_scripted_500_then_200(receiver: Receiver) -> None:
    receiver.script(
        ScriptedResponse(status=500, body="boom", headers={"Retry-After": "7"}),
        ScriptedResponse(status=200, body="fine"),
    )
    receiver.default = ScriptedResponse(status=204, body=b"")
    answers: list[tuple[int, str, str | None]] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(receiver.url(), data=b"x") as response:
                answers.append(
                    (response.status, await response.text(), response.headers.get("Retry-After"))
                )
    assert answers == [(500, "boom", "7"), (200, "fine", None), (204, "", None)]
    assert receiver.statuses == [500, 200, 204]
    assert len(await receiver.wait_for(3, timeout=5)) == 3
    assert receiver.pending_script == 0


async def test_receiver_delay_and_hang(receiver_factory: ReceiverFactory) -> None:
    slow, stuck = await receiver_factory(), await receiver_factory()
    assert slow.port != stuck.port
    slow.respond(200, "late", delay_s=0.2)
    stuck.hang()
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.get(slow.url()) as response:
            assert await response.text() == "late"
        assert time.monotonic() - started >= 0.2
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(
                stuck.url(), data=b"x", timeout=aiohttp.ClientTimeout(total=0.3)
            ):
                pass
    assert len(await stuck.wait_for(1, timeout=5)) == 1
    assert stuck.statuses == []  # it is still hanging; teardown releases it


async def test_receiver_wait_for_fails_with_what_arrived(receiver: Receiver) -> None:
    with pytest.raises(AssertionError, match=r"got 0 request\(s\), expected 1"):
        await receiver.wait_for(1, timeout=0.05)


# -- smtp ----------------------------------------------------------------------------


async def test_smtp_captures_a_message(smtp_server: SmtpServer) -> None:
    assert smtp_server.url == f"smtp://127.0.0.1:{smtp_server.port}"
    message = EmailMessage()
    message["From"] = "webhooks@cliq.test"
    message["To"] = "owner@example.test"
    message["Subject"] = "Webhook endpoint failing"
    message.set_content("Endpoint https://example.test/hook failed 5 times.\n")
    await aiosmtplib.send(
        message, hostname="127.0.0.1", port=smtp_server.port, start_tls=False, timeout=10
    )
    (captured,) = await smtp_server.wait_for(1, timeout=5)
    assert captured.mail_from == "webhooks@cliq.test"
    assert captured.rcpt_tos == ("owner@example.test",)
    assert captured.from_header == "webhooks@cliq.test"
    assert captured.to_header == "owner@example.test"
    assert captured.subject == "Webhook endpoint failing"
    assert captured.text == "Endpoint https://example.test/hook failed 5 times.\n"
    assert captured.html is None


# -- node receiver (the seed's Express example) --------------------------------------

SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLXRoZS1ub2RlLXJlY2VpdmVy"
EVENT: dict[str, Any] = {
    "id": "evt_123456789",
    "type": "issue.created",
    "created_at": "2025-01-15T10:30:00Z",
    "workspace_id": "ws_abc123",
    "data": {"id": "issue_xyz789", "title": "Neue Funktion — “quoted”", "priority": "medium"},
}


def compact(payload: dict[str, Any]) -> bytes:
    """The body as JavaScript's ``JSON.stringify`` writes it, which the seed's check hashes."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(url: str, body: bytes, signature: str) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "X-Cliq-Signature": signature}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_node_receiver_accepts_signed_and_rejects_wrong(
    node_receiver_factory: NodeReceiverFactory,
) -> None:
    node = await node_receiver_factory(SECRET)
    body = compact(EVENT)
    good = sign(SECRET, body)
    wrong = sign("whsec_another", body)
    assert await post(node.url, body, good) == (200, "OK")
    assert await post(node.url, body, wrong) == (401, "Invalid signature")
    # Wrong length: the guard answers 401 where timingSafeEqual alone would throw.
    assert await post(node.url, body, good[:10]) == (401, "Invalid signature")
    recorded = await node.wait_for(3, timeout=5)
    assert [(r["valid"], r["event_id"], r["type"]) for r in recorded] == [
        (True, "evt_123456789", "issue.created"),
        (False, "evt_123456789", "issue.created"),
        (False, "evt_123456789", "issue.created"),
    ]
    assert [r["signature"] for r in recorded] == [good, wrong, good[:10]]


async def test_node_receiver_hashes_the_reserialised_body(
    node_receiver_factory: NodeReceiverFactory,
) -> None:
    """The seed hashes ``JSON.stringify(req.body)``: a body with other whitespace fails
    even when the signature is the HMAC of the exact bytes sent."""
    node = await node_receiver_factory(SECRET)
    spaced = json.dumps(EVENT).encode()
    assert spaced != compact(EVENT)
    assert await post(node.url, spaced, sign(SECRET, spaced)) == (401, "Invalid signature")
