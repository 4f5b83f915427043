"""The delivery log and replay: ``GET /v1/endpoints/{id}/attempts``, ``GET
/v1/events/{id}/attempts`` (filtered by ``outcome``, ``since`` and ``until``, newest
first, paginated), ``POST /v1/deliveries/{id}/replay`` and ``POST
/v1/endpoints/{id}/replay`` (every dead delivery since a time). Replay is idempotent:
only dead deliveries are enqueued again.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from producer.deliveries import AttemptFilter, AttemptOutcome, DeliveryNotFound, attempt_entry
from producer.http.access import Access, Owner, Routes, Scope
from producer.http.bodies import (
    DEFAULT_PAGE_LIMIT,
    ENDPOINT_ATTEMPTS_CURSOR,
    EVENT_ATTEMPTS_CURSOR,
    decode_cursor,
    encode_cursor,
    instant_ms,
    page,
    path_id,
    query_limit,
    read_optional_json_object,
    reject_unknown,
)
from producer.http.openapi import (
    ISO_TIME_SCHEMA,
    PAGINATION_PARAMETERS,
    json_response,
    operation,
    page_schema,
    path_parameter,
    problem_responses,
    query_parameter,
    schema_ref,
)
from producer.http.problems import FieldErrors, missing, redis_deadline, registry_errors
from producer.http.state import producer_of
from producer.scans import SCAN_BUDGET

log = structlog.get_logger("cliq.producer.http.deliveries")


def attempt_filter(request: web.Request, errors: FieldErrors) -> AttemptFilter:
    """Read ``outcome``, ``since`` and ``until``, adding each bad one to ``errors``."""
    raw_outcome = request.query.get("outcome")
    outcomes = [o.value for o in AttemptOutcome]
    outcome = None
    if raw_outcome in outcomes:
        outcome = AttemptOutcome(raw_outcome)
    elif raw_outcome is not None:
        errors.add("outcome", f"must be one of {', '.join(outcomes)}")

    def instant(name: str) -> int | None:
        raw = request.query.get(name)
        return None if raw is None else errors.check(lambda: instant_ms(raw, name), None)

    result = AttemptFilter(outcome=outcome, since_ms=instant("since"), until_ms=instant("until"))
    since_ms, until_ms = result.since_ms, result.until_ms
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        errors.add("until", "must not be earlier than since")
    return result


def attempt_query(
    request: web.Request, cursor_kind: str
) -> tuple[int, AttemptFilter, tuple[int, str, int] | None]:
    """The ``limit``, filter and ``cursor`` of an attempts listing; one 422 naming every
    bad parameter."""
    errors = FieldErrors()
    limit = errors.check(lambda: query_limit(request), DEFAULT_PAGE_LIMIT)
    selected = attempt_filter(request, errors)
    cursor = request.query.get("cursor")
    after: tuple[int, str, int] | None = None
    if cursor is not None:
        position = errors.check(lambda: decode_cursor(cursor, cursor_kind, (int, str, int)), None)
        if position is not None:
            at_ms, delivery_id, number = position
            after = (at_ms, delivery_id, number)
    errors.raise_any()
    return limit, selected, after


async def endpoint_attempts(request: web.Request) -> web.Response:
    """``GET /v1/endpoints/{id}/attempts``: its attempts, newest deliveries first
    (:meth:`producer.deliveries.DeliveryLog.scan_attempts`)."""
    endpoint_id = path_id(request, "endpoint")
    limit, selected, after = attempt_query(request, ENDPOINT_ATTEMPTS_CURSOR)
    producer = producer_of(request)
    async with registry_errors("Redis is unavailable; the attempts could not be read."):
        await producer.endpoints.get(endpoint_id)
        items, next_position = await producer.deliveries.scan_attempts(
            endpoint_id, selected, after, limit
        )
    next_cursor = encode_cursor(ENDPOINT_ATTEMPTS_CURSOR, next_position) if next_position else None
    return web.json_response(page(items, next_cursor))


async def event_attempts(request: web.Request) -> web.Response:
    """``GET /v1/events/{id}/attempts``: every attempt of the event, newest first."""
    event_id = path_id(request, "event")
    limit, selected, after = attempt_query(request, EVENT_ATTEMPTS_CURSOR)
    producer = producer_of(request)
    async with redis_deadline("Redis is unavailable; the attempts could not be read."):
        deliveries = await producer.deliveries.for_event(event_id)
        if not deliveries and await producer.event_workspace(event_id) is None:
            raise missing("event", event_id)
    # An event has one delivery per subscribed endpoint: few enough to sort in full.
    keyed = sorted(
        (
            ((a.at_ms, d.id, a.number), attempt_entry(a, d))
            for d in deliveries
            for a in d.attempts
            if selected.matches(a)
        ),
        key=lambda pair: pair[0],
        reverse=True,
    )
    rest = [pair for pair in keyed if after is None or pair[0] < after]
    next_cursor = (
        encode_cursor(EVENT_ATTEMPTS_CURSOR, rest[limit - 1][0]) if len(rest) > limit else None
    )
    return web.json_response(page([entry for _, entry in rest[:limit]], next_cursor))


async def get_delivery(request: web.Request) -> web.Response:
    """``GET /v1/deliveries/{id}``: one delivery and its attempts."""
    delivery_id = path_id(request, "delivery")
    async with redis_deadline("Redis is unavailable; the delivery could not be read."):
        try:
            delivery = await producer_of(request).deliveries.get(delivery_id)
        except DeliveryNotFound:
            raise missing("delivery", delivery_id) from None
    return web.json_response(delivery.to_dict())


# ---------------------------------------------------------------- replay


async def replay_delivery(request: web.Request) -> web.Response:
    """``POST /v1/deliveries/{id}/replay``: enqueue it again if it is dead (else nothing)."""
    delivery_id = path_id(request, "delivery")
    deliveries = producer_of(request).deliveries
    async with redis_deadline("Redis is unavailable; nothing was replayed."):
        try:
            await deliveries.get(delivery_id)
        except DeliveryNotFound:
            raise missing("delivery", delivery_id) from None
        replayed = await deliveries.replay([delivery_id])
    return web.json_response({"replayed": replayed, "count": len(replayed)})


async def replay_endpoint(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/replay``: every dead delivery that died since ``since``
    (every one without it, as ``cliq-webhooks replay`` does; no body at all is ``{}``)."""
    endpoint_id = path_id(request, "endpoint")
    body = await read_optional_json_object(request)
    errors = FieldErrors()
    errors.check(lambda: reject_unknown(body, ("since",)), None)
    since_ms = errors.check(lambda: instant_ms(body["since"], "since"), 0) if "since" in body else 0
    errors.raise_any()
    producer = producer_of(request)
    async with registry_errors("Redis is unavailable; replay may be incomplete: retry it."):
        await producer.endpoints.get(endpoint_id)
        dead = await producer.deliveries.dead_ids(endpoint_id, since_ms)
        replayed = await producer.deliveries.replay(dead)
    log.info("endpoint_replayed", endpoint_id=endpoint_id, since_ms=since_ms, count=len(replayed))
    return web.json_response({"replayed": replayed, "count": len(replayed)})


