"""Poll endpoints (kind ``poll``): deliveries wait in the endpoint's feed, are fetched in
order with the exact body and the signature headers of a POST, acknowledged up to a
cursor (then recorded as delivered, in Redis's log or PostgreSQL's), fetched again while
unacknowledged; the feed is bounded (POLL_MAX_PER_ENDPOINT) and its backlog a gauge.

Everything runs for real: the API on 127.0.0.1, a private Redis, PostgreSQL for the
database log, an in-process worker where its log writer or its gauges are needed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_api import ApiFactory, Client, problem
from test_api_manage import apis_on_store, producer_on_store

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.polling import PollMessage
from producer.signing import verify_cliq, verify_standard

from harness.polling import wait_until
from support import LOG_STORES, start_worker, worker_env


@pytest.fixture
async def api_factory(redis_url: str, log_env: dict[str, str]) -> AsyncIterator[ApiFactory]:
    """The API on the delivery log's store of ``log_env``."""
    async with apis_on_store(redis_url, log_env) as factory:
        yield factory


@pytest.fixture
async def api(api_factory: ApiFactory) -> Client:
    return await api_factory()


@pytest.fixture
async def producer(redis_url: str, log_env: dict[str, str]) -> AsyncIterator[Producer]:
    async with producer_on_store(redis_url, log_env) as p:
        yield p


async def ok(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    text = await response.text()
    assert response.status == status, text
    return json.loads(text)


async def poll_endpoint(api: Client, **fields: Any) -> dict[str, Any]:
    body = {"workspace_id": "ws_poll", "kind": "poll", "events": ["issue.*"], **fields}
    created: dict[str, Any] = await ok(await api.post("/v1/endpoints", json=body), 201)
    return created


async def publish(api: Client, *ids: str) -> None:
    events = [
        {"id": i, "type": "issue.created", "workspace_id": "ws_poll", "data": {"n": i}} for i in ids
    ]
    await ok(await api.post("/v1/events", json=events), 202)


async def fetch(api: Client, endpoint_id: str, **params: Any) -> dict[str, Any]:
    query = {k: str(v) for k, v in params.items()}
    body: dict[str, Any] = await ok(
        await api.get(f"/v1/endpoints/{endpoint_id}/messages", params=query)
    )
    return body


async def ack(api: Client, endpoint_id: str, until: int) -> dict[str, Any]:
    body: dict[str, Any] = await ok(
        await api.post(f"/v1/endpoints/{endpoint_id}/messages/ack", json={"until": until})
    )
    return body


# ---------------------------------------------------------------- the endpoint


async def test_a_poll_endpoint_takes_no_url_and_no_owner(api: Client) -> None:
    created = await poll_endpoint(api)
    assert created["kind"] == "poll"
    assert created["url"] == ""
    assert created["owner_email"] == ""
    assert created["secret"].startswith("whsec_")
    shown = await ok(await api.get(f"/v1/endpoints/{created['id']}"))
    assert shown["kind"] == "poll"

    refused = await problem(
        await api.post(
            "/v1/endpoints",
            json={
                "workspace_id": "ws_poll",
                "kind": "poll",
                "events": ["*"],
                "url": "https://hooks.example.com/x",
            },
        ),
        422,
        "invalid-fields",
    )
    assert refused["errors"][0]["field"] == "url"
    assert "poll endpoint" in refused["errors"][0]["message"]
    bad_kind = await problem(
        await api.post(
            "/v1/endpoints", json={"workspace_id": "ws_poll", "kind": "pull", "events": ["*"]}
        ),
        422,
        "invalid-fields",
    )
    assert "kind" in {e["field"] for e in bad_kind["errors"]}
    patch = await api.patch(
        f"/v1/endpoints/{created['id']}", json={"url": "https://hooks.example.com/x"}
    )
    assert (await problem(patch, 422, "invalid-fields"))["errors"][0]["field"] == "url"
    # An http endpoint still needs its URL and owner, and is the default kind.
    missing = await problem(
        await api.post("/v1/endpoints", json={"workspace_id": "ws_poll", "events": ["*"]}),
        422,
        "invalid-fields",
    )
    assert {e["field"] for e in missing["errors"]} == {"url", "owner_email"}


async def test_http_endpoints_have_no_messages_and_poll_endpoints_no_test_send(
    api: Client,
) -> None:
    http = await ok(
        await api.post(
            "/v1/endpoints",
            json={
                "workspace_id": "ws_poll",
                "url": "https://hooks.example.com/x",
                "events": ["*"],
                "owner_email": "o@example.com",
            },
        ),
        201,
    )
    assert http["kind"] == "http"
    await problem(await api.get(f"/v1/endpoints/{http['id']}/messages"), 409, "not-a-poll-endpoint")
    polled = await poll_endpoint(api)
    refused = await problem(
        await api.post(f"/v1/endpoints/{polled['id']}/test", json={"type": "issue.created"}),
        409,
        "poll-endpoint",
    )
    assert "no URL" in refused["detail"]
    for params, field in (({"limit": "0"}, "limit"), ({"wait_s": "31"}, "wait_s")):
        bad = await api.get(f"/v1/endpoints/{polled['id']}/messages", params=params)
        assert (await problem(bad, 422, "invalid-fields"))["errors"][0]["field"] == field
    bad_ack = await api.post(f"/v1/endpoints/{polled['id']}/messages/ack", json={"until": "x"})
    assert (await problem(bad_ack, 422, "invalid-fields"))["errors"][0]["field"] == "until"


# ---------------------------------------------------------------- fetching, acknowledging


@pytest.mark.parametrize("log_env", LOG_STORES, indirect=True)
async def test_messages_come_in_order_signed_and_count_once_acknowledged(
    api: Client, producer: Producer, redis_url: str, log_env: dict[str, str], tmp_path: Path
) -> None:
    endpoint = await poll_endpoint(api)
    endpoint_id, secret = endpoint["id"], endpoint["secret"]
    worker = await start_worker(
        worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path / "outbox"), **log_env)
    )
    try:
        await _fetch_and_acknowledge(api, producer, endpoint_id, secret)
    finally:
        await worker.stop()


