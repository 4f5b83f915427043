"""The management API (``producer.http``: endpoints, deliveries, testsends, catalogue) on
127.0.0.1 against the private Redis.

Delivery-log and replay tests run a real in-process worker and a real receiver; test
sends are answered by a small stand-in for the worker side of the contract.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from test_api import ApiFactory, Client, problem

from producer import scans
from producer.context import Producer
from producer.deliveries import RECENT_WINDOW, Delivery, DeliveryState
from producer.endpoint import EndpointStatus
from producer.endpoint_rules import MAX_DESCRIPTION_LENGTH
from producer.events import BUILTIN_EVENT_TYPES, example_data, iso_time, parse_event
from producer.http import catalogue, deliveries, endpoints_spec, testsends
from producer.http.app import create_app
from producer.http.bodies import MAX_JSON_BODY_BYTES
from producer.http.endpoints import MAX_ROTATION_GRACE_S
from producer.http.state import ApiSettings
from producer.keys import Keys
from producer.settings import ProducerSettings
from producer.store import postgres
from producer.testsends import DEFAULT_TEST_EVENT_TYPE, TEST_RESULT_TTL_S

from harness import Receiver, ScriptedResponse
from harness.polling import wait_until
from harness.redis_server import free_port
from support import (
    HEADER_REFUSALS,
    TIMEOUT_REFUSAL,
    RunningWorker,
    start_worker,
    worker_env,
)

KEY = "manage-key-0123456789abcdef"
JSON = {"Content-Type": "application/json"}


@asynccontextmanager
async def apis_on_store(redis_url: str, log_env: dict[str, str]) -> AsyncIterator[ApiFactory]:
    """Starts APIs like test_api's, but whose test sends wait DELIVERY_TIMEOUT only (no
    5 s margin), on the delivery log's store of ``log_env``; stops them after."""
    clients: list[Client] = []

    async def factory(**env: str) -> Client:
        # Receivers run on 127.0.0.1 (the policy's own tests turn it on).
        base = {"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1", **log_env}
        settings = ApiSettings.from_env({**base, **env})
        app = create_app(replace(settings, test_send_margin_s=0.0))
        client: Client = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return client

    try:
        yield factory
    finally:
        for client in clients:
            await client.close()


@asynccontextmanager
async def producer_on_store(redis_url: str, log_env: dict[str, str]) -> AsyncIterator[Producer]:
    """A producer on the private Redis, reading the delivery log from ``log_env``'s store."""
    env = {"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1", **log_env}
    async with Producer(ProducerSettings.from_env(env)) as p:
        await p.open_log_store()
        yield p


@pytest.fixture
async def api_factory(redis_url: str, log_env: dict[str, str]) -> AsyncIterator[ApiFactory]:
    async with apis_on_store(redis_url, log_env) as factory:
        yield factory


@pytest.fixture
async def producer(redis_url: str, log_env: dict[str, str]) -> AsyncIterator[Producer]:
    async with producer_on_store(redis_url, log_env) as p:
        yield p


@pytest.fixture
def closed_redis_url() -> str:
    """A Redis URL on a free loopback port that nothing listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
async def api(api_factory: ApiFactory) -> Client:
    """The API without authentication; a test send waits 2 s for a worker."""
    return await api_factory(DELIVERY_TIMEOUT="2")


async def create(api: Client, **fields: Any) -> dict[str, Any]:
    """Create an endpoint through the API; returns the 201 body."""
    body = {
        "workspace_id": "ws_1",
        "url": "https://hooks.example.com/cliq",
        "events": ["*"],
        "owner_email": "owner@example.com",
        **fields,
    }
    response = await api.post("/v1/endpoints", json=body)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


def event(**fields: Any) -> dict[str, Any]:
    """An event to publish through the API (workspace ``ws_1``)."""
    return {"type": "issue.created", "workspace_id": "ws_1", "data": {"n": 1}, **fields}


async def ok(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    """The JSON body of a response that must have ``status``."""
    text = await response.text()
    assert response.status == status, text
    return json.loads(text)


async def all_pages(api: Client, path: str, **params: str) -> list[list[dict[str, Any]]]:
    """Every page of a listing, following ``next_cursor`` to the end."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = await ok(await api.get(path, params=query))
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


