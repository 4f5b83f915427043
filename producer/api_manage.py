"""The management API: endpoints, the delivery log, replay, test sends, the catalogue.

Routes (all under the API key, see :func:`producer.api.authenticate`):

* ``POST /v1/endpoints`` (201, the secret shown once), ``GET /v1/endpoints`` (filters
  ``workspace_id`` and ``status``, cursor pagination), ``GET /v1/endpoints/{id}`` (with a
  ``recent`` summary: why is my webhook not receiving events?), ``PATCH``, ``DELETE``,
  ``POST .../enable``, ``.../disable``, ``.../rotate-secret`` (the new secret shown once;
  the old one keeps signing for ``grace_s``).
* ``GET /v1/endpoints/{id}/attempts`` and ``GET /v1/events/{id}/attempts``: the delivery
  log, filtered by ``outcome``, ``since`` and ``until``, newest first, paginated.
* ``POST /v1/deliveries/{id}/replay`` and ``POST /v1/endpoints/{id}/replay`` (every dead
  delivery since a time): idempotent, only dead deliveries are enqueued again.
* ``POST /v1/endpoints/{id}/test``: a test event sent by a worker (see below), answered
  with the receiver's status, latency and response excerpt.
* ``GET /v1/event-types``: the catalogue, each type with a complete example event.

Test sends are performed by a worker, because signing and the guarded connections (the
destination policy checked on every connection) live there and this package cannot
import them. The contract:

* the API ``LPUSH``-es a request, the JSON object ``{"id", "endpoint_id", "event_type",
  "requested_ms", "deadline_ms"}``, to the list :attr:`producer.keys.Keys.test_requests`;
* a worker ``BRPOP``-s it, drops it if ``deadline_ms`` has passed, sends the test event,
  and ``SET``-s the JSON result ``{"id", "endpoint_id", "event_id", "event_type", "ok",
  "status", "error", "latency_ms", "response"}`` (what ``worker.testsend.send_test_event``
  returns, plus the request's ``id``) at :meth:`producer.keys.Keys.test_result` of the request's id,
  with a TTL of :data:`TEST_RESULT_TTL_S`;
* the API polls that key until ``ApiSettings.test_send_wait_s`` has passed, then removes
  its request (``LREM``) and answers 504.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import structlog
from aiohttp import web

from producer import jsonwire
from producer.api import (
    INVALID_FIELDS,
    NOT_FOUND,
    PRODUCER,
    SETTINGS,
    Problem,
    ProblemKind,
    decode_cursor,
    encode_cursor,
    invalid_field,
    page,
    query_limit,
    read_json_object,
    read_optional_json_object,
    redis_deadline,
)
from producer.cluster import RedisClient
from producer.context import Producer
from producer.deliveries import (
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryNotFound,
    DeliveryState,
)
from producer.endpoints import (
    DEFAULT_MAX_IN_FLIGHT,
    MAX_IN_FLIGHT_LIMIT,
    MAX_URL_LENGTH,
    ROTATION_GRACE_S,
    DestinationError,
    Endpoint,
    EndpointError,
    EndpointNotFound,
    EndpointStatus,
)
from producer.events import (
    ID_PATTERN,
    EventError,
    example_data,
    format_timestamp,
    parse_event,
    parse_timestamp,
)
from producer.openapi import (
    PAGINATION_PARAMETERS,
    id_links,
    json_response,
    operation,
    page_schema,
    path_parameter,
    problem_responses,
    query_parameter,
    schema_ref,
)

log = structlog.get_logger("producer.api")

# The endpoint GET summarises this many of the endpoint's latest deliveries (one read).
RECENT_WINDOW = 100
# A listing examines at most this many index entries per page, so that a filter that
# matches little costs bounded work: the page then ends early, with a cursor.
SCAN_BUDGET = 1000
SCAN_CHUNK = 100
MAX_DESCRIPTION_LENGTH = 1024
MAX_ROTATION_GRACE_S = 30 * 24 * 3600

# Test sends (their keys: "test_requests" and "test_result" in producer.keys.LAYOUT).
TEST_RESULT_TTL_S = 60
# Polling for the result: fast at first (an idle worker answers in milliseconds), then
# at most four times a second.
TEST_POLL_FIRST_S = 0.02
TEST_POLL_MAX_S = 0.25

TEST_TIMEOUT = ProblemKind("test-timeout", 504, "No worker answered")
DESTINATION_REFUSED = ProblemKind("destination-refused", 422, "Destination refused")

ENDPOINT_CURSOR = "endpoints"
ENDPOINT_ATTEMPTS_CURSOR = "endpoint-attempts"
EVENT_ATTEMPTS_CURSOR = "event-attempts"

# EndpointError names fields as the registry does; the API uses the public names.
_API_FIELD_NAMES = {"workspace": "workspace_id", "email": "owner_email"}
_PATCHABLE = ("url", "events", "description", "owner_email", "max_in_flight", "rate_limit")
_CREATABLE = ("workspace_id", *_PATCHABLE)
_REQUIRED_ON_CREATE = ("workspace_id", "url", "events", "owner_email")

_EXAMPLE_EVENT_ID = "evt_example"
_EXAMPLE_WORKSPACE = "ws_example"
_EXAMPLE_CREATED_AT = "2025-01-15T10:30:00Z"


# ---------------------------------------------------------------- request helpers


def _producer(request: web.Request) -> Producer:
    """The application's producer (registry, delivery log, Redis)."""
    return request.app[PRODUCER]


