"""``GET /v1/event-types``: the catalogue, each type with a complete example event."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from producer.events import example_data, parse_event
from producer.http.access import Routes, Scope
from producer.http.openapi import json_response, operation, schema_ref
from producer.http.state import producer_of

_EXAMPLE_EVENT_ID = "evt_example"
_EXAMPLE_WORKSPACE = "ws_example"
_EXAMPLE_CREATED_AT = "2025-01-15T10:30:00Z"


async def event_types(request: web.Request) -> web.Response:
    """``GET /v1/event-types``: every accepted type, described, with an example event."""
    producer = producer_of(request)
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


def add_routes(app: web.Application) -> None:
    """Register the catalogue's route."""
    Routes(app).get("/v1/event-types", event_types, Scope.ENDPOINTS_READ)


OPENAPI_SCHEMAS: dict[str, Any] = {
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

OPENAPI_PATHS: dict[str, Any] = {
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