def flat(pages: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [item for items in pages for item in items]


# ---------------------------------------------------------------- endpoints


async def test_create_shows_the_secret_once_and_get_masks_it(
    api: Client, producer: Producer
) -> None:
    response = await api.post(
        "/v1/endpoints",
        json={
            "workspace_id": "ws_1",
            "url": "https://hooks.example.com/a",
            "events": ["issue.*", "comment.created"],
            "owner_email": "owner@example.com",
            "description": "ops hook",
            "max_in_flight": 3,
            "rate_limit": 2.5,
        },
    )
    created = await ok(response, 201)
    assert created["secret"].startswith("whsec_")
    assert response.headers["Location"] == f"/v1/endpoints/{created['id']}"
    stored = await producer.endpoints.get(created["id"])
    assert stored.secret == created["secret"]
    assert (stored.events, stored.max_in_flight, stored.rate_limit) == (
        ("issue.*", "comment.created"),
        3,
        2.5,
    )

    shown = await ok(await api.get(f"/v1/endpoints/{created['id']}"))
    assert shown["secret"] != created["secret"]
    assert shown["secret"].endswith("…")
    detail = ("secret", "recent", "dead_total", "paused", "drop")
    assert {k: v for k, v in shown.items() if k not in detail} == {
        k: v for k, v in created.items() if k != "secret"
    }
    assert shown["status"] == "active"
    assert shown["dead_total"] == 0
    assert shown["recent"] == {
        "window": RECENT_WINDOW,
        "deliveries": 0,
        "delivered": 0,
        "dead": 0,
        "pending": 0,
        "paused": 0,
        "last_attempt_at": None,
        "last_delivered_at": None,
        "last_error": None,
    }


async def test_create_names_every_missing_or_mistyped_field(api: Client) -> None:
    body = await problem(await api.post("/v1/endpoints", json={}), 422, "invalid-fields")
    assert {e["field"] for e in body["errors"]} == {"workspace_id", "url", "events", "owner_email"}

    body = await problem(
        await api.post(
            "/v1/endpoints",
            json={
                "workspace_id": "ws_1",
                "url": 5,
                "events": "issue.created",
                "owner_email": "o@example.com",
                "max_in_flight": True,
                "rate_limit": "fast",
                "description": "x" * (MAX_DESCRIPTION_LENGTH + 1),
            },
        ),
        422,
        "invalid-fields",
    )
    assert [e["field"] for e in body["errors"]] == [
        "url",
        "events",
        "max_in_flight",
        "rate_limit",
        "description",
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"events": ["issue.exploded"]}, "events"),
        ({"events": []}, "events"),
        ({"owner_email": "nobody"}, "owner_email"),
        ({"workspace_id": "has space"}, "workspace_id"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_create_refuses_invalid_values_naming_the_field(
    api: Client, redis: aioredis.Redis, fields: dict[str, Any], field: str
) -> None:
    body = {
        "workspace_id": "ws_1",
        "url": "https://hooks.example.com/cliq",
        "events": ["*"],
        "owner_email": "owner@example.com",
        **fields,
    }
    problem_body = await problem(await api.post("/v1/endpoints", json=body), 422, "invalid-fields")
    assert problem_body["errors"][0]["field"] == field
    assert problem_body["errors"][0]["message"]
    assert await redis.dbsize() == 0


async def test_bodies_that_are_not_acceptable_json_objects(api: Client) -> None:
    await problem(
        await api.post("/v1/endpoints", data=b'{"url": ', headers=JSON), 400, "invalid-json"
    )
    await problem(
        await api.post("/v1/endpoints", data=b"{}", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported-media-type",
    )
    await problem(await api.post("/v1/endpoints", data=b"{}"), 415, "unsupported-media-type")
    too_large = b'{"description": "' + b"x" * MAX_JSON_BODY_BYTES + b'"}'
    body = await problem(
        await api.post("/v1/endpoints", data=too_large, headers=JSON), 413, "payload-too-large"
    )
    assert str(MAX_JSON_BODY_BYTES) in body["detail"]
    body = await problem(await api.post("/v1/endpoints", json=[1]), 422, "invalid-fields")
    assert body["errors"] == [{"field": "body", "message": "must be a JSON object"}]
    # Valid JSON, but not text UTF-8 can carry: refused before it reaches Redis.
    body = await problem(
        await api.post(
            "/v1/endpoints", data=b'{"description": "\\ud800", "url": "x"}', headers=JSON
        ),
        422,
        "invalid-fields",
    )
    assert body["errors"][0]["field"] == "description"


async def test_patch_changes_only_the_given_fields(api: Client, producer: Producer) -> None:
    created = await create(api, description="before")
    path = f"/v1/endpoints/{created['id']}"

    changed = await ok(
        await api.patch(
            path,
            json={
                "url": "https://hooks.example.com/new",
                "events": ["member.*"],
                "owner_email": "new@example.com",
                "max_in_flight": 7,
                "rate_limit": 0,
            },
        )
    )
    assert changed["url"] == "https://hooks.example.com/new"
    assert changed["events"] == ["member.*"]
    assert changed["description"] == "before"
    assert (changed["max_in_flight"], changed["rate_limit"]) == (7, 0.0)
    assert changed["secret"] != created["secret"]  # masked
    stored = await producer.endpoints.get(created["id"])
    assert stored.owner_email == "new@example.com"
    assert stored.secret == created["secret"]

    unchanged = await ok(await api.patch(path, json={}))
    assert unchanged == changed

    body = await problem(
        await api.patch(path, json={"workspace_id": "ws_2"}), 422, "invalid-fields"
    )
    assert body["errors"][0]["field"] == "workspace_id"
    body = await problem(await api.patch(path, json={"events": ["nope.*"]}), 422, "invalid-fields")
    assert body["errors"][0]["field"] == "events"
    await problem(await api.patch("/v1/endpoints/ep_missing", json={}), 404, "not-found")


async def test_disable_pauses_fan_out_and_enable_resumes_it(
    api: Client, producer: Producer
) -> None:
    created = await create(api)
    path = f"/v1/endpoints/{created['id']}"

    disabled = await ok(await api.post(f"{path}/disable"))
    assert (disabled["status"], disabled["paused"], disabled["drop"]) == ("disabled", 0, False)
    published = await ok(await api.post("/v1/events", json=event()), 202)
    assert published["deliveries"] == 1  # kept, paused: nothing is lost
    shown = await ok(await api.get(path))
    assert (shown["paused"], shown["drop"], shown["recent"]["paused"]) == (1, False, 1)
    (delivery,) = (await ok(await api.get(f"/v1/events/{published['id']}")))["deliveries"]
    assert delivery["state"] == "paused"
    dropped = await ok(await api.post(f"{path}/disable", json={"drop": True}))
    assert (dropped["paused"], dropped["drop"]) == (0, True)
    assert (await ok(await api.get(path)))["drop"] is True
    body = await problem(
        await api.post(f"{path}/disable", json={"drop": "yes"}), 422, "invalid-fields"
    )
    assert body["errors"][0]["field"] == "drop"
    body = await problem(
        await api.post(f"{path}/disable", json={"dorp": True}), 422, "invalid-fields"
    )
    assert body["errors"][0]["field"] == "dorp"

    await producer.endpoints.set_status(created["id"], EndpointStatus.FAILING)
    assert (await ok(await api.post(f"{path}/enable")))["status"] == "active"
    assert not await producer.redis.sismember(producer.keys.failing, created["id"])
    published = await ok(await api.post("/v1/events", json=event()), 202)
    assert published["deliveries"] == 1

    for action in ("enable", "disable"):
        await problem(await api.post(f"/v1/endpoints/ep_missing/{action}"), 404, "not-found")


async def test_delete_removes_the_endpoint(api: Client, producer: Producer) -> None:
    created = await create(api)
    path = f"/v1/endpoints/{created['id']}"

    response = await api.delete(path)
    assert response.status == 204
    assert await response.read() == b""
    await problem(await api.get(path), 404, "not-found")
    await problem(await api.delete(path), 404, "not-found")
    assert await producer.endpoints.all() == []


async def test_rotate_secret_reveals_the_new_one_and_keeps_the_old_signing(
    api: Client, producer: Producer
) -> None:
    created = await create(api)
    path = f"/v1/endpoints/{created['id']}/rotate-secret"

    before = int(time.time() * 1000)
    rotated = await ok(await api.post(path, json={"grace_s": 60}))
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    assert before + 60_000 <= rotated["previous_secret_until_ms"] <= time.time() * 1000 + 60_000
    stored = await producer.endpoints.get(created["id"])
    now_ms = int(time.time() * 1000)
    assert stored.signing_secrets(now_ms) == (rotated["secret"], created["secret"])

    # No body: the default grace period of a day.
    again = await ok(await api.post(path))
    assert again["previous_secret_until_ms"] >= now_ms + 24 * 3600 * 1000 - 5000

    for grace in (-1, 1.5, "60", MAX_ROTATION_GRACE_S + 1):
        body = await problem(await api.post(path, json={"grace_s": grace}), 422, "invalid-fields")
        assert body["errors"][0]["field"] == "grace_s"
    await problem(await api.post(path, json={"grace": 1}), 422, "invalid-fields")
    await problem(await api.post(path, data=b"60", headers=JSON), 422, "invalid-fields")
    await problem(await api.post("/v1/endpoints/ep_missing/rotate-secret"), 404, "not-found")


async def test_unknown_and_impossible_ids_are_404(api: Client) -> None:
    for path in (
        "/v1/endpoints/ep_missing",
        "/v1/endpoints/bad%20id",
        "/v1/endpoints/ep_missing/attempts",
        "/v1/events/evt_missing/attempts",
        "/v1/events/bad%20id/attempts",
    ):
        body = await problem(await api.get(path), 404, "not-found")
        assert "No " in body["detail"]
    await problem(await api.post("/v1/deliveries/dlv_missing/replay"), 404, "not-found")
    await problem(
        await api.post("/v1/endpoints/ep_missing/replay", json={"since": "2025-01-01T00:00:00Z"}),
        404,
        "not-found",
    )


# ---------------------------------------------------------------- listing endpoints


async def test_list_paginates_in_creation_order_with_filters(api: Client) -> None:
    made = [await create(api, workspace_id="ws_a" if n % 2 else "ws_b") for n in range(5)]
    # Creation order; endpoints created in the same millisecond come by id.
    ordered = sorted(made, key=lambda e: (e["created_ms"], e["id"]))
    ids = [e["id"] for e in ordered]
    ws_a = [e["id"] for e in ordered if e["workspace_id"] == "ws_a"]
    ws_b = [e["id"] for e in ordered if e["workspace_id"] == "ws_b"]
    await api.post(f"/v1/endpoints/{ws_b[1]}/disable")

    pages = await all_pages(api, "/v1/endpoints", limit="2")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e["id"] for e in flat(pages)] == ids
    assert all(e["secret"].endswith("…") for e in flat(pages))

    pages = await all_pages(api, "/v1/endpoints", workspace_id="ws_a", limit="1")
    assert [e["id"] for e in flat(pages)] == ws_a
    assert [len(p) for p in pages] == [1, 1]

    disabled = await ok(await api.get("/v1/endpoints", params={"status": "disabled"}))
    assert [e["id"] for e in disabled["items"]] == [ws_b[1]]
    assert disabled["next_cursor"] is None
    active_b = await ok(
        await api.get("/v1/endpoints", params={"status": "active", "workspace_id": "ws_b"})
    )
    assert [e["id"] for e in active_b["items"]] == [ws_b[0], ws_b[2]]

    everything = await ok(await api.get("/v1/endpoints"))
    assert len(everything["items"]) == 5  # default limit 50
    assert everything["next_cursor"] is None


async def test_endpoints_created_in_the_same_millisecond_are_each_listed_once(
    api: Client, producer: Producer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [(await create(api))["id"] for _ in range(5)]
    # Same creation time for all: only the member order tells them apart.
    await producer.redis.zadd(producer.keys.endpoints, dict.fromkeys(ids, 1000))
    monkeypatch.setattr(scans, "SCAN_CHUNK", 2)

    pages = await all_pages(api, "/v1/endpoints", limit="2")
    assert [e["id"] for e in flat(pages)] == sorted(ids)


async def test_a_sparse_filter_ends_pages_early_with_a_cursor(
    api: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = [await create(api) for _ in range(5)]
    last = max(made, key=lambda e: (e["created_ms"], e["id"]))["id"]
    await api.post(f"/v1/endpoints/{last}/disable")
    monkeypatch.setattr(scans, "SCAN_BUDGET", 2)

    pages = await all_pages(api, "/v1/endpoints", status="disabled")
    assert pages[0] == []  # two examined, none matched: a cursor, not the end
    assert [e["id"] for e in flat(pages)] == [last]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"status": "paused"}, "status"),
        ({"workspace_id": "a b"}, "workspace_id"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WyJlbmRwb2ludHMiLCAxXQ"}, "cursor"),  # ["endpoints", 1]: a forgery
    ],
)
async def test_bad_list_parameters_are_422(api: Client, params: dict[str, str], field: str) -> None:
    body = await problem(await api.get("/v1/endpoints", params=params), 422, "invalid-fields")
    assert body["errors"][0]["field"] == field


