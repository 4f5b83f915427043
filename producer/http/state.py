"""What the API application holds: its settings, the API keys, and the application keys.

Settings are environment variables and flags (:data:`API_OPTIONS`, besides the
producer's); the application keys name what :func:`producer.http.app.create_app` puts
on the application for the route modules: settings, metrics, the producer (opened at
startup) and the routes that authenticate callers themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

from producer.context import Producer
from producer.http.metrics import ApiMetrics
from producer.http.throttle import AUTH_FAILURES_PER_MINUTE
from producer.redis.clients import RedisClient
from producer.redis_guard import RedisGuard
from producer.settings import (
    DELIVERY_TIMEOUT,
    LOG_FORMAT,
    LOG_LEVEL,
    PROCESS_OPTIONS,
    PRODUCER_OPTIONS,
    SHUTDOWN_GRACE,
    Option,
    ProducerSettings,
    parse_bool,
    parse_positive_int,
    read_options,
)
from producer.testsends import TEST_SEND_MARGIN_S

# A key this long of visible ASCII cannot be guessed by trying, unless it was chosen to
# be guessed; failed attempts are limited besides, but per API process and address
# (producer.http.throttle), which alone would not stop a patient guesser.
MIN_API_KEY_LENGTH = 16
# The default of MAX_BATCH_BYTES: 1,000 events of 16 KiB on average.
MAX_BATCH_BYTES = 16 * 1024 * 1024


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


# The host and port of a frame-ancestors origin: example.com, *.example.com:8443, [::1].
ORIGIN_HOST = re.compile(
    r"((\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:(\d{1,5}|\*))?"
)


def parse_frame_ancestors(raw: str) -> str:
    """A CSP ``frame-ancestors`` source list: ``'none'``, ``'self'`` or origins."""
    sources = raw.split()
    if not sources:
        return "'none'"
    for source in sources:
        if source in ("'none'", "'self'"):
            continue
        parts = urlsplit(source)
        # A host (maybe *.domain) and port only: a ';' would end the directive and start
        # another in the Content-Security-Policy.
        if (
            parts.scheme not in ("http", "https")
            or not ORIGIN_HOST.fullmatch(parts.netloc)
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                f"{source!r} is not an origin such as https://app.example.com, 'self' or 'none'"
            )
    if "'none'" in sources and len(sources) > 1:
        raise ValueError("'none' cannot be combined with other sources")
    return " ".join(sources)


def parse_brand_name(raw: str) -> str:
    """A short product name shown in the dashboard (HTML-escaped where shown)."""
    name = raw.strip()
    if not name or len(name) > 60:
        raise ValueError("must be 1-60 characters")
    return name


def parse_accent_color(raw: str) -> str:
    """Empty, or a colour as ``#rrggbb`` (it goes into a stylesheet: nothing else)."""
    colour = raw.strip().lower()
    if colour and not re.fullmatch(r"#[0-9a-f]{6}", colour):
        raise ValueError("must be a colour such as #0a7d5a")
    return colour


def parse_api_port(raw: str) -> int:
    """A TCP port to listen on."""
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("must be a port number between 1 and 65535")
    return value


# Loopback by default: a fresh install is reachable from this machine only; deploy/ sets
# 0.0.0.0 where the API must be reachable from elsewhere (containers, other hosts).
API_HOST = Option("API_HOST", "127.0.0.1", "Address the HTTP API listens on.")
PORT = Option(
    "PORT",
    "8080",
    "Port the HTTP API listens on (platforms such as Heroku set $PORT).",
    parse_api_port,
)
API_KEYS = Option(
    "API_KEYS",
    "",
    "Comma-separated bearer tokens accepted by /v1/*. Empty: the API refuses to start "
    "unless ALLOW_NO_AUTH=1. Prefer the variable: flags show in process lists.",
    ApiKeys.parse,
    secret=True,
)
ALLOW_NO_AUTH = Option(
    "ALLOW_NO_AUTH",
    "0",
    "1 lets the API run with API_KEYS empty: no authentication (the demo and tests); "
    "a warning is logged at start and the dashboard says so on every page.",
    parse_bool,
)
PUBLIC_URL = Option(
    "PUBLIC_URL",
    "",
    "Base URL third parties reach this API at, used in the webhook URLs of tokens "
    "(e.g. https://hooks.example.com) and, by workers, in the failure email's link to the "
    "endpoint's dashboard page. Empty: the scheme and host of each request (emails give "
    "the page's path only).",
    parse_public_url,
)
BATCH_BYTES = Option(
    "MAX_BATCH_BYTES",
    str(MAX_BATCH_BYTES),
    "Largest request body of POST /v1/events (a batch); a larger Content-Length is "
    "refused (413) before anything is read.",
    parse_positive_int,
)
DASHBOARD_SESSION_TTL = Option(
    "DASHBOARD_SESSION_TTL",
    "3600",
    "Seconds a dashboard session lasts without being used (/ui/).",
    parse_positive_int,
)