def _path_id(request: web.Request, what: str) -> str:
    """The ``{id}`` of the path; 404 when it cannot be an id at all."""
    value = request.match_info["id"]
    if not ID_PATTERN.match(value):
        raise _missing(what, value)
    return value


def _missing(what: str, ident: str) -> Problem:
    """The 404 of an unknown ``what`` (endpoint, event, delivery)."""
    return Problem(NOT_FOUND, f"No {what} with id {ident!r} (or its retention ran out).")


@asynccontextmanager
async def _registry(detail: str) -> AsyncIterator[None]:
    """Map the registry's errors to problems: 404, 422 naming the field (or the
    destination policy's rule), 503."""
    try:
        async with redis_deadline(detail):
            yield
    except EndpointNotFound as exc:
        raise _missing("endpoint", exc.endpoint_id) from None
    except DestinationError as exc:
        raise Problem(
            DESTINATION_REFUSED, exc.message, errors=[{"field": "url", "message": exc.message}]
        ) from None
    except EndpointError as exc:
        raise invalid_field(_API_FIELD_NAMES.get(exc.field, exc.field), exc.message) from None


def _instant_ms(raw: object, field_name: str) -> int:
    """An ISO 8601 time with a timezone, in ms since the epoch; 422 naming the field."""
    try:
        moment = parse_timestamp(raw)
    except EventError as exc:
        hint = " (in a query string, write '+' as %2B, or use Z)" if " " in str(raw) else ""
        raise invalid_field(field_name, exc.message + hint) from None
    except OverflowError:  # in range as written, not once converted to UTC
        raise invalid_field(field_name, "is outside the years 1 to 9999 in UTC") from None
    return int(moment.timestamp() * 1000)


