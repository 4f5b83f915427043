"""Issue 19: every validation error of a request at once. The API names every bad field
of an event (and of each event of a batch) and every unknown query parameter (400); a
JSONL publish names every bad line, up to a cap. Real API on the private Redis; the
CLI as a subprocess."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_cli import cli

from cli.events import MAX_REPORTED_LINES
from producer.http.app import create_app
from producer.http.problems import PROBLEM_BASE
from producer.http.state import ApiSettings

Client = TestClient[web.Request, web.Application]
KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Client]:
    settings = ApiSettings.from_env({"REDIS_URL": redis_url, "API_KEYS": KEY})
    client: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
    await client.start_server()
    yield client
    await client.close()


async def test_an_event_with_several_bad_fields_names_them_all(
    api: Client, redis: aioredis.Redis
) -> None:
    before = await redis.dbsize()
    bad = {"id": "a:b", "type": "issue.nope", "workspace_id": "", "data": [1], "colour": "red"}
    response = await api.post("/v1/events", json=bad, headers=AUTH)
    assert response.status == 422
    problem = await response.json()
    assert [error["field"] for error in problem["errors"]] == [
        "colour",
        "id",
        "type",
        "workspace_id",
        "data",
    ]
    assert "(colour, id, type, workspace_id, data)" in problem["detail"]
    assert await redis.dbsize() == before


async def test_a_batch_lists_every_bad_field_of_every_bad_event(api: Client) -> None:
    good = {"type": "issue.created", "workspace_id": "ws_1", "data": {}}
    batch = [good, {"type": "issue.nope", "workspace_id": "", "data": {}}, good, {"data": 3}]
    response = await api.post("/v1/events", json=batch, headers=AUTH)
    assert response.status == 422
    problem = await response.json()
    assert problem["detail"].startswith("2 of 4 events are invalid")
    assert [(error["index"], error["field"]) for error in problem["errors"]] == [
        (1, "type"),
        (1, "workspace_id"),
        (3, "type"),
        (3, "workspace_id"),
        (3, "data"),
    ]


async def test_unknown_query_parameters_are_refused_with_400_naming_them(api: Client) -> None:
    response = await api.get("/v1/endpoints?status=active&colour=red&statu=x", headers=AUTH)
    assert response.status == 400
    problem = await response.json()
    assert problem["type"] == PROBLEM_BASE + "unknown-query-parameter"
    assert [error["field"] for error in problem["errors"]] == ["colour", "statu"]
    assert "colour, statu" in problem["detail"]
    assert "status" in problem["detail"]  # what the route does take
    # The documented ones still work, and a route without any takes none.
    ok = await api.get("/v1/endpoints?status=active&limit=5", headers=AUTH)
    assert ok.status == 200
    refused = await api.get("/v1/event-types?x=1", headers=AUTH)
    assert refused.status == 400
    assert (await refused.json())["errors"] == [
        {"field": "x", "message": "unknown query parameter"}
    ]


async def test_unknown_query_parameters_do_not_reveal_anything_before_the_key(
    api: Client,
) -> None:
    response = await api.get("/v1/endpoints?colour=red")
    assert response.status == 401


async def test_a_jsonl_publish_reports_every_bad_line_up_to_a_cap(
    redis_url: str, redis: aioredis.Redis
) -> None:
    good = json.dumps({"type": "issue.created", "workspace_id": "ws_1", "data": {}})
    lines = [
        good,
        "{oops",
        json.dumps({"type": "issue.nope", "workspace_id": "ws 1", "data": {}}),
        good,
    ]
    before = await redis.dbsize()
    result = cli(redis_url, "publish", "--file", "-", stdin="\n".join(lines) + "\n")
    assert result.returncode == 2
    assert "2 bad lines in <stdin>; nothing was published" in result.stderr
    assert "<stdin>:2: not valid JSON" in result.stderr
    assert "<stdin>:3: type: unknown event type 'issue.nope'" in result.stderr
    assert "workspace_id: is required" in result.stderr  # the same line's second error
    assert await redis.dbsize() == before

    many = "{oops\n" * (MAX_REPORTED_LINES + 5)
    capped = cli(redis_url, "publish", "--file", "-", stdin=many)
    assert capped.returncode == 2
    reported = [line for line in capped.stderr.splitlines() if line.startswith("<stdin>:")]
    assert len(reported) == MAX_REPORTED_LINES
    assert f"{MAX_REPORTED_LINES + 5} bad lines" in capped.stderr
    assert "... and 5 more bad lines" in capped.stderr


async def test_an_endpoint_with_several_bad_values_names_them_all(
    api: Client, redis: aioredis.Redis
) -> None:
    before = await redis.dbsize()
    bad = {
        "workspace_id": "ws 1",
        "url": "ftp://example.com/",
        "events": ["issue.nope"],
        "owner_email": "nobody",
        "max_in_flight": 0,
    }
    response = await api.post("/v1/endpoints", json=bad, headers=AUTH)
    assert response.status == 422
    problem = await response.json()
    assert [error["field"] for error in problem["errors"]] == [
        "workspace_id",
        "url",
        "events",
        "owner_email",
        "max_in_flight",
    ]
    assert await redis.dbsize() == before
    unknown = await api.post(
        "/v1/endpoints", json={**bad, "colour": "red", "size": 1}, headers=AUTH
    )
    assert [error["field"] for error in (await unknown.json())["errors"]] == ["colour", "size"]


def test_endpoint_add_names_every_bad_value(redis_url: str) -> None:
    result = cli(
        redis_url,
        "endpoint", "add", "--workspace", "ws 1", "--url", "ftp://example.com/",
        "--events", "issue.nope", "--owner-email", "nobody",
    )  # fmt: skip
    assert result.returncode == 2
    for message in (
        "workspace: must be 1-128",
        "url: must use http or https",
        "events: unknown event type 'issue.nope'",
        "email: 'nobody' is not an email address",
    ):
        assert message in result.stderr