async def test_a_cursor_of_another_listing_is_refused(api: Client) -> None:
    for _ in range(2):
        await create(api)
    first = await ok(await api.get("/v1/endpoints", params={"limit": "1"}))
    assert first["next_cursor"]
    created = await create(api)
    body = await problem(
        await api.get(
            f"/v1/endpoints/{created['id']}/attempts", params={"cursor": first["next_cursor"]}
        ),
        422,
        "invalid-fields",
    )
    assert body["errors"][0]["field"] == "cursor"


# ---------------------------------------------------------------- delivery log and replay


@dataclass
class FailedThenDelivered:
    """Events a and b died (500 twice each) at one endpoint; c was delivered after."""

    endpoint_id: str
    started: str
    a: Delivery
    b: Delivery
    c: Delivery
    receiver: Receiver


@pytest.fixture
async def failed_then_delivered(
    api: Client,
    producer: Producer,
    receiver: Receiver,
    redis_url: str,
    tmp_path: Path,
    log_env: dict[str, str],
) -> AsyncIterator[FailedThenDelivered]:
    """A real worker delivering with two attempts a delivery ("0,0.1")."""
    started = iso_now()
    endpoint_id = (await create(api, url=receiver.url()))["id"]
    receiver.respond(500, "boom", times=4)
    worker: RunningWorker = await start_worker(
        worker_env(
            redis_url,
            RETRY_SCHEDULE="0,0.1",
            NOTIFY_OUTBOX=str(tmp_path / "outbox"),
            **log_env,
        )
    )
    try:
        await ok(await api.post("/v1/events", json=[event(id="evt_a"), event(id="evt_b")]), 202)
        await wait_for_states(producer, ["evt_a", "evt_b"], DeliveryState.DEAD)
        await ok(await api.post("/v1/events", json=event(id="evt_c")), 202)
        await wait_for_states(producer, ["evt_c"], DeliveryState.DELIVERED)

        async def all_logged() -> bool:  # with PostgreSQL, once the log writer wrote them all
            return int(await producer.redis.xlen(producer.keys.log_outbox)) == 0

        await wait_until(all_logged, 20, message="the log writer did not write every attempt")
        a, b, c = [(await producer.deliveries.for_event(e))[0] for e in ("evt_a", "evt_b", "evt_c")]
        yield FailedThenDelivered(endpoint_id, started, a, b, c, receiver)
    finally:
        await worker.stop()


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))