def iso_time(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC (``Z``), as the API shows times."""
    return format_timestamp(datetime.fromtimestamp(ms / 1000, UTC))


def _reject_unknown(body: dict[str, jsonwire.JSONValue], allowed: Sequence[str]) -> None:
    """422 naming the first member of ``body`` that is not ``allowed`` (typos fail loudly)."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise invalid_field(unknown[0], f"unknown field; the fields are {', '.join(allowed)}")


def _endpoint_fields(
    body: dict[str, jsonwire.JSONValue], allowed: Sequence[str], required: Sequence[str]
) -> dict[str, Any]:
    """The endpoint fields of a body, type-checked (the registry checks the values)."""
    _reject_unknown(body, allowed)
    errors: list[dict[str, object]] = [
        {"field": name, "message": "is required"} for name in required if name not in body
    ]
    for name, value in body.items():
        message = _type_error(name, value)
        if message:
            errors.append({"field": name, "message": message})
    if errors:
        fields = ", ".join(str(error["field"]) for error in errors)
        raise Problem(INVALID_FIELDS, f"Invalid fields: {fields}.", errors=errors)
    return dict(body)


def _type_error(name: str, value: jsonwire.JSONValue) -> str | None:
    """Why ``value`` has the wrong type for endpoint field ``name``; ``None`` if right."""
    if name in ("workspace_id", "url", "owner_email", "description"):
        if not isinstance(value, str):
            return "must be a string"
        if name == "description" and len(value) > MAX_DESCRIPTION_LENGTH:
            return f"is longer than {MAX_DESCRIPTION_LENGTH} characters"
    elif name == "events":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return "must be a list of event types or patterns"
    elif name == "max_in_flight":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer from 1 to {MAX_IN_FLIGHT_LIMIT}"
    elif name == "rate_limit" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "must be a number of requests per second"
    return None


# ---------------------------------------------------------------- index scans


async def _scan_index(
    redis: RedisClient, key: str, start: float | str, *, descending: bool
) -> AsyncIterator[list[tuple[int, str]]]:
    """A sorted set's positions ``(score, member)`` from ``start`` (inclusive) on, in chunks.

    Members of equal score come in the order Redis keeps them (by member), so positions
    order the entries completely and compare as tuples.
    """
    offset = 0
    while True:
        if descending:
            rows = await redis.zrevrangebyscore(
                key, start, "-inf", start=offset, num=SCAN_CHUNK, withscores=True
            )
        else:
            rows = await redis.zrangebyscore(
                key, start, "+inf", start=offset, num=SCAN_CHUNK, withscores=True
            )
        chunk = [(int(score), member) for member, score in cast(list[tuple[str, float]], rows)]
        if chunk:
            yield chunk
        if len(chunk) < SCAN_CHUNK:
            return
        offset += len(chunk)


async def _load_endpoints(producer: Producer, ids: Sequence[str]) -> list[Endpoint | None]:
    """Endpoints by id in one round trip; ``None`` for one deleted meanwhile."""
    async with producer.redis.pipeline(transaction=False) as pipe:
        for endpoint_id in ids:
            pipe.hgetall(producer.keys.endpoint(endpoint_id))
        rows: list[dict[str, str]] = await pipe.execute()
    return [Endpoint.from_hash(row, producer.secret_box) if row else None for row in rows]


# ---------------------------------------------------------------- endpoints


async def create_endpoint(request: web.Request) -> web.Response:
    """``POST /v1/endpoints``: register an endpoint; its secret is shown this once."""
    fields = _endpoint_fields(await read_json_object(request), _CREATABLE, _REQUIRED_ON_CREATE)
    async with _registry("Redis is unavailable; the endpoint was not created."):
        endpoint = await _producer(request).endpoints.create(**fields)
    return web.json_response(
        endpoint.public_dict(reveal_secret=True),
        status=201,
        headers={"Location": str(request.app.router["endpoint"].url_for(id=endpoint.id))},
    )


async def list_endpoints(request: web.Request) -> web.Response:
    """``GET /v1/endpoints``: oldest first, by ``workspace_id`` and ``status``, paginated."""
    limit = query_limit(request)
    workspace_id = request.query.get("workspace_id")
    if workspace_id is not None and not ID_PATTERN.match(workspace_id):
        raise invalid_field("workspace_id", "must be 1-128 characters of A-Z, a-z, 0-9, _, -")
    raw_status = request.query.get("status")
    statuses = [s.value for s in EndpointStatus]
    if raw_status is not None and raw_status not in statuses:
        raise invalid_field("status", f"must be one of {', '.join(statuses)}")
    status = EndpointStatus(raw_status) if raw_status is not None else None
    cursor = request.query.get("cursor")
    after: tuple[int, str] | None = None
    if cursor is not None:
        created_ms, endpoint_id = decode_cursor(cursor, ENDPOINT_CURSOR, (int, str))
        after = (created_ms, endpoint_id)
    producer = _producer(request)
    async with _registry("Redis is unavailable; the endpoints could not be listed."):
        if workspace_id is not None:
            # A workspace's endpoints are few (every publish reads them all): no index.
            found = await producer.endpoints.all(workspace_id=workspace_id, status=status)
            items, next_position = _page_after(found, after, limit)
        else:
            items, next_position = await scan_endpoints(producer, status, after, limit)
    next_cursor = encode_cursor(ENDPOINT_CURSOR, next_position) if next_position else None
    return web.json_response(page([e.public_dict() for e in items], next_cursor))


def _page_after(
    endpoints: Sequence[Endpoint], after: tuple[int, str] | None, limit: int
) -> tuple[list[Endpoint], tuple[int, str] | None]:
    """The page of a sorted, complete list that follows ``after``."""
    rest = [e for e in endpoints if after is None or (e.created_ms, e.id) > after]
    if len(rest) <= limit:
        return rest, None
    last = rest[limit - 1]
    return rest[:limit], (last.created_ms, last.id)


async def scan_endpoints(
    producer: Producer, status: EndpointStatus | None, after: tuple[int, str] | None, limit: int
) -> tuple[list[Endpoint], tuple[int, str] | None]:
    """A page from the index of all endpoints (by creation), within the scan budget."""
    found: list[tuple[tuple[int, str], Endpoint]] = []
    examined = 0
    start: float | str = after[0] if after else "-inf"
    async for chunk in _scan_index(
        producer.redis, producer.keys.endpoints, start, descending=False
    ):
        positions = [p for p in chunk if after is None or p > after]
        loaded = await _load_endpoints(producer, [member for _, member in positions])
        for position, endpoint in zip(positions, loaded, strict=True):
            examined += 1
            if endpoint is not None and (status is None or endpoint.status == status):
                found.append((position, endpoint))
            if len(found) > limit:
                return [e for _, e in found[:limit]], found[limit - 1][0]
            if examined >= SCAN_BUDGET:
                return [e for _, e in found], position
    return [e for _, e in found], None


async def get_endpoint(request: web.Request) -> web.Response:
    """``GET /v1/endpoints/{id}``: the endpoint, with a summary of its recent deliveries."""
    endpoint_id = _path_id(request, "endpoint")
    producer = _producer(request)
    async with _registry("Redis is unavailable; the endpoint could not be read."):
        endpoint = await producer.endpoints.get(endpoint_id)
        recent = await producer.deliveries.for_endpoint(endpoint_id, RECENT_WINDOW)
        dead_total = await producer.redis.zcard(producer.keys.endpoint_dead(endpoint_id))
    return web.json_response(
        {**endpoint.public_dict(), "recent": recent_summary(recent), "dead_total": dead_total}
    )


def recent_summary(deliveries: Sequence[Delivery]) -> dict[str, Any]:
    """Counts by state and the latest attempt, success and error of these deliveries."""
    attempts = [(a, d) for d in deliveries for a in d.attempts]
    last = max(attempts, key=lambda pair: pair[0].at_ms, default=None)
    successes = [a.at_ms for a, _ in attempts if a.outcome == AttemptOutcome.DELIVERED]
    failures = [pair for pair in attempts if pair[0].outcome != AttemptOutcome.DELIVERED]
    last_failure = max(failures, key=lambda pair: pair[0].at_ms, default=None)
    states = [d.state for d in deliveries]
    return {
        "window": RECENT_WINDOW,
        "deliveries": len(deliveries),
        "delivered": states.count(DeliveryState.DELIVERED),
        "dead": states.count(DeliveryState.DEAD),
        "pending": states.count(DeliveryState.QUEUED) + states.count(DeliveryState.SCHEDULED),
        "last_attempt_at": iso_time(last[0].at_ms) if last else None,
        "last_delivered_at": iso_time(max(successes)) if successes else None,
        "last_error": attempt_entry(*last_failure) if last_failure else None,
    }


async def patch_endpoint(request: web.Request) -> web.Response:
    """``PATCH /v1/endpoints/{id}``: change the given fields, keep the others."""
    endpoint_id = _path_id(request, "endpoint")
    fields = _endpoint_fields(await read_json_object(request), _PATCHABLE, ())
    registry = _producer(request).endpoints
    async with _registry("Redis is unavailable; the endpoint was not changed."):
        if fields:
            endpoint = await registry.update(endpoint_id, **fields)
        else:
            endpoint = await registry.get(endpoint_id)
    return web.json_response(endpoint.public_dict())


async def enable_endpoint(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/enable``: deliver to it again (also clears ``failing``)."""
    return await _set_status(request, EndpointStatus.ACTIVE)


async def disable_endpoint(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/disable``: no new deliveries until enabled."""
    return await _set_status(request, EndpointStatus.DISABLED)


async def _set_status(request: web.Request, status: EndpointStatus) -> web.Response:
    """Enable or disable the endpoint of the path."""
    endpoint_id = _path_id(request, "endpoint")
    async with _registry("Redis is unavailable; the endpoint was not changed."):
        endpoint = await _producer(request).endpoints.set_status(endpoint_id, status)
    return web.json_response(endpoint.public_dict())


async def delete_endpoint(request: web.Request) -> web.Response:
    """``DELETE /v1/endpoints/{id}``: its queued deliveries end as dead."""
    endpoint_id = _path_id(request, "endpoint")
    async with _registry("Redis is unavailable; the endpoint was not deleted."):
        await _producer(request).endpoints.delete(endpoint_id)
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/rotate-secret``: a new secret, shown this once.

    The previous secret keeps signing (both schemes carry both signatures) for
    ``grace_s`` seconds, 24 hours unless given.
    """
    endpoint_id = _path_id(request, "endpoint")
    body = await read_optional_json_object(request)
    _reject_unknown(body, ("grace_s",))
    grace_s = body.get("grace_s", ROTATION_GRACE_S)
    if (
        isinstance(grace_s, bool)
        or not isinstance(grace_s, int)
        or not 0 <= grace_s <= MAX_ROTATION_GRACE_S
    ):
        raise invalid_field(
            "grace_s", f"must be an integer number of seconds from 0 to {MAX_ROTATION_GRACE_S}"
        )
    async with _registry("Redis is unavailable; the secret was not rotated."):
        endpoint = await _producer(request).endpoints.rotate_secret(endpoint_id, grace_s)
    return web.json_response(
        {
            **endpoint.public_dict(reveal_secret=True),
            "previous_secret_until_ms": endpoint.previous_secret_until_ms,
        }
    )


# ---------------------------------------------------------------- the delivery log


@dataclass(frozen=True)
class AttemptFilter:
    """The delivery log's query: an outcome and a time window (ms, inclusive)."""

    outcome: AttemptOutcome | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    @classmethod
    def from_query(cls, request: web.Request) -> AttemptFilter:
        """Read ``outcome``, ``since`` and ``until``; 422 naming the parameter at fault."""
        raw_outcome = request.query.get("outcome")
        outcomes = [o.value for o in AttemptOutcome]
        if raw_outcome is not None and raw_outcome not in outcomes:
            raise invalid_field("outcome", f"must be one of {', '.join(outcomes)}")
        since, until = (request.query.get(name) for name in ("since", "until"))
        result = cls(
            outcome=AttemptOutcome(raw_outcome) if raw_outcome is not None else None,
            since_ms=_instant_ms(since, "since") if since is not None else None,
            until_ms=_instant_ms(until, "until") if until is not None else None,
        )
        since_ms, until_ms = result.since_ms, result.until_ms
        if since_ms is not None and until_ms is not None and since_ms > until_ms:
            raise invalid_field("until", "must not be earlier than since")
        return result

    def matches(self, attempt: Attempt) -> bool:
        """Whether ``attempt`` is selected."""
        return (
            (self.outcome is None or attempt.outcome == self.outcome)
            and (self.since_ms is None or attempt.at_ms >= self.since_ms)
            and (self.until_ms is None or attempt.at_ms <= self.until_ms)
        )


def attempt_entry(attempt: Attempt, delivery: Delivery) -> dict[str, Any]:
    """One attempt as the delivery log shows it: with its delivery, event and endpoint."""
    return {
        "delivery_id": delivery.id,
        "event_id": delivery.event_id,
        "endpoint_id": delivery.endpoint_id,
        "at": iso_time(attempt.at_ms),
        **attempt.to_dict(),
    }


async def endpoint_attempts(request: web.Request) -> web.Response:
    """``GET /v1/endpoints/{id}/attempts``: its attempts, newest deliveries first.

    Deliveries are walked by creation time from the newest (``until`` bounds where
    the walk starts, since no attempt precedes its delivery); each one's attempts come
    newest first. A page examines at most :data:`SCAN_BUDGET` deliveries.
    """
    endpoint_id = _path_id(request, "endpoint")
    limit = query_limit(request)
    selected = AttemptFilter.from_query(request)
    cursor = request.query.get("cursor")
    after: tuple[int, str, int] | None = None
    if cursor is not None:
        created_ms, delivery_id, number = decode_cursor(
            cursor, ENDPOINT_ATTEMPTS_CURSOR, (int, str, int)
        )
        after = (created_ms, delivery_id, number)
    producer = _producer(request)
    async with _registry("Redis is unavailable; the attempts could not be read."):
        await producer.endpoints.get(endpoint_id)
        items, next_position = await scan_attempts(producer, endpoint_id, selected, after, limit)
    next_cursor = encode_cursor(ENDPOINT_ATTEMPTS_CURSOR, next_position) if next_position else None
    return web.json_response(page(items, next_cursor))


async def scan_attempts(
    producer: Producer,
    endpoint_id: str,
    selected: AttemptFilter,
    after: tuple[int, str, int] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], tuple[int, str, int] | None]:
    """A page of an endpoint's attempts after ``after`` (created, delivery, number).

    A position's number 0 means "every attempt of that delivery was seen".
    """
    found: list[tuple[tuple[int, str, int], dict[str, Any]]] = []
    examined = 0
    if after is not None:
        start: float | str = after[0]
    else:
        start = selected.until_ms if selected.until_ms is not None else "+inf"
    key = producer.keys.endpoint_deliveries(endpoint_id)
    async for chunk in _scan_index(producer.redis, key, start, descending=True):
        positions = [p for p in chunk if after is None or _not_seen(p, after)]
        loaded = await producer.deliveries.load([member for _, member in positions])
        for position, delivery in zip(positions, loaded, strict=True):
            examined += 1
            if delivery is not None:
                below = after[2] if after is not None and position == after[:2] else None
                found.extend(_selected_attempts(delivery, position, selected, below))
            if len(found) > limit:
                return [entry for _, entry in found[:limit]], found[limit - 1][0]
            if examined >= SCAN_BUDGET:
                return [entry for _, entry in found], (*position, 0)
    return [entry for _, entry in found], None


def _not_seen(position: tuple[int, str], after: tuple[int, str, int]) -> bool:
    """Whether a delivery at ``position`` has attempts a page ending at ``after`` did not
    show: it comes later in the walk, or it is the cursor's own, partly shown, delivery."""
    return position < after[:2] or (position == after[:2] and after[2] > 0)


def _selected_attempts(
    delivery: Delivery, position: tuple[int, str], selected: AttemptFilter, below: int | None
) -> list[tuple[tuple[int, str, int], dict[str, Any]]]:
    """A delivery's selected attempts, newest first, numbered below ``below`` if given."""
    return [
        ((*position, attempt.number), attempt_entry(attempt, delivery))
        for attempt in sorted(delivery.attempts, key=_newest_first)
        if (below is None or attempt.number < below) and selected.matches(attempt)
    ]


def _newest_first(attempt: Attempt) -> int:
    """Sort key: an attempt's number, highest first."""
    return -attempt.number


async def event_attempts(request: web.Request) -> web.Response:
    """``GET /v1/events/{id}/attempts``: every attempt of the event, newest first."""
    event_id = _path_id(request, "event")
    limit = query_limit(request)
    selected = AttemptFilter.from_query(request)
    cursor = request.query.get("cursor")
    after: tuple[int, str, int] | None = None
    if cursor is not None:
        at_ms, delivery_id, number = decode_cursor(cursor, EVENT_ATTEMPTS_CURSOR, (int, str, int))
        after = (at_ms, delivery_id, number)
    producer = _producer(request)
    async with redis_deadline("Redis is unavailable; the attempts could not be read."):
        deliveries = await producer.deliveries.for_event(event_id)
        if not deliveries and not await producer.redis.exists(producer.keys.event(event_id)):
            raise _missing("event", event_id)
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


# ---------------------------------------------------------------- replay


async def replay_delivery(request: web.Request) -> web.Response:
    """``POST /v1/deliveries/{id}/replay``: enqueue it again if it is dead (else nothing)."""
    delivery_id = _path_id(request, "delivery")
    deliveries = _producer(request).deliveries
    async with redis_deadline("Redis is unavailable; nothing was replayed."):
        try:
            await deliveries.get(delivery_id)
        except DeliveryNotFound:
            raise _missing("delivery", delivery_id) from None
        replayed = await deliveries.replay([delivery_id])
    return web.json_response({"replayed": replayed, "count": len(replayed)})


async def replay_endpoint(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/replay``: every dead delivery that died since ``since``."""
    endpoint_id = _path_id(request, "endpoint")
    body = await read_json_object(request)
    _reject_unknown(body, ("since",))
    if "since" not in body:
        raise invalid_field("since", "is required: an ISO 8601 time such as 2025-01-15T10:30:00Z")
    since_ms = _instant_ms(body["since"], "since")
    producer = _producer(request)
    async with _registry("Redis is unavailable; replay may be incomplete: retry it."):
        await producer.endpoints.get(endpoint_id)
        dead = await producer.deliveries.dead_ids(endpoint_id, since_ms)
        replayed = await producer.deliveries.replay(dead)
    log.info("endpoint_replayed", endpoint_id=endpoint_id, since_ms=since_ms, count=len(replayed))
    return web.json_response({"replayed": replayed, "count": len(replayed)})


# ---------------------------------------------------------------- test sends


async def send_test(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/test``: have a worker send a test event; its answer.

    200 whatever the receiver answered (``ok`` tells); 504 when no worker answered.
    """
    endpoint_id = _path_id(request, "endpoint")
    body = await read_json_object(request)
    _reject_unknown(body, ("type",))
    producer = _producer(request)
    event_type = body.get("type")
    if not isinstance(event_type, str) or event_type not in producer.catalogue:
        raise invalid_field("type", "must be an event type of GET /v1/event-types")
    async with _registry("Redis is unavailable; no test event was sent."):
        await producer.endpoints.get(endpoint_id)
    wait_s = request.app[SETTINGS].test_send_wait_s
    result = await request_test_send(producer, endpoint_id, event_type, wait_s)
    if result is None:
        raise Problem(
            TEST_TIMEOUT, f"no worker answered within {wait_s:g} s — is a worker running?"
        )
    return web.json_response(result)


async def request_test_send(
    producer: Producer, endpoint_id: str, event_type: str, wait_s: float
) -> dict[str, Any] | None:
    """Ask a worker to send a test event (the contract above) and wait for its answer.

    The result has the ``TestResult`` schema; ``None`` when no worker answered within
    ``wait_s`` (the request is then withdrawn). Redis trouble is a 503 problem.
    """
    request_id = "ts_" + secrets.token_hex(10)
    now_ms = int(time.time() * 1000)
    message = orjson.dumps(
        {
            "id": request_id,
            "endpoint_id": endpoint_id,
            "event_type": event_type,
            "requested_ms": now_ms,
            "deadline_ms": now_ms + int(wait_s * 1000),
        }
    ).decode()
    requests_key = producer.keys.test_requests
    async with redis_deadline("Redis is unavailable; no test event was sent."):
        await producer.redis.lpush(requests_key, message)
    raw = await _await_result(producer.redis, producer.keys.test_result(request_id), wait_s)
    if raw is None:
        # Withdraw the request: a worker that starts later must not send a stale test.
        async with redis_deadline("Redis is unavailable."):
            await producer.redis.lrem(requests_key, 1, message)
        return None
    return parse_test_result(raw, endpoint_id, event_type)


async def _await_result(redis: RedisClient, key: str, wait_s: float) -> str | None:
    """Poll ``key`` until it holds a result (read and deleted at once) or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    interval = TEST_POLL_FIRST_S
    while True:
        async with (
            redis_deadline("Redis is unavailable; the test result could not be read."),
            redis.pipeline(transaction=True) as pipe,
        ):
            pipe.get(key)
            pipe.delete(key)
            raw, _ = await pipe.execute()
        if raw is not None:
            return cast(str, raw)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 2, TEST_POLL_MAX_S)


def parse_test_result(raw: str, endpoint_id: str, event_type: str) -> dict[str, Any]:
    """The API's answer from a worker's result; a malformed one is a server error."""
    result = orjson.loads(raw)
    if not isinstance(result, dict):
        raise ValueError(f"test result is not a JSON object: {raw[:200]!r}")
    status = result.get("status")
    latency = result.get("latency_ms")
    return {
        "endpoint_id": endpoint_id,
        "event_type": event_type,
        "event_id": _str_or_none(result.get("event_id")),
        "ok": result.get("ok") is True,
        "status": status if isinstance(status, int) and not isinstance(status, bool) else None,
        "error": _str_or_none(result.get("error")),
        "latency_ms": latency
        if isinstance(latency, int | float) and not isinstance(latency, bool)
        else 0.0,
        "response": result.get("response") if isinstance(result.get("response"), str) else "",
    }


def _str_or_none(value: object) -> str | None:
    """``value`` if it is a string."""
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------- the catalogue


async def event_types(request: web.Request) -> web.Response:
    """``GET /v1/event-types``: every accepted type, described, with an example event."""
    producer = _producer(request)
    items = []
    for name, description in sorted(producer.catalogue.types.items()):
        example = parse_event(
            {
                "id": _EXAMPLE_EVENT_ID,
                "type": name,
                "created_at": _EXAMPLE_CREATED_AT,
                "workspace_id": _EXAMPLE_WORKSPACE,
                "data": example_data(name),
            },
            producer.catalogue,
            max_payload_bytes=producer.settings.max_payload_bytes,
        )
        items.append({"type": name, "description": description, "example": example.to_dict()})
    return web.json_response({"items": items})


# ---------------------------------------------------------------- OpenAPI

_ID = {"type": "string"}
_ISO_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_ISO_TIME = {"type": ["string", "null"], "format": "date-time"}
_ENDPOINT_STATUS = {"type": "string", "enum": [s.value for s in EndpointStatus]}
_OUTCOME = {"type": "string", "enum": [o.value for o in AttemptOutcome]}

_ENDPOINT_INPUT_PROPERTIES: dict[str, Any] = {
    "workspace_id": {"type": "string", "pattern": ID_PATTERN.pattern},
    "url": {
        "type": "string",
        "format": "uri",
        "maxLength": MAX_URL_LENGTH,
        "description": "http(s), with a host and no credentials.",
    },
    "events": {
        "type": "array",
        "minItems": 1,
        "items": schema_ref("EventFilterPattern"),
        "description": "The event types delivered to it.",
    },
    "owner_email": {
        "type": "string",
        "format": "email",
        "description": "Told when the endpoint turns failing.",
    },
    "description": {"type": "string", "maxLength": MAX_DESCRIPTION_LENGTH},
    "max_in_flight": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_IN_FLIGHT_LIMIT,
        "description": f"Requests in flight to it across all workers (default "
        f"{DEFAULT_MAX_IN_FLIGHT}).",
    },
    "rate_limit": {
        "type": "number",
        "minimum": 0,
        "maximum": 100_000,
        "description": "Requests per second at most; 0: no limit.",
    },
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Endpoint": {
        "type": "object",
        "required": [
            "id",
            "workspace_id",
            "url",
            "events",
            "owner_email",
            "description",
            "status",
            "max_in_flight",
            "rate_limit",
            "secret",
            "created_ms",
            "updated_ms",
        ],
        "properties": {
            "id": _ID,
            "workspace_id": _ID,
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}},
            "owner_email": {"type": "string"},
            "description": {"type": "string"},
            "status": _ENDPOINT_STATUS,
            "max_in_flight": {"type": "integer"},
            "rate_limit": {"type": "number"},
            "secret": {
                "type": "string",
                "description": "In full only when created or rotated; masked otherwise.",
            },
            "created_ms": {"type": "integer"},
            "updated_ms": {"type": "integer"},
        },
    },
    "EndpointDetail": {
        "allOf": [
            schema_ref("Endpoint"),
            {
                "type": "object",
                "required": ["recent", "dead_total"],
                "properties": {
                    "recent": schema_ref("RecentDeliveries"),
                    "dead_total": {
                        "type": "integer",
                        "description": "Dead deliveries kept for replay.",
                    },
                },
            },
        ]
    },
    "RotatedEndpoint": {
        "allOf": [
            schema_ref("Endpoint"),
            {
                "type": "object",
                "required": ["previous_secret_until_ms"],
                "properties": {
                    "previous_secret_until_ms": {
                        "type": "integer",
                        "description": "Deliveries carry the old secret's signatures too "
                        "until then (ms since the epoch).",
                    }
                },
            },
        ]
    },
    "RecentDeliveries": {
        "type": "object",
        "description": f"The endpoint's latest {RECENT_WINDOW} deliveries at most.",
        "required": [
            "window",
            "deliveries",
            "delivered",
            "dead",
            "pending",
            "last_attempt_at",
            "last_delivered_at",
            "last_error",
        ],
        "properties": {
            "window": {"type": "integer"},
            "deliveries": {"type": "integer", "minimum": 0},
            "delivered": {"type": "integer", "minimum": 0},
            "dead": {"type": "integer", "minimum": 0},
            "pending": {"type": "integer", "minimum": 0},
            "last_attempt_at": _NULLABLE_ISO_TIME,
            "last_delivered_at": _NULLABLE_ISO_TIME,
            "last_error": {
                "oneOf": [schema_ref("AttemptEntry"), {"type": "null"}],
                "description": "The latest attempt that did not deliver.",
            },
        },
    },
    "EndpointCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": list(_REQUIRED_ON_CREATE),
        "properties": _ENDPOINT_INPUT_PROPERTIES,
    },
    "EndpointPatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: _ENDPOINT_INPUT_PROPERTIES[name] for name in _PATCHABLE},
    },
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
                    "at": _ISO_TIME,
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
    "TestResult": {
        "type": "object",
        "required": [
            "endpoint_id",
            "event_type",
            "event_id",
            "ok",
            "status",
            "error",
            "latency_ms",
            "response",
        ],
        "properties": {
            "endpoint_id": _ID,
            "event_type": {"type": "string"},
            "event_id": {"type": ["string", "null"]},
            "ok": {"type": "boolean", "description": "The receiver answered 2xx."},
            "status": {"type": ["integer", "null"]},
            "error": {"type": ["string", "null"], "description": "Why no status came."},
            "latency_ms": {"type": "number"},
            "response": {"type": "string", "description": "The first KiB of the answer."},
        },
    },
    "EventTypeInfo": {
        "type": "object",
        "required": ["type", "description", "example"],
        "properties": {
            "type": {"type": "string"},
            "description": {"type": "string"},
            "example": schema_ref("Event"),
        },
    },
}

_ENDPOINT_ID = path_parameter("id", "The endpoint id.")
# Where a created endpoint's id leads (the test send is left out: it waits for a worker).
_ENDPOINT_OPERATIONS = (
    "getEndpoint",
    "updateEndpoint",
    "deleteEndpoint",
    "enableEndpoint",
    "disableEndpoint",
    "rotateEndpointSecret",
    "listEndpointAttempts",
    "replayEndpoint",
)
_ATTEMPT_FILTERS = [
    query_parameter("outcome", "Only attempts with this outcome.", _OUTCOME),
    query_parameter("since", "Only attempts made at or after this time (ISO 8601).", _ISO_TIME),
    query_parameter("until", "Only attempts made at or before this time (ISO 8601).", _ISO_TIME),
    *PAGINATION_PARAMETERS,
]
_ENDPOINT_RESPONSE = json_response("The endpoint (secret masked).", schema_ref("Endpoint"))
_ATTEMPT_PAGE = json_response("A page of attempts.", page_schema(schema_ref("AttemptEntry")))
_REPLAYED = json_response("What was enqueued again.", schema_ref("Replayed"))

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/endpoints": {
        "post": operation(
            "createEndpoint",
            "Register an endpoint (its secret is shown this once)",
            tag="endpoints",
            body=schema_ref("EndpointCreate"),
            responses={
                "201": json_response(
                    "Created; `secret` in full.",
                    schema_ref("Endpoint"),
                    headers={"Location": {"schema": {"type": "string"}}},
                    links=id_links("$response.body#/id", _ENDPOINT_OPERATIONS),
                ),
                **problem_responses(422, 503),
            },
        ),
        "get": operation(
            "listEndpoints",
            "List endpoints, oldest first",
            tag="endpoints",
            parameters=[
                query_parameter(
                    "workspace_id",
                    "Only this workspace's endpoints.",
                    {"type": "string", "pattern": ID_PATTERN.pattern},
                ),
                query_parameter("status", "Only endpoints in this status.", _ENDPOINT_STATUS),
                *PAGINATION_PARAMETERS,
            ],
            responses={
                "200": json_response("A page of endpoints.", page_schema(schema_ref("Endpoint"))),
                **problem_responses(422, 503),
            },
        ),
    },
    "/v1/endpoints/{id}": {
        "get": operation(
            "getEndpoint",
            "An endpoint, with a summary of its recent deliveries",
            tag="endpoints",
            description='Status and `recent` answer "why is my webhook not receiving '
            'events?": disabled or failing, what its latest deliveries did, the last error.',
            parameters=[_ENDPOINT_ID],
            responses={
                "200": json_response("The endpoint.", schema_ref("EndpointDetail")),
                **problem_responses(404, 503),
            },
        ),
        "patch": operation(
            "updateEndpoint",
            "Change some of an endpoint's fields",
            tag="endpoints",
            parameters=[_ENDPOINT_ID],
            body=schema_ref("EndpointPatch"),
            responses={"200": _ENDPOINT_RESPONSE, **problem_responses(404, 422, 503)},
        ),
        "delete": operation(
            "deleteEndpoint",
            "Delete an endpoint (its queued deliveries end as dead)",
            tag="endpoints",
            parameters=[_ENDPOINT_ID],
            responses={"204": {"description": "Deleted."}, **problem_responses(404, 503)},
        ),
    },
    **{
        f"/v1/endpoints/{{id}}/{action}": {
            "post": operation(
                f"{action}Endpoint",
                summary,
                tag="endpoints",
                parameters=[_ENDPOINT_ID],
                responses={"200": _ENDPOINT_RESPONSE, **problem_responses(404, 503)},
            )
        }
        for action, summary in (
            ("enable", "Deliver to an endpoint again (clears failing)"),
            ("disable", "Stop delivering to an endpoint"),
        )
    },
    "/v1/endpoints/{id}/rotate-secret": {
        "post": operation(
            "rotateEndpointSecret",
            "A new secret, shown this once; the old one signs too for a grace period",
            tag="endpoints",
            parameters=[_ENDPOINT_ID],
            body={
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "grace_s": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_ROTATION_GRACE_S,
                        "description": f"Seconds the old secret keeps signing (default "
                        f"{ROTATION_GRACE_S}).",
                    }
                },
            },
            body_required=False,
            responses={
                "200": json_response("Rotated; `secret` in full.", schema_ref("RotatedEndpoint")),
                **problem_responses(404, 422, 503),
            },
        ),
    },
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
            parameters=[_ENDPOINT_ID],
            body={
                "type": "object",
                "additionalProperties": False,
                "required": ["since"],
                "properties": {"since": _ISO_TIME},
            },
            responses={"200": _REPLAYED, **problem_responses(404, 422, 503)},
        )
    },
    "/v1/endpoints/{id}/test": {
        "post": operation(
            "sendTestEvent",
            "Have a worker send a test event; the receiver's answer",
            tag="endpoints",
            description="Answered 200 whatever the receiver said (`ok` tells), 504 when no "
            "worker answered within DELIVERY_TIMEOUT plus a margin.",
            parameters=[_ENDPOINT_ID],
            body={
                "type": "object",
                "additionalProperties": False,
                "required": ["type"],
                "properties": {"type": schema_ref("EventTypeName")},
            },
            responses={
                "200": json_response("What the receiver answered.", schema_ref("TestResult")),
                **problem_responses(404, 422, 503, 504),
            },
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
    "/v1/deliveries/{id}/replay": {
        "post": operation(
            "replayDelivery",
            "Enqueue a dead delivery again (nothing if it is not dead)",
            tag="replay",
            parameters=[path_parameter("id", "The delivery id.")],
            responses={"200": _REPLAYED, **problem_responses(404, 503)},
        )
    },
    "/v1/event-types": {
        "get": operation(
            "listEventTypes",
            "The event catalogue, with an example event of each type",
            tag="events",
            responses={
                "200": json_response(
                    "Every type this server accepts.",
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {
                            "items": {"type": "array", "items": schema_ref("EventTypeInfo")}
                        },
                    },
                )
            },
        )
    },
}


# ---------------------------------------------------------------- registration


def add_routes(app: web.Application) -> None:
    """Register this module's routes on the API application."""
    router = app.router
    router.add_post("/v1/endpoints", create_endpoint, name="endpoints")
    router.add_get("/v1/endpoints", list_endpoints)
    router.add_get("/v1/endpoints/{id}", get_endpoint, name="endpoint")
    router.add_patch("/v1/endpoints/{id}", patch_endpoint)
    router.add_delete("/v1/endpoints/{id}", delete_endpoint)
    router.add_post("/v1/endpoints/{id}/enable", enable_endpoint)
    router.add_post("/v1/endpoints/{id}/disable", disable_endpoint)
    router.add_post("/v1/endpoints/{id}/rotate-secret", rotate_secret)
    router.add_get("/v1/endpoints/{id}/attempts", endpoint_attempts)
    router.add_post("/v1/endpoints/{id}/replay", replay_endpoint)
    router.add_post("/v1/endpoints/{id}/test", send_test)
    router.add_get("/v1/events/{id}/attempts", event_attempts)
    router.add_post("/v1/deliveries/{id}/replay", replay_delivery)
    router.add_get("/v1/event-types", event_types)
