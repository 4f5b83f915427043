"""Incoming webhooks (``producer.tokens.incoming``): token-authenticated calls become events
that a real worker delivers to a real receiver; refusals enqueue nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from test_api import problem
from test_tokens import Api, User, api_factory_for, enrolled_user, ok

from producer.context import Producer
from producer.keys import Keys
from producer.tokens.registry import USAGE_HISTORY

from harness import Receiver
from support import RunningWorker, start_worker, worker_env


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Api]:
    async with api_factory_for(redis_url) as factory:
        yield await factory()


@pytest.fixture
async def worker(redis_url: str) -> AsyncIterator[RunningWorker]:
    running = await start_worker(worker_env(redis_url))
    yield running
    await running.stop()


async def post(api: Api, path: str, body: Any = None, **params: str) -> aiohttp.ClientResponse:
    """An incoming call as a third party makes it: no API key."""
    return await api.client.post(path, json={"text": "hi"} if body is None else body, params=params)


async def setup(api: Api) -> tuple[User, dict[str, Any], dict[str, Any]]:
    """A user owning channel ``general``, bot ``deploybot`` and an app, with one token."""
    user = await enrolled_user(api)
    await ok(await user.call("PUT", "/channels/general"), 201)
    await ok(await user.call("PUT", "/bots/deploybot"), 201)
    app = await ok(await user.call("POST", "/apps", {"name": "Sync"}), 201)
    token = await user.new_token()
    return user, app, token


async def stored_events(redis: aioredis.Redis) -> int:
    """Events stored so far (each accepted call stores one, subscribed or not)."""
    return len(await redis.keys(Keys().event("*")))


def incoming_counts(text: str) -> dict[tuple[str, str], float]:
    """``cliq_api_incoming_webhooks_total`` by (module, outcome) from /metrics."""
    return {
        (sample.labels["module"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "cliq_api_incoming_webhooks"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


async def test_every_module_reaches_a_subscribed_receiver(
    api: Api, producer: Producer, receiver: Receiver, worker: RunningWorker
) -> None:
    user, app, token = await setup(api)
    await producer.endpoints.create(
        workspace_id="ws_1",
        url=receiver.url(),
        events=["channel.*", "bot.*", "extension.*"],
        owner_email="owner@example.com",
    )
    zapikey = token["token"]
    calls = [
        ("/api/v2/channelsbyname/general/message", {}, "channel.message"),
        ("/api/v2/bots/deploybot/incoming", {}, "bot.incoming"),
        ("/api/v2/bots/deploybot/message", {}, "bot.message"),
        (
            f"/api/v2/applications/{app['id']}/incoming",
            {"appkey": app["sandbox_appkey"]},
            "extension.incoming",
        ),
        (
            f"/api/v2/applications/{app['id']}/incoming",
            {"appkey": app["marketplace_appkey"]},
            "extension.incoming",
        ),
    ]
    published = []
    for n, (path, params, _) in enumerate(calls):
        body = {"text": f"message {n}", "card": {"theme": "modern-inline"}}
        result = await ok(await post(api, path, body, **params, zapikey=zapikey), 202)
        assert result["deliveries"] == 1
        published.append(result["id"])

    received = await receiver.wait_for(len(calls), 15)
    by_id = {r.json()["id"]: r.json() for r in received}
    assert set(by_id) == set(published)
    events = [by_id[event_id] for event_id in published]
    assert [e["type"] for e in events] == [expected for _, _, expected in calls]
    assert all(e["workspace_id"] == "ws_1" for e in events)
    assert events[0]["data"] == {
        "channel": "general",
        "user_id": user.id,
        "token_id": token["id"],
        "body": {"text": "message 0", "card": {"theme": "modern-inline"}},
    }
    assert events[1]["data"]["bot"] == "deploybot"
    assert [e["data"]["environment"] for e in events[3:]] == ["sandbox", "marketplace"]
    assert events[4]["data"]["app_id"] == app["id"]

    listed = await ok(await user.call("GET", f"/tokens/{token['id']}"))
    assert listed["invocations"] == len(calls)
    assert listed["last_invoked_at"] is not None
    usage = (await ok(await user.call("GET", f"/tokens/{token['id']}/usage")))["items"]
    assert [u["module"] for u in usage] == [
        "extension_marketplace",
        "extension_sandbox",
        "bot.message",
        "bot.incoming",
        "channel.message",
    ]
    assert [u["event_id"] for u in usage] == published[::-1]
    assert {u["outcome"] for u in usage} == {"accepted"}
    assert {u["source"] for u in usage} == {"127.0.0.1"}


async def test_concurrent_invocations_are_all_counted(api: Api, redis: aioredis.Redis) -> None:
    user, _, token = await setup(api)
    responses = await asyncio.gather(
        *(
            post(api, "/api/v2/channelsbyname/general/message", zapikey=token["token"])
            for _ in range(50)
        )
    )
    assert [r.status for r in responses] == [202] * 50
    listed = await ok(await user.call("GET", f"/tokens/{token['id']}"))
    assert listed["invocations"] == 50
    usage = (await ok(await user.call("GET", f"/tokens/{token['id']}/usage")))["items"]
    assert len(usage) == 50
    assert len({u["event_id"] for u in usage}) == 50


async def test_usage_history_is_capped_newest_first(api: Api) -> None:
    user, _, token = await setup(api)
    for _ in range(USAGE_HISTORY + 5):
        api.clock.advance(1)
        await ok(await post(api, "/api/v2/bots/deploybot/incoming", zapikey=token["token"]), 202)
    usage = (await ok(await user.call("GET", f"/tokens/{token['id']}/usage")))["items"]
    assert len(usage) == USAGE_HISTORY
    times = [u["at_ms"] for u in usage]
    assert times == sorted(times, reverse=True)
    assert times[0] == int(api.clock() * 1000)
    limited = await ok(
        await user.call("GET", f"/tokens/{token['id']}/usage", params={"limit": "3"})
    )
    assert limited["items"] == usage[:3]
    listed = await ok(await user.call("GET", f"/tokens/{token['id']}"))
    assert listed["invocations"] == USAGE_HISTORY + 5


async def test_refused_calls_enqueue_nothing_and_are_counted(
    api: Api, redis: aioredis.Redis
) -> None:
    user, app, token = await setup(api)
    other = await enrolled_user(api, "other", "ws_2")
    await ok(await other.call("PUT", "/channels/theirs"), 201)
    their_app = await ok(await other.call("POST", "/apps", {"name": "Theirs"}), 201)
    value = token["token"]
    token_id, _, secret = value.partition(".")
    channel = "/api/v2/channelsbyname/general/message"
    app_path = f"/api/v2/applications/{app['id']}/incoming"
    refusals: list[tuple[str, dict[str, str], int, str]] = [
        (channel, {}, 401, "invalid-webhook-token"),
        (channel, {"zapikey": "nonsense"}, 401, "invalid-webhook-token"),
        (channel, {"zapikey": f"{token_id}.{secret[:-1]}x"}, 401, "invalid-webhook-token"),
        ("/api/v2/channelsbyname/theirs/message", {"zapikey": value}, 403, "forbidden-resource"),
        ("/api/v2/channelsbyname/nowhere/message", {"zapikey": value}, 404, "not-found"),
        ("/api/v2/bots/general/message", {"zapikey": value}, 404, "not-found"),
        (app_path, {"zapikey": value}, 401, "invalid-appkey"),
        (app_path, {"zapikey": value, "appkey": "sbx_wrong"}, 401, "invalid-appkey"),
        (
            f"/api/v2/applications/{their_app['id']}/incoming",
            {"zapikey": value, "appkey": their_app["sandbox_appkey"]},
            403,
            "forbidden-resource",
        ),
    ]
    for path, params, status, slug in refusals:
        body = await problem(await post(api, path, **params), status, slug)
        assert body["detail"], path

    await ok(await user.call("POST", f"/tokens/{token_id}/disable"))
    body = await problem(await post(api, channel, zapikey=value), 403, "webhook-token-disabled")
    assert "disabled" in body["detail"]
    await ok(await user.call("POST", f"/tokens/{token_id}/enable"))
    await ok(await post(api, channel, zapikey=value), 202)

    assert await stored_events(redis) == 1  # the accepted call's only

    listed = await ok(await user.call("GET", f"/tokens/{token_id}"))
    assert listed["invocations"] == 1
    usage = (await ok(await user.call("GET", f"/tokens/{token_id}/usage")))["items"]
    assert [u["outcome"] for u in usage] == [
        "accepted",
        "disabled",
        "forbidden",
        "invalid_appkey",
        "invalid_appkey",
        "unknown_resource",
        "unknown_resource",
        "forbidden",
    ]

    await ok(await user.call("DELETE", f"/tokens/{token_id}"), 204)
    await problem(await post(api, channel, zapikey=value), 401, "invalid-webhook-token")
    assert await stored_events(redis) == 1

    metrics = await api.client.get("/metrics")
    counts = incoming_counts(await metrics.text())
    assert counts[("channel.message", "missing_token")] == 1
    assert counts[("channel.message", "invalid_token")] == 3
    assert counts[("channel.message", "forbidden")] == 1
    assert counts[("channel.message", "unknown_resource")] == 1
    assert counts[("channel.message", "disabled")] == 1
    assert counts[("channel.message", "accepted")] == 1
    assert counts[("bot.message", "unknown_resource")] == 1
    assert counts[("extension", "invalid_appkey")] == 2
    assert counts[("extension", "forbidden")] == 1


async def test_incoming_routes_need_no_api_key_but_v1_still_does(api: Api) -> None:
    _, _, token = await setup(api)
    response = await api.client.post(
        "/api/v2/bots/deploybot/message",
        json={"text": "hi"},
        params={"zapikey": token["token"]},
        headers={"Authorization": "Bearer wrong"},
    )
    await ok(response, 202)
    await problem(await api.client.get("/v1/event-types"), 401, "unauthorized")


async def test_bad_bodies_are_refused_after_the_token_check(api: Api) -> None:
    user, _, token = await setup(api)
    channel = "/api/v2/channelsbyname/general/message"
    params = {"zapikey": token["token"]}
    response = await api.client.post(
        channel, data=b"{", params=params, headers={"Content-Type": "application/json"}
    )
    await problem(response, 400, "invalid-json")
    response = await api.client.post(channel, data=b"text=hi", params=params)
    await problem(response, 415, "unsupported-media-type")
    await problem(await post(api, channel, [1, 2], **params), 422, "invalid-fields")
    # Without a valid token the body is never looked at.
    response = await api.client.post(
        channel, data=b"{", headers={"Content-Type": "application/json"}
    )
    await problem(response, 401, "invalid-webhook-token")
    listed = await ok(await user.call("GET", f"/tokens/{token['id']}"))
    assert listed["invocations"] == 0


async def test_events_go_to_the_users_current_workspace(
    api: Api, producer: Producer, receiver: Receiver, worker: RunningWorker
) -> None:
    user, _, token = await setup(api)
    await producer.endpoints.create(
        workspace_id="ws_new", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    await ok(await api.call("PUT", f"/v1/users/{user.id}", {"workspace_id": "ws_new"}), 200)
    await ok(await post(api, "/api/v2/bots/deploybot/incoming", zapikey=token["token"]), 202)
    (request,) = await receiver.wait_for(1, 15)
    assert request.json()["workspace_id"] == "ws_new"
    assert request.json()["type"] == "bot.incoming"
