"""Issue 19: every validation error of a request at once. The API names every bad field
of an event (and of each event of a batch) and every unknown query parameter (400); a
JSONL publish names every bad line, up to a cap. Real API on the private Redis; the
CLI as a subprocess."""

from __future__ import annotations

import json
import re
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
    settings = ApiSettings.from_env(
        {"REDIS_URL": redis_url, "API_KEYS": KEY, "ALLOW_PRIVATE_DESTINATIONS": "1"}
    )
    client: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
    await client.start_server()
    yield client
    await client.close()


async def an_endpoint(api: Client) -> str:
    """The id of a newly registered, valid endpoint."""
    created = await api.post(
        "/v1/endpoints",
        json={
            "workspace_id": "ws_1",
            "url": "http://127.0.0.1:9/hook",
            "events": ["*"],
            "owner_email": "ops@example.com",
        },
        headers=AUTH,
    )
    assert created.status == 201, await created.text()
    return str((await created.json())["id"])


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
    # Custom headers and the timeout are named with the others, not after them.
    options = {**bad, "headers": {"Host": "x"}, "timeout_s": 999}
    response = await api.post("/v1/endpoints", json=options, headers=AUTH)
    named = {e["field"]: e["message"] for e in (await response.json())["errors"]}
    assert list(named) == [
        "workspace_id",
        "url",
        "events",
        "owner_email",
        "max_in_flight",
        "headers",
        "timeout_s",
    ]
    assert named["headers"] == "Host is set by cliq-webhooks on every delivery"
    assert named["timeout_s"].startswith("must be a number of seconds from 0 to ")
    assert await redis.dbsize() == before
    unknown = await api.post(
        "/v1/endpoints", json={**bad, "colour": "red", "size": 1}, headers=AUTH
    )
    # Unknown fields are named along with the bad values, not instead of them.
    assert [error["field"] for error in (await unknown.json())["errors"]] == [
        "colour",
        "size",
        "workspace_id",
        "url",
        "events",
        "owner_email",
        "max_in_flight",
    ]
    mistyped = await api.post(
        "/v1/endpoints", json={**bad, "url": 5, "events": "issue.created"}, headers=AUTH
    )
    fields = [error["field"] for error in (await mistyped.json())["errors"]]
    assert sorted(fields) == ["events", "max_in_flight", "owner_email", "url", "workspace_id"]


async def test_every_bad_query_parameter_is_named_at_once(api: Client) -> None:
    endpoint_id = await an_endpoint(api)
    query = "limit=0&outcome=lost&since=yesterday&until=2025-01-01T00:00:00Z&cursor=zz"
    for path in (f"/v1/endpoints/{endpoint_id}/attempts", "/v1/events/evt_1/attempts"):
        response = await api.get(f"{path}?{query}", headers=AUTH)
        assert response.status == 422, path
        problem = await response.json()
        assert [e["field"] for e in problem["errors"]] == ["limit", "outcome", "since", "cursor"]
        assert problem["detail"] == "Invalid fields: limit, outcome, since, cursor."
    backwards = await api.get(
        f"/v1/endpoints/{endpoint_id}/attempts?since=2025-02-01T00:00:00Z"
        "&until=2025-01-01T00:00:00Z&outcome=lost",
        headers=AUTH,
    )
    assert [e["field"] for e in (await backwards.json())["errors"]] == ["outcome", "until"]
    listing = await api.get("/v1/endpoints?limit=x&status=on&workspace_id=a%20b", headers=AUTH)
    assert listing.status == 422
    fields = [e["field"] for e in (await listing.json())["errors"]]
    assert fields == ["limit", "workspace_id", "status"]


async def test_every_bad_member_of_a_small_body_is_named_at_once(api: Client) -> None:
    endpoint_id = await an_endpoint(api)
    cases = {
        f"/v1/endpoints/{endpoint_id}/replay": ({"since": "soon", "x": 1}, ["x", "since"]),
        f"/v1/endpoints/{endpoint_id}/test": ({"type": "nope", "x": 1}, ["x", "type"]),
        f"/v1/endpoints/{endpoint_id}/disable": ({"drop": 1, "x": 1}, ["x", "drop"]),
        f"/v1/endpoints/{endpoint_id}/rotate-secret": ({"grace_s": -1, "x": 1}, ["x", "grace_s"]),
        "/v1/workspaces/ws_1/portal-links": (
            {"ttl_s": 0, "read_only": 1, "x": 1},
            ["x", "read_only", "ttl_s"],
        ),
        "/v1/api-keys": ({"name": "", "x": 1}, ["x", "workspace_id", "name", "scopes"]),
    }
    for path, (body, fields) in cases.items():
        response = await api.post(path, json=body, headers=AUTH)
        assert response.status == 422, path
        assert [e["field"] for e in (await response.json())["errors"]] == fields, path
    still = await api.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH)
    assert (await still.json())["status"] == "active"  # the refused disable changed nothing


def test_endpoint_add_names_every_bad_value(redis_url: str) -> None:
    result = cli(
        redis_url,
        "endpoint", "add", "--workspace", "ws 1", "--url", "ftp://example.com/",
        "--events", "issue.nope", "--owner-email", "nobody",
        "--header", "Host: x", "--timeout", "999",
    )  # fmt: skip
    assert result.returncode == 2
    for message in (
        "--workspace: must be 1-128",
        "--url: must use http or https",
        "--events: unknown event type 'issue.nope'",
        "--owner-email: 'nobody' is not an email address",
        "--header: Host is set by cliq-webhooks on every delivery",
        "--timeout: must be a number of seconds from 0 to ",
    ):
        assert message in result.stderr


async def test_the_dashboards_json_route_refuses_unknown_query_parameters(api: Client) -> None:
    endpoint_id = await an_endpoint(api)
    login = await api.get("/ui/login")
    found = re.search(r'name="csrf" value="([^"]+)"', await login.text())
    assert found is not None
    form = {"csrf": found.group(1), "api_key": KEY, "next": "/ui/webhooks"}
    signed_in = await api.post("/ui/login", data=form, allow_redirects=False)
    assert signed_in.status == 303
    progress = f"/ui/webhooks/{endpoint_id}/replays/rp_0123456789abcdef"
    refused = await api.get(f"{progress}?colour=red&after=1")
    assert refused.status == 400
    problem = await refused.json()
    assert problem["type"] == PROBLEM_BASE + "unknown-query-parameter"
    assert [error["field"] for error in problem["errors"]] == ["after", "colour"]
    assert (await api.get(progress)).status == 404  # without them: an unknown replay
