"""Failed authentications limited per source address (``producer.http.throttle``).

The table on its own with an injected clock, then through a real API on 127.0.0.1
(private Redis): API keys, the dashboard's sign-in, incoming webhooks' tokens. Time
moves by the injected clock, never by sleeping.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from test_api import Client, problem
from test_incoming import incoming_counts
from test_tokens import KEY, Api, FakeClock, enrolled_user, ok

from producer.http.app import create_app
from producer.http.metrics import ApiMetrics
from producer.http.state import METRICS, SERVE_OPTIONS, ApiSettings
from producer.http.throttle import (
    AUTH_FAILURES_PER_MINUTE,
    AUTH_THROTTLE,
    WINDOW_S,
    AuthThrottle,
    Surface,
    address_key,
)
from producer.settings import SettingsError
from producer.tokens.context import CLOCK, Clock

LIMIT = 3
WRONG_KEY = "wrong-key-0123456789abcdef"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def throttled_count(metrics: ApiMetrics, surface: Surface) -> float:
    value = metrics.registry.get_sample_value(
        "cliq_auth_throttled_total", {"surface": surface.value}
    )
    assert value is not None
    return value


# ---------------------------------------------------------------- the table


def test_the_limit_trips_at_one_more_failure_and_says_when_to_retry() -> None:
    clock = FakeClock(1000.0)
    throttle = AuthThrottle(LIMIT, clock=clock)
    for _ in range(LIMIT):
        assert throttle.failure("192.0.2.1", Surface.API) is None
        clock.advance(5)
    # The window opened at the first failure, 15 s ago: 45 s are left.
    assert throttle.failure("192.0.2.1", Surface.API) == 45
    clock.advance(14.5)
    assert throttle.failure("192.0.2.1", Surface.DASHBOARD) == 31  # rounded up
    # Another address has its own window.
    assert throttle.failure("192.0.2.2", Surface.API) is None


def test_the_window_ends_a_minute_after_the_first_failure() -> None:
    clock = FakeClock(1000.0)
    throttle = AuthThrottle(LIMIT, clock=clock)
    for _ in range(LIMIT + 5):
        throttle.failure("192.0.2.1", Surface.API)
    clock.advance(WINDOW_S - 0.1)
    assert throttle.failure("192.0.2.1", Surface.API) == 1
    clock.advance(0.1)
    # A new window: LIMIT failures again before the next 429.
    assert [throttle.failure("192.0.2.1", Surface.API) for _ in range(LIMIT + 1)] == [
        None,
        None,
        None,
        60,
    ]


def test_zero_turns_the_limit_off() -> None:
    throttle = AuthThrottle(0, clock=FakeClock(0.0))
    assert all(throttle.failure("192.0.2.1", Surface.API) is None for _ in range(1000))
    assert len(throttle) == 0


def test_an_ipv6_host_counts_as_its_64_and_a_mapped_ipv4_as_itself() -> None:
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:2") == "2001:db8::/64"
    assert address_key("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "192.0.2.7"
    assert address_key(None) == ""
    throttle = AuthThrottle(1, clock=FakeClock(0.0))
    assert throttle.failure("2001:db8::1", Surface.API) is None
    assert throttle.failure("2001:db8::2", Surface.API) == 60


def test_the_table_is_bounded_and_drops_ended_windows_first() -> None:
    clock = FakeClock(0.0)
    throttle = AuthThrottle(1, clock=clock, max_addresses=3)
    for n in range(3):
        throttle.failure(f"192.0.2.{n}", Surface.API)
        clock.advance(1)
    throttle.failure("192.0.2.3", Surface.API)  # full: the oldest (.0) goes
    assert len(throttle) == 3
    assert throttle.failure("192.0.2.0", Surface.API) is None  # forgotten: counts anew
    assert throttle.failure("192.0.2.3", Surface.API) is not None  # still remembered
    clock.advance(WINDOW_S)
    throttle.failure("192.0.2.9", Surface.API)
    assert len(throttle) == 1  # every other window had ended


def test_the_metric_counts_each_failure_answered_429_by_surface() -> None:
    metrics = ApiMetrics(CollectorRegistry())
    assert throttled_count(metrics, Surface.INCOMING) == 0  # exported before any failure
    throttle = AuthThrottle(1, metrics.auth_throttled, clock=FakeClock(0.0))
    throttle.failure("192.0.2.1", Surface.API)
    throttle.failure("192.0.2.1", Surface.API)
    throttle.failure("192.0.2.1", Surface.DASHBOARD)
    assert throttled_count(metrics, Surface.API) == 1
    assert throttled_count(metrics, Surface.DASHBOARD) == 1
    assert throttled_count(metrics, Surface.INCOMING) == 0


def test_the_setting_defaults_to_30_and_refuses_a_negative_count() -> None:
    assert AUTH_FAILURES_PER_MINUTE in SERVE_OPTIONS
    assert ApiSettings.from_env({}).auth_failures_per_minute == 30
    assert ApiSettings.from_env({"AUTH_FAILURES_PER_MINUTE": "0"}).auth_failures_per_minute == 0
    with pytest.raises(SettingsError, match="AUTH_FAILURES_PER_MINUTE"):
        ApiSettings.from_env({"AUTH_FAILURES_PER_MINUTE": "-1"})


# ---------------------------------------------------------------- through the API


@dataclass
class Throttled(Api):
    """A started API (API_KEYS set) whose throttle allows :data:`LIMIT` failures."""

    throttle_clock: FakeClock
    metrics: ApiMetrics


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Throttled]:
    settings = ApiSettings.from_env({"REDIS_URL": redis_url, "API_KEYS": KEY})
    app = create_app(settings)
    clock, throttle_clock = FakeClock(), FakeClock(1000.0)
    injected: Clock = clock
    app[CLOCK] = injected
    app[AUTH_THROTTLE] = AuthThrottle(LIMIT, app[METRICS].auth_throttled, clock=throttle_clock)
    client: Client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield Throttled(client, clock, throttle_clock, app[METRICS])
    finally:
        await client.close()


async def read_event(api: Api, key: str | None) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return await api.client.get("/v1/events/evt_x", headers=headers)


async def test_wrong_api_keys_get_429_past_the_limit_and_a_right_key_always_passes(
    api: Throttled,
) -> None:
    await problem(await read_event(api, None), 401, "unauthorized")  # a missing key counts
    for _ in range(LIMIT - 1):
        await problem(await read_event(api, WRONG_KEY), 401, "unauthorized")
    api.throttle_clock.advance(20)
    refused = await read_event(api, WRONG_KEY)
    body = await problem(refused, 429, "too-many-failed-authentications")
    assert refused.headers["Retry-After"] == "40"
    assert "40 s" in body["detail"]
    # The right key, from the same address, while it is throttled.
    await problem(await read_event(api, KEY), 404, "not-found")
    published = await api.call(
        "POST", "/v1/events", {"type": "issue.created", "workspace_id": "ws_1", "data": {}}
    )
    assert published.status == 202
    assert throttled_count(api.metrics, Surface.API) == 1
    api.throttle_clock.advance(40)
    await problem(await read_event(api, WRONG_KEY), 401, "unauthorized")


async def sign_in(api: Api, key: str) -> aiohttp.ClientResponse:
    """A sign-in from the login page, as a browser makes it (session and CSRF token)."""
    page = await api.client.get("/ui/login")
    found = CSRF.search(await page.text())
    assert found is not None
    form = {"csrf": found.group(1), "api_key": key, "next": "/ui/webhooks"}
    return await api.client.post("/ui/login", data=form, allow_redirects=False)


async def test_failed_sign_ins_get_429_past_the_limit_and_the_right_key_signs_in(
    api: Throttled,
) -> None:
    for _ in range(LIMIT):
        assert (await sign_in(api, WRONG_KEY)).status == 401
    refused = await sign_in(api, WRONG_KEY)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.content_type == "text/html"
    assert "Too many failed authentications" in await refused.text()
    signed_in = await sign_in(api, KEY)
    assert signed_in.status == 303
    assert signed_in.headers["Location"] == "/ui/webhooks"
    assert throttled_count(api.metrics, Surface.DASHBOARD) == 1
    assert throttled_count(api.metrics, Surface.API) == 0


async def incoming(api: Api, **params: str) -> aiohttp.ClientResponse:
    return await api.client.post(
        "/api/v2/channelsbyname/general/message", json={"text": "hi"}, params=params
    )


async def test_unknown_webhook_tokens_get_429_past_the_limit_and_a_valid_one_publishes(
    api: Throttled,
) -> None:
    user = await enrolled_user(api)
    await ok(await user.call("PUT", "/channels/general"), 201)
    token: dict[str, Any] = await user.new_token()
    await problem(await incoming(api), 401, "invalid-webhook-token")
    for _ in range(LIMIT - 1):
        await problem(await incoming(api, zapikey="tok_nope.nope"), 401, "invalid-webhook-token")
    refused = await incoming(api, zapikey="tok_nope.nope")
    await problem(refused, 429, "too-many-failed-authentications")
    assert refused.headers["Retry-After"] == "60"
    assert (await incoming(api, zapikey=token["token"])).status == 202
    assert throttled_count(api.metrics, Surface.INCOMING) == 1
    counts = incoming_counts(await (await api.client.get("/metrics")).text())
    assert counts[("channel.message", "throttled")] == 1
    assert counts[("channel.message", "invalid_token")] == LIMIT - 1
    assert counts[("channel.message", "accepted")] == 1
