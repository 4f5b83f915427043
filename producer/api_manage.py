"""Routes of the HTTP API: placeholder until filled in."""

from __future__ import annotations

from typing import Any

from aiohttp import web

# OpenAPI "paths" entries for the routes below (merged into /openapi.json).
OPENAPI_PATHS: dict[str, Any] = {}


def add_routes(app: web.Application) -> None:
    """Register this module's routes on the API application."""
