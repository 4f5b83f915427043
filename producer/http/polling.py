"""A poll endpoint's messages: ``GET /v1/endpoints/{id}/messages`` (a long poll) and
``POST /v1/endpoints/{id}/messages/ack`` (:mod:`producer.polling`, :mod:`producer.feeds`).

A consumer fetches the messages after its cursor, in order, each with its exact body and
the headers a POST would carry; it acknowledges up to the cursor it has processed, which
records those deliveries as delivered. What it did not acknowledge is fetched again by
whoever starts over from the beginning (no ``after``).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from producer.endpoint import Endpoint
from producer.endpoint_kind import EndpointKind
from producer.http.access import Access, Owner, Routes, Scope
from producer.http.bodies import path_id, read_json_object, reject_unknown
from producer.http.openapi import (
    json_response,
    operation,
    path_parameter,
    problem_responses,
    query_parameter,
    schema_ref,
)
from producer.http.problems import Problem, ProblemKind, invalid_field, registry_errors
from producer.http.state import producer_of
from producer.polling import DEFAULT_FETCH_LIMIT, MAX_FETCH_LIMIT, MAX_WAIT_S, fetch_messages

NOT_POLL = ProblemKind("not-a-poll-endpoint", 409, "Not a poll endpoint")
_INTEGER = re.compile(r"[0-9]{1,15}")
_NUMBER = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise invalid_field(name, f"must be an integer from {low} to {high}")
    return int(raw)


def _query_wait(request: web.Request) -> float:
    raw = request.query.get("wait_s")
    if raw is None:
        return 0.0
    if not _NUMBER.fullmatch(raw) or not float(raw) <= MAX_WAIT_S:
        raise invalid_field("wait_s", f"must be a number of seconds from 0 to {MAX_WAIT_S:g}")
    return float(raw)


async def _poll_endpoint(request: web.Request) -> Endpoint:
    """The poll endpoint of the path: 404 if none, 409 if it is an http endpoint."""
    endpoint_id = path_id(request, "endpoint")
    async with registry_errors("Redis is unavailable; nothing was read."):
        endpoint = await producer_of(request).endpoints.get(endpoint_id)
    if endpoint.kind != EndpointKind.POLL:
        raise Problem(
            NOT_POLL,
            f"{endpoint_id} is an http endpoint: its deliveries are POSTed to its URL; "
            "only a poll endpoint (kind poll) has messages to fetch.",
        )
    return endpoint


def _disconnected(request: web.Request) -> bool:
    """Whether the client closed its connection (a long poll need not wait for it)."""
    return request.transport is None or request.transport.is_closing()


async def get_messages(request: web.Request) -> web.Response:
    """``GET /v1/endpoints/{id}/messages?after=&limit=&wait_s=``: the next messages."""
    endpoint = await _poll_endpoint(request)
    after = _query_int(request, "after", 0, 0, 10**15 - 1)
    limit = _query_int(request, "limit", DEFAULT_FETCH_LIMIT, 1, MAX_FETCH_LIMIT)
    wait_s = _query_wait(request)
    feeds = producer_of(request).feeds
    async with registry_errors("Redis is unavailable; no message was fetched."):
        messages = await fetch_messages(
            feeds, endpoint, after, limit, wait_s, lambda: _disconnected(request)
        )
        backlog = await feeds.backlog(endpoint.id)
    cursor = messages[-1].cursor if messages else after
    return web.json_response(
        {"data": [m.to_dict() for m in messages], "cursor": cursor, "backlog": backlog}
    )


async def ack_messages(request: web.Request) -> web.Response:
    """``POST /v1/endpoints/{id}/messages/ack {"until": cursor}``: delivered up to there."""
    endpoint = await _poll_endpoint(request)
    body = await read_json_object(request)
    reject_unknown(body, ("until",))
    until = body.get("until")
    if isinstance(until, bool) or not isinstance(until, int) or until < 0:
        raise invalid_field(
            "until", "must be the cursor (an integer >= 0) of the last message processed"
        )
    feeds = producer_of(request).feeds
    async with registry_errors("Redis is unavailable; nothing was acknowledged."):
        acknowledged = await feeds.ack(endpoint.id, until)
        backlog = await feeds.backlog(endpoint.id)
    return web.json_response({"acknowledged": acknowledged, "backlog": backlog})


def add_routes(app: web.Application) -> None:
    """Register the poll endpoint routes."""
    routes = Routes(app)
    # Fetching reads the endpoint's deliveries; acknowledging records them as delivered.
    routes.get(
        "/v1/endpoints/{id}/messages",
        get_messages,
        Access(Scope.DELIVERIES_READ, Owner.ENDPOINT),
    )
    routes.post(
        "/v1/endpoints/{id}/messages/ack",
        ack_messages,
        Access(Scope.DELIVERIES_WRITE, Owner.ENDPOINT),
    )


# ---------------------------------------------------------------- OpenAPI

_ENDPOINT_ID = path_parameter("id", "The poll endpoint's id.")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "PollMessage": {
        "type": "object",
        "required": [
            "cursor",
            "delivery_id",
            "event_id",
            "type",
            "attempt",
            "created_ms",
            "headers",
            "body",
        ],
        "properties": {
            "cursor": {
                "type": "integer",
                "description": "Its place in the feed: acknowledge up to it, fetch after it.",
            },
            "delivery_id": {"type": "string"},
            "event_id": {"type": "string"},
            "type": {"type": "string"},
            "attempt": {"type": "integer", "description": "1 plus the earlier attempts."},
            "created_ms": {"type": "integer"},
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "The headers a POST of it would carry: X-Cliq-Signature, "
                "webhook-id, webhook-timestamp, webhook-signature (signed when fetched), "
                "X-Cliq-Event, X-Cliq-Delivery, X-Cliq-Attempt, Content-Type, custom headers.",
            },
            "body": {"type": "string", "description": "The exact body, byte for byte (UTF-8)."},
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/endpoints/{id}/messages": {
        "get": operation(
            "listEndpointMessages",
            "Fetch a poll endpoint's next messages, in order (a long poll)",
            tag="endpoints",
            description="Unacknowledged messages with a cursor after `after`, oldest first; "
            "with none, waits up to `wait_s` for the first. Fetching acknowledges nothing: "
            "a consumer that starts over without `after` gets every unacknowledged one again.",
            parameters=[
                _ENDPOINT_ID,
                query_parameter(
                    "after",
                    "Only messages with a greater cursor (default 0: from the oldest).",
                    {"type": "integer", "minimum": 0},
                ),
                query_parameter(
                    "limit",
                    f"At most this many (default {DEFAULT_FETCH_LIMIT}).",
                    {"type": "integer", "minimum": 1, "maximum": MAX_FETCH_LIMIT},
                ),
                query_parameter(
                    "wait_s",
                    "Seconds to wait for a message when none is there (default 0).",
                    {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S},
                ),
            ],
            responses={
                "200": json_response(
                    "The messages, the cursor to fetch after next and the backlog.",
                    {
                        "type": "object",
                        "required": ["data", "cursor", "backlog"],
                        "properties": {
                            "data": {
                                "type": "array",
                                "items": schema_ref("PollMessage"),
                            },
                            "cursor": {
                                "type": "integer",
                                "description": "The last message's cursor (`after` if none).",
                            },
                            "backlog": {
                                "type": "integer",
                                "description": "Unacknowledged messages in the feed.",
                            },
                        },
                    },
                ),
                **problem_responses(404, 409, 422, 503),
            },
        )
    },
    "/v1/endpoints/{id}/messages/ack": {
        "post": operation(
            "ackEndpointMessages",
            "Acknowledge a poll endpoint's messages up to a cursor (they count as delivered)",
            tag="endpoints",
            parameters=[_ENDPOINT_ID],
            body={
                "type": "object",
                "additionalProperties": False,
                "required": ["until"],
                "properties": {
                    "until": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "The cursor of the last message processed.",
                    }
                },
            },
            responses={
                "200": json_response(
                    "How many were acknowledged now, and what is left.",
                    {
                        "type": "object",
                        "required": ["acknowledged", "backlog"],
                        "properties": {
                            "acknowledged": {"type": "integer"},
                            "backlog": {"type": "integer"},
                        },
                    },
                ),
                **problem_responses(404, 409, 422, 503),
            },
        )
    },
}