async def _fetch_and_acknowledge(
    api: Client, producer: Producer, endpoint_id: str, secret: str
) -> None:
    await publish(api, "evt_p1", "evt_p2")
    await publish(api, "evt_p3")
    first = await fetch(api, endpoint_id)
    messages = [PollMessage.from_dict(m) for m in first["data"]]
    assert [m.event_id for m in messages] == ["evt_p1", "evt_p2", "evt_p3"]
    assert [m.cursor for m in messages] == sorted(m.cursor for m in messages)
    assert first["backlog"] == 3
    assert first["cursor"] == messages[-1].cursor
    for message in messages:
        body = message.body.encode()
        stored = await producer.redis.hget(producer.keys.event(message.event_id), "b")
        assert message.body == stored  # the exact body
        verify_standard(secret, message.headers, body, now_s=time.time())
        verify_cliq(secret, body, message.headers["X-Cliq-Signature"])
        assert message.headers["X-Cliq-Event"] == "issue.created"
        assert message.headers["X-Cliq-Attempt"] == "1"
        assert message.headers["webhook-id"] == message.event_id

    # Unacknowledged: fetched again from the start; after a cursor, only what follows.
    again = await fetch(api, endpoint_id)
    assert [m["event_id"] for m in again["data"]] == ["evt_p1", "evt_p2", "evt_p3"]
    after = await fetch(api, endpoint_id, after=messages[0].cursor, limit=1)
    assert [m["event_id"] for m in after["data"]] == ["evt_p2"]

    assert (await ack(api, endpoint_id, messages[1].cursor)) == {"acknowledged": 2, "backlog": 1}
    assert (await ack(api, endpoint_id, messages[1].cursor))["acknowledged"] == 0
    rest = await fetch(api, endpoint_id)
    assert [m["event_id"] for m in rest["data"]] == ["evt_p3"]

    # With PostgreSQL, the worker's log writer takes the acknowledged there.
    async def logged() -> bool:
        return int(await producer.redis.xlen(producer.keys.log_outbox)) == 0

    await wait_until(logged, 15, message="the log writer did not write the acks")
    for event_id, state in (
        ("evt_p1", DeliveryState.DELIVERED),
        ("evt_p2", DeliveryState.DELIVERED),
        ("evt_p3", DeliveryState.QUEUED),
    ):
        (delivery,) = await producer.deliveries.for_event(event_id)
        assert delivery.state == state, event_id
        if state == DeliveryState.DELIVERED:
            (attempt,) = delivery.attempts
            assert attempt.outcome.value == "delivered"
            assert attempt.number == 1
    stats = await producer.redis.hgetall(producer.keys.stats)
    assert stats["delivered"] == "2"
    assert stats["queued"] == "1"
    assert stats["polling"] == "1"


async def test_a_long_poll_answers_when_the_first_message_arrives(api: Client) -> None:
    endpoint_id = (await poll_endpoint(api))["id"]
    started = time.monotonic()
    empty = await fetch(api, endpoint_id, wait_s=0.2)
    assert empty["data"] == []
    assert empty["cursor"] == 0
    assert time.monotonic() - started >= 0.2
    waiting = asyncio.create_task(fetch(api, endpoint_id, wait_s=10))
    await wait_until(lambda: not waiting.done(), 1)
    await publish(api, "evt_late")
    got = await asyncio.wait_for(waiting, 5)
    assert [m["event_id"] for m in got["data"]] == ["evt_late"]
    assert time.monotonic() - started < 5