PORTAL_FRAME_ANCESTORS = Option(
    "PORTAL_FRAME_ANCESTORS",
    "'none'",
    "The dashboard's CSP frame-ancestors: who may embed it (portal links in your product), "
    "e.g. https://app.example.com. 'none' (the default) refuses every frame; anything else "
    "also sends the session cookie SameSite=None; Secure, as a frame needs.",
    parse_frame_ancestors,
)
PORTAL_BRAND_NAME = Option(
    "PORTAL_BRAND_NAME",
    "cliq-webhooks",
    "The name the dashboard shows in its header and titles (your product's, in a portal).",
    parse_brand_name,
)
PORTAL_ACCENT_COLOR = Option(
    "PORTAL_ACCENT_COLOR",
    "",
    "The dashboard's accent colour as #rrggbb (links, primary buttons). Empty: its own.",
    parse_accent_color,
)

API_OPTIONS: tuple[Option, ...] = (
    API_HOST,
    PORT,
    API_KEYS,
    ALLOW_NO_AUTH,
    AUTH_FAILURES_PER_MINUTE,
    PUBLIC_URL,
    DELIVERY_TIMEOUT,
    BATCH_BYTES,
    DASHBOARD_SESSION_TTL,
    PORTAL_FRAME_ANCESTORS,
    PORTAL_BRAND_NAME,
    PORTAL_ACCENT_COLOR,
)

# Everything `python -m producer` reads: the producer's settings and the API's own.
SERVE_OPTIONS: tuple[Option, ...] = PRODUCER_OPTIONS + API_OPTIONS + PROCESS_OPTIONS


@dataclass(frozen=True)
class ApiSettings:
    """Everything the API process is configured with."""

    producer: ProducerSettings = field(default_factory=ProducerSettings)
    api_host: str = API_HOST.value
    port: int = PORT.value
    api_keys: ApiKeys = API_KEYS.value
    allow_no_auth: bool = ALLOW_NO_AUTH.value
    auth_failures_per_minute: int = AUTH_FAILURES_PER_MINUTE.value
    public_url: str = PUBLIC_URL.value
    delivery_timeout: float = DELIVERY_TIMEOUT.value
    max_batch_bytes: int = BATCH_BYTES.value
    dashboard_session_ttl: int = DASHBOARD_SESSION_TTL.value
    portal_frame_ancestors: str = PORTAL_FRAME_ANCESTORS.value
    portal_brand_name: str = PORTAL_BRAND_NAME.value
    portal_accent_color: str = PORTAL_ACCENT_COLOR.value
    # Not an environment setting: a worker's pick-up and write-back time on top of
    # DELIVERY_TIMEOUT, before a test send gives up (tests shorten it).
    test_send_margin_s: float = TEST_SEND_MARGIN_S
    shutdown_grace: float = SHUTDOWN_GRACE.value
    log_format: str = LOG_FORMAT.value
    log_level: str = LOG_LEVEL.value

    @property
    def test_send_wait_s(self) -> float:
        """How long ``POST /v1/endpoints/{id}/test`` waits for a worker's answer."""
        return self.delivery_timeout + self.test_send_margin_s

    @property
    def portal_embeddable(self) -> bool:
        """Whether another site may frame the dashboard (``PORTAL_FRAME_ANCESTORS``)."""
        return self.portal_frame_ancestors != "'none'"

    @property
    def dashboard_url(self) -> str:
        """Where a browser on this machine finds the dashboard (``/ui/``)."""
        host = self.api_host
        if host in ("", "0.0.0.0", "::"):  # every address: this machine's loopback is one
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/ui/"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Read every setting from ``env`` (default: ``os.environ``).

        Raises :class:`SettingsError` naming the variable; the value of ``API_KEYS`` is
        never repeated in the message.
        """
        source = os.environ if env is None else env
        producer = ProducerSettings(**read_options(PRODUCER_OPTIONS, source))
        return cls(producer=producer, **read_options(API_OPTIONS + PROCESS_OPTIONS, source))


SETTINGS = web.AppKey("settings", ApiSettings)
METRICS = web.AppKey("metrics", ApiMetrics)
PRODUCER = web.AppKey("producer", Producer)
REDIS_PROBE: web.AppKey[RedisClient] = web.AppKey("redis_probe")
GUARD = web.AppKey("redis_guard", RedisGuard)
# Marks a sub-application that authenticates its own requests (the dashboard: a session
# cookie); the bearer-key middleware leaves every path under its prefix to it.
SESSION_AUTHENTICATED = web.AppKey("session_authenticated", bool)


def producer_of(request: web.Request) -> Producer:
    """The application's producer (registry, delivery log, Redis)."""
    return request.app[PRODUCER]
