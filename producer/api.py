"""The producers' HTTP API: the Procfile's ``web`` process (``python -m producer``).

Routes:

* ``POST /v1/events``: one event (a JSON object) or a batch (a JSON array of at most
  :data:`MAX_BATCH_EVENTS`). A batch is validated completely before anything is
  published: one invalid event and nothing is stored (422, one error per bad item).
  Success is 202 with ``{"id", "deliveries", "duplicate"}`` (a list for a batch).
* ``GET /v1/events/{id}``: the deliveries of an event.
* ``GET /healthz`` (serving), ``GET /readyz`` (Redis answers ``PING``), ``GET /metrics``
  (Prometheus text of this process's own registry), ``GET /openapi.json`` (the OpenAPI
  document, :mod:`producer.openapi`). These four need no API key; neither do the
  incoming webhooks of :mod:`producer.incoming`, which check a webhook token instead
  (:func:`exempt_from_api_key`).

The management routes live in :mod:`producer.api_manage`, the webhook-token routes in
:mod:`producer.api_tokens`, the dashboard (HTML pages under ``/ui/``, a sub-application
with its own session authentication) in :mod:`producer.dashboard`; this module keeps what
they share: settings, problems, middlewares, request-body and pagination helpers.

Every error is an RFC 9457 problem (``application/problem+json``) whose ``type`` is a
stable URI from :data:`PROBLEM_BASE`; field errors carry ``errors``. Redis clients are
created at startup by :func:`redis_context` (an aiohttp ``cleanup_ctx``) and closed
at shutdown; nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
import redis.exceptions
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from producer import jsonwire
from producer.auth_throttle import AUTH_FAILURES_PER_MINUTE, AuthThrottle, Surface
from producer.cluster import RedisClient, is_cluster_url, parse_cluster_url, ping
from producer.context import Producer
from producer.events import ID_PATTERN, Catalogue, Event, EventError, parse_event
from producer.publisher import PublishResult
from producer.redis_guard import GuardMetrics, RedisGuard
from producer.sentinel import is_sentinel_url, parse_sentinel_url
from producer.settings import (
    DELIVERY_TIMEOUT,
    PROCESS_OPTIONS,
    PRODUCER_OPTIONS,
    Option,
    ProducerSettings,
    parse_positive_int,
    read_options,
)

log = structlog.get_logger("producer.api")

MAX_BATCH_EVENTS = 1000
# The default of MAX_BATCH_BYTES: 1,000 events of 16 KiB on average.
MAX_BATCH_BYTES = 16 * 1024 * 1024
# A single event's body may exceed MAX_PAYLOAD_BYTES by this much: the delivered body is
# compact and normalized, the request's may be indented.
SINGLE_EVENT_SLACK_BYTES = 4 * 1024
READY_TIMEOUT_S = 2.0
# Readiness checks running at once on a cluster; more wait their turn (within the above).
PROBE_CONNECTIONS = 4
# No request waits longer than this for Redis (the producer's client has no read timeout).
REDIS_DEADLINE_S = 10.0
READ_CHUNK_BYTES = 64 * 1024
# Largest JSON body of every route but POST /v1/events (which has its own limits).
MAX_JSON_BODY_BYTES = 256 * 1024

PROBLEM_BASE = "https://cliq-webhooks.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
# Routes that answer without an API key: probes and scraping. Every other path,
# including unknown ones and routes added later, requires a key when keys are set.
PUBLIC_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
UNMATCHED_ROUTE = "unmatched"

# Redis errors that mean "not available right now" (503), as opposed to a bug (500).
REDIS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
_DEADLINE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *REDIS_UNAVAILABLE_ERRORS)


# ---------------------------------------------------------------- settings

# A key this long of visible ASCII cannot be guessed by trying, unless it was chosen to
# be guessed; failed attempts are limited besides, but per API process and address
# (producer.auth_throttle), which alone would not stop a patient guesser.
MIN_API_KEY_LENGTH = 16


@dataclass(frozen=True)
class ApiKeys:
    """Bearer tokens, kept only as SHA-256 digests; empty means authentication is off."""

    digests: frozenset[bytes] = field(default=frozenset(), repr=False)

    @classmethod
    def parse(cls, raw: str) -> ApiKeys:
        """Comma-separated keys of visible ASCII, each at least
        :data:`MIN_API_KEY_LENGTH` long; errors never repeat a key."""
        keys = [item.strip() for item in raw.split(",") if item.strip()]
        for number, key in enumerate(keys, start=1):
            if not all(33 <= ord(ch) <= 126 for ch in key):
                raise ValueError(
                    f"key {number} of {len(keys)} has a character other than visible ASCII"
                )
            if len(key) < MIN_API_KEY_LENGTH:
                raise ValueError(
                    f"key {number} of {len(keys)} is shorter than {MIN_API_KEY_LENGTH}"
                    " characters; make one with: python3 -c 'import secrets;"
                    " print(secrets.token_urlsafe(24))'"
                )
        return cls(frozenset(_digest(key) for key in keys))

    def __bool__(self) -> bool:
        return bool(self.digests)

    def __len__(self) -> int:
        return len(self.digests)

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is one of the keys (constant time for each stored key)."""
        presented = _digest(token)
        found = False
        for known in self.digests:
            found |= hmac.compare_digest(presented, known)
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def parse_public_url(raw: str) -> str:
    """The API's public base URL: empty, or an absolute http(s) URL without a query."""
    url = raw.strip().rstrip("/")
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL such as https://hooks.example.com")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a fragment")
    return url


