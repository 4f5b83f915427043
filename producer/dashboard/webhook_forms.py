"""What the Webhooks screens read and show: the webhook form, the delivery log's filters,
an endpoint's health, and the helpers both screens share.

The form's fields are checked with the registry's own validators
(:mod:`producer.endpoints`), so the dashboard refuses exactly what the API refuses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiDictProxy

from producer.deliveries import AttemptFilter, AttemptOutcome, RecentSummary
from producer.endpoint import Endpoint
from producer.endpoint_kind import EndpointKind, destination_errors, validate_kind
from producer.endpoint_options import parse_header_line, validate_headers
from producer.endpoint_rules import (
    MAX_DESCRIPTION_LENGTH,
    EndpointError,
    EndpointNotFound,
    validate_filter,
    validate_workspace,
)
from producer.events import ID_PATTERN, Catalogue
from producer.fifo import Ordering, validate_ordering
from producer.filters import PayloadFilter, parse_filter_text
from producer.http.problems import redis_deadline
from producer.settings import parse_list

LIST = "/ui/webhooks"
PAGE_SIZE = 50
# The registry names some fields differently from the forms.
_FORM_FIELDS = {"workspace": "workspace_id", "email": "owner_email"}
KIND_CHOICES = tuple(kind.value for kind in EndpointKind)


def page_url(endpoint_id: str) -> str:
    """The address of an endpoint's page."""
    return f"{LIST}/{endpoint_id}"


# ---------------------------------------------------------------- events, grouped


@dataclass(frozen=True)
class EventGroup:
    """The catalogue's types of one resource (``issue``), offered together."""

    resource: str
    types: tuple[tuple[str, str], ...]

    @property
    def pattern(self) -> str:
        """The wildcard that selects the whole group, present and future types."""
        return f"{self.resource}.*"

    @property
    def label(self) -> str:
        """The group's heading."""
        return f"{self.resource.replace('_', ' ').capitalize()} events"


def event_groups(catalogue: Catalogue) -> list[EventGroup]:
    """The catalogue's types by resource, in catalogue order."""
    by_resource: dict[str, list[tuple[str, str]]] = {}
    for name, description in catalogue.types.items():
        by_resource.setdefault(name.split(".", 1)[0], []).append((name, description))
    return [EventGroup(resource, tuple(types)) for resource, types in by_resource.items()]


def _checkbox_values(catalogue: Catalogue) -> set[str]:
    """Every pattern the events form offers as a checkbox."""
    groups = event_groups(catalogue)
    return {"*"} | {g.pattern for g in groups} | {name for g in groups for name, _ in g.types}


# ---------------------------------------------------------------- the webhook form


@dataclass
class WebhookForm:
    """The Create / Edit form: what was typed, and an error per field."""

    url: str = ""
    # http or poll (producer.endpoint_kind): chosen when creating, then shown only.
    kind: str = EndpointKind.HTTP.value
    workspace_id: str = ""
    owner_email: str = ""
    description: str = ""
    # The checked boxes, and patterns that have none (typed by hand, or set by the CLI).
    events: tuple[str, ...] = ()
    other_events: str = ""
    # One "Name: value" per line; the timeout in seconds, empty for DELIVERY_TIMEOUT.
    headers: str = ""
    timeout_s: str = ""
    ordering: str = Ordering.PARALLEL.value
    # The payload filter as JSON text (docs/filters.md); empty for none.
    filter: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_post(cls, form: MultiDictProxy[Any]) -> WebhookForm:
        """The form as posted (missing fields are empty)."""

        def text(name: str) -> str:
            value = form.get(name, "")
            return value.strip() if isinstance(value, str) else ""

        return cls(
            url=text("url"),
            kind=text("kind") or EndpointKind.HTTP.value,
            workspace_id=text("workspace_id"),
            owner_email=text("owner_email"),
            description=text("description"),
            events=tuple(v for v in form.getall("events", []) if isinstance(v, str)),
            other_events=text("other_events"),
            headers=text("headers"),
            timeout_s=text("timeout_s"),
            ordering=text("ordering") or Ordering.PARALLEL.value,
            filter=text("filter"),
        )

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, catalogue: Catalogue) -> WebhookForm:
        """The form filled in with an endpoint's fields."""
        offered = _checkbox_values(catalogue)
        return cls(
            url=endpoint.url,
            kind=endpoint.kind.value,
            workspace_id=endpoint.workspace_id,
            owner_email=endpoint.owner_email,
            description=endpoint.description,
            events=tuple(p for p in endpoint.events if p in offered),
            other_events=", ".join(p for p in endpoint.events if p not in offered),
            headers="\n".join(f"{name}: {value}" for name, value in endpoint.headers),
            timeout_s=f"{endpoint.timeout_s:g}" if endpoint.timeout_s else "",
            ordering=endpoint.ordering.value,
            filter=json.dumps(endpoint.filter.source, indent=2) if endpoint.filter else "",
        )

    def patterns(self) -> list[str]:
        """The event filter: checked boxes, then the other patterns."""
        return [*self.events, *parse_list(self.other_events)]

    def header_pairs(self) -> list[tuple[str, str]]:
        """The headers typed, as pairs (``ValueError`` on a line without a colon)."""
        return [parse_header_line(line) for line in self.headers.splitlines() if line.strip()]

    def timeout(self) -> float:
        """The timeout typed (0: DELIVERY_TIMEOUT); the registry checks its range."""
        try:
            return float(self.timeout_s) if self.timeout_s else 0.0
        except ValueError:
            raise ValueError("must be a number of seconds") from None

    def payload_filter(self) -> PayloadFilter:
        """The filter typed, compiled (``FilterError``, a ``ValueError``, if malformed)."""
        return parse_filter_text(self.filter)

    def check(self, catalogue: Catalogue, *, creating: bool) -> bool:
        """Fill :attr:`errors` with the registry's verdict on every field; True if none."""
        checks: list[tuple[str, Any]] = [
            ("events", lambda: validate_filter(self.patterns(), catalogue)),
        ]
        if creating:
            checks.insert(0, ("workspace_id", lambda: validate_workspace(self.workspace_id)))
        for name, check in checks:
            try:
                check()
            except EndpointError as exc:
                self.errors[name] = exc.message
        try:
            kind = validate_kind(self.kind)
        except EndpointError as exc:
            self.refused(exc)
        else:
            # The URL and the owner, as the endpoint's kind wants them (both for http).
            for error in destination_errors(kind, self.url, self.owner_email):
                self.refused(error)
        for name, parse in (
            ("headers", lambda: validate_headers(self.header_pairs())),
            ("timeout_s", self.timeout),
            ("ordering", lambda: validate_ordering(self.ordering)),
            ("filter", self.payload_filter),
        ):
            try:
                parse()
            except ValueError as exc:
                self.errors[name] = str(exc)
        if len(self.description) > MAX_DESCRIPTION_LENGTH:
            self.errors["description"] = f"is longer than {MAX_DESCRIPTION_LENGTH} characters"
        return not self.errors

    def refused(self, exc: EndpointError) -> None:
        """Record an error the registry raised itself."""
        self.errors[_FORM_FIELDS.get(exc.field, exc.field)] = exc.message


