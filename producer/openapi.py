"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``.

The document is assembled once, when the application is created, from three parts:

* what this module describes itself: the routes of :mod:`producer.api` (publishing,
  probes, metrics, this document), the problem responses and the schemas every route
  module shares (events, deliveries, attempts);
* ``OPENAPI_PATHS`` (and, when a module has them, ``OPENAPI_SCHEMAS``) of each route
  module, :mod:`producer.api_manage` and :mod:`producer.api_tokens`;
* the event catalogue of the running configuration, so that ``EventTypeName`` lists
  exactly the types this server accepts (``EVENT_TYPES_EXTRA`` included).

Route modules build their operations with :func:`operation` and friends, so that every
operation declares the problems the shared plumbing can answer (401 without a key, 400,
413 and 415 for a body) the same way. Two modules describing the same operation, or the
same schema name, is a programming error and fails at startup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from aiohttp import web

from producer.api import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_PAGE_LIMIT,
    PROBLEM_CONTENT_TYPE,
    SETTINGS,
)
from producer.deliveries import AttemptOutcome, DeliveryState
from producer.events import ID_PATTERN, Catalogue

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "bearer"
# Incoming webhooks authenticate with a user's webhook token in the query string.
TOKEN_SECURITY_SCHEME = "zapikey"
ID_REGEX = ID_PATTERN.pattern

OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)

# Problem responses by status: the component name and when it is answered. Route
# modules refer to them with problem_responses().
PROBLEM_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The body is not valid JSON."),
    401: (
        "Unauthorized",
        "Missing or invalid credentials: the API key, a webhook token or appkey, or a 2FA "
        "session (re-authenticate).",
    ),
    403: ("Forbidden", "The credentials are valid but do not allow this."),
    404: ("NotFound", "No such resource, or its retention ran out."),
    409: ("Conflict", "A limit is reached, or the resource's state does not allow this."),
    413: ("PayloadTooLarge", "The body is larger than the route accepts."),
    415: ("UnsupportedMediaType", "The body is not declared application/json (UTF-8)."),
    422: ("UnprocessableContent", "Fields are invalid; `errors` names each one."),
    429: (
        "TooManyRequests",
        "Too many attempts (wrong TOTP codes, or failed authentications from this address); "
        "wait the seconds of `Retry-After`. A valid credential is never refused for the "
        "failures of others.",
    ),
    503: (
        "ServiceUnavailable",
        "Redis is unavailable or too slow (retry later), or may evict keys "
        "(`redis-evicting`: nothing is stored until its maxmemory-policy is noeviction).",
    ),
    504: ("GatewayTimeout", "Nobody answered in time."),
}


def _package_version() -> str:
    """The installed package's version, for ``info.version``."""
    try:
        return version("cliq-webhooks")
    except PackageNotFoundError:  # a source tree that was not installed
        return "0.0.0"


# ---------------------------------------------------------------- building blocks


def schema_ref(name: str) -> dict[str, str]:
    """A reference to ``#/components/schemas/<name>``."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A ``content`` map with one ``application/json`` entry."""
    return {"application/json": {"schema": dict(schema)}}


def json_response(
    description: str,
    schema: Mapping[str, Any],
    headers: Mapping[str, Any] | None = None,
    links: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON response object; ``links`` name the operations its body leads to."""
    response: dict[str, Any] = {"description": description, "content": json_content(schema)}
    if headers:
        response["headers"] = dict(headers)
    if links:
        response["links"] = dict(links)
    return response


def id_links(source: str, operation_ids: Iterable[str]) -> dict[str, Any]:
    """Links passing ``source`` (e.g. ``$response.body#/id``) as the ``id`` of each operation."""
    return {
        op_id[0].upper() + op_id[1:]: {"operationId": op_id, "parameters": {"id": source}}
        for op_id in operation_ids
    }


def problem_responses(*statuses: int) -> dict[str, Any]:
    """References to the shared problem responses of these statuses."""
    return {
        str(status): {"$ref": f"#/components/responses/{PROBLEM_RESPONSES[status][0]}"}
        for status in statuses
    }


def path_parameter(name: str, description: str) -> dict[str, Any]:
    """A required path parameter shaped like every id of this API."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": ID_REGEX},
    }


def query_parameter(name: str, description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """An optional query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": dict(schema),
    }


PAGINATION_PARAMETERS: list[dict[str, Any]] = [
    query_parameter(
        "limit",
        f"Items per page, 1 to {MAX_PAGE_LIMIT} (default 50).",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_LIMIT},
    ),
    query_parameter(
        "cursor",
        "The `next_cursor` of the previous page (opaque; only valid for the same listing).",
        {"type": "string"},
    ),
]