def parse_api_port(raw: str) -> int:
    """A TCP port to listen on."""
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("must be a port number between 1 and 65535")
    return value


API_OPTIONS: tuple[Option, ...] = (
    Option("API_HOST", "0.0.0.0", "Address the HTTP API listens on."),
    Option(
        "PORT",
        "8080",
        "Port the HTTP API listens on (platforms such as Heroku set $PORT).",
        parse_api_port,
    ),
    Option(
        "API_KEYS",
        "",
        "Comma-separated bearer tokens accepted by /v1/*. Empty: no authentication "
        "(a warning is logged at start). Prefer the variable: flags show in process lists.",
        ApiKeys.parse,
        secret=True,
    ),
    AUTH_FAILURES_PER_MINUTE,
    Option(
        "PUBLIC_URL",
        "",
        "Base URL third parties reach this API at, used in the webhook URLs of tokens "
        "(e.g. https://hooks.example.com). Empty: the scheme and host of each request.",
        parse_public_url,
    ),
    DELIVERY_TIMEOUT,
    Option(
        "MAX_BATCH_BYTES",
        str(MAX_BATCH_BYTES),
        "Largest request body of POST /v1/events (a batch); a larger Content-Length is "
        "refused (413) before anything is read.",
        parse_positive_int,
    ),
    Option(
        "DASHBOARD_SESSION_TTL",
        "3600",
        "Seconds a dashboard session lasts without being used (/ui/).",
        parse_positive_int,
    ),
)

# Everything `python -m producer` reads: the producer's settings and the API's own.
SERVE_OPTIONS: tuple[Option, ...] = PRODUCER_OPTIONS + API_OPTIONS + PROCESS_OPTIONS


@dataclass(frozen=True)
class ApiSettings:
    """Everything the API process is configured with."""

    producer: ProducerSettings = field(default_factory=ProducerSettings)
    api_host: str = "0.0.0.0"
    port: int = 8080
    api_keys: ApiKeys = field(default_factory=ApiKeys)
    auth_failures_per_minute: int = 30
    public_url: str = ""
    delivery_timeout: float = 10.0
    max_batch_bytes: int = MAX_BATCH_BYTES
    dashboard_session_ttl: int = 3600
    # Not an environment setting: a worker's pick-up and write-back time on top of
    # DELIVERY_TIMEOUT, before a test send gives up (tests shorten it).
    test_send_margin_s: float = 5.0
    shutdown_grace: float = 25.0
    log_format: str = "auto"
    log_level: str = "info"

    @property
    def test_send_wait_s(self) -> float:
        """How long ``POST /v1/endpoints/{id}/test`` waits for a worker's answer."""
        return self.delivery_timeout + self.test_send_margin_s

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Read every setting from ``env`` (default: ``os.environ``).

        Raises :class:`SettingsError` naming the variable; the value of ``API_KEYS`` is
        never repeated in the message.
        """
        source = os.environ if env is None else env
        producer = ProducerSettings(**read_options(PRODUCER_OPTIONS, source))
        return cls(producer=producer, **read_options(API_OPTIONS + PROCESS_OPTIONS, source))


# ---------------------------------------------------------------- problems


@dataclass(frozen=True)
class ProblemKind:
    """One kind of error: its stable ``type`` URI, HTTP status and title."""

    slug: str
    status: int
    title: str

    @property
    def type(self) -> str:
        """The problem's ``type`` member."""
        return PROBLEM_BASE + self.slug


