"""The producers' HTTP API (``python -m producer``) against the private Redis on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from producer.__main__ import build_parser
from producer.context import Producer
from producer.endpoint import Endpoint
from producer.fields import EVENT_FIELDS
from producer.http.app import create_app
from producer.http.events import MAX_BATCH_EVENTS, SINGLE_EVENT_SLACK_BYTES
from producer.http.problems import PROBLEM_BASE
from producer.http.state import MAX_BATCH_BYTES, SERVE_OPTIONS, ApiSettings
from producer.keys import DELIVERY_QUEUE
from producer.settings import SettingsError, env_with_flags

from harness.polling import wait_until
from harness.redis_server import free_port
from support import PROJECT, producer_for, wait_for_api

Client = TestClient[web.Request, web.Application]
KEY_ONE = "key-one-0123456789abcdef"
KEY_TWO = "key-two-fedcba9876543210"
SMALL_PAYLOAD = 1024  # MAX_PAYLOAD_BYTES of the size tests


class ApiFactory(Protocol):
    """``await api_factory(**env)``: a started API on 127.0.0.1 with these settings."""

    async def __call__(self, **env: str) -> Client: ...


@pytest.fixture
async def api_factory(redis_url: str) -> AsyncIterator[ApiFactory]:
    clients: list[Client] = []

    async def factory(**env: str) -> Client:
        # Receivers run on 127.0.0.1 (the policy's own tests turn it on).
        base = {"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1"}
        settings = ApiSettings.from_env({**base, **env})
        client: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def api(api_factory: ApiFactory) -> Client:
    """The API without authentication."""
    return await api_factory()


@pytest.fixture
async def producer(redis_url: str) -> AsyncIterator[Producer]:
    async with producer_for(redis_url) as p:
        yield p


@pytest.fixture
def closed_redis_url() -> str:
    """A Redis URL on a free loopback port that nothing listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


def event(**fields: Any) -> dict[str, Any]:
    return {"type": "issue.created", "workspace_id": "ws_1", "data": {"n": 1}, **fields}


async def subscribe(producer: Producer, events: str = "*", workspace: str = "ws_1") -> Endpoint:
    return await producer.endpoints.create(
        workspace_id=workspace,
        url="https://hooks.example.com/cliq",
        events=events.split(","),
        owner_email="owner@example.com",
    )


