"""Managing endpoints: ``POST``/``GET /v1/endpoints``, ``GET``/``PATCH``/``DELETE
/v1/endpoints/{id}``, ``POST .../enable``, ``.../disable``, ``.../rotate-secret``.

The secret is shown in full once, when created or rotated; the old one keeps signing
for ``grace_s`` after a rotation. ``GET /v1/endpoints/{id}`` adds a ``recent`` summary
of its latest deliveries: why is my webhook not receiving events? Their OpenAPI
description is :mod:`producer.http.endpoints_spec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from producer import jsonwire
from producer.endpoint import Endpoint, EndpointStatus
from producer.endpoint_fields import invalid_fields
from producer.endpoint_kind import KINDS, EndpointKind
from producer.endpoint_rules import MAX_DESCRIPTION_LENGTH, MAX_IN_FLIGHT_LIMIT, ROTATION_GRACE_S
from producer.events import ID_PATTERN
from producer.http.access import Access, Owner, Routes, Scope, caller_workspace
from producer.http.bodies import (
    DEFAULT_PAGE_LIMIT,
    ENDPOINT_CURSOR,
    decode_cursor,
    encode_cursor,
    page,
    path_id,
    query_limit,
    read_json_object,
    read_optional_json_object,
    reject_unknown,
)
from producer.http.ownership import refuse_other_workspaces
from producer.http.problems import (
    API_FIELD_NAMES,
    FieldErrors,
    registry_errors,
)
from producer.http.state import producer_of

MAX_ROTATION_GRACE_S = 30 * 24 * 3600

PATCHABLE = (
    "url",
    "events",
    "description",
    "owner_email",
    "max_in_flight",
    "rate_limit",
    "headers",
    "timeout_s",
    "ordering",
    "filter",
)
CREATABLE = ("workspace_id", "kind", *PATCHABLE)
REQUIRED_ON_CREATE = ("workspace_id", "url", "events", "owner_email")
# A poll endpoint (producer.endpoint_kind) has no URL and may have no owner email.
REQUIRED_ON_CREATE_POLL = ("workspace_id", "events")


def _endpoint_fields(
    request: web.Request,
    body: dict[str, jsonwire.JSONValue],
    allowed: Sequence[str],
    required: Sequence[str],
) -> dict[str, Any]:
    """The endpoint fields of a body, checked; one 422 naming every unknown, missing,
    mistyped or refused field (the destination policy is checked on registering)."""
    errors = FieldErrors()
    errors.check(lambda: reject_unknown(body, allowed), None)
    for name in required:
        if name not in body:
            errors.add(name, "is required")
    checked: dict[str, Any] = {}
    for name, value in body.items():
        message = _type_error(name, value) if name in allowed else None
        if message:
            errors.add(name, message)
        elif name in allowed:
            checked[name] = value
    headers = checked.get("headers")
    if isinstance(headers, dict):
        checked["headers"] = list(headers.items())  # the registry checks the pairs
    producer = producer_of(request)
    for error in invalid_fields(checked, producer.catalogue, producer.endpoints.max_timeout_s):
        errors.add(API_FIELD_NAMES.get(error.field, error.field), error.message)
    errors.raise_any()
    return checked


def _type_error(name: str, value: jsonwire.JSONValue) -> str | None:
    """Why ``value`` has the wrong type for endpoint field ``name``; ``None`` if right."""
    if name == "kind":
        if value not in tuple(EndpointKind):
            return f"must be one of {KINDS}"
    elif name in ("workspace_id", "url", "owner_email", "description"):
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
    elif name == "headers" and (
        not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
    ):
        return 'must be an object of header names and string values, {"Name": "value"}'
    elif name == "timeout_s" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "must be a number of seconds"
    elif name == "ordering" and not isinstance(value, str):
        return "must be 'parallel' or 'fifo'"
    elif name == "filter" and not isinstance(value, dict):
        return 'must be a filter object, such as {"data.priority": "high"} ({}: none)'
    return None


# ---------------------------------------------------------------- endpoints


async def create_endpoint(request: web.Request) -> web.Response:
    """``POST /v1/endpoints``: register an endpoint; its secret is shown this once."""
    body = await read_json_object(request)
    required = REQUIRED_ON_CREATE_POLL if body.get("kind") == "poll" else REQUIRED_ON_CREATE
    fields = _endpoint_fields(request, body, CREATABLE, required)
    refuse_other_workspaces(request, [fields["workspace_id"]])
    async with registry_errors("Redis is unavailable; the endpoint was not created."):
        endpoint = await producer_of(request).endpoints.create(**fields)
    return web.json_response(
        endpoint.public_dict(reveal_secret=True),
        status=201,
        headers={"Location": str(request.app.router["endpoint"].url_for(id=endpoint.id))},
    )


async def list_endpoints(request: web.Request) -> web.Response:
    """``GET /v1/endpoints``: oldest first, by ``workspace_id`` and ``status``, paginated."""
    errors = FieldErrors()  # one 422 naming every bad parameter
    limit = errors.check(lambda: query_limit(request), DEFAULT_PAGE_LIMIT)
    workspace_id = request.query.get("workspace_id")
    if workspace_id is not None and not ID_PATTERN.match(workspace_id):
        errors.add("workspace_id", "must be 1-128 characters of A-Z, a-z, 0-9, _, -")
    raw_status = request.query.get("status")
    statuses = [s.value for s in EndpointStatus]
    status = EndpointStatus(raw_status) if raw_status in statuses else None
    if raw_status is not None and status is None:
        errors.add("status", f"must be one of {', '.join(statuses)}")
    cursor = request.query.get("cursor")
    after: tuple[int, str] | None = None
    if cursor is not None:
        position = errors.check(lambda: decode_cursor(cursor, ENDPOINT_CURSOR, (int, str)), None)
        if position is not None:
            created_ms, endpoint_id = position
            after = (created_ms, endpoint_id)
    errors.raise_any()
    scoped = caller_workspace(request)
    if scoped is not None and workspace_id not in (None, scoped):
        return web.json_response(page([], None))  # another workspace's: none to see
    workspace_id = workspace_id or scoped
    producer = producer_of(request)
    async with registry_errors("Redis is unavailable; the endpoints could not be listed."):
        if workspace_id is not None:
            # A workspace's endpoints are few (every publish reads them all): no index.
            found = await producer.endpoints.all(workspace_id=workspace_id, status=status)
            items, next_position = _page_after(found, after, limit)
        else:
            items, next_position = await producer.endpoints.scan(status, after, limit)
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


async def get_endpoint(request: web.Request) -> web.Response:
    """``GET /v1/endpoints/{id}``: the endpoint, with a summary of its recent deliveries."""
    endpoint_id = path_id(request, "endpoint")
    producer = producer_of(request)
    async with registry_errors("Redis is unavailable; the endpoint could not be read."):
        endpoint = await producer.endpoints.get(endpoint_id)
        recent = await producer.deliveries.recent(endpoint_id)
        dead_total = await producer.deliveries.dead_total(endpoint_id)
        paused = await producer.pausing.paused(endpoint_id)
        drop = await producer.pausing.drops(endpoint_id)
    return web.json_response(
        {
            **endpoint.public_dict(),
            "recent": recent.to_dict(),
            "dead_total": dead_total,
            "paused": paused,
            "drop": drop,
        }
    )


async def patch_endpoint(request: web.Request) -> web.Response:
    """``PATCH /v1/endpoints/{id}``: change the given fields, keep the others."""
    endpoint_id = path_id(request, "endpoint")
    fields = _endpoint_fields(request, await read_json_object(request), PATCHABLE, ())
    registry = producer_of(request).endpoints
    async with registry_errors("Redis is unavailable; the endpoint was not changed."):
        if fields:
            endpoint = await registry.update(endpoint_id, **fields)
        else:
            endpoint = await registry.get(endpoint_id)
    return web.json_response(endpoint.public_dict())


async def enable_endpoint(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/enable``: deliver to it again (also clears ``failing``);
    its paused deliveries resume in publish order."""
    return await _set_status(request, EndpointStatus.ACTIVE, drop=False)