INVALID_JSON = ProblemKind("invalid-json", 400, "Request body is not valid JSON")
UNAUTHORIZED = ProblemKind("unauthorized", 401, "Missing or invalid API key")
TOO_MANY_FAILURES = ProblemKind(
    "too-many-failed-authentications", 429, "Too many failed authentications"
)
NOT_FOUND = ProblemKind("not-found", 404, "Not found")
METHOD_NOT_ALLOWED = ProblemKind("method-not-allowed", 405, "Method not allowed")
PAYLOAD_TOO_LARGE = ProblemKind("payload-too-large", 413, "Request body too large")
TOO_MANY_EVENTS = ProblemKind("too-many-events", 413, "Too many events in one batch")
UNSUPPORTED_MEDIA_TYPE = ProblemKind(
    "unsupported-media-type", 415, "Request body must be application/json"
)
INVALID_EVENT = ProblemKind("invalid-event", 422, "Invalid event")
INVALID_FIELDS = ProblemKind("invalid-fields", 422, "Invalid fields")
INTERNAL_ERROR = ProblemKind("internal-error", 500, "Internal server error")
REDIS_UNAVAILABLE = ProblemKind("redis-unavailable", 503, "Redis unavailable")
REDIS_EVICTING = ProblemKind("redis-evicting", 503, "Redis may evict acknowledged data")

_KINDS_BY_STATUS = {
    kind.status: kind for kind in (NOT_FOUND, METHOD_NOT_ALLOWED, PAYLOAD_TOO_LARGE)
}


