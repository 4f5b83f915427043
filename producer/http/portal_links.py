"""Portal links over the API: the operator (or a scoped key) opens the dashboard for others.

* ``POST /v1/workspaces/{id}/portal-links`` ``{"ttl_s", "read_only"}``: a single-use URL
  opening ``/ui/`` bound to the workspace (read-only sessions may look, not change);
* ``POST /v1/users/{user_id}/portal-links`` ``{"ttl_s"}``: the Webhook Tokens screens of
  that user alone, where they enrol their own second factor.

The link expires after ``ttl_s`` (default 15 minutes) or its first use; the session it
opens lasts ``DASHBOARD_SESSION_TTL`` unused, like any other (:mod:`producer.portal_links`).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from producer.events import iso_time
from producer.http.access import Access, Owner, Routes, Scope
from producer.http.bodies import path_id, read_optional_json_object, reject_unknown
from producer.http.openapi import json_response, operation, path_parameter, problem_responses
from producer.http.problems import FieldErrors, invalid_field, redis_deadline
from producer.http.state import producer_of
from producer.portal_links import DEFAULT_LINK_TTL_S, MAX_LINK_TTL_S, PortalGrant, PortalLinks
from producer.tokens.context import CLOCK, TOKEN_SYSTEM
from producer.tokens.problems import token_errors
from producer.tokens.webhook_urls import public_base

PORTAL_PATH = "/ui/portal/"


def portal_links(request: web.Request) -> PortalLinks:
    """The link store, on the producer's Redis and the application's clock."""
    producer = producer_of(request)
    return PortalLinks(producer.redis, producer.keys, request.config_dict.get(CLOCK, time.time))


def _ttl(body: dict[str, Any]) -> int:
    ttl = body.get("ttl_s", DEFAULT_LINK_TTL_S)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_LINK_TTL_S:
        raise invalid_field("ttl_s", f"must be a whole number of seconds, 1 to {MAX_LINK_TTL_S}")
    return ttl


async def _issue(request: web.Request, grant: PortalGrant, ttl_s: int) -> web.Response:
    async with redis_deadline("Redis is unavailable; no link was made."):
        value, expires_ms = await portal_links(request).issue(grant, ttl_s)
    return web.json_response(
        {
            "url": f"{public_base(request)}{PORTAL_PATH}{value}",
            "expires_at": iso_time(expires_ms),
            "workspace_id": grant.workspace_id,
            "read_only": grant.read_only,
            "user_id": grant.user_id,
        },
        status=201,
    )


async def workspace_link(request: web.Request) -> web.Response:
    """``POST /v1/workspaces/{id}/portal-links``: the dashboard bound to the workspace."""
    workspace_id = path_id(request, "workspace")
    body = await read_optional_json_object(request)
    errors = FieldErrors()
    errors.check(lambda: reject_unknown(body, ("ttl_s", "read_only")), None)
    read_only = body.get("read_only", False)
    if not isinstance(read_only, bool):
        errors.add("read_only", "must be true or false")
    ttl_s = errors.check(lambda: _ttl(body), 0)
    errors.raise_any()
    return await _issue(request, PortalGrant(workspace_id, read_only is True), ttl_s)


async def user_link(request: web.Request) -> web.Response:
    """``POST /v1/users/{user_id}/portal-links``: the user's own Webhook Tokens screens."""
    user_id = request.match_info["user_id"]
    body = await read_optional_json_object(request)
    errors = FieldErrors()
    errors.check(lambda: reject_unknown(body, ("ttl_s",)), None)
    ttl_s = errors.check(lambda: _ttl(body), 0)
    errors.raise_any()
    async with token_errors("Redis is unavailable; no link was made."):
        user = await request.config_dict[TOKEN_SYSTEM].users.get(user_id)
    return await _issue(request, PortalGrant(user.workspace_id, user_id=user.id), ttl_s)


def add_routes(app: web.Application) -> None:
    """Register the portal-link routes."""
    routes = Routes(app)
    routes.post(
        "/v1/workspaces/{id}/portal-links",
        workspace_link,
        Access(Scope.PORTAL_LINKS, Owner.WORKSPACE),
    )
    routes.post(
        "/v1/users/{user_id}/portal-links",
        user_link,
        Access(Scope.PORTAL_LINKS, Owner.USER, "user_id"),
    )


# ---------------------------------------------------------------- OpenAPI

_LINK = json_response(
    "The link: open it once, before it expires.",
    {
        "type": "object",
        "required": ["url", "expires_at", "workspace_id", "read_only", "user_id"],
        "properties": {
            "url": {"type": "string"},
            "expires_at": {"type": "string", "format": "date-time"},
            "workspace_id": {"type": "string"},
            "read_only": {"type": "boolean"},
            "user_id": {"type": ["string", "null"]},
        },
    },
)
_TTL = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_LINK_TTL_S,
    "default": DEFAULT_LINK_TTL_S,
    "description": "Seconds the link stays usable (the session it opens lasts "
    "DASHBOARD_SESSION_TTL unused).",
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/workspaces/{id}/portal-links": {
        "post": operation(
            "createWorkspacePortalLink",
            "A single-use link opening the dashboard for one workspace",
            tag="access",
            parameters=[path_parameter("id", "The workspace id.")],
            body={
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "ttl_s": _TTL,
                    "read_only": {"type": "boolean", "default": False},
                },
            },
            body_required=False,
            responses={"201": _LINK, **problem_responses(403, 404, 422, 503)},
        )
    },
    "/v1/users/{user_id}/portal-links": {
        "post": operation(
            "createUserPortalLink",
            "A single-use link opening the user's own Webhook Tokens screens",
            tag="access",
            parameters=[path_parameter("user_id", "The user's id.")],
            body={"type": "object", "additionalProperties": False, "properties": {"ttl_s": _TTL}},
            body_required=False,
            responses={"201": _LINK, **problem_responses(403, 404, 422, 503)},
        )
    },
}
