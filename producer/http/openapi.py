"""Building blocks of the OpenAPI 3.1 document, and the schemas every route module shares.

Route modules describe their operations with :func:`operation` and friends, so that
every operation declares the problems the shared plumbing can answer (401 without a
key, 400, 413 and 415 for a body) the same way; :mod:`producer.http.document` puts
the document together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from producer.deliveries import AttemptOutcome, DeliveryState
from producer.events import ID_PATTERN, Catalogue
from producer.http.bodies import MAX_PAGE_LIMIT

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "bearer"
# Incoming webhooks authenticate with a user's webhook token in the query string.
TOKEN_SECURITY_SCHEME = "zapikey"
ID_REGEX = ID_PATTERN.pattern
ISO_TIME_SCHEMA: dict[str, Any] = {"type": "string", "format": "date-time"}
NULLABLE_ISO_TIME_SCHEMA: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}

# Problem responses by status: the component name and when it is answered. Route
# modules refer to them with problem_responses().
PROBLEM_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The body is not valid JSON, or a query parameter is unknown."),
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
    JSON typed); every one 400 for a query parameter it does not describe.
    """
    result: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        result["description"] = description
    if parameters:
        result["parameters"] = [dict(p) for p in parameters]
    # Every operation refuses query parameters it does not describe (400).
    all_responses = {**problem_responses(400), **responses}
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

_SENT_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "workspace_id", "created_at", "data"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "workspace_id": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "data": {"description": "The event's data, as delivered."},
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
    "SentEvent": _SENT_EVENT_SCHEMA,
    "EventInput": _EVENT_INPUT_SCHEMA,
    "Event": _EVENT_SCHEMA,
    "PublishResult": _PUBLISH_RESULT_SCHEMA,
    "Status": _STATUS_SCHEMA,
}
