"""Publishing: ``POST /v1/events`` (one event or a batch) and ``GET /v1/events/{id}``.

A batch (a JSON array of at most :data:`MAX_BATCH_EVENTS`) is validated completely
before anything is published: one invalid event and nothing is stored (422, one error
per bad item). Success is 202 with ``{"id", "deliveries", "duplicate"}`` (a list for a
batch).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from producer import jsonwire
from producer.events import ID_PATTERN, Catalogue, Event, EventError, parse_event
from producer.http.access import Access, Owner, Routes, Scope
from producer.http.bodies import READ_CHUNK_BYTES, decode_json, require_json
from producer.http.openapi import (
    json_response,
    operation,
    path_parameter,
    problem_responses,
    schema_ref,
)
from producer.http.ownership import refuse_other_workspaces
from producer.http.problems import (
    INVALID_EVENT,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    TOO_MANY_EVENTS,
    Problem,
    redis_deadline,
)
from producer.http.state import MAX_BATCH_BYTES, METRICS, SETTINGS, producer_of

MAX_BATCH_EVENTS = 1000
# A single event's body may exceed MAX_PAYLOAD_BYTES by this much: the delivered body is
# compact and normalized, the request's may be indented.
SINGLE_EVENT_SLACK_BYTES = 4 * 1024


async def read_body(request: web.Request, batch_limit: int, single_limit: int) -> bytes:
    """The body of ``POST /v1/events``; 413 before it is read, or as soon as it is too large.

    A declared length over ``batch_limit`` (``MAX_BATCH_BYTES``) is refused before
    anything is read; while reading, the limit is ``batch_limit``, and ``single_limit``
    once the first significant byte shows a single event (``{``). No more than the
    limit is ever buffered.
    """
    declared = request.content_length
    if declared is not None and declared > batch_limit:
        raise _too_large(batch_limit, "a request")
    body = bytearray()
    limit = batch_limit
    kind_known = False
    async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
        if not kind_known:
            significant = (body + chunk).lstrip()
            if significant:
                kind_known = True
                if significant.startswith(b"{"):
                    limit = min(single_limit, batch_limit)
        if len(body) + len(chunk) > limit:
            raise _too_large(limit, "a single event" if limit == single_limit else "a request")
        body += chunk
    return bytes(body)


def _too_large(limit: int, what: str) -> Problem:
    hint = (
        "MAX_PAYLOAD_BYTES plus 4 KiB"
        if what == "a single event"
        else f"MAX_BATCH_BYTES; split the batch into smaller requests of at most "
        f"{MAX_BATCH_EVENTS} events"
    )
    return Problem(PAYLOAD_TOO_LARGE, f"The body of {what} may be at most {limit} bytes ({hint}).")


def validate_events(
    document: jsonwire.JSONValue, catalogue: Catalogue, max_payload_bytes: int
) -> list[Event]:
    """Every event of a batch, or 422 listing each invalid one (all-or-nothing)."""
    assert isinstance(document, list)
    if not document:
        raise Problem(INVALID_EVENT, f"The batch is empty; send 1 to {MAX_BATCH_EVENTS} events.")
    if len(document) > MAX_BATCH_EVENTS:
        raise Problem(
            TOO_MANY_EVENTS,
            f"The batch has {len(document)} events; at most {MAX_BATCH_EVENTS} are accepted "
            "per request.",
        )
    events: list[Event] = []
    errors: list[dict[str, object]] = []
    invalid = 0
    for index, raw in enumerate(document):
        try:
            events.append(parse_event(raw, catalogue, max_payload_bytes=max_payload_bytes))
        except EventError as exc:
            invalid += 1
            errors += (
                {"index": index, "field": field, "message": message}
                for field, message in exc.errors
            )
    if errors:
        raise Problem(
            INVALID_EVENT,
            f"{invalid} of {len(document)} events are invalid; nothing was published.",
            errors=errors,
        )
    return events


def validate_event(
    document: jsonwire.JSONValue, catalogue: Catalogue, max_payload_bytes: int
) -> Event:
    """One event, or 422 naming every field at fault."""
    try:
        return parse_event(document, catalogue, max_payload_bytes=max_payload_bytes)
    except EventError as exc:
        fields = ", ".join(dict.fromkeys(field for field, _ in exc.errors))
        raise Problem(
            INVALID_EVENT,
            f"The event is invalid ({fields}); nothing was published.",
            errors=[{"field": field, "message": message} for field, message in exc.errors],
        ) from None


PUBLISH_FAILED = (
    "Redis is unavailable or did not answer in time; the request was not accepted. "
    "Events of a batch may have been stored before the failure: retry with the same "
    "event ids (an id already stored is answered as a duplicate and delivered once). "
    "Events sent without an id get a new one on every attempt."
)


async def post_events(request: web.Request) -> web.Response:
    """``POST /v1/events``: publish one event or a batch."""
    require_json(request)
    producer = producer_of(request)
    max_payload = producer.settings.max_payload_bytes
    body = await read_body(
        request,
        batch_limit=request.app[SETTINGS].max_batch_bytes,
        single_limit=max_payload + SINGLE_EVENT_SLACK_BYTES,
    )
    document = decode_json(body)
    batch = isinstance(document, list)
    if batch:
        events = validate_events(document, producer.catalogue, max_payload)
    else:
        events = [validate_event(document, producer.catalogue, max_payload)]
    refuse_other_workspaces(request, (event.workspace_id for event in events))
    async with redis_deadline(PUBLISH_FAILED):
        results = await producer.publisher.publish_many(events)
    request.app[METRICS].published(results)
    if batch:
        return web.json_response([r.to_dict() for r in results], status=202)
    (result,) = results
    return web.json_response(
        result.to_dict(),
        status=202,
        headers={"Location": str(request.app.router["event"].url_for(id=result.event_id))},
    )


async def get_event(request: web.Request) -> web.Response:
    """``GET /v1/events/{id}``: the event (type, created_at, data) and its deliveries, in
    fan-out order; ``event`` is null once the body left the log but deliveries remain."""
    event_id = request.match_info["id"]
    missing = Problem(NOT_FOUND, f"No event with id {event_id!r} (or its retention ran out).")
    if not ID_PATTERN.match(event_id):
        raise missing
    producer = producer_of(request)
    async with redis_deadline("Redis is unavailable; the event could not be read."):
        deliveries = await producer.deliveries.for_event(event_id)
        event = await producer.deliveries.sent_event(event_id)
        # An event nobody subscribed to exists without deliveries: 200 with an empty list.
        if not deliveries and event is None:
            raise missing
    return web.json_response(
        {
            "id": event_id,
            "event": event.to_dict() if event is not None else None,
            "deliveries": [d.to_dict() for d in deliveries],
        }
    )


def add_routes(app: web.Application) -> None:
    """Register the publishing routes."""
    routes = Routes(app)
    routes.post("/v1/events", post_events, Scope.EVENTS_PUBLISH, name="events")
    routes.get("/v1/events/{id}", get_event, Access(Scope.EVENTS_READ, Owner.EVENT), name="event")


# ---------------------------------------------------------------- OpenAPI

_EVENT_ID = path_parameter("id", "The event id.")

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/events": {
        "post": operation(
            "publishEvents",
            "Publish one event, or a batch (all or nothing)",
            tag="events",
            description="A JSON object publishes one event; a JSON array publishes a batch "
            f"of 1 to {MAX_BATCH_EVENTS}, validated completely before anything is stored "
            "(422 lists every bad item by `index`). Publishing an id again is answered as a "
            "duplicate and delivers nothing twice. The body of a batch may be at most "
            f"`MAX_BATCH_BYTES` ({MAX_BATCH_BYTES} bytes, 16 MiB, by default), that of a "
            "single event `MAX_PAYLOAD_BYTES` + 4 KiB (the event as delivered at most "
            "`MAX_PAYLOAD_BYTES`, 256 KiB by default); a `Content-Length` over the limit is "
            "answered 413 before the body is read, a chunked body is read up to it only.",
            body={
                "oneOf": [
                    schema_ref("EventInput"),
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_BATCH_EVENTS,
                        "items": schema_ref("EventInput"),
                    },
                ]
            },
            responses={
                "202": json_response(
                    "Stored and fanned out (a list of results for a batch).",
                    {
                        "oneOf": [
                            schema_ref("PublishResult"),
                            {"type": "array", "items": schema_ref("PublishResult")},
                        ]
                    },
                    headers={
                        "Location": {
                            "description": "The event's URL (single events only).",
                            "schema": {"type": "string"},
                        }
                    },
                ),
                **problem_responses(422, 503),
            },
        )
    },
    "/v1/events/{id}": {
        "get": operation(
            "getEvent",
            "An event, its deliveries and their attempts",
            tag="events",
            parameters=[_EVENT_ID],
            responses={
                "200": json_response(
                    "The event as sent (null once its body left the log) and its "
                    "deliveries, in fan-out order.",
                    {
                        "type": "object",
                        "required": ["id", "event", "deliveries"],
                        "properties": {
                            "id": {"type": "string"},
                            "event": {"oneOf": [schema_ref("SentEvent"), {"type": "null"}]},
                            "deliveries": {"type": "array", "items": schema_ref("Delivery")},
                        },
                    },
                ),
                **problem_responses(404, 503),
            },
        )
    },
}