async def problem(response: aiohttp.ClientResponse, status: int, slug: str) -> dict[str, Any]:
    """Assert ``response`` is an RFC 9457 problem of this kind; return its body."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = json.loads(text)
    assert body["type"] == PROBLEM_BASE + slug
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


async def post_raw(
    api: Client, body: bytes, content_type: str = "application/json", **headers: str
) -> aiohttp.ClientResponse:
    return await api.post(
        "/v1/events", data=body, headers={"Content-Type": content_type, **headers}
    )


# ---------------------------------------------------------------- publishing


async def test_publish_one_event_stores_it_and_enqueues_its_deliveries(
    api: Client, producer: Producer, redis: aioredis.Redis
) -> None:
    await subscribe(producer, "issue.*")
    await subscribe(producer, "comment.created")

    response = await api.post("/v1/events", json=event(id="evt_one"))

    assert response.status == 202, await response.text()
    assert await response.json() == {"id": "evt_one", "deliveries": 1, "duplicate": False}
    assert response.headers["Location"] == "/v1/events/evt_one"
    # An event of one delivery keeps its id in its hash, with no fan-out list.
    delivery_id = await redis.hget(producer.keys.event("evt_one"), EVENT_FIELDS.sole)
    assert delivery_id
    assert not await redis.exists(producer.keys.event_deliveries("evt_one"))
    # A partial batch: its delivery waits on the ready list for a worker, with no job.
    ready = await redis.lrange(producer.keys.ready, 0, -1)
    assert [json.loads(entry) for entry in ready] == [[delivery_id, 1]]
    assert await redis.zcard(producer.keys.outbox) == 0
    assert await redis.llen(producer.keys.queue_key(DELIVERY_QUEUE, "wait")) == 0


async def test_an_event_of_several_deliveries_lists_them_in_fan_out_order(
    api: Client, producer: Producer, redis: aioredis.Redis
) -> None:
    await subscribe(producer, "issue.*")
    await subscribe(producer, "*")

    response = await api.post("/v1/events", json=event(id="evt_two"))

    assert response.status == 202, await response.text()
    listed = await redis.lrange(producer.keys.event_deliveries("evt_two"), 0, -1)
    assert len(listed) == 2
    assert not await redis.hexists(producer.keys.event("evt_two"), EVENT_FIELDS.sole)
    assert [d.id for d in await producer.deliveries.for_event("evt_two")] == listed


async def test_an_event_without_id_gets_a_generated_one(api: Client) -> None:
    response = await api.post("/v1/events", json=event())
    assert response.status == 202
    body = await response.json()
    assert body["id"].startswith("evt_")
    assert body["deliveries"] == 0


async def test_publish_a_batch_answers_one_result_per_event_in_order(
    api: Client, producer: Producer
) -> None:
    await subscribe(producer, "issue.*")
    await subscribe(producer, "*")
    batch = [
        event(id="evt_a", type="issue.created"),
        event(id="evt_b", type="member.joined"),
        event(id="evt_c", type="issue.created", workspace_id="ws_other"),
    ]

    response = await api.post("/v1/events", json=batch)

    assert response.status == 202, await response.text()
    assert await response.json() == [
        {"id": "evt_a", "deliveries": 2, "duplicate": False},
        {"id": "evt_b", "deliveries": 1, "duplicate": False},
        {"id": "evt_c", "deliveries": 0, "duplicate": False},
    ]
    assert "Location" not in response.headers


async def test_publishing_an_id_again_is_a_duplicate_with_nothing_enqueued(
    api: Client, producer: Producer, redis: aioredis.Redis
) -> None:
    await subscribe(producer)
    first = await api.post("/v1/events", json=event(id="evt_same"))
    again = await api.post("/v1/events", json=event(id="evt_same"))
    in_batch = await api.post("/v1/events", json=[event(id="evt_new"), event(id="evt_new")])

    assert (first.status, again.status, in_batch.status) == (202, 202, 202)
    assert await first.json() == {"id": "evt_same", "deliveries": 1, "duplicate": False}
    assert await again.json() == {"id": "evt_same", "deliveries": 0, "duplicate": True}
    assert await in_batch.json() == [
        {"id": "evt_new", "deliveries": 1, "duplicate": False},
        {"id": "evt_new", "deliveries": 0, "duplicate": True},
    ]
    assert len(await producer.deliveries.for_event("evt_same")) == 1
    assert await redis.hget(producer.keys.stats, "queued") == "2"


async def test_content_type_with_utf8_charset_is_accepted(api: Client) -> None:
    body = json.dumps(event(data={"title": "Grüße"})).encode()
    response = await post_raw(api, body, "Application/JSON; charset=UTF-8")
    assert response.status == 202, await response.text()


# ---------------------------------------------------------------- reading deliveries


async def test_get_event_lists_its_deliveries(api: Client, producer: Producer) -> None:
    endpoint = await subscribe(producer)
    await api.post("/v1/events", json=event(id="evt_read"))

    response = await api.get("/v1/events/evt_read")

    assert response.status == 200
    body = await response.json()
    assert body["id"] == "evt_read"
    (delivery,) = body["deliveries"]
    assert delivery["id"].startswith("dlv_")
    assert delivery["event_id"] == "evt_read"
    assert delivery["endpoint_id"] == endpoint.id
    assert delivery["state"] == "queued"
    assert delivery["attempts"] == []


async def test_get_event_without_subscribers_is_an_empty_list(api: Client) -> None:
    await api.post("/v1/events", json=event(id="evt_lonely"))
    response = await api.get("/v1/events/evt_lonely")
    assert response.status == 200
    body = await response.json()
    assert (body["id"], body["deliveries"]) == ("evt_lonely", [])
    assert body["event"]["type"] == event()["type"]
    assert body["event"]["data"] == event()["data"]


@pytest.mark.parametrize("event_id", ["evt_never_published", "not:an:id"])
async def test_get_unknown_event_is_404(api: Client, event_id: str) -> None:
    body = await problem(await api.get(f"/v1/events/{event_id}"), 404, "not-found")
    assert event_id in body["detail"]


# ---------------------------------------------------------------- client errors


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b'{"type": NaN}', b"[" * 100_000 + b"]" * 100_000],
    ids=["syntax", "empty", "nan", "deep"],
)
async def test_malformed_json_is_400(api: Client, body: bytes, redis: aioredis.Redis) -> None:
    await problem(await post_raw(api, body), 400, "invalid-json")
    assert await redis.dbsize() == 0


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_a_body_that_is_not_json_utf8_is_415(
    api: Client, content_type: str, redis: aioredis.Redis
) -> None:
    body = await problem(
        await post_raw(api, json.dumps(event()).encode(), content_type),
        415,
        "unsupported-media-type",
    )
    assert content_type in body["detail"]
    assert await redis.dbsize() == 0


async def test_a_body_without_content_type_is_415(api: Client) -> None:
    response = await api.post("/v1/events", data=b'{"type": "issue.created"}')
    await problem(response, 415, "unsupported-media-type")


async def test_invalid_single_event_is_422_naming_the_field(api: Client) -> None:
    body = await problem(
        await api.post("/v1/events", json=event(type="issue.exploded")), 422, "invalid-event"
    )
    (error,) = body["errors"]
    assert error["field"] == "type"
    assert "unknown event type 'issue.exploded'" in error["message"]
    assert "index" not in error

    body = await problem(await api.post("/v1/events", json=5), 422, "invalid-event")
    assert body["errors"][0]["field"] == "event"


async def test_a_batch_with_one_bad_event_publishes_nothing(
    api: Client, producer: Producer, redis: aioredis.Redis
) -> None:
    await subscribe(producer)
    keys_before = await redis.dbsize()
    batch = [event(id="evt_ok1"), event(id="evt_bad", workspace_id="no spaces"), event()]

    body = await problem(await api.post("/v1/events", json=batch), 422, "invalid-event")

    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "workspace_id")]
    assert body["errors"][0]["message"]
    assert "nothing was published" in body["detail"]
    assert await redis.dbsize() == keys_before
    assert not await redis.exists(producer.keys.event("evt_ok1"))


async def test_every_bad_event_of_a_batch_is_reported(api: Client) -> None:
    batch = [event(type=""), event(), event(created_at="yesterday"), event(extra=1)]
    body = await problem(await api.post("/v1/events", json=batch), 422, "invalid-event")
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (0, "type"),
        (2, "created_at"),
        (3, "extra"),
    ]


@pytest.mark.parametrize(
    "created_at",
    [
        "9999-12-31T23:59:59-01:00",  # past the year 9999 once in UTC
        "0001-01-01T00:00:00+01:00",  # before the year 1 once in UTC
    ],
)
async def test_times_that_cannot_be_published_are_422(
    api: Client, redis: aioredis.Redis, created_at: str
) -> None:
    for body in (event(created_at=created_at), [event(created_at=created_at)]):
        problem_body = await problem(await api.post("/v1/events", json=body), 422, "invalid-event")
        assert problem_body["errors"][0]["field"] == "created_at"
    assert await redis.dbsize() == 0


async def test_a_time_before_the_year_1000_is_published_as_written(api: Client) -> None:
    # Found by schemathesis: such a time was written without its leading zero (a 500).
    response = await api.post("/v1/events", json=event(created_at="0492-03-05T12:25:47Z"))
    assert response.status == 202, await response.text()


async def test_an_empty_batch_is_422(api: Client) -> None:
    await problem(await api.post("/v1/events", json=[]), 422, "invalid-event")


async def test_a_batch_of_more_than_the_maximum_is_413(api: Client, redis: aioredis.Redis) -> None:
    batch = [event() for _ in range(MAX_BATCH_EVENTS + 1)]
    body = await problem(await api.post("/v1/events", json=batch), 413, "too-many-events")
    assert str(MAX_BATCH_EVENTS) in body["detail"]
    assert await redis.dbsize() == 0


def padded_event(size: int) -> bytes:
    """A single event whose request body is exactly ``size`` bytes."""
    head, tail = b'{"type":"issue.created","workspace_id":"ws_1","data":{"pad":"', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_single_event_body_is_limited_to_max_payload_plus_slack(
    api_factory: ApiFactory,
) -> None:
    api = await api_factory(MAX_PAYLOAD_BYTES=str(SMALL_PAYLOAD))
    limit = SMALL_PAYLOAD + SINGLE_EVENT_SLACK_BYTES

    too_large = await problem(
        await post_raw(api, padded_event(limit + 1)), 413, "payload-too-large"
    )
    assert str(limit) in too_large["detail"]

    async def chunked() -> AsyncIterator[bytes]:
        body = padded_event(limit + 1)
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = await api.post(
        "/v1/events", data=chunked(), headers={"Content-Type": "application/json"}
    )
    assert "Content-Length" not in response.request_info.headers
    await problem(response, 413, "payload-too-large")

    # Within the body limit but above MAX_PAYLOAD_BYTES: the event itself is invalid.
    body = await problem(await post_raw(api, padded_event(limit)), 422, "invalid-event")
    assert body["errors"][0]["field"] == "data"


async def test_the_same_event_in_a_batch_is_limited_only_by_its_payload(
    api_factory: ApiFactory,
) -> None:
    api = await api_factory(MAX_PAYLOAD_BYTES=str(SMALL_PAYLOAD))
    batch = b"[" + padded_event(SMALL_PAYLOAD + SINGLE_EVENT_SLACK_BYTES + 1) + b"]"
    body = await problem(await post_raw(api, batch), 422, "invalid-event")
    assert body["errors"][0]["index"] == 0
    assert f"the limit is {SMALL_PAYLOAD} bytes" in body["errors"][0]["message"]


async def test_a_request_body_over_the_batch_limit_is_413(api: Client) -> None:
    body = io.BytesIO(b"[" + b" " * MAX_BATCH_BYTES + b"]")
    response = await api.post("/v1/events", data=body, headers={"Content-Type": "application/json"})
    assert int(response.request_info.headers["Content-Length"]) == MAX_BATCH_BYTES + 2
    problem_body = await problem(response, 413, "payload-too-large")
    assert str(MAX_BATCH_BYTES) in problem_body["detail"]


async def test_unknown_route_is_404_and_wrong_method_is_405(api: Client) -> None:
    await problem(await api.get("/v2/nothing-here"), 404, "not-found")
    response = await api.get("/v1/events")
    await problem(response, 405, "method-not-allowed")
    assert response.headers["Allow"] == "POST"


# ---------------------------------------------------------------- authentication


async def test_api_keys_protect_v1_but_not_probes(api_factory: ApiFactory) -> None:
    api = await api_factory(API_KEYS=f"{KEY_ONE}, {KEY_TWO}")

    missing = await api.post("/v1/events", json=event())
    await problem(missing, 401, "unauthorized")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")

    wrong = await api.post(
        "/v1/events", json=event(), headers={"Authorization": f"Bearer {KEY_ONE}x"}
    )
    await problem(wrong, 401, "unauthorized")
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]

    basic = await api.post("/v1/events", json=event(), headers={"Authorization": KEY_ONE})
    await problem(basic, 401, "unauthorized")
    await problem(
        await api.get("/v1/events/evt_x", headers={"Authorization": "Bearer"}), 401, "unauthorized"
    )
    # Unknown paths are protected too: routes added later are never open by mistake.
    await problem(await api.get("/v1/no-such-route"), 401, "unauthorized")

    for key in (KEY_ONE, KEY_TWO):
        ok = await api.post("/v1/events", json=event(), headers={"Authorization": f"bearer {key}"})
        assert ok.status == 202, await ok.text()
    await problem(
        await api.get("/v1/no-such-route", headers={"Authorization": f"Bearer {KEY_TWO}"}),
        404,
        "not-found",
    )
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await api.get(path)).status == 200, path


async def test_without_api_keys_anyone_may_publish_and_a_warning_is_logged(
    api_factory: ApiFactory,
) -> None:
    with structlog.testing.capture_logs() as logs:
        open_api = await api_factory()
    assert any(
        entry["event"] == "api_auth_disabled" and entry["log_level"] == "warning" for entry in logs
    )
    assert (await open_api.post("/v1/events", json=event())).status == 202

    with structlog.testing.capture_logs() as logs:
        await api_factory(API_KEYS=KEY_ONE)
    assert not any(entry["event"] == "api_auth_disabled" for entry in logs)


# ---------------------------------------------------------------- probes and Redis outages


async def test_health_and_readiness_with_redis_up(api: Client) -> None:
    healthz = await api.get("/healthz")
    assert (healthz.status, await healthz.json()) == (200, {"status": "ok"})
    readyz = await api.get("/readyz")
    assert (readyz.status, await readyz.json()) == (200, {"status": "ready"})


async def test_readiness_fails_while_redis_is_unreachable_but_health_holds(
    api_factory: ApiFactory, closed_redis_url: str
) -> None:
    api = await api_factory(REDIS_URL=closed_redis_url)
    body = await problem(await api.get("/readyz"), 503, "redis-unavailable")
    assert "PING" in body["detail"]
    assert (await api.get("/healthz")).status == 200


async def test_publishing_while_redis_is_unreachable_is_503_never_202(
    api_factory: ApiFactory, closed_redis_url: str
) -> None:
    api = await api_factory(REDIS_URL=closed_redis_url)
    body = await problem(
        await api.post("/v1/events", json=event(id="evt_lost")), 503, "redis-unavailable"
    )
    assert "same event ids" in body["detail"]
    assert closed_redis_url not in body["detail"]  # internals stay in the log


# ---------------------------------------------------------------- metrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_requests_by_route_template_and_events(
    api: Client, producer: Producer
) -> None:
    await subscribe(producer)
    assert (
        await api.post("/v1/events", json=[event(id="evt_m1"), event(id="evt_m2")])
    ).status == 202
    assert (await api.post("/v1/events", json=event(id="evt_m1"))).status == 202
    assert (await api.post("/v1/events", json=event(type="nope.nope"))).status == 422
    assert (await api.get("/v1/events/evt_m1")).status == 200
    assert (await api.get("/no/such/path/evt_m1")).status == 404

    response = await api.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    values = samples(text)

    def requests(route: str, status_class: str) -> float:
        key = ("cliq_api_requests_total", (("route", route), ("status_class", status_class)))
        return values.get(key, 0.0)

    assert requests("/v1/events", "2xx") == 2
    assert requests("/v1/events", "4xx") == 1
    assert requests("/v1/events/{id}", "2xx") == 1
    assert requests("unmatched", "4xx") == 1
    assert values[("cliq_api_events_published_total", ())] == 2
    assert values[("cliq_api_events_duplicate_total", ())] == 1
    count = ("cliq_api_request_duration_seconds_count", (("route", "/v1/events"),))
    assert values[count] == 3
    assert "evt_m1" not in text  # raw paths never become labels
    assert "/no/such/path" not in text


# ---------------------------------------------------------------- settings and the process


def test_settings_hash_api_keys_and_never_repeat_them() -> None:
    settings = ApiSettings.from_env({"API_KEYS": f" {KEY_ONE} ,,{KEY_TWO}", "PORT": "9000"})
    assert settings.port == 9000
    assert settings.api_host == "127.0.0.1"  # issue 19: loopback unless told otherwise
    assert len(settings.api_keys) == 2
    assert settings.api_keys.accepts(KEY_TWO)
    assert not settings.api_keys.accepts(KEY_TWO[:-1])
    assert KEY_ONE not in repr(settings)

    with pytest.raises(SettingsError, match="API_KEYS") as raised:
        ApiSettings.from_env({"API_KEYS": f"{KEY_ONE},with space"})
    assert KEY_ONE not in str(raised.value)
    assert "with space" not in str(raised.value)

    with pytest.raises(SettingsError, match="API_KEYS") as raised:
        ApiSettings.from_env({"API_KEYS": f"{KEY_ONE},abc123"})
    assert "key 2 of 2 is shorter than 16 characters" in str(raised.value)
    assert "abc123" not in str(raised.value)
    assert len(ApiSettings.from_env({"API_KEYS": "x" * 16}).api_keys) == 1


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PORT": "0"}, "PORT"),
        ({"PORT": "http"}, "PORT"),
        ({"EVENT_TYPES_EXTRA": "NotAType"}, "EVENT_TYPES_EXTRA"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"PORTAL_FRAME_ANCESTORS": "*"}, "PORTAL_FRAME_ANCESTORS"),
        ({"PORTAL_FRAME_ANCESTORS": "https://app.example.com/path"}, "PORTAL_FRAME_ANCESTORS"),
        # A ';' would add a directive to the Content-Security-Policy.
        ({"PORTAL_FRAME_ANCESTORS": "https://a.example;sandbox"}, "PORTAL_FRAME_ANCESTORS"),
        ({"PORTAL_FRAME_ANCESTORS": "'none' https://a.example"}, "PORTAL_FRAME_ANCESTORS"),
        ({"PORTAL_BRAND_NAME": " "}, "PORTAL_BRAND_NAME"),
        ({"PORTAL_BRAND_NAME": "x" * 61}, "PORTAL_BRAND_NAME"),
        ({"PORTAL_ACCENT_COLOR": "red"}, "PORTAL_ACCENT_COLOR"),
        ({"PORTAL_ACCENT_COLOR": "#0a7d5a; }"}, "PORTAL_ACCENT_COLOR"),
    ],
)
def test_bad_settings_name_their_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        ApiSettings.from_env(env)


def test_the_portal_settings_take_origins_a_name_and_a_colour() -> None:
    settings = ApiSettings.from_env(
        {
            "PORTAL_FRAME_ANCESTORS": "'self'  https://*.example.com http://[::1]:8000",
            "PORTAL_BRAND_NAME": " Acme Hooks ",
            "PORTAL_ACCENT_COLOR": "#0A7D5A",
        }
    )
    assert settings.portal_frame_ancestors == "'self' https://*.example.com http://[::1]:8000"
    assert settings.portal_embeddable
    assert (settings.portal_brand_name, settings.portal_accent_color) == ("Acme Hooks", "#0a7d5a")
    default = ApiSettings.from_env({})
    assert (default.portal_frame_ancestors, default.portal_embeddable) == ("'none'", False)
    assert (default.portal_brand_name, default.portal_accent_color) == ("cliq-webhooks", "")


def test_port_comes_from_env_and_a_flag_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9123")
    parser = build_parser()
    from_env = ApiSettings.from_env(env_with_flags(parser.parse_args([]), SERVE_OPTIONS))
    assert from_env.port == 9123
    flagged = parser.parse_args(["--port", "9124", "--api-host", "127.0.0.1"])
    from_flags = ApiSettings.from_env(env_with_flags(flagged, SERVE_OPTIONS))
    assert (from_flags.port, from_flags.api_host) == (9124, "127.0.0.1")


def run_module(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        env={**os.environ, **env},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_every_setting_as_a_flag() -> None:
    result = run_module("--help", COLUMNS="400")  # one line per flag
    assert result.returncode == 0, result.stderr
    for option in SERVE_OPTIONS:
        assert option.flag in result.stdout
        assert f"env {option.env}" in result.stdout


def test_a_bad_setting_exits_2_with_a_message() -> None:
    result = run_module("--port", "70000")
    assert result.returncode == 2
    assert "PORT" in result.stderr


def spawn_api(env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m producer`` on 127.0.0.1 with ``env`` over this environment, logging
    JSON lines to ``log_path``."""
    full_env = {**os.environ, "API_HOST": "127.0.0.1", "LOG_FORMAT": "json", **env}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "producer"],
            env=full_env,
            cwd=PROJECT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def api_process(
    redis_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``python -m producer`` on a free port, signalled by its own PID."""
    port = free_port()
    log_path = tmp_path / "api.log"
    process = spawn_api(
        {
            "REDIS_URL": redis_url,
            "PORT": str(port),
            "SHUTDOWN_GRACE": "5",
            "API_KEYS": "",
            "ALLOW_NO_AUTH": "1",
        },
        log_path,
    )
    try:
        yield process, port, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_the_process_serves_on_port_and_stops_cleanly_on_sigterm(
    api_process: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log_path = api_process
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        await wait_for_api(session, base, process, log_path, 20)
        async with session.post(f"{base}/v1/events", json=event(id="evt_proc")) as response:
            assert response.status == 202
            assert (await response.json())["id"] == "evt_proc"

    process.send_signal(signal.SIGTERM)
    await wait_until(lambda: process.poll() is not None, 20, message="no exit after SIGTERM")
    assert process.returncode == 0, log_path.read_text()

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert "api_auth_disabled" in events
    assert events[-1] == "api_stopped"
    (publish,) = [line for line in lines if line.get("route") == "/v1/events"]
    assert (publish["status"], publish["method"]) == (202, "POST")
