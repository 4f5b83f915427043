"""The HTTP server of a worker's (and a log-writer process's) ``/metrics``, ``/healthz``
and ``/readyz`` on ``METRICS_HOST``:``METRICS_PORT``, in the one shape of every probe
(:mod:`producer.health`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from producer.health import liveness, readiness
from producer.redis.clients import PROBE_TIMEOUT_S

# What /readyz asks: whether to answer ready, and the details to say.
Readiness = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]


async def answers(ping: Callable[[], Awaitable[Any]]) -> bool:
    """Whether ``ping`` (of Redis) succeeds within the probes' timeout."""
    try:
        await asyncio.wait_for(ping(), PROBE_TIMEOUT_S)
    except Exception:
        return False
    return True


async def serve_probes(
    host: str,
    port: int,
    registry: CollectorRegistry,
    healthy: Callable[[], bool],
    ready: Readiness,
) -> web.AppRunner | None:
    """Serve ``/metrics`` (``registry``), ``/healthz`` (``healthy``) and ``/readyz``
    (``ready``) until the returned runner is cleaned up; ``None`` when ``port`` is 0."""
    if port == 0:
        return None

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_request: web.Request) -> web.Response:
        return liveness(healthy())

    async def readyz(_request: web.Request) -> web.Response:
        ok, details = await ready()
        return readiness(ok, **details)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