def page_schema(item: Mapping[str, Any]) -> dict[str, Any]:
    """A page of a cursor-paginated listing of ``item``."""
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": dict(item)},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null at the end. A page "
                "may hold fewer than `limit` items (even none) while this is not null.",
            },
        },
    }


def operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    responses: Mapping[str, Any],
    description: str | None = None,
    parameters: Sequence[Mapping[str, Any]] = (),
    body: Mapping[str, Any] | None = None,
    body_required: bool = True,
    public: bool = False,
    token_auth: bool = False,
) -> dict[str, Any]:
    """One operation, with the problems the shared plumbing answers added.

    Every operation that is not ``public`` needs the bearer key (401, 429 after too many
    failures), or with ``token_auth`` a webhook token instead (401 and 429 the same, and
    403 for a token that may not); one
    that takes a JSON ``body`` can answer 400 (not JSON), 413 (too large) and 415 (not
    JSON typed).
    """
    result: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        result["description"] = description
    if parameters:
        result["parameters"] = [dict(p) for p in parameters]
    all_responses = dict(responses)
    if body is not None:
        result["requestBody"] = {"required": body_required, "content": json_content(body)}
        all_responses.update(problem_responses(400, 413, 415))
    if public:
        result["security"] = []
    elif token_auth:
        result["security"] = [{TOKEN_SECURITY_SCHEME: []}]
        all_responses.update(problem_responses(401, 403, 429))
    else:
        all_responses.update(problem_responses(401, 429))
    result["responses"] = dict(sorted(all_responses.items()))
    return result


# ---------------------------------------------------------------- shared schemas

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem; `type` is stable, `errors` names fields at fault.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": schema_ref("FieldError")},
    },
}

_FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["field", "message"],
    "properties": {
        "field": {"type": "string", "description": "The field, parameter or `body`."},
        "message": {"type": "string"},
        "index": {"type": "integer", "description": "The item of a batch at fault."},
    },
}

_STORED_ATTEMPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "number",
        "at_ms",
        "status",
        "error",
        "latency_ms",
        "response",
        "outcome",
        "next_attempt_ms",
    ],
    "properties": {
        "number": {"type": "integer", "minimum": 1},
        "at_ms": {"type": "integer", "description": "When it started, ms since the epoch."},
        "status": {"type": ["integer", "null"], "description": "HTTP status; null: none."},
        "error": {"type": ["string", "null"], "description": "Why no status came back."},
        "latency_ms": {"type": "number"},
        "response": {"type": "string", "description": "The first KiB of the answer."},
        "outcome": {"type": "string", "enum": [o.value for o in AttemptOutcome]},
        "next_attempt_ms": {"type": ["integer", "null"]},
    },
}

_DELIVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "event_id",
        "endpoint_id",
        "state",
        "attempts_made",
        "created_ms",
        "attempts",
    ],
    "properties": {
        "id": {"type": "string"},
        "event_id": {"type": "string"},
        "endpoint_id": {"type": "string"},
        "state": {"type": "string", "enum": [s.value for s in DeliveryState]},
        "attempts_made": {"type": "integer", "minimum": 0},
        "created_ms": {"type": "integer"},
        "attempts": {"type": "array", "items": schema_ref("StoredAttempt")},
    },
}

_EVENT_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "workspace_id", "data"],
    "properties": {
        "id": {
            "type": "string",
            "pattern": ID_REGEX,
            "description": "Idempotency: an id already published is a duplicate.",
        },
        "type": schema_ref("EventTypeName"),
        "created_at": {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 with a timezone; default: now.",
        },
        "workspace_id": {"type": "string", "pattern": ID_REGEX},
        "data": {"type": "object"},
    },
}

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An event exactly as every subscriber receives it.",
    "required": ["id", "type", "created_at", "workspace_id", "data"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "workspace_id": {"type": "string"},
        "data": {"type": "object"},
    },
}

_PUBLISH_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "deliveries", "duplicate"],
    "properties": {
        "id": {"type": "string"},
        "deliveries": {"type": "integer", "minimum": 0},
        "duplicate": {"type": "boolean"},
    },
}

_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string"},
        # /readyz only: what is amiss without making it unready (producer.redis_guard).
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
}


def catalogue_schemas(catalogue: Catalogue) -> dict[str, Any]:
    """``EventTypeName`` and ``EventFilterPattern``: this configuration's catalogue."""
    types = sorted(catalogue.types)
    # Every proper prefix of a type, as a wildcard: what the registry accepts.
    wildcards = sorted(
        {
            ".".join(parts[:depth]) + ".*"
            for parts in (name.split(".") for name in types)
            for depth in range(1, len(parts))
        }
    )
    return {
        "EventTypeName": {"type": "string", "enum": types},
        "EventFilterPattern": {
            "type": "string",
            "description": "An event type, `resource.*` (every type of it) or `*`.",
            "enum": ["*", *wildcards, *types],
        },
    }