async def wait_for_states(producer: Producer, event_ids: list[str], state: DeliveryState) -> None:
    async def reached() -> bool:
        for event_id in event_ids:
            deliveries = await producer.deliveries.for_event(event_id)
            if not deliveries or any(d.state != state for d in deliveries):
                return False
        return True

    await wait_until(reached, 20, message=f"{event_ids} did not become {state}")


def log_order(*deliveries: Delivery) -> list[tuple[str, int]]:
    """The documented order: newest delivery first (creation, then id), attempts newest first."""
    ordered = sorted(deliveries, key=lambda d: (d.created_ms, d.id), reverse=True)
    return [(d.id, a.number) for d in ordered for a in sorted(d.attempts, key=lambda a: -a.number)]


@pytest.mark.both_stores
async def test_why_is_my_webhook_not_receiving_the_endpoint_summary(
    api: Client, failed_then_delivered: FailedThenDelivered
) -> None:
    run = failed_then_delivered
    shown = await ok(await api.get(f"/v1/endpoints/{run.endpoint_id}"))

    assert shown["status"] == "active"  # failing after a and b died, recovered by c
    assert shown["dead_total"] == 2
    recent = shown["recent"]
    assert (recent["deliveries"], recent["delivered"], recent["dead"], recent["pending"]) == (
        3,
        1,
        2,
        0,
    )
    (c_attempt,) = run.c.attempts
    assert recent["last_attempt_at"] == recent["last_delivered_at"] == iso_time(c_attempt.at_ms)
    error = recent["last_error"]
    assert (error["status"], error["response"], error["outcome"]) == (500, "boom", "dead")
    assert error["delivery_id"] in (run.a.id, run.b.id)
    assert error["event_id"] in ("evt_a", "evt_b")
    assert error["endpoint_id"] == run.endpoint_id


