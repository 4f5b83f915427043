"""Managing endpoints: ``POST``/``GET /v1/endpoints``, ``GET``/``PATCH``/``DELETE
/v1/endpoints/{id}``, ``POST .../enable``, ``.../disable``, ``.../rotate-secret``.

The secret is shown in full once, when created or rotated; the old one keeps signing
for ``grace_s`` after a rotation. ``GET /v1/endpoints/{id}`` adds a ``recent`` summary
of its latest deliveries: why is my webhook not receiving events? Their OpenAPI
description is :mod:`producer.http.endpoints_spec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from producer import jsonwire
from producer.endpoint_fields import invalid_fields
from producer.endpoint_kind import KINDS, EndpointKind
from producer.endpoint_rules import MAX_DESCRIPTION_LENGTH, MAX_IN_FLIGHT_LIMIT, ROTATION_GRACE_S
from producer.endpoints import Endpoint, EndpointStatus
from producer.events import ID_PATTERN
from producer.http.access import Access, Owner, Routes, Scope, caller_workspace
from producer.http.bodies import (
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
    INVALID_FIELDS,
    Problem,
    invalid_field,
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
    body: dict[str, jsonwire.JSONValue], allowed: Sequence[str], required: Sequence[str]
) -> dict[str, Any]:
    """The endpoint fields of a body, type-checked (the registry checks the values)."""
    reject_unknown(body, allowed)
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
    checked: dict[str, Any] = dict(body)
    headers = body.get("headers")
    if isinstance(headers, dict):
        checked["headers"] = list(headers.items())  # the registry checks the pairs
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


def _check_values(request: web.Request, fields: Mapping[str, Any]) -> None:
    """422 naming every field whose value the registry would refuse, all at once."""
    errors = invalid_fields(fields, producer_of(request).catalogue)
    if len(errors) == 1:
        raise invalid_field(
            API_FIELD_NAMES.get(errors[0].field, errors[0].field), errors[0].message
        )
    if errors:
        shown = [
            {"field": API_FIELD_NAMES.get(error.field, error.field), "message": error.message}
            for error in errors
        ]
        names = ", ".join(str(error["field"]) for error in shown)
        raise Problem(INVALID_FIELDS, f"Invalid fields: {names}.", errors=shown)


# ---------------------------------------------------------------- endpoints


async def create_endpoint(request: web.Request) -> web.Response:
    """``POST /v1/endpoints``: register an endpoint; its secret is shown this once."""
    body = await read_json_object(request)
    required = REQUIRED_ON_CREATE_POLL if body.get("kind") == "poll" else REQUIRED_ON_CREATE
    fields = _endpoint_fields(body, CREATABLE, required)
    _check_values(request, fields)
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
    limit = query_limit(request)
    workspace_id = request.query.get("workspace_id")
    if workspace_id is not None and not ID_PATTERN.match(workspace_id):
        raise invalid_field("workspace_id", "must be 1-128 characters of A-Z, a-z, 0-9, _, -")
    scoped = caller_workspace(request)
    if scoped is not None and workspace_id not in (None, scoped):
        return web.json_response(page([], None))  # another workspace's: none to see
    workspace_id = workspace_id or scoped
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
    fields = _endpoint_fields(await read_json_object(request), PATCHABLE, ())
    _check_values(request, fields)
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
    reject_unknown(body, ("drop",))
    drop = body.get("drop", False)
    if not isinstance(drop, bool):
        raise invalid_field("drop", "must be true or false")
    return await _set_status(request, EndpointStatus.DISABLED, drop=drop)


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
    reject_unknown(body, ("grace_s",))
    grace_s = body.get("grace_s", ROTATION_GRACE_S)
    if (
        isinstance(grace_s, bool)
        or not isinstance(grace_s, int)
        or not 0 <= grace_s <= MAX_ROTATION_GRACE_S
    ):
        raise invalid_field(
            "grace_s", f"must be an integer number of seconds from 0 to {MAX_ROTATION_GRACE_S}"
        )
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