SHARED_SCHEMAS: dict[str, Any] = {
    "Problem": _PROBLEM_SCHEMA,
    "FieldError": _FIELD_ERROR_SCHEMA,
    "StoredAttempt": _STORED_ATTEMPT_SCHEMA,
    "Delivery": _DELIVERY_SCHEMA,
    "EventInput": _EVENT_INPUT_SCHEMA,
    "Event": _EVENT_SCHEMA,
    "PublishResult": _PUBLISH_RESULT_SCHEMA,
    "Status": _STATUS_SCHEMA,
}


# ---------------------------------------------------------------- producer.api's routes

_EVENT_ID = path_parameter("id", "The event id.")

CORE_PATHS: dict[str, Any] = {
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
            "An event's deliveries and their attempts",
            tag="events",
            parameters=[_EVENT_ID],
            responses={
                "200": json_response(
                    "The deliveries, in fan-out order.",
                    {
                        "type": "object",
                        "required": ["id", "deliveries"],
                        "properties": {
                            "id": {"type": "string"},
                            "deliveries": {"type": "array", "items": schema_ref("Delivery")},
                        },
                    },
                ),
                **problem_responses(404, 503),
            },
        )
    },
    "/healthz": {
        "get": operation(
            "healthz",
            "Liveness: 200 while the process serves",
            tag="probes",
            public=True,
            responses={"200": json_response("Serving.", schema_ref("Status"))},
        )
    },
    "/readyz": {
        "get": operation(
            "readyz",
            "Readiness: 200 when Redis answers PING and does not evict keys",
            tag="probes",
            public=True,
            responses={
                "200": json_response("Ready.", schema_ref("Status")),
                **problem_responses(503),
            },
        )
    },
    "/metrics": {
        "get": operation(
            "metrics",
            "Prometheus metrics of this process",
            tag="probes",
            public=True,
            responses={
                "200": {
                    "description": "Prometheus text exposition.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        )
    },
    "/openapi.json": {
        "get": operation(
            "openapi",
            "This document",
            tag="probes",
            public=True,
            responses={"200": json_response("OpenAPI 3.1.", {"type": "object"})},
        )
    },
}


# ---------------------------------------------------------------- the document


def _problem_response_components() -> dict[str, Any]:
    """``components.responses``: one problem+json response per status of the table."""
    problem = {PROBLEM_CONTENT_TYPE: {"schema": schema_ref("Problem")}}
    return {
        name: {"description": description, "content": problem}
        for name, description in PROBLEM_RESPONSES.values()
    }


def _merge(target: dict[str, Any], source: Mapping[str, Any], what: str) -> None:
    """Add ``source`` to ``target``; a name already there is a programming error."""
    for name, value in source.items():
        if name in target:
            raise ValueError(f"{what} {name!r} is described twice")
        target[name] = value


def build_document(
    catalogue: Catalogue,
    path_sets: Iterable[Mapping[str, Any]],
    schema_sets: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The whole document: :data:`CORE_PATHS` plus each module's paths and schemas.

    Raises ``ValueError`` when an operation or a schema is described twice.
    """
    paths: dict[str, dict[str, Any]] = {path: dict(item) for path, item in CORE_PATHS.items()}
    for path_set in path_sets:
        for path, item in path_set.items():
            _merge(paths.setdefault(path, {}), item, f"operation of {path}:")
    schemas = {**SHARED_SCHEMAS, **catalogue_schemas(catalogue)}
    for schema_set in schema_sets:
        _merge(schemas, schema_set, "schema")
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "cliq-webhooks",
            "version": _package_version(),
            "description": "Outbound webhooks: publish events, manage endpoints, read the "
            "delivery log, replay, send test events. Errors are RFC 9457 problems "
            "(application/problem+json).",
        },
        "security": [{SECURITY_SCHEME: []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of API_KEYS (when it is empty, no key is needed).",
                },
                TOKEN_SECURITY_SCHEME: {
                    "type": "apiKey",
                    "in": "query",
                    "name": "zapikey",
                    "description": "A webhook token of the user who owns the resource.",
                },
            },
            "schemas": dict(sorted(schemas.items())),
            "responses": _problem_response_components(),
        },
    }


async def serve_document(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the document built at startup."""
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")


def add_routes(
    app: web.Application,
    path_sets: Iterable[Mapping[str, Any]],
    schema_sets: Iterable[Mapping[str, Any]] = (),
) -> None:
    """Build the document for ``app`` (after every route module added its routes) and
    serve it; building it here makes a duplicate description fail at startup."""
    catalogue = Catalogue.with_extras(app[SETTINGS].producer.event_types_extra)
    document = build_document(catalogue, path_sets, schema_sets)
    app[OPENAPI_DOCUMENT] = orjson.dumps(document)
    app.router.add_get("/openapi.json", serve_document, name="openapi")
