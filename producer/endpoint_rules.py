"""What an endpoint's fields may hold: the validators the registry, the API and the
dashboard share, and the errors they raise."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from producer.destinations import is_legacy_ipv4
from producer.events import ID_PATTERN, OPERATIONS_WORKSPACE, Catalogue

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_URL_LENGTH = 2048
# Checked by the API and the dashboard (the registry stores what it is given).
MAX_DESCRIPTION_LENGTH = 1024
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ROTATION_GRACE_S = 24 * 3600
DEFAULT_MAX_IN_FLIGHT = 10
MAX_IN_FLIGHT_LIMIT = 1000
T = TypeVar("T")


class EndpointError(ValueError):
    """Invalid endpoint input; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DestinationError(EndpointError):
    """The URL's destination is refused by the destination policy (the message names
    the rule)."""

    def __init__(self, message: str) -> None:
        super().__init__("url", message)


class EndpointNotFound(LookupError):
    """No endpoint has this id."""

    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"no endpoint with id {endpoint_id!r}")
        self.endpoint_id = endpoint_id


def new_secret() -> str:
    """A signing secret: ``whsec_`` + base64 of 32 random bytes (Standard Webhooks form)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def mask_secret(secret: str) -> str:
    """The secret as shown after creation: enough to recognise it, not to use it."""
    return secret[: len(SECRET_PREFIX) + 4] + "…" if secret else ""


def validate_url(url: str) -> str:
    """An absolute http(s) URL with a host and no credentials."""
    if not isinstance(url, str) or not url:
        raise EndpointError("url", "is required")
    if len(url) > MAX_URL_LENGTH:
        raise EndpointError("url", f"is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError as exc:
        raise EndpointError("url", f"{url!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise EndpointError("url", f"must use http or https, not {parts.scheme or 'nothing'!r}")
    if not parts.hostname:
        raise EndpointError("url", f"{url!r} has no host")
    if parts.username or parts.password:
        raise EndpointError("url", "must not carry credentials; authenticate with the signature")
    if is_legacy_ipv4(parts.hostname):
        # Workers refuse these on every attempt (aiohttp), so they are refused here too.
        raise EndpointError(
            "url",
            f"host {parts.hostname} is not a canonical IPv4 address: write it as four "
            "decimal numbers, such as 127.0.0.1",
        )
    del port
    return url


def url_host_port(url: str) -> tuple[str, int]:
    """The host and port a (validated) URL connects to."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def validate_filter(patterns: Iterable[str], catalogue: Catalogue) -> tuple[str, ...]:
    """Event-type patterns: exact catalogue types, ``prefix.*`` wildcards, or ``*``."""
    result: list[str] = []
    for raw in patterns:
        pattern = raw.strip()
        if not pattern:
            continue
        if pattern == "*":
            pass
        elif pattern.endswith(".*"):
            prefix = pattern[:-1]
            if not any(name.startswith(prefix) for name in catalogue.types):
                raise EndpointError("events", f"{pattern!r} matches no known event type")
        elif pattern not in catalogue:
            raise EndpointError("events", f"unknown event type {pattern!r}")
        if pattern not in result:
            result.append(pattern)
    if not result:
        raise EndpointError("events", "select at least one event type (or '*')")
    return tuple(result)


def validate_workspace(workspace_id: str) -> str:
    """A workspace id: it becomes part of Redis keys."""
    if workspace_id == "":
        raise EndpointError("workspace", "is required")
    if not isinstance(workspace_id, str) or not ID_PATTERN.match(workspace_id):
        raise EndpointError("workspace", "must be 1-128 characters of A-Z, a-z, 0-9, '_', '-'")
    if workspace_id == OPERATIONS_WORKSPACE:
        # Its one endpoint is OPERATIONS_WEBHOOK_URL's, registered by the workers.
        raise EndpointError("workspace", f"{workspace_id!r} is reserved for operational events")
    return workspace_id


def validate_email(email: str) -> str:
    """A plausible email address for failure notifications."""
    if email == "":
        raise EndpointError("email", "is required")
    if not isinstance(email, str) or not EMAIL_PATTERN.match(email):
        raise EndpointError("email", f"{email!r} is not an email address")
    return email


def validate_max_in_flight(value: int) -> int:
    """Requests one endpoint may have in flight across all workers."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_IN_FLIGHT_LIMIT
    ):
        raise EndpointError("max_in_flight", f"must be an integer from 1 to {MAX_IN_FLIGHT_LIMIT}")
    return value


def validate_rate_limit(value: float) -> float:
    """Requests per second sent to one endpoint at most; 0 means no limit."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100_000:
        raise EndpointError(
            "rate_limit", "must be a number of requests per second from 0 to 100000"
        )
    return float(value)


def checked(field: str, check: Callable[..., T], *args: Any) -> T:
    """``check(*args)``, its ``ValueError`` an :class:`EndpointError` naming ``field``."""
    try:
        return check(*args)
    except ValueError as exc:
        raise EndpointError(field, str(exc)) from None


def filter_matches(patterns: Sequence[str], event_type: str) -> bool:
    """Whether an endpoint subscribed with ``patterns`` receives ``event_type``."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False