@pytest.mark.both_stores
async def test_endpoint_attempts_newest_first_filtered_and_paginated(
    api: Client,
    failed_then_delivered: FailedThenDelivered,
    monkeypatch: pytest.MonkeyPatch,
    log_env: dict[str, str],
) -> None:
    run = failed_then_delivered
    path = f"/v1/endpoints/{run.endpoint_id}/attempts"
    expected = log_order(run.a, run.b, run.c)
    assert expected[0] == (run.c.id, 1)

    everything = await ok(await api.get(path))
    assert [(i["delivery_id"], i["number"]) for i in everything["items"]] == expected
    assert everything["next_cursor"] is None
    first = everything["items"][0]
    (c_attempt,) = run.c.attempts
    assert first == {
        "delivery_id": run.c.id,
        "event_id": "evt_c",
        "endpoint_id": run.endpoint_id,
        "at": iso_time(c_attempt.at_ms),
        **c_attempt.to_dict(),
    }
    assert first["status"] == 200
    assert first["latency_ms"] > 0

    pages = await all_pages(api, path, limit="2")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert flat(pages) == everything["items"]

    def outcomes(items: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
        return [(i["delivery_id"], i["number"], i["outcome"]) for i in items]

    dead = flat(await all_pages(api, path, outcome="dead"))
    assert outcomes(dead) == [(d, 2, "dead") for d, n in expected if n == 2]
    retry = flat(await all_pages(api, path, outcome="retry"))
    assert outcomes(retry) == [(d, 1, "retry") for d, n in expected if n == 1 and d != run.c.id]
    delivered = flat(await all_pages(api, path, outcome="delivered"))
    assert outcomes(delivered) == [(run.c.id, 1, "delivered")]

    since_c = flat(await all_pages(api, path, since=iso_time(c_attempt.at_ms)))
    assert [i["delivery_id"] for i in since_c] == [run.c.id]
    until_before_c = flat(await all_pages(api, path, until=iso_time(c_attempt.at_ms - 1)))
    assert len(until_before_c) == 4
    assert run.c.id not in {i["delivery_id"] for i in until_before_c}
    assert flat(await all_pages(api, path, since="2999-01-01T00:00:00+01:00")) == []

    # A budget of one delivery per page: pages end early but nothing is lost.
    monkeypatch.setattr(scans, "SCAN_BUDGET", 1)
    monkeypatch.setattr(postgres, "SCAN_BUDGET", 1)  # the same budget for either store
    sparse = await all_pages(api, path, outcome="dead")
    if "DATABASE_URL" not in log_env:  # PostgreSQL reads an index by outcome: c is not examined
        assert sparse[0] == []  # c was examined: no dead attempt
    assert flat(sparse) == dead


@pytest.mark.both_stores
async def test_event_attempts_newest_first(
    api: Client, failed_then_delivered: FailedThenDelivered
) -> None:
    run = failed_then_delivered
    body = await ok(await api.get("/v1/events/evt_a/attempts"))
    assert [(i["number"], i["outcome"], i["status"]) for i in body["items"]] == [
        (2, "dead", 500),
        (1, "retry", 500),
    ]
    assert all(i["delivery_id"] == run.a.id for i in body["items"])
    assert body["items"][0]["at_ms"] >= body["items"][1]["at_ms"]

    pages = await all_pages(api, "/v1/events/evt_a/attempts", limit="1")
    assert flat(pages) == body["items"]
    assert [len(p) for p in pages] == [1, 1]
    retry_only = await ok(await api.get("/v1/events/evt_a/attempts", params={"outcome": "retry"}))
    assert [i["number"] for i in retry_only["items"]] == [1]

    # An event nobody subscribed to exists, with no attempts.
    await ok(await api.post("/v1/events", json=event(id="evt_lonely", workspace_id="ws_9")), 202)
    assert (await ok(await api.get("/v1/events/evt_lonely/attempts")))["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"outcome": "failed"}, "outcome"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-01-15T10:30:00"}, "until"),  # no timezone
        ({"until": "9999-12-31T23:59:59-01:00"}, "until"),  # past the year 9999 in UTC
        ({"since": "2025-01-15T10:30:00Z", "until": "2025-01-14T10:30:00Z"}, "until"),
        ({"limit": "500"}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
    ],
)
async def test_bad_attempt_filters_are_422(api: Client, params: dict[str, str], field: str) -> None:
    created = await create(api)
    for path in (f"/v1/endpoints/{created['id']}/attempts", "/v1/events/evt_x/attempts"):
        body = await problem(await api.get(path, params=params), 422, "invalid-fields")
        assert body["errors"][0]["field"] == field


