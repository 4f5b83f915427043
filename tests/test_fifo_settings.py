"""An endpoint's ``ordering`` (``parallel`` or ``fifo``) through the API, its OpenAPI
description and the CLI: kept, changed, shown, and refused with the field named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from test_api import Client, problem
from test_cli import cli, ok_json

from producer.http.app import create_app
from producer.http.state import ApiSettings
from producer.keys import Keys

ADD = (
    "endpoint", "add", "--workspace", "ws_1", "--url", "https://e.example/h",
    "--events", "*", "--email", "o@example.com",
)  # fmt: skip


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Client]:
    settings = ApiSettings.from_env({"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1"})
    client: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def create(api: Client, **fields: Any) -> Any:
    body = {
        "workspace_id": "ws_1",
        "url": "https://hooks.example.com/cliq",
        "events": ["*"],
        "owner_email": "owner@example.com",
        **fields,
    }
    return await api.post("/v1/endpoints", json=body)


async def test_the_api_keeps_changes_and_checks_ordering(
    api: Client, redis: aioredis.Redis
) -> None:
    default = await create(api)
    assert default.status == 201
    assert (await default.json())["ordering"] == "parallel"
    response = await create(api, ordering="fifo")
    assert response.status == 201
    created = await response.json()
    assert created["ordering"] == "fifo"
    path = f"/v1/endpoints/{created['id']}"
    assert (await (await api.get(path)).json())["ordering"] == "fifo"
    patched = await api.patch(path, json={"ordering": "parallel"})
    assert patched.status == 200
    assert (await patched.json())["ordering"] == "parallel"

    for bad, message in (
        ("lifo", "must be 'parallel' (the default) or 'fifo', not 'lifo'"),
        (1, "must be 'parallel' or 'fifo'"),
    ):
        body = await problem(await api.patch(path, json={"ordering": bad}), 422, "invalid-fields")
        assert body["errors"] == [{"field": "ordering", "message": message}]
    # Every bad field at once, ordering among them; nothing is created.
    body = await problem(
        await create(api, ordering="random", max_in_flight=0), 422, "invalid-fields"
    )
    assert {error["field"] for error in body["errors"]} == {"ordering", "max_in_flight"}
    assert await redis.zcard(Keys().endpoints) == 2


async def test_the_openapi_description_names_both_orderings(api: Client) -> None:
    spec = await (await api.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for name in ("EndpointCreate", "EndpointPatch"):
        ordering = schemas[name]["properties"]["ordering"]
        assert ordering["enum"] == ["parallel", "fifo"]
        assert "one at a time" in ordering["description"]
    assert "ordering" in schemas["Endpoint"]["required"]


def test_the_cli_adds_updates_and_refuses_an_ordering(redis_url: str) -> None:
    added = ok_json(cli(redis_url, *ADD, "--ordering", "fifo", "--json"))
    assert added["ordering"] == "fifo"
    updated = cli(redis_url, "endpoint", "update", added["id"], "--ordering", "parallel")
    assert updated.returncode == 0, updated.stderr
    assert "ordering" in updated.stdout
    assert "parallel" in updated.stdout
    refused = cli(redis_url, *ADD, "--ordering", "lifo")
    assert refused.returncode == 2
    assert "--ordering: invalid choice: 'lifo' (choose from" in refused.stderr
