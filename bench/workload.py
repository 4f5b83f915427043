"""What the scenarios send: ~600-byte events, endpoints on the sink, backlogs in Redis."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from producer.context import Producer
from producer.endpoint import Endpoint, EndpointStatus
from producer.endpoint_rules import new_secret
from producer.events import Catalogue, Event, example_data, parse_event

WORKSPACE = "ws_bench"
EVENT_TYPE = "issue.updated"
# Sized so that a whole event body is about 600 bytes, a typical webhook.
DESCRIPTION = ("Steps to reproduce: open the board, drag the card, reload the page. " * 5)[:330]
PUBLISH_CHUNK = 1000


def event_data(number: int) -> dict[str, object]:
    """The ``data`` of event ``number``."""
    return {**example_data(EVENT_TYPE), "number": number, "description": DESCRIPTION}


def make_event(
    catalogue: Catalogue, number: int, workspace: str = WORKSPACE, now: datetime | None = None
) -> Event:
    """One validated event, as the API would build it (``now`` sets ``created_at``)."""
    raw = {"type": EVENT_TYPE, "workspace_id": workspace, "data": event_data(number)}
    return parse_event(raw, catalogue, max_payload_bytes=1 << 20, now=now)


def make_events(catalogue: Catalogue, count: int, workspace: str = WORKSPACE) -> list[Event]:
    """``count`` events, built before any clock starts (parsing is not publishing)."""
    return [make_event(catalogue, n, workspace) for n in range(count)]


def sample_body() -> bytes:
    """A body like every scenario's, for the peers without the service (bench/peers.py)."""
    return make_event(Catalogue(), 0).body


def sample_endpoint(url: str) -> Endpoint:
    """An endpoint object to sign with, without Redis (for the peers: bench/peers.py)."""
    return Endpoint(
        id="ep_" + secrets.token_hex(8),
        workspace_id=WORKSPACE,
        url=url,
        secret=new_secret(),
        events=("*",),
        owner_email="bench@example.com",
        description="raw-aiohttp",
        status=EndpointStatus.ACTIVE,
        created_ms=0,
        updated_ms=0,
    )


async def register_endpoints(
    producer: Producer, base_url: str, count: int, workspace: str = WORKSPACE
) -> list[Endpoint]:
    """``count`` endpoints of ``workspace`` subscribed to everything, each on its own path."""
    return [
        await producer.endpoints.create(
            workspace_id=workspace,
            url=f"{base_url}/hook/{n}",
            events=["*"],
            owner_email="bench@example.com",
            description="benchmark sink",
        )
        for n in range(count)
    ]


async def publish_generated(producer: Producer, count: int) -> int:
    """Publish ``count`` events built one chunk at a time, so a million never sit in memory.

    Returns the deliveries created.
    """
    created = 0
    for start in range(0, count, PUBLISH_CHUNK):
        numbers = range(start, min(count, start + PUBLISH_CHUNK))
        created += await publish_all(producer, [make_event(producer.catalogue, n) for n in numbers])
    return created


def spread(events: Sequence[Event], extra: Sequence[Event], span: float) -> list[Event]:
    """``events`` with ``extra`` inserted at even intervals over their first ``span`` share."""
    step = len(events) * span / max(1, len(extra))
    merged: list[Event] = []
    taken = 0
    for position, event in enumerate(events):
        while taken < len(extra) and taken * step <= position:
            merged.append(extra[taken])
            taken += 1
        merged.append(event)
    merged.extend(extra[taken:])
    return merged


async def publish_all(producer: Producer, events: Sequence[Event]) -> int:
    """Publish in chunks of :data:`PUBLISH_CHUNK`; returns the deliveries created."""
    created = 0
    for start in range(0, len(events), PUBLISH_CHUNK):
        results = await producer.publisher.publish_many(events[start : start + PUBLISH_CHUNK])
        created += sum(r.deliveries for r in results)
    return created