class Problem(Exception):
    """An error answered as ``application/problem+json``; raise it from a handler."""

    def __init__(
        self,
        kind: ProblemKind,
        detail: str,
        *,
        errors: Sequence[Mapping[str, object]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{kind.status} {kind.slug}: {detail}")
        self.kind = kind
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, object]:
        """The problem document."""
        body: dict[str, object] = {
            "type": self.kind.type,
            "title": self.kind.title,
            "status": self.kind.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    def response(self) -> web.Response:
        """The HTTP response carrying this problem."""
        return web.json_response(
            self.to_dict(),
            status=self.kind.status,
            content_type=PROBLEM_CONTENT_TYPE,
            headers=self.headers,
        )


def problem_from_http(exc: web.HTTPException) -> Problem:
    """A problem for one of aiohttp's own errors (unknown route, wrong method, too large)."""
    kind = _KINDS_BY_STATUS.get(exc.status)
    if kind is None:
        kind = ProblemKind("http-error", exc.status, exc.reason)
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
    detail = {
        404: "No route matches this path.",
        405: f"Use one of: {headers.get('Allow', '')}.",
    }.get(exc.status, exc.text or exc.reason)
    return Problem(kind, detail, headers=headers)


# ---------------------------------------------------------------- metrics


class ApiMetrics:
    """The API's own Prometheus registry. Labels are route templates, never raw paths."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "cliq_api_requests",
            "HTTP requests answered, by route template and status class.",
            ["route", "status_class"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "cliq_api_request_duration_seconds",
            "Time from receiving a request to its response, by route template.",
            ["route"],
            registry=self.registry,
        )
        self.events_published = Counter(
            "cliq_api_events_published",
            "Events stored and fanned out to their subscribers (duplicates not counted).",
            registry=self.registry,
        )
        self.events_duplicate = Counter(
            "cliq_api_events_duplicate",
            "Events whose id was already published: acknowledged, nothing enqueued.",
            registry=self.registry,
        )
        self.incoming_webhooks = Counter(
            "cliq_api_incoming_webhooks",
            "Calls of the incoming-webhook routes, by module and outcome (accepted, or why "
            "refused: missing_token, invalid_token, throttled, disabled, unknown_resource, "
            "forbidden, invalid_appkey).",
            ["module", "outcome"],
            registry=self.registry,
        )
        self.auth_throttled = Counter(
            "cliq_auth_throttled",
            "Failed authentications answered 429 because their source address failed "
            "more than AUTH_FAILURES_PER_MINUTE times in a minute, by surface.",
            ["surface"],
            registry=self.registry,
        )
        for surface in Surface:  # every series exists from the start, at 0
            self.auth_throttled.labels(surface.value)
        self.redis = GuardMetrics(self.registry)

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, f"{status // 100}xx").inc()
        self.request_duration.labels(route).observe(seconds)

    def published(self, results: Sequence[PublishResult]) -> None:
        """Count the outcome of a publish."""
        duplicates = sum(r.duplicate for r in results)
        self.events_published.inc(len(results) - duplicates)
        self.events_duplicate.inc(duplicates)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


# ---------------------------------------------------------------- application state

SETTINGS = web.AppKey("settings", ApiSettings)
METRICS = web.AppKey("metrics", ApiMetrics)
PRODUCER = web.AppKey("producer", Producer)
REDIS_PROBE: web.AppKey[RedisClient] = web.AppKey("redis_probe")
GUARD = web.AppKey("redis_guard", RedisGuard)
# Route templates whose handlers authenticate callers themselves, with other credentials
# than the API key (incoming webhooks: a user's webhook token). See exempt_from_api_key.
SELF_AUTHENTICATED: web.AppKey[set[str]] = web.AppKey("self_authenticated")
# Marks a sub-application that authenticates its own requests (the dashboard: a session
# cookie); the bearer-key middleware leaves every path under its prefix to it.
SESSION_AUTHENTICATED = web.AppKey("session_authenticated", bool)
AUTH_THROTTLE = web.AppKey("auth_throttle", AuthThrottle)


def throttled(request: web.Request, surface: Surface) -> Problem | None:
    """After a failed authentication: the 429 to answer instead of the refusal once its
    source address is over ``AUTH_FAILURES_PER_MINUTE``, else ``None``."""
    retry_after = request.config_dict[AUTH_THROTTLE].failure(request.remote, surface)
    if retry_after is None:
        return None
    return Problem(
        TOO_MANY_FAILURES,
        f"Too many failed authentications from this address; retry in {retry_after} s "
        "with valid credentials.",
        headers={"Retry-After": str(retry_after)},
    )


def exempt_from_api_key(app: web.Application, route: str) -> None:
    """Let callers of ``route`` (a template) in without an API key: its handler checks them."""
    app[SELF_AUTHENTICATED].add(route)


def probe_client(redis_url: str) -> RedisClient:
    """A client for readiness checks: no retries, so an outage shows within the timeout."""
    options: dict[str, Any] = {
        "socket_connect_timeout": READY_TIMEOUT_S,
        "socket_timeout": READY_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 0),
    }
    if is_sentinel_url(redis_url):
        return parse_sentinel_url(redis_url).client(**options)
    if is_cluster_url(redis_url):
        return parse_cluster_url(redis_url).client(max_connections=PROBE_CONNECTIONS, **options)
    return aioredis.Redis.from_url(redis_url, **options)


async def redis_context(app: web.Application) -> AsyncIterator[None]:
    """Open the producer (and the probe client) at startup; close them at shutdown.

    Raises :class:`producer.redis_guard.RedisEvictingError` on a Redis that may evict keys.
    """
    settings = app[SETTINGS]
    if not settings.api_keys:
        log.warning(
            "api_auth_disabled",
            detail="API_KEYS is empty: anyone who can reach this port can publish events",
        )
    producer = Producer(settings.producer)
    probe = probe_client(settings.producer.effective_redis_url)
    guard = RedisGuard(
        producer.redis,
        producer.keys,
        app[METRICS].redis,
        allow_evicting=settings.producer.allow_evicting_redis,
    )
    app[PRODUCER] = producer
    app[REDIS_PROBE] = probe
    app[GUARD] = guard
    watching: asyncio.Task[None] | None = None
    try:
        await guard.start()
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
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <key>`` on every non-public path when keys are set.

    Runs before any handler, so no body is read for a caller without a valid key; a
    source address failing too often gets 429 instead of 401 (:func:`throttled`).
    """
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
            raise throttled(request, Surface.API) or Problem(
                UNAUTHORIZED,
                "Send an API key as 'Authorization: Bearer <key>'.",
                headers={"WWW-Authenticate": 'Bearer realm="cliq-webhooks"'},
            )
        if not keys.accepts(token):
            raise throttled(request, Surface.API) or Problem(
                UNAUTHORIZED,
                "The API key is not valid.",
                headers={"WWW-Authenticate": 'Bearer realm="cliq-webhooks", error="invalid_token"'},
            )
    return await handler(request)


def _authenticates_itself(request: web.Request) -> bool:
    """Whether the request went to a sub-application marked :data:`SESSION_AUTHENTICATED`."""
    return any(app.get(SESSION_AUTHENTICATED, False) for app in request.match_info.apps)


# ---------------------------------------------------------------- request bodies


def require_json(request: web.Request) -> None:
    """415 unless the body is declared ``application/json`` (UTF-8, as RFC 8259 requires)."""
    charset = (request.charset or "utf-8").lower()
    if request.content_type != "application/json" or charset not in {"utf-8", "utf8"}:
        declared = request.headers.get("Content-Type", "nothing")
        raise Problem(
            UNSUPPORTED_MEDIA_TYPE,
            f"Send Content-Type: application/json (UTF-8), not {declared!r}.",
        )


async def read_body(request: web.Request, batch_limit: int, single_limit: int) -> bytes:
    """The body of ``POST /v1/events``; 413 before it is read, or as soon as it is too large.

    A declared length over ``batch_limit`` (``MAX_BATCH_BYTES``) is refused before
    anything is read; while reading, the limit is ``batch_limit``, and ``single_limit``
    once the first significant byte shows a single event (``{``). No more than the
    limit is ever buffered.
    """
    declared = request.content_length
    if declared is not None and declared > batch_limit:
        raise _too_large(batch_limit, "a request")
    body = bytearray()
    limit = batch_limit
    kind_known = False
    async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
        if not kind_known:
            significant = (body + chunk).lstrip()
            if significant:
                kind_known = True
                if significant.startswith(b"{"):
                    limit = min(single_limit, batch_limit)
        if len(body) + len(chunk) > limit:
            raise _too_large(limit, "a single event" if limit == single_limit else "a request")
        body += chunk
    return bytes(body)


def _too_large(limit: int, what: str) -> Problem:
    hint = (
        "MAX_PAYLOAD_BYTES plus 4 KiB"
        if what == "a single event"
        else f"MAX_BATCH_BYTES; split the batch into smaller requests of at most "
        f"{MAX_BATCH_EVENTS} events"
    )
    return Problem(PAYLOAD_TOO_LARGE, f"The body of {what} may be at most {limit} bytes ({hint}).")


def decode_json(body: bytes) -> jsonwire.JSONValue:
    """The JSON document of the body, or 400 (NaN and Infinity are not JSON)."""
    try:
        return jsonwire.decode(body)
    except jsonwire.WireError as exc:
        raise Problem(INVALID_JSON, exc.message) from None


def invalid_field(field_name: str, message: str) -> Problem:
    """A 422 naming one field (a body member, query parameter or ``body`` itself)."""
    return Problem(
        INVALID_FIELDS,
        f"Invalid {field_name}: {message}.",
        errors=[{"field": field_name, "message": message}],
    )


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request body; 413 as soon as it (or its declared length) exceeds ``limit``."""
    too_large = Problem(PAYLOAD_TOO_LARGE, f"The request body may be at most {limit} bytes.")
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
        if len(body) + len(chunk) > limit:
            raise too_large
        body += chunk
    return bytes(body)


async def read_json_object(
    request: web.Request, limit: int = MAX_JSON_BODY_BYTES
) -> dict[str, jsonwire.JSONValue]:
    """The body as a JSON object, or the problem that says why not (415, 413, 400, 422).

    Values are normalized (:func:`jsonwire.normalize`): a string that UTF-8 cannot carry
    (a lone surrogate) is refused here, naming its field, instead of failing in Redis.
    """
    require_json(request)
    document = decode_json(await read_limited(request, limit))
    try:
        value = jsonwire.normalize(document)
    except jsonwire.WireError as exc:
        raise invalid_field(_field_of(exc.path), exc.message) from None
    if not isinstance(value, dict):
        raise invalid_field("body", "must be a JSON object")
    return value


async def read_optional_json_object(
    request: web.Request, limit: int = MAX_JSON_BODY_BYTES
) -> dict[str, jsonwire.JSONValue]:
    """Like :func:`read_json_object`, but no body at all reads as ``{}``."""
    if not request.body_exists:
        return {}
    return await read_json_object(request, limit)


def _field_of(path: str) -> str:
    """``$.grace_s`` -> ``grace_s``; the document itself is ``body``."""
    if path == "$":
        return "body"
    return path.removeprefix("$.")


def validate_events(
    document: jsonwire.JSONValue, catalogue: Catalogue, max_payload_bytes: int
) -> list[Event]:
    """Every event of a batch, or 422 listing each invalid one (all-or-nothing)."""
    assert isinstance(document, list)
    if not document:
        raise Problem(INVALID_EVENT, f"The batch is empty; send 1 to {MAX_BATCH_EVENTS} events.")
    if len(document) > MAX_BATCH_EVENTS:
        raise Problem(
            TOO_MANY_EVENTS,
            f"The batch has {len(document)} events; at most {MAX_BATCH_EVENTS} are accepted "
            "per request.",
        )
    events: list[Event] = []
    errors: list[dict[str, object]] = []
    for index, raw in enumerate(document):
        try:
            events.append(parse_event(raw, catalogue, max_payload_bytes=max_payload_bytes))
        except EventError as exc:
            errors.append({"index": index, "field": exc.field, "message": exc.message})
    if errors:
        raise Problem(
            INVALID_EVENT,
            f"{len(errors)} of {len(document)} events are invalid; nothing was published.",
            errors=errors,
        )
    return events


def validate_event(
    document: jsonwire.JSONValue, catalogue: Catalogue, max_payload_bytes: int
) -> Event:
    """One event, or 422 naming the field at fault."""
    try:
        return parse_event(document, catalogue, max_payload_bytes=max_payload_bytes)
    except EventError as exc:
        raise Problem(
            INVALID_EVENT,
            f"The event is invalid ({exc.field}); nothing was published.",
            errors=[{"field": exc.field, "message": exc.message}],
        ) from None


@asynccontextmanager
async def redis_deadline(detail: str) -> AsyncIterator[None]:
    """503 with ``detail`` when Redis fails or takes longer than :data:`REDIS_DEADLINE_S`."""
    try:
        async with asyncio.timeout(REDIS_DEADLINE_S):
            yield
    except _DEADLINE_ERRORS as exc:
        log.warning("redis_unavailable", error=repr(exc))
        raise Problem(REDIS_UNAVAILABLE, detail) from exc


# ---------------------------------------------------------------- pagination

DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 200
_LIMIT_PATTERN = re.compile(r"[0-9]{1,6}")


def query_limit(request: web.Request) -> int:
    """The ``limit`` query parameter: 1 to :data:`MAX_PAGE_LIMIT`, default 50."""
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_PAGE_LIMIT
    if not _LIMIT_PATTERN.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE_LIMIT:
        raise invalid_field("limit", f"must be an integer from 1 to {MAX_PAGE_LIMIT}")
    return int(raw)


def encode_cursor(kind: str, position: Sequence[str | int]) -> str:
    """An opaque cursor: where a listing of ``kind`` stopped (URL-safe, no padding)."""
    raw = orjson.dumps([kind, *position])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(raw: str, kind: str, shape: Sequence[type]) -> tuple[Any, ...]:
    """The position in a cursor made by :func:`encode_cursor` for ``kind``, or 422.

    ``shape`` is the type of each member of the position; a cursor of another listing,
    a truncated or a forged one is refused rather than misread.
    """
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        decoded = orjson.loads(text)
    except (binascii.Error, ValueError):
        decoded = None
    if (
        isinstance(decoded, list)
        and len(decoded) == len(shape) + 1
        and decoded[0] == kind
        and all(type(value) is expected for value, expected in zip(decoded[1:], shape, strict=True))
    ):
        return tuple(decoded[1:])
    raise invalid_field("cursor", "is not a cursor returned by this listing")


def page(items: Sequence[Mapping[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    """One page of a listing; ``next_cursor`` is ``None`` at the end."""
    return {"items": list(items), "next_cursor": next_cursor}


# ---------------------------------------------------------------- handlers

PUBLISH_FAILED = (
    "Redis is unavailable or did not answer in time; the request was not accepted. "
    "Events of a batch may have been stored before the failure: retry with the same "
    "event ids (an id already stored is answered as a duplicate and delivered once). "
    "Events sent without an id get a new one on every attempt."
)


async def post_events(request: web.Request) -> web.Response:
    """``POST /v1/events``: publish one event or a batch."""
    require_json(request)
    producer = request.app[PRODUCER]
    max_payload = producer.settings.max_payload_bytes
    body = await read_body(
        request,
        batch_limit=request.app[SETTINGS].max_batch_bytes,
        single_limit=max_payload + SINGLE_EVENT_SLACK_BYTES,
    )
    document = decode_json(body)
    batch = isinstance(document, list)
    if batch:
        events = validate_events(document, producer.catalogue, max_payload)
    else:
        events = [validate_event(document, producer.catalogue, max_payload)]
    async with redis_deadline(PUBLISH_FAILED):
        results = await producer.publisher.publish_many(events)
    request.app[METRICS].published(results)
    if batch:
        return web.json_response([r.to_dict() for r in results], status=202)
    (result,) = results
    return web.json_response(
        result.to_dict(),
        status=202,
        headers={"Location": str(request.app.router["event"].url_for(id=result.event_id))},
    )


async def get_event(request: web.Request) -> web.Response:
    """``GET /v1/events/{id}``: the event's deliveries, in fan-out order."""
    event_id = request.match_info["id"]
    missing = Problem(NOT_FOUND, f"No event with id {event_id!r} (or its retention ran out).")
    if not ID_PATTERN.match(event_id):
        raise missing
    producer = request.app[PRODUCER]
    async with redis_deadline("Redis is unavailable; the event could not be read."):
        deliveries = await producer.deliveries.for_event(event_id)
        # An event nobody subscribed to exists without deliveries: 200 with an empty list.
        if not deliveries and not await producer.redis.exists(producer.keys.event(event_id)):
            raise missing
    return web.json_response({"id": event_id, "deliveries": [d.to_dict() for d in deliveries]})


async def healthz(_request: web.Request) -> web.Response:
    """``GET /healthz``: 200 while the process serves requests."""
    return web.json_response({"status": "ok"})


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
    return web.json_response({"status": "ready", **({"warnings": warnings} if warnings else {})})


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text exposition of the API's registry."""
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


# ---------------------------------------------------------------- the application


def create_app(
    settings: ApiSettings, metrics_registry: CollectorRegistry | None = None
) -> web.Application:
    """The API application; its Redis clients open at startup and close at cleanup."""
    app = web.Application(
        middlewares=[observe, problems, authenticate, refuse_while_evicting],
        # A backstop: every route reads its body through read_body or read_limited, with
        # its own, smaller limit (the dashboard's forms: producer.dashboard.app).
        client_max_size=settings.max_batch_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = ApiMetrics(metrics_registry)
    app[AUTH_THROTTLE] = AuthThrottle(
        settings.auth_failures_per_minute, app[METRICS].auth_throttled
    )
    app[SELF_AUTHENTICATED] = set()
    app.cleanup_ctx.append(redis_context)
    app.router.add_post("/v1/events", post_events, name="events")
    app.router.add_get("/v1/events/{id}", get_event, name="event")
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics, name="metrics")
    # Imported here: the route modules use this module's problems and app keys.
    from producer import api_manage, api_tokens, dashboard, openapi

    for module in (api_manage, api_tokens):
        module.add_routes(app)
    openapi.add_routes(
        app,
        [api_manage.OPENAPI_PATHS, api_tokens.OPENAPI_PATHS],
        # OPENAPI_SCHEMAS is optional: components a module's paths refer to.
        [api_manage.OPENAPI_SCHEMAS, getattr(api_tokens, "OPENAPI_SCHEMAS", {})],
    )
    # After the document: the dashboard's HTML pages are not part of the API.
    app.add_subapp(dashboard.PREFIX, dashboard.create_app())
    return app
