"""The OpenAPI description of the endpoint routes (:mod:`producer.http.endpoints`)."""

from __future__ import annotations

from typing import Any

from producer.deliveries import RECENT_WINDOW
from producer.endpoint import EndpointStatus
from producer.endpoint_kind import EndpointKind
from producer.endpoint_options import MAX_HEADERS, MAX_HEADERS_BYTES
from producer.endpoint_rules import (
    DEFAULT_MAX_IN_FLIGHT,
    MAX_DESCRIPTION_LENGTH,
    MAX_IN_FLIGHT_LIMIT,
    MAX_URL_LENGTH,
    ROTATION_GRACE_S,
)
from producer.events import ID_PATTERN
from producer.fifo import Ordering
from producer.filters import MAX_DEPTH, MAX_FILTER_BYTES, MAX_NODES
from producer.http.endpoints import MAX_ROTATION_GRACE_S, PATCHABLE, REQUIRED_ON_CREATE_POLL
from producer.http.openapi import (
    NULLABLE_ISO_TIME_SCHEMA,
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

_ID = {"type": "string"}
_ENDPOINT_STATUS = {"type": "string", "enum": [s.value for s in EndpointStatus]}
_ORDERING = {"type": "string", "enum": [o.value for o in Ordering]}

_ENDPOINT_KIND = {
    "type": "string",
    "enum": [k.value for k in EndpointKind],
    "description": "http (the default): deliveries are POSTed to `url`. poll: they wait in "
    "its feed for its consumer to fetch (`GET /v1/endpoints/{id}/messages`) and "
    "acknowledge them; it has no `url`. Fixed at creation.",
}

_ENDPOINT_INPUT_PROPERTIES: dict[str, Any] = {
    "workspace_id": {"type": "string", "pattern": ID_PATTERN.pattern},
    "kind": _ENDPOINT_KIND,
    "url": {
        "type": "string",
        "format": "uri",
        "maxLength": MAX_URL_LENGTH,
        "description": "http(s), with a host and no credentials. Required for an http "
        "endpoint; refused for a poll endpoint.",
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
        "description": "Told when the endpoint turns failing. Required for an http "
        "endpoint, optional for a poll endpoint.",
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
    "headers": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "maxProperties": MAX_HEADERS,
        "description": f"Custom headers sent with every delivery (at most {MAX_HEADERS}, "
        f"{MAX_HEADERS_BYTES} bytes of names and values in all; values without CR/LF). "
        "Refused: Content-Type, Content-Length, Host, User-Agent, the X-Cliq-* and "
        "webhook-* headers, hop-by-hop headers. A PATCH replaces them all.",
    },
    "timeout_s": {
        "type": "number",
        "minimum": 0,
        "description": "Seconds one attempt may take, at most the workers' DELIVERY_TIMEOUT; "
        "0 (the default): DELIVERY_TIMEOUT.",
    },
    "ordering": {
        **_ORDERING,
        "default": Ordering.PARALLEL.value,
        "description": "`fifo`: its deliveries start in publish order, one at a time; the "
        "next waits until the previous is delivered or dead (retries keep the order), so "
        "its throughput is one delivery per round trip. `parallel` (the default): "
        "up to `max_in_flight` at once, in no particular order. From `fifo` back to "
        "`parallel`, the deliveries waiting in line go at once.",
    },
    "filter": {
        "type": "object",
        "maxProperties": MAX_NODES,
        "description": "A payload filter evaluated at publish time (docs/filters.md), such as "
        '`{"data.priority": {"$in": ["high", "urgent"]}}`; operators `$eq $ne $in $nin '
        "$exists $gt $gte $lt $lte $and $or $not`. An event it does not match gets no "
        f"delivery to this endpoint. At most {MAX_FILTER_BYTES} bytes of JSON, nested "
        f"{MAX_DEPTH} levels deep; `{{}}` (the default) matches every event, and a PATCH "
        "with `{}` removes it. A malformed one is refused with a JSON Pointer to the bad "
        "spot.",
    },
}

# The paused backlog in an endpoint's views (producer/pausing.py).
_PAUSE_PROPERTIES: dict[str, Any] = {
    "paused": {
        "type": "integer",
        "minimum": 0,
        "description": "Deliveries paused, waiting for the endpoint to be enabled (sent "
        "then in publish order).",
    },
    "drop": {
        "type": "boolean",
        "description": "Disabled with drop: its deliveries end dead instead of pausing.",
    },
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Endpoint": {
        "type": "object",
        "required": [
            "id",
            "workspace_id",
            "kind",
            "url",
            "events",
            "owner_email",
            "description",
            "status",
            "max_in_flight",
            "rate_limit",
            "headers",
            "timeout_s",
            "ordering",
            "filter",
            "secret",
            "signature_switches_at",
            "created_ms",
            "updated_ms",
        ],
        "properties": {
            "id": _ID,
            "workspace_id": _ID,
            "kind": _ENDPOINT_KIND,
            "url": {"type": "string", "description": "Empty for a poll endpoint."},
            "events": {"type": "array", "items": {"type": "string"}},
            "owner_email": {"type": "string"},
            "description": {"type": "string"},
            "status": {
                **_ENDPOINT_STATUS,
                "description": "What happens to its deliveries (docs/endpoint-states.md). "
                "`active`: delivered, a failed attempt retried on RETRY_SCHEDULE. `failing`: "
                "a delivery failed every attempt and ended dead (replayable), its owner was "
                "emailed once; deliveries go on as for `active`, and the next success makes "
                "it `active` again (DISABLE_FAILING_AFTER, off by default, disables one "
                "failing that long). `disabled` (by `disable`, a 410 Gone answer or "
                "DISABLE_FAILING_AFTER): its queued, retrying and new deliveries are kept "
                "as `paused`, spend no attempt and resume in publish order on `enable`; "
                "with `drop` they end dead instead.",
            },
            "max_in_flight": {"type": "integer"},
            "rate_limit": {"type": "number"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "timeout_s": {"type": "number", "description": "0: DELIVERY_TIMEOUT."},
            "ordering": _ORDERING,
            "filter": {"type": "object", "description": "The payload filter; {}: none."},
            "secret": {
                "type": "string",
                "description": "In full only when created or rotated; masked otherwise.",
            },
            "signature_switches_at": {
                **NULLABLE_ISO_TIME_SCHEMA,
                "description": "When `X-Cliq-Signature` switches (switched) to the newest "
                "secret: the end of the last rotation's grace period (null: never rotated). "
                "Until then it is made with the previous secret, `X-Cliq-Signature-New` "
                "with the new one, and `webhook-signature` carries both.",
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
                "required": ["recent", "dead_total", "paused", "drop"],
                "properties": {
                    "recent": schema_ref("RecentDeliveries"),
                    "dead_total": {
                        "type": "integer",
                        "description": "Dead deliveries kept for replay.",
                    },
                    **_PAUSE_PROPERTIES,
                },
            },
        ]
    },
    "EndpointStatusChange": {
        "allOf": [
            schema_ref("Endpoint"),
            {
                "type": "object",
                "required": ["paused", "drop"],
                "properties": _PAUSE_PROPERTIES,
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
                        "until then (ms since the epoch; `signature_switches_at` in ISO).",
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
            "paused",
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
            "paused": {
                "type": "integer",
                "minimum": 0,
                "description": "Paused: waiting for the endpoint to be enabled.",
            },
            "last_attempt_at": NULLABLE_ISO_TIME_SCHEMA,
            "last_delivered_at": NULLABLE_ISO_TIME_SCHEMA,
            "last_error": {
                "oneOf": [schema_ref("AttemptEntry"), {"type": "null"}],
                "description": "The latest attempt that did not deliver.",
            },
        },
    },
    "EndpointCreate": {
        "type": "object",
        "additionalProperties": False,
        # url and owner_email too for an http endpoint (the default kind).
        "required": list(REQUIRED_ON_CREATE_POLL),
        "properties": _ENDPOINT_INPUT_PROPERTIES,
    },
    "EndpointPatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: _ENDPOINT_INPUT_PROPERTIES[name] for name in PATCHABLE},
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
_ENDPOINT_RESPONSE = json_response("The endpoint (secret masked).", schema_ref("Endpoint"))
_STATUS_RESPONSE = json_response(
    "The endpoint (secret masked), with its paused count.", schema_ref("EndpointStatusChange")
)

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
            "Delete an endpoint (its queued and paused deliveries end as dead)",
            tag="endpoints",
            parameters=[_ENDPOINT_ID],
            responses={"204": {"description": "Deleted."}, **problem_responses(404, 503)},
        ),
    },
    "/v1/endpoints/{id}/enable": {
        "post": operation(
            "enableEndpoint",
            "Deliver to an endpoint again (clears failing); its paused deliveries resume",
            tag="endpoints",
            description="The workers send its paused deliveries in publish order, each "
            "with the attempts it had left; new ones queue behind them. See "
            "docs/endpoint-states.md.",
            parameters=[_ENDPOINT_ID],
            responses={"200": _STATUS_RESPONSE, **problem_responses(404, 503)},
        )
    },
    "/v1/endpoints/{id}/disable": {
        "post": operation(
            "disableEndpoint",
            "Pause an endpoint: its deliveries wait, nothing is lost (or drop them)",
            tag="endpoints",
            description="Its deliveries (queued, retrying and new ones) are kept as "
            "`paused` and spend no attempt until it is enabled, at most "
            "PAUSED_MAX_PER_ENDPOINT (past it the oldest end dead, 'paused backlog "
            "full'). With `drop`, they end dead with the reason instead (replayable).",
            parameters=[_ENDPOINT_ID],
            body={
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "drop": {
                        "type": "boolean",
                        "default": False,
                        "description": "Instead of pausing them, end its paused "
                        "deliveries dead at once ('endpoint disabled (drop)') and its queued, "
                        "retrying and new ones when their attempt comes due ('endpoint "
                        "disabled'); replayable once it is enabled.",
                    }
                },
            },
            body_required=False,
            responses={"200": _STATUS_RESPONSE, **problem_responses(404, 422, 503)},
        )
    },
    "/v1/endpoints/{id}/rotate-secret": {
        "post": operation(
            "rotateEndpointSecret",
            "A new secret, shown this once; the old one signs too for a grace period",
            tag="endpoints",
            description="Until the grace period ends (`signature_switches_at` in the "
            "answer) `X-Cliq-Signature` is still made with the old secret, "
            "`X-Cliq-Signature-New` with the new one, and `webhook-signature` carries "
            "both; from then on only the new secret signs.",
            parameters=[_ENDPOINT_ID],
            body={
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "grace_s": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_ROTATION_GRACE_S,
                        "description": "Seconds until `X-Cliq-Signature` switches to the "
                        f"new secret (default {ROTATION_GRACE_S}).",
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
}
