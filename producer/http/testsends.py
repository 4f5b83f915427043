"""``POST /v1/endpoints/{id}/test``: the seed's "Send Test Event", sent by a worker.

The API asks a worker through Redis (:mod:`producer.testsends`) and answers with what
the receiver said: 200 whatever its status (``ok`` tells), 504 when no worker answered
within ``DELIVERY_TIMEOUT`` plus a margin.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from producer.http.access import Access, Owner, Routes, Scope
from producer.http.bodies import path_id, read_optional_json_object, reject_unknown
from producer.http.openapi import (
    json_response,
    operation,
    path_parameter,
    problem_responses,
    schema_ref,
)
from producer.http.problems import FieldErrors, Problem, ProblemKind, registry_errors
from producer.http.state import SETTINGS, producer_of
from producer.testsends import DEFAULT_TEST_EVENT_TYPE, request_test_send, untestable_reason

TEST_TIMEOUT = ProblemKind("test-timeout", 504, "No worker answered")
POLL_ENDPOINT = ProblemKind("poll-endpoint", 409, "A poll endpoint gets no test send")


async def send_test(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/test``: have a worker send a test event; its answer.

    200 whatever the receiver answered (``ok`` tells); 504 when no worker answered. No
    body at all is ``{}``: a test event of :data:`DEFAULT_TEST_EVENT_TYPE`, as in the CLI.
    """
    endpoint_id = path_id(request, "endpoint")
    body = await read_optional_json_object(request)
    errors = FieldErrors()
    errors.check(lambda: reject_unknown(body, ("type",)), None)
    producer = producer_of(request)
    raw_type = body.get("type", DEFAULT_TEST_EVENT_TYPE)
    if not isinstance(raw_type, str) or raw_type not in producer.catalogue:
        errors.add("type", "must be an event type of GET /v1/event-types")
    errors.raise_any()
    event_type = str(raw_type)
    async with registry_errors("Redis is unavailable; no test event was sent."):
        endpoint = await producer.endpoints.get(endpoint_id)
    reason = untestable_reason(endpoint)
    if reason is not None:
        raise Problem(POLL_ENDPOINT, reason + ".")
    wait_s = request.app[SETTINGS].test_send_wait_s
    result = await request_test_send(
        producer.redis,
        producer.keys_of(endpoint),
        endpoint_id,
        event_type,
        wait_s,
    )
    if result is None:
        raise Problem(
            TEST_TIMEOUT, f"no worker answered within {wait_s:g} s — is a worker running?"
        )
    return web.json_response(result.to_dict())


def add_routes(app: web.Application) -> None:
    """Register the test-send route."""
    Routes(app).post(
        "/v1/endpoints/{id}/test", send_test, Access(Scope.DELIVERIES_WRITE, Owner.ENDPOINT)
    )


# ---------------------------------------------------------------- OpenAPI

_ID = {"type": "string"}
_ENDPOINT_ID = path_parameter("id", "The endpoint id.")

OPENAPI_SCHEMAS: dict[str, Any] = {
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
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/endpoints/{id}/test": {
        "post": operation(
            "sendTestEvent",
            "Have a worker send a test event; the receiver's answer",
            tag="endpoints",
            description="Answered 200 whatever the receiver said (`ok` tells), 504 when no "
            "worker answered within DELIVERY_TIMEOUT plus a margin. Without `type` (or "
            f"without a body) the test event is a `{DEFAULT_TEST_EVENT_TYPE}`.",
            parameters=[_ENDPOINT_ID],
            body={
                "type": "object",
                "additionalProperties": False,
                "properties": {"type": schema_ref("EventTypeName")},
            },
            body_required=False,
            responses={
                "200": json_response("What the receiver answered.", schema_ref("TestResult")),
                **problem_responses(404, 409, 422, 503, 504),
            },
        )
    },
}