async def test_a_plus_sign_lost_in_a_query_string_gets_a_hint(api: Client) -> None:
    created = await create(api)
    body = await problem(
        await api.get(f"/v1/endpoints/{created['id']}/attempts?since=2025-01-15T10:30:00+02:00"),
        422,
        "invalid-fields",
    )
    assert "%2B" in body["detail"]


@pytest.mark.both_stores
async def test_replay_is_idempotent_one_or_all_dead_since_a_time(
    api: Client, producer: Producer, failed_then_delivered: FailedThenDelivered
) -> None:
    run = failed_then_delivered
    endpoint_replay = f"/v1/endpoints/{run.endpoint_id}/replay"

    nothing = await ok(await api.post(endpoint_replay, json={"since": "2999-01-01T00:00:00Z"}))
    assert nothing == {"replayed": [], "count": 0}

    one = await ok(await api.post(f"/v1/deliveries/{run.a.id}/replay"))
    assert one == {"replayed": [run.a.id], "count": 1}
    again = await ok(await api.post(f"/v1/deliveries/{run.a.id}/replay"))
    assert again == {"replayed": [], "count": 0}  # queued now, not dead
    delivered = await ok(await api.post(f"/v1/deliveries/{run.c.id}/replay"))
    assert delivered == {"replayed": [], "count": 0}

    rest = await ok(await api.post(endpoint_replay, json={"since": run.started}))
    assert rest == {"replayed": [run.b.id], "count": 1}
    await wait_for_states(producer, ["evt_a", "evt_b", "evt_c"], DeliveryState.DELIVERED)
    assert await ok(await api.post(endpoint_replay, json={"since": run.started})) == {
        "replayed": [],
        "count": 0,
    }

    shown = await ok(await api.get(f"/v1/endpoints/{run.endpoint_id}"))
    assert (shown["recent"]["delivered"], shown["recent"]["dead"], shown["dead_total"]) == (3, 0, 0)
    replayed_a = (await ok(await api.get("/v1/events/evt_a/attempts")))["items"][0]
    assert (replayed_a["number"], replayed_a["outcome"]) == (3, "delivered")


async def test_bulk_replay_without_a_body_replays_every_dead_delivery(
    api: Client, failed_then_delivered: FailedThenDelivered
) -> None:
    run = failed_then_delivered
    everything = await ok(await api.post(f"/v1/endpoints/{run.endpoint_id}/replay"))
    assert sorted(everything["replayed"]) == sorted([run.a.id, run.b.id])
    assert everything["count"] == 2


async def test_bulk_replay_needs_a_valid_since(api: Client) -> None:
    created = await create(api)
    path = f"/v1/endpoints/{created['id']}/replay"
    for body, field in (
        ({"since": 5}, "since"),
        ({"since": "2025-13-01T00:00:00Z"}, "since"),
        ({"since": "2025-01-01T00:00:00Z", "until": "x"}, "until"),
    ):
        problem_body = await problem(await api.post(path, json=body), 422, "invalid-fields")
        assert problem_body["errors"][0]["field"] == field
    # Issue 19: since is optional (every dead delivery), as in the CLI; no body is {}.
    assert await ok(await api.post(path, json={})) == {"replayed": [], "count": 0}
    assert await ok(await api.post(path)) == {"replayed": [], "count": 0}


# ---------------------------------------------------------------- test sends


async def stand_in_worker(
    redis: aioredis.Redis, keys: Keys, answer: dict[str, Any]
) -> dict[str, Any]:
    """The worker's side of the test-send contract: pop one request, write its result."""
    popped = await redis.brpop([keys.test_requests], timeout=10)
    assert popped is not None, "no test-send request arrived"
    request: dict[str, Any] = json.loads(popped[1])
    result = {"id": request["id"], "endpoint_id": request["endpoint_id"], **answer}
    await redis.set(keys.test_result(request["id"]), json.dumps(result), ex=TEST_RESULT_TTL_S)
    return request


