"""The producers' HTTP API application: the Procfile's ``web`` process (``python -m producer``).

:func:`create_app` assembles it: the middlewares (metrics and a log line per request,
problems, the bearer key), the Redis clients (opened at startup by
:func:`redis_context`, an aiohttp ``cleanup_ctx``, closed at shutdown; nothing connects
at import time), every route module, the OpenAPI document and the dashboard.

The route modules, each with its OpenAPI fragment: :mod:`.events` (publishing),
:mod:`.probes`, :mod:`.endpoints`, :mod:`.deliveries` (the delivery log and replay),
:mod:`.testsends`, :mod:`.catalogue`, and seed 001's :mod:`producer.tokens.routes` and
:mod:`producer.tokens.incoming`. They import downward only (problems, state, bodies,
openapi, the domain); this module imports them, and nothing in :mod:`producer` imports
this module (the entry points and the demo do).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from producer import dashboard
from producer.context import Producer
from producer.http import (
    api_keys,
    catalogue,
    deliveries,
    document,
    endpoints,
    endpoints_spec,
    events,
    polling,
    portal_links,
    probes,
    testsends,
)
from producer.http.access import CALLER, Routes, Scope, access_of
from producer.http.api_keys import INSUFFICIENT_SCOPE, api_key_store
from producer.http.document import QUERY_PARAMETERS
from producer.http.metrics import ApiMetrics
from producer.http.ownership import workspace_guard
from producer.http.problems import (
    INTERNAL_ERROR,
    REDIS_EVICTING,
    REDIS_UNAVAILABLE,
    UNAUTHORIZED,
    Problem,
    problem_from_http,
    unknown_query_parameters,
)
from producer.http.state import (
    GUARD,
    METRICS,
    PRODUCER,
    REDIS_PROBE,
    SESSION_AUTHENTICATED,
    SETTINGS,
    ApiSettings,
)
from producer.http.throttle import AUTH_THROTTLE, AuthThrottle, Surface, throttled
from producer.redis.clients import probe_client
from producer.redis.errors import REDIS_UNAVAILABLE_ERRORS, RedisUnavailable
from producer.redis_guard import RedisGuard
from producer.tokens import context as token_context
from producer.tokens import incoming, routes_spec
from producer.tokens import routes as token_routes

log = structlog.get_logger("cliq.producer.http.app")

# Routes that answer without an API key: probes and scraping (Scope.PUBLIC) and the
# incoming webhooks, which check a webhook token. Every other path, including unknown
# ones, requires a key when keys are set. Each route's scope is declared beside it.
UNKEYED_SCOPES = frozenset({Scope.PUBLIC, Scope.WEBHOOK_TOKEN})
UNMATCHED_ROUTE = "unmatched"

# Every route module, in the order their routes are registered.
ROUTE_MODULES = (
    events,
    probes,
    endpoints,
    polling,
    deliveries,
    testsends,
    catalogue,
    token_routes,
    incoming,
    api_keys,
    portal_links,
)
# The modules whose OPENAPI_PATHS (and OPENAPI_SCHEMAS, if any) the document adds to the
# paths every application has (publishing, the probes: producer.http.document).
DESCRIBED_MODULES = (
    endpoints_spec,
    polling,
    deliveries,
    testsends,
    catalogue,
    routes_spec,
    incoming,
    api_keys,
    portal_links,
)


async def redis_context(app: web.Application) -> AsyncIterator[None]:
    """Open the producer (and the probe client) at startup; close them at shutdown.

    Raises :class:`producer.redis_guard.RedisEvictingError` on a Redis that may evict keys,
    and :class:`producer.store.startup.SchemaTooOld` on a ``DATABASE_URL`` whose schema is
    older than this build's.
    """
    settings = app[SETTINGS]
    if not settings.api_keys:
        log.warning(
            "api_auth_disabled",
            detail="API_KEYS is empty: anyone who can reach this port can publish events",
        )
    producer = Producer(settings.producer, max_endpoint_timeout_s=settings.delivery_timeout)
    probe = probe_client(settings.producer.effective_redis_url)
    guard = RedisGuard(
        producer.redis,
        producer.partitions.all,
        app[METRICS].redis,
        allow_evicting=settings.producer.allow_evicting_redis,
    )
    app[PRODUCER] = producer
    app[REDIS_PROBE] = probe
    app[GUARD] = guard
    watching: asyncio.Task[None] | None = None
    try:
        await guard.start()
        await producer.check_partitions()
        await producer.open_log_store()
        watching = asyncio.create_task(guard.watch())
        yield
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
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
async def refuse_while_evicting(request: web.Request, handler: Handler) -> web.StreamResponse:
    """503 for every write while Redis may evict keys: never acknowledge what it may drop."""
    refusal = request.config_dict[GUARD].refusal
    if refusal is not None and request.method not in ("GET", "HEAD", "OPTIONS"):
        raise Problem(REDIS_EVICTING, f"Nothing was stored. {refusal}.")
    return await handler(request)


@web.middleware
async def refuse_unknown_query(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 naming every query parameter the route's operation does not take (a typo such
    as ``?outcom=dead`` would otherwise be ignored and answer as if unfiltered)."""
    method = "GET" if request.method == "HEAD" else request.method
    accepted = request.app[QUERY_PARAMETERS].get((route_label(request), method))
    if accepted is not None:
        unknown = sorted(set(request.query) - accepted)
        if unknown:
            raise unknown_query_parameters(unknown, sorted(accepted))
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <key>`` on every non-public path when keys are set.

    An operator key (``API_KEYS``) may call every route; a workspace-scoped key
    (:mod:`producer.api_keys`) only those whose declared scope it holds (403 otherwise),
    and :func:`producer.http.ownership.workspace_guard` then keeps it to its workspace.
    Runs before any handler, so no body is read for a caller without a valid key; a
    source address failing too often gets 429 instead of 401 (:func:`throttled`).
    """
    keys = request.app[SETTINGS].api_keys
    route = route_label(request)
    access = access_of(request, route)
    if (access is not None and access.scope in UNKEYED_SCOPES) or _authenticates_itself(request):
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if token and keys and keys.accepts(token):
        return await handler(request)  # the operator: every scope, every workspace
    scoped = await api_key_store(request).authenticate(token) if token else None
    if scoped is not None:
        # A route without a declared scope is the operator's (an unknown path is a 404).
        needed = access.scope if access is not None else Scope.OPERATOR
        if route != UNMATCHED_ROUTE and not scoped.allows(needed):
            raise Problem(
                INSUFFICIENT_SCOPE,
                f"This API key lacks the scope {needed.value!r} this route needs.",
            )
        request[CALLER] = scoped
    elif keys and not token:
        raise throttled(request, Surface.API) or Problem(
            UNAUTHORIZED,
            "Send an API key as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": 'Bearer realm="cliq-webhooks"'},
        )
    elif keys:
        raise throttled(request, Surface.API) or Problem(
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
        middlewares=[
            observe,
            problems,
            authenticate,
            workspace_guard,
            refuse_unknown_query,
            refuse_while_evicting,
        ],
        # A backstop: every route reads its body through read_body or read_limited, with
        # its own, smaller limit (the dashboard's forms: producer.dashboard.app).
        client_max_size=settings.max_batch_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = ApiMetrics(metrics_registry)
    app[AUTH_THROTTLE] = AuthThrottle(
        settings.auth_failures_per_minute, app[METRICS].auth_throttled
    )
    app.cleanup_ctx.append(redis_context)
    # After the producer's: cleanup contexts run in order, and it is built from it.
    token_context.install(app)
    for module in ROUTE_MODULES:
        module.add_routes(app)
    # The root only redirects to the dashboard, which asks for its own sign-in.
    Routes(app).get("/", to_dashboard, Scope.PUBLIC)
    document.add_routes(
        app,
        # Read now, not at import: a module's description is what it is when the app is made.
        [module.OPENAPI_PATHS for module in DESCRIBED_MODULES],
        [getattr(module, "OPENAPI_SCHEMAS", {}) for module in DESCRIBED_MODULES],
    )
    # After the document: the dashboard's HTML pages are not part of the API.
    app.add_subapp(dashboard.PREFIX, dashboard.create_app())
    return app


async def to_dashboard(request: web.Request) -> web.StreamResponse:
    """``GET /``: a browser pointed at the server lands on the dashboard."""
    raise web.HTTPFound(dashboard.PREFIX + "/")
