"""The dashboard over PARTITIONS=3 (real Redis, worker, receiver, Chromium): every
workspace's webhooks, their logs, events and deliveries are found and shown whichever
partition they live in."""

from __future__ import annotations

import json

import pytest
import test_dashboard
from playwright.async_api import Page
from test_dashboard import Dashboard, sign_in
from test_dashboard_views import delivered

from producer.context import Producer
from producer.events import parse_event
from producer.partitioning import partition_of

from harness import Receiver
from support import RunningWorker

# test_dashboard's fixtures, which pytest finds by these names.
browser = test_dashboard.browser
dashboard = test_dashboard.dashboard
context = test_dashboard.context
page = test_dashboard.page
producer = test_dashboard.producer
worker = test_dashboard.worker

WORKSPACES = [f"ws_{n}" for n in range(6)]


@pytest.fixture
def log_env() -> dict[str, str]:
    """The extra settings test_dashboard's fixtures (API, producer, worker) start with:
    three partitions, the delivery log in Redis."""
    return {"PARTITIONS": "3"}


def test_the_workspaces_span_every_partition() -> None:
    assert {partition_of(ws, 3) for ws in WORKSPACES} == {0, 1, 2}


async def test_every_partitions_webhooks_events_and_deliveries_are_shown(
    dashboard: Dashboard, producer: Producer, worker: RunningWorker, receiver: Receiver, page: Page
) -> None:
    assert producer.partitions.count == 3
    shown: dict[str, tuple[str, str, str]] = {}
    for ws in WORKSPACES:
        endpoint = await producer.endpoints.create(
            workspace_id=ws,
            url=receiver.url(f"/hook/{ws}"),
            events=["*"],
            owner_email="o@example.com",
        )
        raw = {"type": "issue.created", "workspace_id": ws, "data": {"ws": ws}}
        event = parse_event(raw, producer.catalogue, max_payload_bytes=4096)
        await producer.publisher.publish_many([event])
        shown[ws] = (endpoint.id, event.id, await delivered(producer, event.id, endpoint.id))
    await sign_in(page, dashboard)
    listing = await page.content()
    for endpoint_id, _, _ in shown.values():
        assert endpoint_id in listing
    for ws, (endpoint_id, event_id, delivery_id) in shown.items():
        await page.goto(dashboard.url(f"/ui/webhooks/{endpoint_id}"))
        assert delivery_id in await page.content(), ws
        await page.goto(dashboard.url(f"/ui/events/{event_id}"))
        assert delivery_id in await page.content(), ws
        response = await page.goto(dashboard.url(f"/ui/deliveries/{delivery_id}"))
        assert response is not None
        assert response.status == 200
        # The exact body sent, read from its workspace's partition.
        sent = json.loads(await page.inner_text("#sent-body"))
        assert (sent["id"], sent["data"]) == (event_id, {"ws": ws})