async def test_a_test_send_answers_with_what_the_worker_saw(
    api: Client, producer: Producer, redis: aioredis.Redis
) -> None:
    created = await create(api)
    answer = {
        "event_id": "evt_test123",
        "event_type": "comment.created",
        "ok": False,
        "status": 500,
        "error": None,
        "latency_ms": 12.5,
        "response": "boom",
    }
    worker = asyncio.create_task(stand_in_worker(redis, producer.keys, answer))

    before_ms = time.time() * 1000
    response = await api.post(
        f"/v1/endpoints/{created['id']}/test", json={"type": "comment.created"}
    )

    result = await ok(response)
    assert result == {"endpoint_id": created["id"], **answer}
    request = await worker
    assert set(request) == {"id", "endpoint_id", "event_type", "requested_ms", "deadline_ms"}
    assert request["id"].startswith("ts_")
    assert (request["endpoint_id"], request["event_type"]) == (created["id"], "comment.created")
    assert request["requested_ms"] >= before_ms - 1
    assert request["deadline_ms"] == request["requested_ms"] + 2000  # DELIVERY_TIMEOUT=2
    # The result was read once and removed; nothing is left queued.
    assert not await redis.exists(producer.keys.test_result(request["id"]))
    assert await redis.llen(producer.keys.test_requests) == 0


async def test_a_real_worker_answers_a_test_send_with_the_receivers_response(
    api: Client, receiver: Receiver, redis_url: str, tmp_path: Path
) -> None:
    receiver.script(ScriptedResponse(status=418, body="I'm a teapot"))
    created = await create(api, url=receiver.url())
    worker = await start_worker(worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path)))
    try:
        response = await api.post(
            f"/v1/endpoints/{created['id']}/test", json={"type": "member.joined"}
        )
        result = await ok(response)
    finally:
        await worker.stop()
    assert (result["ok"], result["status"], result["response"]) == (False, 418, "I'm a teapot")
    (request,) = receiver.received
    assert request.headers["X-Cliq-Event"] == "member.joined"
    assert request.json()["id"] == result["event_id"]
    # A test send is not a delivery: nothing was recorded for the endpoint.
    attempts = await ok(await api.get(f"/v1/endpoints/{created['id']}/attempts"))
    assert attempts["items"] == []


async def test_a_test_send_nobody_answers_is_504_and_withdrawn(
    api_factory: ApiFactory, producer: Producer, redis: aioredis.Redis
) -> None:
    api = await api_factory(DELIVERY_TIMEOUT="0.3")
    created = await create(api)

    started = time.monotonic()
    body = await problem(
        await api.post(f"/v1/endpoints/{created['id']}/test", json={"type": "issue.created"}),
        504,
        "test-timeout",
    )
    assert time.monotonic() - started >= 0.3
    assert body["detail"] == "no worker answered within 0.3 s — is a worker running?"
    assert await redis.llen(producer.keys.test_requests) == 0


async def test_a_test_send_without_a_body_sends_the_default_type(
    api: Client, producer: Producer, redis: aioredis.Redis
) -> None:
    created = await create(api)
    path = f"/v1/endpoints/{created['id']}/test"
    answer = {
        "event_id": "evt_test123",
        "event_type": DEFAULT_TEST_EVENT_TYPE,
        "ok": True,
        "status": 200,
        "error": None,
        "latency_ms": 1.0,
        "response": "",
    }
    bodies: tuple[dict[str, str] | None, ...] = ({}, None)  # empty object; no body at all
    for body in bodies:
        worker = asyncio.create_task(stand_in_worker(redis, producer.keys, answer))
        response = await (api.post(path, json=body) if body is not None else api.post(path))
        assert (await ok(response))["event_type"] == DEFAULT_TEST_EVENT_TYPE
        assert (await worker)["event_type"] == DEFAULT_TEST_EVENT_TYPE


