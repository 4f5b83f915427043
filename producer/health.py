"""The one shape of every probe's answer, the API's and the workers' alike.

``{"status": ...}`` plus details: ``/healthz`` answers ``ok`` (200) or ``unhealthy``
(503), ``/readyz`` ``ready`` (200) or ``not_ready`` (503).
"""

from __future__ import annotations

from aiohttp import web

HEALTHY = "ok"
UNHEALTHY = "unhealthy"
READY = "ready"
NOT_READY = "not_ready"


def liveness(ok: bool, **details: object) -> web.Response:
    """The answer of ``/healthz``: 200 ``ok`` while the process does its work, else 503."""
    return _answer(HEALTHY if ok else UNHEALTHY, ok, details)


def readiness(ok: bool, **details: object) -> web.Response:
    """The answer of ``/readyz``: 200 ``ready`` when it can take work, else 503."""
    return _answer(READY if ok else NOT_READY, ok, details)


def _answer(status: str, ok: bool, details: dict[str, object]) -> web.Response:
    return web.json_response({"status": status, **details}, status=200 if ok else 503)