def add_routes(app: web.Application) -> None:
    """Register the delivery-log and replay routes."""
    routes = Routes(app)
    read, write = Scope.DELIVERIES_READ, Scope.DELIVERIES_WRITE
    routes.get("/v1/endpoints/{id}/attempts", endpoint_attempts, Access(read, Owner.ENDPOINT))
    routes.post("/v1/endpoints/{id}/replay", replay_endpoint, Access(write, Owner.ENDPOINT))
    routes.get("/v1/events/{id}/attempts", event_attempts, Access(read, Owner.EVENT))
    routes.post("/v1/deliveries/{id}/replay", replay_delivery, Access(write, Owner.DELIVERY))
    routes.get("/v1/deliveries/{id}", get_delivery, Access(read, Owner.DELIVERY))


# ---------------------------------------------------------------- OpenAPI

_ID = {"type": "string"}
_OUTCOME = {"type": "string", "enum": [o.value for o in AttemptOutcome]}
_ENDPOINT_ID = path_parameter("id", "The endpoint id.")
_ATTEMPT_FILTERS = [
    query_parameter("outcome", "Only attempts with this outcome.", _OUTCOME),
    query_parameter(
        "since", "Only attempts made at or after this time (ISO 8601).", ISO_TIME_SCHEMA
    ),
    query_parameter(
        "until", "Only attempts made at or before this time (ISO 8601).", ISO_TIME_SCHEMA
    ),
    *PAGINATION_PARAMETERS,
]
_ATTEMPT_PAGE = json_response("A page of attempts.", page_schema(schema_ref("AttemptEntry")))
_REPLAYED = json_response("What was enqueued again.", schema_ref("Replayed"))