async def disable_endpoint(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/disable`` ``{"drop": false}``: its deliveries are paused
    until enabled; with ``drop`` they end dead with the reason instead."""
    body = await read_optional_json_object(request)
    errors = FieldErrors()
    errors.check(lambda: reject_unknown(body, ("drop",)), None)
    drop = body.get("drop", False)
    if not isinstance(drop, bool):
        errors.add("drop", "must be true or false")
    errors.raise_any()
    return await _set_status(request, EndpointStatus.DISABLED, drop=drop is True)


async def _set_status(request: web.Request, status: EndpointStatus, drop: bool) -> web.Response:
    """Enable or disable the endpoint of the path (producer/pausing.py)."""
    endpoint_id = path_id(request, "endpoint")
    producer = producer_of(request)
    async with registry_errors("Redis is unavailable; the endpoint was not changed."):
        endpoint = await producer.pausing.set_status(endpoint_id, status, drop)
        paused = await producer.pausing.paused(endpoint_id)
    return web.json_response({**endpoint.public_dict(), "paused": paused, "drop": drop})


async def delete_endpoint(request: web.Request) -> web.Response:
    """``DELETE /v1/endpoints/{id}``: its queued deliveries end as dead."""
    endpoint_id = path_id(request, "endpoint")
    async with registry_errors("Redis is unavailable; the endpoint was not deleted."):
        await producer_of(request).endpoints.delete(endpoint_id)
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/rotate-secret``: a new secret, shown this once.

    The previous secret keeps signing for ``grace_s`` seconds, 24 hours unless given:
    ``X-Cliq-Signature`` is made with it until ``signature_switches_at``
    (``X-Cliq-Signature-New`` with the new one), ``webhook-signature`` carries both.
    """
    endpoint_id = path_id(request, "endpoint")
    body = await read_optional_json_object(request)
    errors = FieldErrors()
    errors.check(lambda: reject_unknown(body, ("grace_s",)), None)
    raw_grace = body.get("grace_s", ROTATION_GRACE_S)
    grace_s = 0
    if (
        isinstance(raw_grace, bool)
        or not isinstance(raw_grace, int)
        or not 0 <= raw_grace <= MAX_ROTATION_GRACE_S
    ):
        errors.add(
            "grace_s", f"must be an integer number of seconds from 0 to {MAX_ROTATION_GRACE_S}"
        )
    else:
        grace_s = raw_grace
    errors.raise_any()
    async with registry_errors("Redis is unavailable; the secret was not rotated."):
        endpoint = await producer_of(request).endpoints.rotate_secret(endpoint_id, grace_s)
    return web.json_response(
        {
            **endpoint.public_dict(reveal_secret=True),
            "previous_secret_until_ms": endpoint.previous_secret_until_ms,
        }
    )


def add_routes(app: web.Application) -> None:
    """Register the endpoint routes."""
    routes = Routes(app)
    read = Access(Scope.ENDPOINTS_READ, Owner.ENDPOINT)
    write = Access(Scope.ENDPOINTS_WRITE, Owner.ENDPOINT)
    routes.post("/v1/endpoints", create_endpoint, Scope.ENDPOINTS_WRITE, name="endpoints")
    routes.get("/v1/endpoints", list_endpoints, Scope.ENDPOINTS_READ)
    routes.get("/v1/endpoints/{id}", get_endpoint, read, name="endpoint")
    routes.patch("/v1/endpoints/{id}", patch_endpoint, write)
    routes.delete("/v1/endpoints/{id}", delete_endpoint, write)
    routes.post("/v1/endpoints/{id}/enable", enable_endpoint, write)
    routes.post("/v1/endpoints/{id}/disable", disable_endpoint, write)
    routes.post("/v1/endpoints/{id}/rotate-secret", rotate_secret, write)
