"""Workspace-scoped API keys and portal links over the API (issue 18, "Access"): a real API
on 127.0.0.1 with the private Redis, the operator key (``API_KEYS``) next to scoped keys
made through ``POST /v1/api-keys``. Time moves by the injected clock, never by sleeping.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_api import problem
from test_tokens import KEY, START, Api, ApiFactory, api_factory_for, enrolled_user, ok

from producer.dashboard.sessions import COOKIE_NAME
from producer.events import iso_time
from producer.http.access import ROUTE_ACCESS, Owner
from producer.http.app import create_app
from producer.http.state import ApiSettings
from producer.keys import Keys

OTHER = "ws_other"
MINE = "ws_mine"


@pytest.fixture
async def api_factory(redis_url: str) -> AsyncIterator[ApiFactory]:
    async with api_factory_for(redis_url) as factory:
        yield factory


@pytest.fixture
async def api(api_factory: ApiFactory) -> Api:
    return await api_factory()


async def scoped_key(api: Api, workspace_id: str = MINE, scopes: list[str] | None = None) -> str:
    """A new key of ``workspace_id`` (every scope unless told), its value."""
    every = [
        "endpoints:read",
        "endpoints:write",
        "events:publish",
        "events:read",
        "deliveries:read",
        "deliveries:write",
        "users:read",
        "users:write",
        "portal-links:create",
    ]
    created = await ok(
        await api.call(
            "POST",
            "/v1/api-keys",
            {"workspace_id": workspace_id, "name": "ci", "scopes": scopes or every},
        ),
        201,
    )
    value: str = created["key"]
    return value


async def as_key(
    api: Api, key: str, method: str, path: str, body: Any = None
) -> aiohttp.ClientResponse:
    kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {key}"}}
    if body is not None:
        kwargs["json"] = body
    return await api.client.request(method, path, **kwargs)


async def endpoint_of(api: Api, workspace_id: str) -> dict[str, Any]:
    created: dict[str, Any] = await ok(
        await api.call(
            "POST",
            "/v1/endpoints",
            {
                "workspace_id": workspace_id,
                "url": "http://127.0.0.1:9/hook",
                "events": ["*"],
                "owner_email": "ops@example.com",
            },
        ),
        201,
    )
    return created


async def test_keys_are_shown_once_listed_and_revoked(api_factory: ApiFactory) -> None:
    api = await api_factory(ALLOW_PRIVATE_DESTINATIONS="1")
    key = await scoped_key(api, scopes=["endpoints:read"])
    listed = await ok(await api.call("GET", "/v1/api-keys"))
    (item,) = listed["items"]
    assert item["workspace_id"] == MINE
    assert item["scopes"] == ["endpoints:read"]
    assert item["last_used_at"] is None
    assert "key" not in item
    assert key.split(".")[1] not in str(listed)  # only the digest is kept
    await ok(await as_key(api, key, "GET", "/v1/endpoints"))
    used = (await ok(await api.call("GET", "/v1/api-keys")))["items"][0]
    assert used["last_used_at"] is not None
    # Out of scope: 403; a scoped key cannot manage keys.
    await problem(await as_key(api, key, "POST", "/v1/events", {}), 403, "insufficient-scope")
    await problem(await as_key(api, key, "GET", "/v1/api-keys"), 403, "insufficient-scope")
    await ok(await api.call("DELETE", f"/v1/api-keys/{item['id']}"), 204)
    await problem(await as_key(api, key, "GET", "/v1/endpoints"), 401, "unauthorized")
    await problem(await api.call("DELETE", f"/v1/api-keys/{item['id']}"), 404, "not-found")


async def everything_stored(redis: aioredis.Redis) -> str:
    """Every key name and value in Redis, as one text."""
    parts: list[str] = []
    async for name in redis.scan_iter():
        kind = await redis.type(name)
        if kind == "hash":
            value: object = await redis.hgetall(name)
        elif kind == "zset":
            value = await redis.zrange(name, 0, -1, withscores=True)
        elif kind == "string":
            value = await redis.get(name)
        else:
            value = kind
        parts.append(f"{name} {value}")
    return "\n".join(parts)


async def test_a_key_is_kept_as_its_digest_only(api: Api, redis: aioredis.Redis) -> None:
    key = await scoped_key(api, scopes=["endpoints:read"])
    secret = key.split(".")[1]
    stored = await everything_stored(redis)
    assert secret not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() in stored
    await ok(await as_key(api, key, "GET", "/v1/endpoints"))  # and it authenticates


async def test_a_new_key_names_every_bad_field(api: Api) -> None:
    body = {"workspace_id": "bad id", "name": "", "scopes": ["endpoints:read", "root"]}
    response = await api.call("POST", "/v1/api-keys", body)
    document = await problem(response, 422, "invalid-fields")
    assert {e["field"] for e in document["errors"]} == {"workspace_id", "name", "scopes"}
    assert "root" in str(document)


async def test_a_scoped_key_sees_its_workspace_only(api_factory: ApiFactory) -> None:
    api = await api_factory(ALLOW_PRIVATE_DESTINATIONS="1")
    mine, theirs = await endpoint_of(api, MINE), await endpoint_of(api, OTHER)
    key = await scoped_key(api)
    listed = await ok(await as_key(api, key, "GET", "/v1/endpoints"))
    assert [e["id"] for e in listed["items"]] == [mine["id"]]
    other_list = await ok(await as_key(api, key, "GET", f"/v1/endpoints?workspace_id={OTHER}"))
    assert other_list["items"] == []
    await ok(await as_key(api, key, "GET", f"/v1/endpoints/{mine['id']}"))
    unknown = await problem(
        await as_key(api, key, "GET", "/v1/endpoints/ep_nope"), 404, "not-found"
    )
    # Another workspace's endpoint reads exactly as an unknown one, on every route.
    tid = theirs["id"]
    for method, path, body in [
        ("GET", f"/v1/endpoints/{tid}", None),
        ("PATCH", f"/v1/endpoints/{tid}", {"description": "x"}),
        ("DELETE", f"/v1/endpoints/{tid}", None),
        ("POST", f"/v1/endpoints/{tid}/disable", None),
        ("POST", f"/v1/endpoints/{tid}/rotate-secret", None),
        ("GET", f"/v1/endpoints/{tid}/attempts", None),
        ("POST", f"/v1/endpoints/{tid}/replay", None),
        ("POST", f"/v1/endpoints/{tid}/test", {"type": "issue.created"}),
    ]:
        document = await problem(await as_key(api, key, method, path, body), 404, "not-found")
        assert document["detail"] == unknown["detail"].replace("ep_nope", tid), (method, path)
    # Still there for the operator.
    await ok(await api.call("GET", f"/v1/endpoints/{tid}"))
    # Creating in, or publishing for, another workspace is refused: nothing is stored.
    create = {
        "workspace_id": OTHER,
        "url": "http://127.0.0.1:9/x",
        "events": ["*"],
        "owner_email": "a@example.com",
    }
    await problem(await as_key(api, key, "POST", "/v1/endpoints", create), 403, "other-workspace")
    event = {"type": "issue.created", "workspace_id": OTHER, "data": {"id": "i1"}}
    await problem(await as_key(api, key, "POST", "/v1/events", event), 403, "other-workspace")
    batch = [{**event, "workspace_id": MINE}, event]
    await problem(await as_key(api, key, "POST", "/v1/events", batch), 403, "other-workspace")
    # The operator's event of the other workspace, and its delivery, are 404 to the key.
    published = await ok(await api.call("POST", "/v1/events", event), 202)
    await problem(await as_key(api, key, "GET", f"/v1/events/{published['id']}"), 404, "not-found")
    await problem(
        await as_key(api, key, "GET", f"/v1/events/{published['id']}/attempts"), 404, "not-found"
    )
    deliveries = await ok(await api.call("GET", f"/v1/events/{published['id']}"))
    delivery_id = deliveries["deliveries"][0]["id"]
    await problem(
        await as_key(api, key, "POST", f"/v1/deliveries/{delivery_id}/replay"), 404, "not-found"
    )
    # Its own workspace works.
    own = await ok(
        await as_key(api, key, "POST", "/v1/events", {**event, "workspace_id": MINE}), 202
    )
    await ok(await as_key(api, key, "GET", f"/v1/events/{own['id']}"))


async def test_every_route_naming_another_workspaces_resource_answers_404(
    api_factory: ApiFactory,
) -> None:
    """Every declared route whose path names a resource, read from the table (so a route
    added later is tried too), answers a key of another workspace 404 and changes nothing."""
    api = await api_factory(ALLOW_PRIVATE_DESTINATIONS="1")
    theirs = await endpoint_of(api, OTHER)
    await ok(await api.call("PUT", "/v1/users/theirs", {"workspace_id": OTHER}), 201)
    event = {"type": "issue.created", "workspace_id": OTHER, "data": {"id": "i1"}}
    published = await ok(await api.call("POST", "/v1/events", event), 202)
    shown = await ok(await api.call("GET", f"/v1/events/{published['id']}"))
    ids = {
        Owner.ENDPOINT: theirs["id"],
        Owner.EVENT: published["id"],
        Owner.DELIVERY: shown["deliveries"][0]["id"],
        Owner.USER: "theirs",
        Owner.WORKSPACE: OTHER,
    }
    key = await scoped_key(api)
    tried: set[Owner] = set()
    for (path, method), access in sorted(api.client.app[ROUTE_ACCESS].items()):
        if access.owner is None or method == "HEAD":
            continue
        values = {"token_id": "tok_0123456789abcdef", "name": "general"}
        values[access.parameter] = ids[access.owner]
        body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
        response = await as_key(api, key, method, path.format(**values), body)
        document = await problem(response, 404, "not-found")
        assert ids[access.owner] in document["detail"], (method, path, document)
        tried.add(access.owner)
    assert tried == set(Owner)
    # All still there, unchanged, for the operator.
    assert (await ok(await api.call("GET", f"/v1/endpoints/{theirs['id']}")))["status"] == "active"
    assert (await ok(await api.call("GET", "/v1/users/theirs")))["workspace_id"] == OTHER
    assert (await ok(await api.call("GET", f"/v1/events/{published['id']}"))) == shown


async def test_a_scoped_key_sees_its_workspaces_users_only(api: Api) -> None:
    await enrolled_user(api, "theirs", OTHER)
    await enrolled_user(api, "mine", MINE)
    key = await scoped_key(api)
    await ok(await as_key(api, key, "GET", "/v1/users/mine"))
    unknown = await problem(await as_key(api, key, "GET", "/v1/users/nobody"), 404, "not-found")
    for method, path in [
        ("GET", "/v1/users/theirs"),
        ("GET", "/v1/users/theirs/tokens"),
        ("POST", "/v1/users/theirs/tokens"),
        ("POST", "/v1/users/theirs/portal-links"),
    ]:
        document = await problem(await as_key(api, key, method, path), 404, "not-found")
        assert document["detail"] == unknown["detail"].replace("nobody", "theirs")
    # Moving their user into its workspace would be changing another workspace's user.
    body = {"workspace_id": MINE}
    await problem(await as_key(api, key, "PUT", "/v1/users/theirs", body), 404, "not-found")
    await problem(
        await as_key(api, key, "PUT", "/v1/users/new", {"workspace_id": OTHER}),
        403,
        "other-workspace",
    )
    await ok(await as_key(api, key, "PUT", "/v1/users/new", body), 201)


async def test_portal_links_for_the_keys_workspace_only(api: Api) -> None:
    key = await scoped_key(api)
    link = await ok(
        await as_key(api, key, "POST", f"/v1/workspaces/{MINE}/portal-links", {"ttl_s": 60}), 201
    )
    assert "/ui/portal/pl_" in link["url"]
    assert link["read_only"] is False
    await problem(
        await as_key(api, key, "POST", f"/v1/workspaces/{OTHER}/portal-links"), 404, "not-found"
    )
    operator = await ok(
        await api.call("POST", f"/v1/workspaces/{OTHER}/portal-links", {"read_only": True}), 201
    )
    assert operator["read_only"] is True
    bad = await api.call("POST", f"/v1/workspaces/{OTHER}/portal-links", {"ttl_s": 0})
    await problem(bad, 422, "invalid-fields")


async def test_a_link_lasts_15_minutes_and_its_session_dashboard_session_ttl(
    api_factory: ApiFactory, redis: aioredis.Redis
) -> None:
    api = await api_factory(DASHBOARD_SESSION_TTL="5000")
    made = await ok(await api.call("POST", f"/v1/workspaces/{MINE}/portal-links"), 201)
    assert made["expires_at"] == iso_time(int((START + 15 * 60) * 1000))
    link = "/ui/portal/" + made["url"].rsplit("/", 1)[1]
    (stored,) = [k async for k in redis.scan_iter(Keys().portal_link("*"))]
    assert 0 < await redis.ttl(stored) <= 15 * 60  # an unused link leaves Redis too
    async with api.client.get(link, allow_redirects=False) as opened:
        assert opened.status == 303
        assert opened.headers["Location"] == "/ui/webhooks"
        cookie = opened.cookies[COOKIE_NAME].value
    session = Keys().dashboard_session(hashlib.sha256(cookie.encode()).hexdigest())
    assert 4990 < await redis.ttl(session) <= 5000  # not the link's 15 minutes
    assert await redis.exists(stored) == 0  # used up
    # The injected clock decides expiry: a link made now is refused 15 minutes later.
    late = await ok(await api.call("POST", f"/v1/workspaces/{MINE}/portal-links"), 201)
    api.clock.advance(15 * 60)
    async with api.client.get(
        "/ui/portal/" + late["url"].rsplit("/", 1)[1], allow_redirects=False
    ) as refused:
        assert refused.status == 404


async def test_operator_keys_keep_full_access(api_factory: ApiFactory) -> None:
    api = await api_factory(ALLOW_PRIVATE_DESTINATIONS="1")
    await endpoint_of(api, MINE)
    await endpoint_of(api, OTHER)
    listed = await ok(await api.call("GET", "/v1/endpoints"))
    assert {e["workspace_id"] for e in listed["items"]} == {MINE, OTHER}


async def test_a_route_without_a_declared_scope_is_the_operators(api: Api, redis_url: str) -> None:
    """Deny by default: a route added without its access is the operator keys' only."""
    key = await scoped_key(api)
    settings = ApiSettings.from_env({"REDIS_URL": redis_url, "API_KEYS": KEY})
    app = create_app(settings)

    async def undeclared(_request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/v1/undeclared", undeclared)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        async with client.get("/v1/undeclared", headers=headers) as response:
            await problem(response, 403, "insufficient-scope")
        async with client.get("/v1/nothing-here", headers=headers) as response:
            await problem(response, 404, "not-found")
        operator = {"Authorization": f"Bearer {KEY}"}
        async with client.get("/v1/undeclared", headers=operator) as response:
            assert response.status == 200
