"""Problems: every error of the HTTP API as an RFC 9457 document (``application/problem+json``).

Its ``type`` is a stable URI from :data:`PROBLEM_BASE`; field errors carry ``errors``.
Route modules raise :class:`Problem`; the application's middleware answers it. Domain
errors are mapped to problems here, once: Redis unavailable or too slow
(:func:`redis_deadline`), and the endpoint registry's errors (:func:`registry_errors`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from producer.endpoint_rules import DestinationError, EndpointError, EndpointNotFound
from producer.redis.errors import RedisUnavailable, deadline

PROBLEM_BASE = "https://cliq-webhooks.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

# EndpointError names fields as the registry does; the API uses the public names.
API_FIELD_NAMES = {"workspace": "workspace_id", "email": "owner_email"}


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
UNKNOWN_QUERY_PARAMETER = ProblemKind("unknown-query-parameter", 400, "Unknown query parameter")
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
DESTINATION_REFUSED = ProblemKind("destination-refused", 422, "Destination refused")

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


def invalid_field(field_name: str, message: str) -> Problem:
    """A 422 naming one field (a body member, query parameter or ``body`` itself)."""
    return Problem(
        INVALID_FIELDS,
        f"Invalid {field_name}: {message}.",
        errors=[{"field": field_name, "message": message}],
    )


T = TypeVar("T")


class FieldErrors:
    """The 422s of a request's checks, collected so that one answer names every bad
    field or parameter rather than the first one checked."""

    def __init__(self) -> None:
        self.errors: list[Mapping[str, object]] = []

    def add(self, field_name: str, message: str) -> None:
        """One more bad field."""
        self.errors.append({"field": field_name, "message": message})

    def check(self, read: Callable[[], T], fallback: T) -> T:
        """``read()``, or ``fallback`` when it raised a field problem (kept for
        :meth:`raise_any`, which the caller runs before using any value)."""
        try:
            return read()
        except Problem as exc:
            if exc.kind is not INVALID_FIELDS or not exc.errors:
                raise
            self.errors.extend(exc.errors)
            return fallback

    def raise_any(self) -> None:
        """The 422 of every problem collected, if there is one."""
        if len(self.errors) == 1:
            raise invalid_field(str(self.errors[0]["field"]), str(self.errors[0]["message"]))
        if self.errors:
            fields = ", ".join(str(error["field"]) for error in self.errors)
            raise Problem(INVALID_FIELDS, f"Invalid fields: {fields}.", errors=self.errors)


def unknown_query_parameters(unknown: Sequence[str], accepted: Sequence[str]) -> Problem:
    """The 400 naming every query parameter in ``unknown`` (a typo such as
    ``?outcom=dead`` would otherwise be ignored) and those the route takes."""
    known = ", ".join(sorted(accepted)) or "none"
    return Problem(
        UNKNOWN_QUERY_PARAMETER,
        f"Unknown query parameter{'s' if len(unknown) > 1 else ''}: "
        f"{', '.join(unknown)}; this route takes: {known}.",
        errors=[{"field": name, "message": "unknown query parameter"} for name in unknown],
    )


def missing(what: str, ident: str) -> Problem:
    """The 404 of an unknown ``what`` (endpoint, event, delivery)."""
    return Problem(NOT_FOUND, f"No {what} with id {ident!r} (or its retention ran out).")


@asynccontextmanager
async def redis_deadline(detail: str) -> AsyncIterator[None]:
    """503 with ``detail`` when Redis fails or takes longer than :data:`REDIS_DEADLINE_S`."""
    try:
        async with deadline(detail):
            yield
    except RedisUnavailable as exc:
        raise Problem(REDIS_UNAVAILABLE, exc.detail) from exc.__cause__


@asynccontextmanager
async def registry_errors(detail: str) -> AsyncIterator[None]:
    """Map the registry's errors to problems: 404, 422 naming the field (or the
    destination policy's rule), 503."""
    try:
        async with redis_deadline(detail):
            yield
    except EndpointNotFound as exc:
        raise missing("endpoint", exc.endpoint_id) from None
    except DestinationError as exc:
        raise Problem(
            DESTINATION_REFUSED, exc.message, errors=[{"field": "url", "message": exc.message}]
        ) from None
    except EndpointError as exc:
        raise invalid_field(API_FIELD_NAMES.get(exc.field, exc.field), exc.message) from None