# ---------------------------------------------------------------- shared helpers


def endpoint_id_of(request: web.Request) -> str:
    """The ``{id}`` of the path; 404 when it cannot be an id."""
    value = request.match_info["id"]
    if not ID_PATTERN.match(value):
        raise web.HTTPNotFound(text="There is no webhook with this id.")
    return value


@asynccontextmanager
async def endpoint_errors(detail: str) -> AsyncIterator[None]:
    """A deleted or unknown endpoint is a 404 page; Redis trouble a 503 page."""
    try:
        async with redis_deadline(detail):
            yield
    except EndpointNotFound as exc:
        raise web.HTTPNotFound(
            text=f"There is no webhook with id {exc.endpoint_id} (was it deleted?)."
        ) from None


@dataclass(frozen=True)
class Health:
    """How an endpoint's latest deliveries went (the API's ``recent`` summary)."""

    deliveries: int
    delivered: int
    dead: int
    pending: int
    last_delivered_ms: int | None
    last_error: Mapping[str, Any] | None

    @classmethod
    def of(cls, summary: RecentSummary) -> Health:
        """The health these deliveries show."""
        return cls(
            deliveries=summary.deliveries,
            delivered=summary.delivered,
            dead=summary.dead,
            pending=summary.pending,
            last_delivered_ms=summary.last_delivered_ms,
            last_error=summary.last_error,
        )

    @property
    def finished(self) -> int:
        """Deliveries that ended, delivered or dead."""
        return self.delivered + self.dead

    @property
    def success_rate(self) -> str:
        """Delivered out of finished, as a percentage; ``—`` before any finished."""
        if not self.finished:
            return "—"
        return f"{100 * self.delivered / self.finished:.0f}%"


def form_time_ms(raw: str, *, end_of_minute: bool = False) -> int:
    """A time from a time field: ISO 8601, UTC unless it says otherwise, in ms; ValueError
    if not.

    ``end_of_minute``: a time given to the minute covers that whole minute (``until``).
    """
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("is not a date and time such as 2025-01-15T10:30Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = int(moment.timestamp() * 1000)
    if end_of_minute and moment.second == 0 and moment.microsecond == 0:
        ms += 59_999
    return ms


def form_time(moment: datetime) -> str:
    """A UTC time as the time fields show it: ISO 8601 to the minute, ``2025-01-15T10:30Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


@dataclass(frozen=True)
class LogQuery:
    """The delivery log's filters, as typed, with an error per field."""

    values: dict[str, str]
    errors: dict[str, str]
    selected: AttemptFilter
    cursor: str | None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> LogQuery:
        """Read ``outcome``, ``since``, ``until`` and ``cursor``; bad ones get an error."""
        values = {name: query.get(name, "").strip() for name in ("outcome", "since", "until")}
        errors: dict[str, str] = {}
        outcome = None
        if values["outcome"]:
            try:
                outcome = AttemptOutcome(values["outcome"])
            except ValueError:
                errors["outcome"] = "Choose an outcome from the list."
        bounds: dict[str, int | None] = {"since": None, "until": None}
        for name in bounds:
            if values[name]:
                try:
                    bounds[name] = form_time_ms(values[name], end_of_minute=name == "until")
                except ValueError as exc:
                    errors[name] = f"{values[name]!r} {exc}."
        since_ms, until_ms = bounds["since"], bounds["until"]
        if since_ms is not None and until_ms is not None and since_ms > until_ms:
            errors["until"] = "must not be earlier than “since”."
        return cls(
            values=values,
            errors=errors,
            selected=AttemptFilter(outcome, since_ms, until_ms),
            cursor=query.get("cursor") or None,
        )

    def link(self, endpoint_id: str, cursor: str) -> str:
        """The log's next page, with the same filters."""
        params = {k: v for k, v in self.values.items() if v}
        return f"{page_url(endpoint_id)}?{urlencode({**params, 'cursor': cursor})}#log"