async def test_a_test_send_needs_a_known_endpoint_and_type(api: Client) -> None:
    created = await create(api)
    path = f"/v1/endpoints/{created['id']}/test"
    for body in ({"type": "issue.exploded"}, {"type": 5}):
        problem_body = await problem(await api.post(path, json=body), 422, "invalid-fields")
        assert problem_body["errors"][0]["field"] == "type"
    await problem(await api.post(path, json={"type": "x", "extra": 1}), 422, "invalid-fields")
    await problem(
        await api.post(path, data="type=x", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported-media-type",
    )
    await problem(
        await api.post("/v1/endpoints/ep_missing/test", json={"type": "issue.created"}),
        404,
        "not-found",
    )


# ---------------------------------------------------------------- catalogue


async def test_event_types_list_every_type_with_a_complete_example(
    api: Client, producer: Producer
) -> None:
    body = await ok(await api.get("/v1/event-types"))
    items = body["items"]
    assert [i["type"] for i in items] == sorted(BUILTIN_EVENT_TYPES)
    for item in items:
        assert item["description"] == BUILTIN_EVENT_TYPES[item["type"]]
        example = item["example"]
        assert example["type"] == item["type"]
        assert example["data"] == example_data(item["type"])
        # A complete event: publishing it as it is would be accepted.
        parsed = parse_event(example, producer.catalogue, max_payload_bytes=256 * 1024)
        assert parsed.to_dict() == example


async def test_configured_extra_types_are_listed(api_factory: ApiFactory) -> None:
    api = await api_factory(EVENT_TYPES_EXTRA="invoice.paid")
    items = (await ok(await api.get("/v1/event-types")))["items"]
    (extra,) = [i for i in items if i["type"] == "invoice.paid"]
    assert extra["example"]["data"] == {"example": True}


# ---------------------------------------------------------------- keys and outages


async def test_every_management_route_needs_the_api_key(api_factory: ApiFactory) -> None:
    api = await api_factory(API_KEYS=KEY)
    routes = [
        (method.upper(), path.replace("{id}", "x_1"))
        for spec in (endpoints_spec, deliveries, testsends, catalogue)
        for path, item in spec.OPENAPI_PATHS.items()
        for method in item
    ]
    assert len(routes) == 15
    for method, path in routes:
        response = await api.request(method, path, json={})
        await problem(response, 401, "unauthorized")
    authorized = await api.get("/v1/endpoints", headers={"Authorization": f"Bearer {KEY}"})
    assert authorized.status == 200


async def test_management_routes_answer_503_while_redis_is_down(
    api_factory: ApiFactory, closed_redis_url: str
) -> None:
    api = await api_factory(REDIS_URL=closed_redis_url)
    for method, path, body in (
        ("GET", "/v1/endpoints", None),
        ("GET", "/v1/endpoints/ep_1", None),
        ("POST", "/v1/endpoints/ep_1/disable", None),
        ("GET", "/v1/endpoints/ep_1/attempts", None),
        ("GET", "/v1/events/evt_1/attempts", None),
        ("POST", "/v1/deliveries/dlv_1/replay", None),
        ("GET", "/v1/deliveries/dlv_1", None),
        ("POST", "/v1/endpoints/ep_1/test", {"type": "issue.created"}),
        (
            "POST",
            "/v1/endpoints",
            {
                "workspace_id": "ws_1",
                "url": "https://hooks.example.com/x",
                "events": ["*"],
                "owner_email": "o@example.com",
            },
        ),
    ):
        response = await api.request(method, path, json=body)
        detail = (await problem(response, 503, "redis-unavailable"))["detail"]
        assert closed_redis_url not in detail
    # The catalogue needs no Redis.
    assert (await api.get("/v1/event-types")).status == 200


async def test_rotate_answer_and_endpoint_say_when_the_seed_signature_switches(
    api: Client,
) -> None:
    created = await create(api)
    assert created["signature_switches_at"] is None  # never rotated
    path = f"/v1/endpoints/{created['id']}"
    rotated = await ok(await api.post(f"{path}/rotate-secret", json={"grace_s": 60}))
    switches_at = rotated["signature_switches_at"]
    assert switches_at.endswith("Z")
    parsed = datetime.fromisoformat(switches_at.replace("Z", "+00:00"))
    assert int(parsed.timestamp() * 1000) == rotated["previous_secret_until_ms"]
    shown = await ok(await api.get(path))
    assert shown["signature_switches_at"] == switches_at


@pytest.mark.parametrize(("headers", "message"), HEADER_REFUSALS)
async def test_custom_headers_are_refused_with_a_clear_message(
    api: Client, producer: Producer, headers: dict[str, str], message: str
) -> None:
    response = await api.post(
        "/v1/endpoints",
        json={
            "workspace_id": "ws_1",
            "url": "https://hooks.example.com/cliq",
            "events": ["*"],
            "owner_email": "owner@example.com",
            "headers": headers,
        },
    )
    body = await problem(response, 422, "invalid-fields")
    (error,) = body["errors"]
    assert error["field"] == "headers"
    assert message in error["message"]
    assert await producer.endpoints.all() == []  # nothing half-created


async def test_headers_and_timeout_are_kept_changed_and_checked(
    api_factory: ApiFactory,
) -> None:
    api = await api_factory(DELIVERY_TIMEOUT="10")
    created = await create(api, headers={"Authorization": "Bearer t"}, timeout_s=2.5)
    assert created["headers"] == {"Authorization": "Bearer t"}
    assert created["timeout_s"] == 2.5
    path = f"/v1/endpoints/{created['id']}"
    patched = await ok(await api.patch(path, json={"headers": {"X-Team": "a"}, "timeout_s": 0}))
    assert patched["headers"] == {"X-Team": "a"}
    assert patched["timeout_s"] == 0
    for bad, message in (
        (11, TIMEOUT_REFUSAL),
        (-1, TIMEOUT_REFUSAL),
        ("5", "must be a number of seconds"),
    ):
        body = await problem(await api.patch(path, json={"timeout_s": bad}), 422, "invalid-fields")
        assert body["errors"][0]["field"] == "timeout_s"
        assert message in body["errors"][0]["message"]
    body = await problem(await api.patch(path, json={"headers": {"X-A": 1}}), 422, "invalid-fields")
    assert "must be an object of header names and string values" in body["errors"][0]["message"]
    assert (await ok(await api.get(path)))["headers"] == {"X-Team": "a"}  # unchanged
