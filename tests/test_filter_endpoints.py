"""Payload filters through the API and the CLI, and end to end: an endpoint whose filter
does not match an event gets no delivery of it (a real worker, a real receiver)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_api_manage import api, api_factory, create, event, ok, producer
from test_cli import cli, ok_json

from producer.context import Producer
from producer.deliveries import DeliveryState

from harness import Receiver
from harness.polling import wait_until
from support import start_worker, worker_env

# The fixtures imported above are used by name.
__all__ = ["api", "api_factory", "producer"]

HIGH = {"data.priority": {"$in": ["high", "urgent"]}}


async def test_the_api_keeps_shows_changes_and_removes_a_filter(api: Any) -> None:
    created = await create(api, filter=HIGH)
    assert created["filter"] == HIGH
    path = f"/v1/endpoints/{created['id']}"
    assert (await ok(await api.get(path)))["filter"] == HIGH
    listed = await ok(await api.get("/v1/endpoints"))
    assert [e["filter"] for e in listed["items"]] == [HIGH]
    changed = {"$or": [{"type": "issue.deleted"}, {"data.estimate": {"$gte": 3}}]}
    assert (await ok(await api.patch(path, json={"filter": changed})))["filter"] == changed
    # Another field's PATCH keeps it.
    assert (await ok(await api.patch(path, json={"description": "x"})))["filter"] == changed
    assert (await ok(await api.patch(path, json={"filter": {}})))["filter"] == {}
    assert (await create(api))["filter"] == {}  # the default: none


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"$or": [{"data.a": 1}, {"data.priority": {"$in": "high"}}]},
            "at /$or/1/data.priority/$in: $in takes an array, not a string",
        ),
        ({"priority": "high"}, "at /priority: 'priority' is not a path into the event"),
        ({"data.a": {"$gt": None}}, "at /data.a/$gt: $gt compares with a number or a string"),
        ({"data.a": "x" * 5000}, "is 5013 bytes of JSON; the limit is 4096"),
        ("high", "must be a filter object"),
        (None, "must be a filter object"),
    ],
)
async def test_the_api_refuses_a_malformed_filter_naming_the_spot(
    api: Any, producer: Producer, bad: object, message: str
) -> None:
    body = {
        "workspace_id": "ws_1",
        "url": "https://hooks.example.com/cliq",
        "events": ["*"],
        "owner_email": "owner@example.com",
        "filter": bad,
    }
    response = await api.post("/v1/endpoints", json=body)
    text = await response.text()
    assert response.status == 422, text
    (error,) = (await response.json())["errors"]
    assert error["field"] == "filter"
    assert message in error["message"]
    assert await producer.endpoints.all() == []  # nothing half-created
    # A PATCH refuses it the same way and keeps the filter there was.
    created = await create(api, filter=HIGH)
    patched = await api.patch(f"/v1/endpoints/{created['id']}", json={"filter": bad})
    assert patched.status == 422
    assert message in (await patched.json())["errors"][0]["message"]
    assert (await producer.endpoints.get(created["id"])).filter.source == HIGH


async def test_publish_counts_only_the_deliveries_made_and_a_worker_sends_only_those(
    api: Any, producer: Producer, receiver: Receiver, redis_url: str, tmp_path: Path
) -> None:
    filtered = await create(api, url=receiver.url("/high"), filter=HIGH)
    everything = await create(api, url=receiver.url("/all"))
    worker = await start_worker(worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path)))
    try:
        batch = [
            event(id="evt_high", data={"priority": "high"}),
            event(id="evt_low", data={"priority": "low"}),
            event(id="evt_none", data={}),
        ]
        answers = await ok(await api.post("/v1/events", json=batch), 202)
        assert [a["deliveries"] for a in answers] == [2, 1, 1]
        received = await receiver.wait_for(4, timeout=15)
        by_path = sorted((r.path, r.json()["id"]) for r in received)
        assert by_path == [
            ("/all", "evt_high"),
            ("/all", "evt_low"),
            ("/all", "evt_none"),
            ("/high", "evt_high"),
        ]
        low = await producer.deliveries.for_event("evt_low")
        assert [d.endpoint_id for d in low] == [everything["id"]]

        # Removing the filter lets the next low-priority event through (the publisher
        # sees the change: the workspace's version moved).
        await ok(await api.patch(f"/v1/endpoints/{filtered['id']}", json={"filter": {}}))
        one = await ok(
            await api.post("/v1/events", json=event(id="evt_low2", data={"priority": "low"})),
            202,
        )
        assert one["deliveries"] == 2

        async def delivered() -> bool:
            deliveries = await producer.deliveries.for_event("evt_low2")
            return len(deliveries) == 2 and all(
                d.state == DeliveryState.DELIVERED for d in deliveries
            )

        await wait_until(delivered, 15, message="evt_low2 was not delivered to both")
        assert ("/high", "evt_low2") in [(r.path, r.json()["id"]) for r in receiver.received]
    finally:
        await worker.stop()


def test_the_cli_sets_shows_and_refuses_filters(redis_url: str) -> None:
    base = (
        "endpoint", "add", "--workspace", "ws_1", "--url", "https://e.example/h",
        "--events", "issue.*", "--owner-email", "o@example.com",
    )  # fmt: skip
    added = ok_json(cli(redis_url, *base, "--filter", '{"data.priority": "high"}', "--json"))
    assert added["filter"] == {"data.priority": "high"}
    shown = cli(redis_url, "endpoint", "show", added["id"])
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.startswith("filter "))
    assert line.split(None, 1)[1] == '{"data.priority": "high"}'  # JSON, for people too
    updated = ok_json(
        cli(redis_url, "endpoint", "update", added["id"], "--filter", '{"$or": [{"data.a": 1}]}',
            "--json")
    )  # fmt: skip
    assert updated["filter"] == {"$or": [{"data.a": 1}]}
    kept = ok_json(cli(redis_url, "endpoint", "update", added["id"], "--url", "https://f.example/h",
                       "--json"))  # fmt: skip
    assert kept["filter"] == {"$or": [{"data.a": 1}]}
    removed = ok_json(cli(redis_url, "endpoint", "update", added["id"], "--filter", "{}", "--json"))
    assert removed["filter"] == {}

    malformed = cli(redis_url, *base, "--filter", '{"data.a": {"$in": 3}}')
    assert malformed.returncode == 2, malformed.stdout
    assert "filter: at /data.a/$in: $in takes an array, not a number" in malformed.stderr
    not_json = cli(redis_url, *base, "--filter", "{data.a: 1}")
    assert not_json.returncode == 2
    assert "filter: is not valid JSON" in not_json.stderr
    listed = ok_json(cli(redis_url, "endpoint", "list", "--json"))
    assert [e["id"] for e in listed] == [added["id"]]  # the refused ones were not created
