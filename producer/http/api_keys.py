"""``/v1/api-keys``: the operator makes, lists and revokes workspace-scoped API keys.

* ``POST /v1/api-keys`` ``{"workspace_id", "name", "scopes"}``: a key, its value shown
  this once (only a digest is kept, :mod:`producer.api_keys`);
* ``GET /v1/api-keys`` (``?workspace_id=``): name, id, workspace, scopes, created, last used;
* ``DELETE /v1/api-keys/{id}``: revoke; the key authenticates nothing from then on.

Operator keys (``API_KEYS``) only: a scoped key cannot make keys, even for its workspace.
"""

from __future__ import annotations

from typing import Any, cast

import structlog
from aiohttp import web

from producer.api_keys import ApiKey, ApiKeyError, ApiKeyNotFound, ApiKeyStore
from producer.events import ID_PATTERN, iso_time
from producer.http.access import GRANTABLE_SCOPES, Routes, Scope
from producer.http.bodies import read_json_object, reject_unknown
from producer.http.openapi import (
    json_response,
    operation,
    path_parameter,
    problem_responses,
    query_parameter,
    schema_ref,
)
from producer.http.problems import (
    FieldErrors,
    ProblemKind,
    invalid_field,
    missing,
    redis_deadline,
)
from producer.http.state import producer_of

log = structlog.get_logger("cliq.producer.http.api_keys")

INSUFFICIENT_SCOPE = ProblemKind("insufficient-scope", 403, "API key lacks the scope")
CREATABLE = ("workspace_id", "name", "scopes")


def api_key_store(request: web.Request) -> ApiKeyStore:
    """The API keys, on the producer's Redis."""
    producer = producer_of(request)
    return ApiKeyStore(producer.redis, producer.keys, GRANTABLE_SCOPES)


def key_dict(key: ApiKey) -> dict[str, Any]:
    """A key as listed (never its value)."""
    return {
        "id": key.id,
        "workspace_id": key.workspace_id,
        "name": key.name,
        "scopes": list(key.scopes),
        "created_at": iso_time(key.created_ms),
        "last_used_at": iso_time(key.last_used_ms) if key.last_used_ms else None,
    }


async def create_key(request: web.Request) -> web.Response:
    """``POST /v1/api-keys``: a workspace-scoped key; its value is shown this once."""
    body = await read_json_object(request)
    errors = FieldErrors()
    errors.check(lambda: reject_unknown(body, CREATABLE), None)
    store = api_key_store(request)
    found = store.check(body.get("workspace_id"), body.get("name"), body.get("scopes"))
    found += [ApiKeyError(name, "is required") for name in CREATABLE if name not in body]
    for field_name, message in {error.field: error.message for error in found}.items():
        errors.add(field_name, message)  # one per field
    errors.raise_any()
    async with redis_deadline("Redis is unavailable; no key was made."):
        key, value = await store.create(
            str(body["workspace_id"]),
            str(body["name"]),
            [str(s) for s in cast(list[object], body["scopes"])],
        )
    log.info("api_key_created", key_id=key.id, workspace_id=key.workspace_id, scopes=key.scopes)
    return web.json_response({**key_dict(key), "key": value}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    """``GET /v1/api-keys``: every scoped key (or one workspace's), oldest first."""
    workspace_id = request.query.get("workspace_id")
    if workspace_id is not None and not ID_PATTERN.match(workspace_id):
        raise invalid_field("workspace_id", "must be 1-128 characters of A-Z, a-z, 0-9, _, -")
    async with redis_deadline("Redis is unavailable; the keys could not be listed."):
        keys = await api_key_store(request).all(workspace_id)
    return web.json_response({"items": [key_dict(k) for k in keys]})


async def revoke_key(request: web.Request) -> web.Response:
    """``DELETE /v1/api-keys/{id}``: the key stops working at once."""
    key_id = request.match_info["id"]
    try:
        async with redis_deadline("Redis is unavailable; the key was not revoked."):
            await api_key_store(request).revoke(key_id)
    except ApiKeyNotFound:
        raise missing("API key", key_id) from None
    log.info("api_key_revoked", key_id=key_id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    """Register the API-key routes (operator keys only)."""
    routes = Routes(app)
    routes.post("/v1/api-keys", create_key, Scope.OPERATOR)
    routes.get("/v1/api-keys", list_keys, Scope.OPERATOR)
    routes.delete("/v1/api-keys/{id}", revoke_key, Scope.OPERATOR)


# ---------------------------------------------------------------- OpenAPI

_SCOPES = {"type": "string", "enum": sorted(GRANTABLE_SCOPES)}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "ApiKey": {
        "type": "object",
        "required": ["id", "workspace_id", "name", "scopes", "created_at", "last_used_at"],
        "properties": {
            "id": {"type": "string"},
            "workspace_id": {"type": "string"},
            "name": {"type": "string"},
            "scopes": {"type": "array", "items": _SCOPES},
            "created_at": {"type": "string", "format": "date-time"},
            "last_used_at": {"type": ["string", "null"], "format": "date-time"},
            "key": {
                "type": "string",
                "description": "The key's value: in the answer to its creation only.",
            },
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/api-keys": {
        "post": operation(
            "createApiKey",
            "Make a workspace-scoped API key (its value is shown once)",
            tag="access",
            description="The key sees and changes its workspace only: another workspace's "
            "endpoint, event, delivery or user answers 404, and publishing for another "
            "workspace 403. A route outside its scopes answers 403 `insufficient-scope`.",
            body={
                "type": "object",
                "required": list(CREATABLE),
                "additionalProperties": False,
                "properties": {
                    "workspace_id": {"type": "string", "pattern": ID_PATTERN.pattern},
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "scopes": {"type": "array", "minItems": 1, "items": _SCOPES},
                },
            },
            responses={
                "201": json_response("The key, with its value.", schema_ref("ApiKey")),
                **problem_responses(403, 422, 503),
            },
        ),
        "get": operation(
            "listApiKeys",
            "The workspace-scoped API keys",
            tag="access",
            parameters=[
                query_parameter("workspace_id", "Only this workspace's keys.", {"type": "string"})
            ],
            responses={
                "200": json_response(
                    "Oldest first.",
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {"items": {"type": "array", "items": schema_ref("ApiKey")}},
                    },
                ),
                **problem_responses(403, 422, 503),
            },
        ),
    },
    "/v1/api-keys/{id}": {
        "delete": operation(
            "revokeApiKey",
            "Revoke a workspace-scoped API key",
            tag="access",
            parameters=[path_parameter("id", "The key's id (ak_…).")],
            responses={
                "204": {"description": "Revoked."},
                **problem_responses(403, 404, 503),
            },
        )
    },
}
