"""A batch's items with what ``batch.lua`` loaded for them, decoded into targets.

A job (or a claim on the ready list) names (delivery, attempt) items only; one script
call loads each delivery's state, its event (body, type, created) and its endpoint.
Each item then becomes a :class:`Target` to attempt, or needs no request: its delivery
is gone (retention), its attempt is already recorded (a re-run after a crash: a
duplicate), its endpoint is disabled and it pauses (producer/pausing.py), or it cannot
be sent (endpoint deleted, disabled with drop, event expired, dropped from a paused
backlog) and ends dead with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from producer.deliveries import DeliveryState
from producer.endpoint import Endpoint, EndpointStatus
from producer.fields import ENDPOINT_PAUSE_FIELDS
from producer.jobs import DeliveryItem
from producer.secretbox import SecretBox

# batch.lua's reply: {deliveries, events, endpoints} (see there).
Loaded = list[Any]


@dataclass(frozen=True)
class Target:
    """One item with everything needed to attempt it."""

    item: DeliveryItem
    attempt_in_round: int
    event_id: str
    event_type: str
    event_created_ms: int
    body: bytes
    endpoint: Endpoint


@dataclass(frozen=True)
class Unsendable:
    """An item whose delivery cannot be attempted, and why."""

    item: DeliveryItem
    event_id: str
    endpoint_id: str
    reason: str


@dataclass
class DecodedBatch:
    """What becomes of each item of a batch."""

    targets: list[Target] = field(default_factory=list)
    unsendable: list[Unsendable] = field(default_factory=list)
    gone: list[DeliveryItem] = field(default_factory=list)
    # Items of disabled endpoints, to pause (worker/pauses.py).
    paused: list[DeliveryItem] = field(default_factory=list)
    duplicates: int = 0


def decode(items: Sequence[DeliveryItem], loaded: Loaded, box: SecretBox) -> DecodedBatch:
    """Sort the batch's items by what ``batch.lua`` found for them."""
    rows, flat_events, endpoint_rows = loaded
    events = {  # each body encoded once, whatever the fan-out within the batch
        flat_events[k]: (
            flat_events[k + 1].encode(),
            flat_events[k + 2],
            int(flat_events[k + 3]),
        )
        for k in range(0, len(flat_events), 4)
    }
    endpoints: dict[str, Endpoint | None] = {}
    dropping: set[str] = set()  # disabled with drop
    for row in endpoint_rows:
        fields = dict(zip(row[1::2], row[2::2], strict=True))
        endpoints[row[0]] = Endpoint.from_hash(fields, box) if fields else None
        if fields.get(ENDPOINT_PAUSE_FIELDS.drop) == "1":
            dropping.add(row[0])

    batch = DecodedBatch()
    for item, row in zip(items, rows, strict=True):
        if not row:
            batch.gone.append(item)
            continue
        state, made, base, event_id, endpoint_id, dropped = (
            row[0],
            int(row[1]),
            int(row[2]),
            row[3],
            row[4],
            row[5] if len(row) > 5 else None,
        )
        # A paused delivery's jobs were all spent: only a resume queues it again.
        finished = (DeliveryState.DELIVERED, DeliveryState.DEAD, DeliveryState.PAUSED)
        if state in finished or made >= item.attempt:
            batch.duplicates += 1
            continue
        endpoint = endpoints.get(endpoint_id)
        event = events.get(event_id)
        reason = None
        if endpoint is None:
            reason = "endpoint deleted"
        elif dropped:
            reason = dropped
        elif endpoint.status == EndpointStatus.DISABLED and endpoint_id in dropping:
            reason = "endpoint disabled"
        elif endpoint.status == EndpointStatus.DISABLED:
            batch.paused.append(item)
            continue
        elif event is None:
            reason = "event expired"
        if reason is not None or endpoint is None or event is None:
            batch.unsendable.append(Unsendable(item, event_id, endpoint_id, reason or ""))
            continue
        body, event_type, created_ms = event
        batch.targets.append(
            Target(item, item.attempt - base, event_id, event_type, created_ms, body, endpoint)
        )
    return batch
