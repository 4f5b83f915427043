"""The fields of the hashes and stream entries that the Lua scripts and Python share.

Python reads these objects; the scripts get the same names as ``F.delivery.state`` etc.
from :func:`producer.keys.lua_prelude`, and tests/test_structure.py fails on a script
that spells one out. The keys these fields live in are :data:`producer.keys.LAYOUT`'s.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryFields:
    """Fields of the delivery hash (``LAYOUT["delivery"]``); attempt k is ``attempt`` + k."""

    event: str = "e"
    endpoint: str = "p"
    state: str = "s"
    attempts: str = "n"
    round: str = "r"
    created: str = "c"
    updated: str = "u"
    due: str = "x"
    attempt: str = "a"
    # The publish order of the delivery's event (the paused backlog's order).
    order: str = "q"
    # Set when a paused delivery leaves its backlog to end dead: why (the worker records
    # it as the reason, producer/pause.lua); cleared by a replay.
    drop: str = "z"


@dataclass(frozen=True)
class EventFields:
    """Fields of the event hash (``LAYOUT["event"]``)."""

    body: str = "b"
    type: str = "t"
    workspace: str = "w"
    created: str = "c"
    open: str = "o"
    # The delivery of an event that has one and no LAYOUT["event_deliveries"] list,
    # and its endpoint (what the log writer's worker/logevents.lua reads).
    sole: str = "s"
    sole_endpoint: str = "p"


@dataclass(frozen=True)
class EndpointPauseFields:
    """Fields of the endpoint hash (``LAYOUT["endpoint"]``) that only the pause logic
    writes, outside :class:`producer.endpoint.Endpoint` (docs/endpoint-states.md)."""

    # "1": disabled with drop (its deliveries end dead), else disabled pauses them.
    drop: str = "drop"
    # Ms the endpoint turned failing (worker/record.lua), for DISABLE_FAILING_AFTER.
    failing_since: str = "failing_since"
    # "1" once its paused backlog overflowed since it was last resumed (one notice).
    backlog_full: str = "backlog_full"


@dataclass(frozen=True)
class MarkerBucketFields:
    """Fields of a bucket of markers' hash (``LAYOUT["marker_bucket"]``)."""

    width: str = "w"
    count: str = "n"


@dataclass(frozen=True)
class LogEntryFields:
    """Fields of a log outbox entry (``LAYOUT["log_outbox"]``)."""

    delivery: str = "d"
    created: str = "c"
    event: str = "e"
    endpoint: str = "p"
    attempt: str = "a"


# The one table of them.
DELIVERY_FIELDS = DeliveryFields()
EVENT_FIELDS = EventFields()
LOG_ENTRY_FIELDS = LogEntryFields()
ENDPOINT_PAUSE_FIELDS = EndpointPauseFields()
MARKER_BUCKET_FIELDS = MarkerBucketFields()
FIELDS: dict[
    str, DeliveryFields | EventFields | LogEntryFields | EndpointPauseFields | MarkerBucketFields
] = {
    "delivery": DELIVERY_FIELDS,
    "event": EVENT_FIELDS,
    "log_entry": LOG_ENTRY_FIELDS,
    "endpoint_pause": ENDPOINT_PAUSE_FIELDS,
    "marker_bucket": MARKER_BUCKET_FIELDS,
}
