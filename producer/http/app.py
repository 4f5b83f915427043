"""The producers' HTTP API application: the Procfile's ``web`` process (``python -m producer``).

:func:`create_app` assembles it: the middlewares (metrics and a log line per request,
problems, the bearer key), the Redis clients (opened at startup by
:func:`redis_context`, an aiohttp ``cleanup_ctx``, closed at shutdown; nothing connects
at import time), every route module, the OpenAPI document and the dashboard.

The route modules, each with its OpenAPI fragment: :mod:`.events` (publishing),
:mod:`.probes`, :mod:`.endpoints`, :mod:`.deliveries` (the delivery log and replay),
:mod:`.testsends`, :mod:`.catalogue`, and seed 001's :mod:`producer.tokens.routes` and
:mod:`producer.tokens.incoming`. They import downward only (problems, state, bodies,
openapi, the domain); this module imports them, and nothing imports this module.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from producer import dashboard
from producer.context import Producer
from producer.http import (
    catalogue,
    deliveries,
    document,
    endpoints,
    endpoints_spec,
    events,
    probes,
    testsends,
)
from producer.http.events import MAX_BATCH_BYTES
from producer.http.metrics import ApiMetrics
from producer.http.problems import (
    INTERNAL_ERROR,
    REDIS_UNAVAILABLE,
    UNAUTHORIZED,
    Problem,
    problem_from_http,
)
from producer.http.state import (
    METRICS,
    PRODUCER,
    REDIS_PROBE,
    SELF_AUTHENTICATED,
    SESSION_AUTHENTICATED,
    SETTINGS,
    ApiSettings,
)
from producer.redis.clients import probe_client
from producer.redis.errors import REDIS_UNAVAILABLE_ERRORS, RedisUnavailable
from producer.tokens import context as token_context
from producer.tokens import incoming, routes_spec
from producer.tokens import routes as token_routes

log = structlog.get_logger("cliq.producer.http.app")

# Routes that answer without an API key: probes and scraping. Every other path,
# including unknown ones and routes added later, requires a key when keys are set.
PUBLIC_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
UNMATCHED_ROUTE = "unmatched"

# Every route module, in the order their routes are registered.
ROUTE_MODULES = (
    events,
    probes,
    endpoints,
    deliveries,
    testsends,
    catalogue,
    token_routes,
    incoming,
)
# The modules whose OPENAPI_PATHS (and OPENAPI_SCHEMAS, if any) the document adds to the
# paths every application has (publishing, the probes: producer.http.document).
DESCRIBED_MODULES = (endpoints_spec, deliveries, testsends, catalogue, routes_spec, incoming)


async def redis_context(app: web.Application) -> AsyncIterator[None]:
    """Open the producer (and the probe client) at startup; close them at shutdown."""
    settings = app[SETTINGS]
    if not settings.api_keys:
        log.warning(
            "api_auth_disabled",
            detail="API_KEYS is empty: anyone who can reach this port can publish events",
        )
    producer = Producer(settings.producer)
    probe = probe_client(settings.producer.effective_redis_url)
    app[PRODUCER] = producer
    app[REDIS_PROBE] = probe
    try:
        yield
    finally:
        try:
            await probe.aclose()
        finally:
            await producer.close()


# ---------------------------------------------------------------- middlewares


def route_label(request: web.Request) -> str:
    """The matched route's template (``/v1/events/{id}``), or ``unmatched``."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Metrics and one log line per request (outermost: sees the final status)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = route_label(request)
        request.app[METRICS].observe(route, status, elapsed)
        log.info(
            "request",
            method=request.method,
            route=route,
            path=request.path,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
        )


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into a problem response; unexpected ones are logged, not shown."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except RedisUnavailable as exc:  # a step that said what it could not do
        return Problem(REDIS_UNAVAILABLE, exc.detail).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_from_http(exc).response()
    except REDIS_UNAVAILABLE_ERRORS as exc:
        log.warning("redis_unavailable", route=route_label(request), error=repr(exc))
        return Problem(
            REDIS_UNAVAILABLE,
            "Redis is unavailable; the request could not be completed. Retry later.",
        ).response()
    except Exception:
        log.exception("request_failed", route=route_label(request))
        return Problem(
            INTERNAL_ERROR, "An unexpected error occurred; it has been logged."
        ).response()


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <key>`` on every non-public path when keys are set."""
    keys = request.app[SETTINGS].api_keys
    route = route_label(request)
    if (
        keys
        and route not in PUBLIC_ROUTES
        and route not in request.app[SELF_AUTHENTICATED]
        and not _authenticates_itself(request)
    ):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(
                UNAUTHORIZED,
                "Send an API key as 'Authorization: Bearer <key>'.",
                headers={"WWW-Authenticate": 'Bearer realm="cliq-webhooks"'},
            )
        if not keys.accepts(token):
            raise Problem(
                UNAUTHORIZED,
                "The API key is not valid.",
                headers={"WWW-Authenticate": 'Bearer realm="cliq-webhooks", error="invalid_token"'},
            )
    return await handler(request)


def _authenticates_itself(request: web.Request) -> bool:
    """Whether the request went to a sub-application marked :data:`SESSION_AUTHENTICATED`."""
    return any(app.get(SESSION_AUTHENTICATED, False) for app in request.match_info.apps)


def create_app(
    settings: ApiSettings, metrics_registry: CollectorRegistry | None = None
) -> web.Application:
    """The API application; its Redis clients open at startup and close at cleanup."""
    app = web.Application(
        middlewares=[observe, problems, authenticate],
        client_max_size=MAX_BATCH_BYTES,
    )
    app[SETTINGS] = settings
    app[METRICS] = ApiMetrics(metrics_registry)
    app[SELF_AUTHENTICATED] = set()
    app.cleanup_ctx.append(redis_context)
    # After the producer's: cleanup contexts run in order, and it is built from it.
    token_context.install(app)
    for module in ROUTE_MODULES:
        module.add_routes(app)
    document.add_routes(
        app,
        # Read now, not at import: a module's description is what it is when the app is made.
        [module.OPENAPI_PATHS for module in DESCRIBED_MODULES],
        [getattr(module, "OPENAPI_SCHEMAS", {}) for module in DESCRIBED_MODULES],
    )
    # After the document: the dashboard's HTML pages are not part of the API.
    app.add_subapp(dashboard.PREFIX, dashboard.create_app())
    return app
