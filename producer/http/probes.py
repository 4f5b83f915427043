"""The probes: ``GET /healthz`` (serving), ``GET /readyz`` (Redis answers ``PING``) and
``GET /metrics`` (Prometheus text of this process's own registry). No API key needed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from producer.health import liveness, readiness
from producer.http.access import Routes, Scope
from producer.http.openapi import json_response, operation, problem_responses, schema_ref
from producer.http.problems import REDIS_EVICTING, REDIS_UNAVAILABLE, Problem
from producer.http.state import GUARD, METRICS, PRODUCER, REDIS_PROBE
from producer.redis.clients import PROBE_TIMEOUT_S, ping

log = structlog.get_logger("cliq.producer.http.probes")

READY_TIMEOUT_S = PROBE_TIMEOUT_S


async def healthz(_request: web.Request) -> web.Response:
    """``GET /healthz``: 200 while the process serves requests."""
    return liveness(True)


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when Redis answers ``PING`` within :data:`READY_TIMEOUT_S` and
    does not evict keys (unless allowed); ``warnings`` tell of anything else amiss, such
    as Redis having lost its data (:mod:`producer.redis_guard`)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await ping(request.app[REDIS_PROBE], request.app[PRODUCER].keys.prefix)
    except (TimeoutError, redis.exceptions.RedisError) as exc:
        log.warning("not_ready", error=repr(exc))
        raise Problem(
            REDIS_UNAVAILABLE, f"Redis did not answer PING within {READY_TIMEOUT_S:g} s."
        ) from exc
    guard = request.app[GUARD]
    if guard.refusal is not None:
        raise Problem(REDIS_EVICTING, f"{guard.refusal}.")
    warnings = guard.warnings()
    return readiness(True, **({"warnings": warnings} if warnings else {}))


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text exposition of the API's registry."""
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def add_routes(app: web.Application) -> None:
    """Register the probes."""
    routes = Routes(app)
    routes.get("/healthz", healthz, Scope.PUBLIC, name="healthz")
    routes.get("/readyz", readyz, Scope.PUBLIC, name="readyz")
    routes.get("/metrics", metrics, Scope.PUBLIC, name="metrics")


OPENAPI_PATHS: dict[str, Any] = {
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
}