OPENAPI_SCHEMAS: dict[str, Any] = {
    "AttemptEntry": {
        "allOf": [
            schema_ref("StoredAttempt"),
            {
                "type": "object",
                "required": ["delivery_id", "event_id", "endpoint_id", "at"],
                "properties": {
                    "delivery_id": _ID,
                    "event_id": _ID,
                    "endpoint_id": _ID,
                    "at": ISO_TIME_SCHEMA,
                },
            },
        ]
    },
    "Replayed": {
        "type": "object",
        "required": ["replayed", "count"],
        "properties": {
            "replayed": {
                "type": "array",
                "items": _ID,
                "description": "The deliveries enqueued again (dead ones only).",
            },
            "count": {"type": "integer", "minimum": 0},
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/endpoints/{id}/attempts": {
        "get": operation(
            "listEndpointAttempts",
            "The delivery log of an endpoint",
            tag="delivery log",
            description="Newest deliveries first, each one's attempts newest first. A page "
            f"examines at most {SCAN_BUDGET} deliveries: it may end early, with a cursor.",
            parameters=[_ENDPOINT_ID, *_ATTEMPT_FILTERS],
            responses={"200": _ATTEMPT_PAGE, **problem_responses(404, 422, 503)},
        )
    },
    "/v1/endpoints/{id}/replay": {
        "post": operation(
            "replayEndpoint",
            "Enqueue again every dead delivery that died since a time (idempotent)",
            tag="replay",
            description="Without `since` (or without a body), every dead delivery.",
            parameters=[_ENDPOINT_ID],
            body={
                "type": "object",
                "additionalProperties": False,
                "properties": {"since": ISO_TIME_SCHEMA},
            },
            body_required=False,
            responses={"200": _REPLAYED, **problem_responses(404, 422, 503)},
        )
    },
    "/v1/events/{id}/attempts": {
        "get": operation(
            "listEventAttempts",
            "Every attempt of an event, newest first",
            tag="delivery log",
            parameters=[path_parameter("id", "The event id."), *_ATTEMPT_FILTERS],
            responses={"200": _ATTEMPT_PAGE, **problem_responses(404, 422, 503)},
        )
    },
    "/v1/deliveries/{id}": {
        "get": operation(
            "getDelivery",
            "One delivery and its attempts",
            tag="delivery log",
            parameters=[path_parameter("id", "The delivery id.")],
            responses={
                "200": json_response("The delivery.", schema_ref("Delivery")),
                **problem_responses(404, 503),
            },
        )
    },
    "/v1/deliveries/{id}/replay": {
        "post": operation(
            "replayDelivery",
            "Enqueue a dead delivery again (nothing if it is not dead)",
            tag="replay",
            parameters=[path_parameter("id", "The delivery id.")],
            responses={"200": _REPLAYED, **problem_responses(404, 503)},
        )
    },
}