# ---------------------------------------------------------------- bounds, replay, deletion


async def test_a_full_feed_pushes_out_its_oldest_as_dead_and_replay_returns_them(
    api_factory: ApiFactory, producer: Producer, redis_url: str, tmp_path: Path
) -> None:
    api = await api_factory(POLL_MAX_PER_ENDPOINT="2")
    endpoint_id = (await poll_endpoint(api))["id"]
    # A worker runs throughout: it never takes a poll endpoint's deliveries, and its
    # gauges show the feeds.
    worker = await start_worker(worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path / "outbox")))
    try:
        await publish(api, "evt_b1")
        await publish(api, "evt_b2", "evt_b3")
        listed = await fetch(api, endpoint_id)
        assert [m["event_id"] for m in listed["data"]] == ["evt_b2", "evt_b3"]
        (dropped,) = await producer.deliveries.for_event("evt_b1")
        assert dropped.state == DeliveryState.DEAD
        assert "POLL_MAX_PER_ENDPOINT" in (dropped.attempts[0].error or "")
        stats = await producer.redis.hgetall(producer.keys.stats)
        assert (stats["poll_dropped"], stats["polling"], stats["dead"]) == ("1", "2", "1")
        gauges = worker.metrics

        def shown() -> bool:
            backlog, dropped = gauges.poll_backlog._value.get(), gauges.poll_dropped._value.get()
            return bool(backlog == 2 and dropped == 1)

        await wait_until(shown, 10, message="the poll gauges did not show the feed")

        # A replay puts it back at the end of its feed (a full one: the oldest leaves).
        replayed = await ok(await api.post(f"/v1/deliveries/{dropped.id}/replay"))
        assert replayed["replayed"] == [dropped.id]
        again = await fetch(api, endpoint_id)
        assert [m["event_id"] for m in again["data"]] == ["evt_b3", "evt_b1"]
        assert again["data"][1]["attempt"] == 2
        for event_id in ("evt_b3", "evt_b1"):
            (waiting,) = await producer.deliveries.for_event(event_id)
            assert waiting.state == DeliveryState.QUEUED  # not sent by the worker
    finally:
        await worker.stop()


async def test_deleting_a_poll_endpoint_ends_its_feed_as_dead(
    api: Client, producer: Producer
) -> None:
    endpoint_id = (await poll_endpoint(api))["id"]
    await publish(api, "evt_d1", "evt_d2")
    response = await api.delete(f"/v1/endpoints/{endpoint_id}")
    assert response.status == 204
    for event_id in ("evt_d1", "evt_d2"):
        (delivery,) = await producer.deliveries.for_event(event_id)
        assert delivery.state == DeliveryState.DEAD
        assert delivery.attempts[-1].error == "endpoint deleted"
    assert not await producer.redis.exists(producer.keys.endpoint_feed(endpoint_id))
    stats = await producer.redis.hgetall(producer.keys.stats)
    assert stats["polling"] == "0"
    assert stats["queued"] == "0"


async def test_a_paused_poll_endpoint_resumes_into_its_feed_in_order(
    api: Client, producer: Producer
) -> None:
    from worker.resume import Resumer

    endpoint_id = (await poll_endpoint(api))["id"]
    await publish(api, "evt_p1")
    await ok(await api.post(f"/v1/endpoints/{endpoint_id}/disable"))
    await publish(api, "evt_p2", "evt_p3")
    assert await producer.pausing.paused(endpoint_id) == 2
    assert [m["event_id"] for m in (await fetch(api, endpoint_id))["data"]] == ["evt_p1"]

    await ok(await api.post(f"/v1/endpoints/{endpoint_id}/enable"))
    assert await Resumer(producer.redis, producer.keys).run_once() == 2
    listed = await fetch(api, endpoint_id)
    assert [m["event_id"] for m in listed["data"]] == ["evt_p1", "evt_p2", "evt_p3"]
    assert not await producer.redis.llen(producer.keys.ready)  # none went to a worker
    stats = await producer.redis.hgetall(producer.keys.stats)
    assert (stats["polling"], stats.get("paused", "0")) == ("3", "0")


async def test_a_poll_endpoint_cannot_be_fifo(api: Client) -> None:
    body = {"workspace_id": "ws_poll", "kind": "poll", "events": ["*"], "ordering": "fifo"}
    response = await api.post("/v1/endpoints", json=body)
    assert response.status == 422, await response.text()
    assert "ordering" in await response.text()
