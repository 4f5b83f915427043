"""The Webhooks screens: seed 000's "Settings → Webhooks".

* ``/ui/webhooks``: every endpoint with its status and the success rate of its recent
  deliveries; ``/ui/webhooks/new``: "Create Webhook" (URL, events grouped by the
  catalogue), then the secret, shown once.
* ``/ui/webhooks/{id}``: enable or disable, rotate the secret, edit, delete; "Send Test
  Event" with the receiver's answer; the delivery log, filtered by outcome and time;
  replay one delivery or every failed one since a time, with its progress.

Every read and change goes through the registry and the delivery log
(:mod:`producer.endpoints`, :mod:`producer.deliveries`: listing scans, the delivery-log
scan, summaries) and the test-send protocol (:mod:`producer.testsends`), as the API's
do, so the dashboard applies exactly the API's rules.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

import structlog
from aiohttp import web
from multidict import MultiDictProxy

from producer.api import decode_cursor, encode_cursor, redis_deadline
from producer.api_manage import ENDPOINT_ATTEMPTS_CURSOR, ENDPOINT_CURSOR
from producer.context import Producer
from producer.dashboard.pages import (
    flash_and_redirect,
    producer_of,
    render,
    settings_of,
)
from producer.deliveries import (
    RECENT_WINDOW,
    AttemptFilter,
    AttemptOutcome,
    DeliveryNotFound,
    DeliveryState,
    RecentSummary,
)
from producer.endpoints import (
    MAX_DESCRIPTION_LENGTH,
    Endpoint,
    EndpointError,
    EndpointNotFound,
    EndpointStatus,
    validate_email,
    validate_filter,
    validate_url,
    validate_workspace,
)
from producer.events import ID_PATTERN, Catalogue
from producer.messages import TestSendResult
from producer.settings import parse_list
from producer.testsends import request_test_send

log = structlog.get_logger("producer.dashboard")

LIST = "/ui/webhooks"
PAGE_SIZE = 50
# A replay's progress follows at most this many of its deliveries, for an hour.
REPLAY_TRACKED = 1000
REPLAY_TTL_S = 3600
DEFAULT_REPLAY_WINDOW = timedelta(hours=24)
# The registry names some fields differently from the forms.
_FORM_FIELDS = {"workspace": "workspace_id", "email": "owner_email"}


def _page(endpoint_id: str) -> str:
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
    workspace_id: str = ""
    owner_email: str = ""
    description: str = ""
    # The checked boxes, and patterns that have none (typed by hand, or set by the CLI).
    events: tuple[str, ...] = ()
    other_events: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_post(cls, form: MultiDictProxy[Any]) -> WebhookForm:
        """The form as posted (missing fields are empty)."""

        def text(name: str) -> str:
            value = form.get(name, "")
            return value.strip() if isinstance(value, str) else ""

        return cls(
            url=text("url"),
            workspace_id=text("workspace_id"),
            owner_email=text("owner_email"),
            description=text("description"),
            events=tuple(v for v in form.getall("events", []) if isinstance(v, str)),
            other_events=text("other_events"),
        )

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, catalogue: Catalogue) -> WebhookForm:
        """The form filled in with an endpoint's fields."""
        offered = _checkbox_values(catalogue)
        return cls(
            url=endpoint.url,
            workspace_id=endpoint.workspace_id,
            owner_email=endpoint.owner_email,
            description=endpoint.description,
            events=tuple(p for p in endpoint.events if p in offered),
            other_events=", ".join(p for p in endpoint.events if p not in offered),
        )

    def patterns(self) -> list[str]:
        """The event filter: checked boxes, then the other patterns."""
        return [*self.events, *parse_list(self.other_events)]

    def check(self, catalogue: Catalogue, *, creating: bool) -> bool:
        """Fill :attr:`errors` with the registry's verdict on every field; True if none."""
        checks: list[tuple[str, Any]] = [
            ("url", lambda: validate_url(self.url)),
            ("owner_email", lambda: validate_email(self.owner_email)),
            ("events", lambda: validate_filter(self.patterns(), catalogue)),
        ]
        if creating:
            checks.insert(0, ("workspace_id", lambda: validate_workspace(self.workspace_id)))
        for name, check in checks:
            try:
                check()
            except EndpointError as exc:
                self.errors[name] = exc.message
        if len(self.description) > MAX_DESCRIPTION_LENGTH:
            self.errors["description"] = f"is longer than {MAX_DESCRIPTION_LENGTH} characters"
        return not self.errors

    def refused(self, exc: EndpointError) -> None:
        """Record an error the registry raised itself."""
        self.errors[_FORM_FIELDS.get(exc.field, exc.field)] = exc.message


# ---------------------------------------------------------------- shared helpers


def _endpoint_id(request: web.Request) -> str:
    """The ``{id}`` of the path; 404 when it cannot be an id."""
    value = request.match_info["id"]
    if not ID_PATTERN.match(value):
        raise web.HTTPNotFound(text="There is no webhook with this id.")
    return value


@asynccontextmanager
async def _endpoint_errors(detail: str) -> AsyncIterator[None]:
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


def _form_time_ms(raw: str, *, end_of_minute: bool = False) -> int:
    """A time from a ``datetime-local`` field (UTC) or ISO 8601, in ms; ValueError if not.

    ``end_of_minute``: a time given to the minute covers that whole minute (``until``).
    """
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("is not a date and time such as 2025-01-15T10:30") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = int(moment.timestamp() * 1000)
    if end_of_minute and moment.second == 0 and moment.microsecond == 0:
        ms += 59_999
    return ms


def _form_time(moment: datetime) -> str:
    """A UTC time as a ``datetime-local`` field shows it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


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
                    bounds[name] = _form_time_ms(values[name], end_of_minute=name == "until")
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
        return f"{_page(endpoint_id)}?{urlencode({**params, 'cursor': cursor})}#log"


@dataclass(frozen=True)
class TestPanel:
    """The "Send Test Event" form's state: the type chosen and what came back."""

    event_type: str = ""
    result: TestSendResult | None = None
    error: str | None = None
    field_error: str | None = None


@dataclass(frozen=True)
class ReplayProgress:
    """Where the deliveries of one replay stand."""

    id: str
    total: int
    delivered: int
    dead: int

    @property
    def pending(self) -> int:
        """Still queued or waiting for a retry."""
        return self.total - self.delivered - self.dead

    def to_dict(self) -> dict[str, Any]:
        """The JSON the page's script polls."""
        return {
            "total": self.total,
            "delivered": self.delivered,
            "dead": self.dead,
            "pending": self.pending,
            "done": self.pending == 0,
        }


async def _track_replay(producer: Producer, delivery_ids: list[str]) -> str:
    """Remember a replay's deliveries for its progress; returns the replay's id."""
    replay_id = "rp_" + secrets.token_hex(8)
    key = producer.keys.dashboard_replay(replay_id)
    async with producer.redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, *delivery_ids[:REPLAY_TRACKED])
        pipe.expire(key, REPLAY_TTL_S)
        await pipe.execute()
    return replay_id


async def _replay_progress(producer: Producer, replay_id: str) -> ReplayProgress | None:
    """The progress of a replay, ``None`` when unknown or expired."""
    if not ID_PATTERN.match(replay_id):
        return None
    key = producer.keys.dashboard_replay(replay_id)
    ids = cast(list[str], await producer.redis.lrange(key, 0, -1))
    if not ids:
        return None
    states = [d.state for d in await producer.deliveries.load(ids) if d is not None]
    return ReplayProgress(
        id=replay_id,
        # A delivery whose retention ran out meanwhile had finished: counted as delivered.
        total=len(ids),
        delivered=len(ids) - len(states) + states.count(DeliveryState.DELIVERED),
        dead=states.count(DeliveryState.DEAD),
    )


# ---------------------------------------------------------------- the list


async def list_webhooks(request: web.Request) -> web.Response:
    """``GET /ui/webhooks``: endpoints (by status), oldest first, with their health."""
    producer = producer_of(request)
    raw_status = request.query.get("status", "")
    status = EndpointStatus(raw_status) if raw_status in set(EndpointStatus) else None
    after: tuple[int, str] | None = None
    cursor = request.query.get("cursor")
    if cursor:
        created_ms, endpoint_id = decode_cursor(cursor, ENDPOINT_CURSOR, (int, str))
        after = (created_ms, endpoint_id)
    async with redis_deadline("Redis is unavailable; the webhooks could not be listed."):
        endpoints, next_position = await producer.endpoints.scan(status, after, PAGE_SIZE)
        recents = await asyncio.gather(*(producer.deliveries.recent(e.id) for e in endpoints))
    next_link = None
    if next_position:
        params = {"cursor": encode_cursor(ENDPOINT_CURSOR, next_position)}
        if status is not None:
            params["status"] = status.value
        next_link = f"{LIST}?{urlencode(params)}"
    return await render(
        request,
        "webhooks.html",
        rows=[(e, Health.of(r)) for e, r in zip(endpoints, recents, strict=True)],
        status_filter=status.value if status else "",
        statuses=[s.value for s in EndpointStatus],
        next_link=next_link,
        window=RECENT_WINDOW,
    )


# ---------------------------------------------------------------- create, edit, delete


async def new_webhook(request: web.Request) -> web.Response:
    """``GET /ui/webhooks/new``: the "Create Webhook" form."""
    return await _form_page(request, WebhookForm(), endpoint=None)


async def _form_page(
    request: web.Request, form: WebhookForm, endpoint: Endpoint | None, status: int = 200
) -> web.Response:
    catalogue = producer_of(request).catalogue
    return await render(
        request,
        "webhook_form.html",
        status=status,
        form=form,
        endpoint=endpoint,
        groups=event_groups(catalogue),
        max_description=MAX_DESCRIPTION_LENGTH,
    )


async def create_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks``: register the endpoint; its secret is shown this once."""
    form = WebhookForm.from_post(await request.post())
    producer = producer_of(request)
    if not form.check(producer.catalogue, creating=True):
        return await _form_page(request, form, endpoint=None, status=422)
    try:
        async with redis_deadline("Redis is unavailable; the webhook was not created."):
            endpoint = await producer.endpoints.create(
                workspace_id=form.workspace_id,
                url=form.url,
                events=form.patterns(),
                owner_email=form.owner_email,
                description=form.description,
            )
    except EndpointError as exc:
        form.refused(exc)
        return await _form_page(request, form, endpoint=None, status=422)
    log.info("dashboard_endpoint_created", endpoint_id=endpoint.id)
    return await render(request, "secret.html", endpoint=endpoint, rotated=False)


async def edit_webhook(request: web.Request) -> web.Response:
    """``GET /ui/webhooks/{id}/edit``: the form, filled in."""
    endpoint_id = _endpoint_id(request)
    producer = producer_of(request)
    async with _endpoint_errors("Redis is unavailable; the webhook could not be read."):
        endpoint = await producer.endpoints.get(endpoint_id)
    return await _form_page(
        request, WebhookForm.from_endpoint(endpoint, producer.catalogue), endpoint
    )


async def update_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/edit``: change URL, events, owner email, description."""
    endpoint_id = _endpoint_id(request)
    form = WebhookForm.from_post(await request.post())
    producer = producer_of(request)
    async with _endpoint_errors("Redis is unavailable; the webhook was not changed."):
        endpoint = await producer.endpoints.get(endpoint_id)
        form.workspace_id = endpoint.workspace_id  # not editable
        if form.check(producer.catalogue, creating=False):
            try:
                await producer.endpoints.update(
                    endpoint_id,
                    url=form.url,
                    events=form.patterns(),
                    owner_email=form.owner_email,
                    description=form.description,
                )
            except EndpointError as exc:
                form.refused(exc)
    if form.errors:
        return await _form_page(request, form, endpoint, status=422)
    return await flash_and_redirect(request, _page(endpoint_id), "Webhook saved.")


async def delete_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/delete``: remove it (its queued deliveries end as dead)."""
    endpoint_id = _endpoint_id(request)
    async with _endpoint_errors("Redis is unavailable; the webhook was not deleted."):
        endpoint = await producer_of(request).endpoints.get(endpoint_id)
        await producer_of(request).endpoints.delete(endpoint_id)
    log.info("dashboard_endpoint_deleted", endpoint_id=endpoint_id)
    return await flash_and_redirect(request, LIST, f"Webhook {endpoint.url} deleted.")


# ---------------------------------------------------------------- status and secret


async def enable_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/enable``: deliver again (clears failing)."""
    return await _set_status(request, EndpointStatus.ACTIVE, "Webhook enabled.")


async def disable_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/disable``: no new deliveries until enabled."""
    return await _set_status(
        request, EndpointStatus.DISABLED, "Webhook disabled: it receives no new events."
    )


async def _set_status(request: web.Request, status: EndpointStatus, done: str) -> web.Response:
    endpoint_id = _endpoint_id(request)
    async with _endpoint_errors("Redis is unavailable; the webhook was not changed."):
        await producer_of(request).endpoints.set_status(endpoint_id, status)
    log.info("dashboard_endpoint_status", endpoint_id=endpoint_id, status=status.value)
    return await flash_and_redirect(request, _page(endpoint_id), done)


async def rotate_secret(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/rotate-secret``: a new secret, shown this once."""
    endpoint_id = _endpoint_id(request)
    async with _endpoint_errors("Redis is unavailable; the secret was not rotated."):
        endpoint = await producer_of(request).endpoints.rotate_secret(endpoint_id)
    log.info("dashboard_secret_rotated", endpoint_id=endpoint_id)
    return await render(request, "secret.html", endpoint=endpoint, rotated=True)


# ---------------------------------------------------------------- the detail page


async def show_webhook(request: web.Request) -> web.Response:
    """``GET /ui/webhooks/{id}``: the endpoint, its health, test sends, log and replay."""
    return await _detail_page(request)


async def _detail_page(
    request: web.Request,
    *,
    test: TestPanel | None = None,
    replay_since: str | None = None,
    replay_error: str | None = None,
    status: int = 200,
) -> web.Response:
    endpoint_id = _endpoint_id(request)
    producer = producer_of(request)
    query = LogQuery.from_query(request.query)
    after: tuple[int, str, int] | None = None
    if query.cursor and not query.errors:
        created_ms, delivery_id, number = decode_cursor(
            query.cursor, ENDPOINT_ATTEMPTS_CURSOR, (int, str, int)
        )
        after = (created_ms, delivery_id, number)
    entries: list[dict[str, Any]] = []
    next_position = None
    progress = None
    async with _endpoint_errors("Redis is unavailable; the webhook could not be read."):
        endpoint = await producer.endpoints.get(endpoint_id)
        recent = await producer.deliveries.recent(endpoint_id)
        dead_total = await producer.deliveries.dead_total(endpoint_id)
        if not query.errors:
            entries, next_position = await producer.deliveries.scan_attempts(
                endpoint_id, query.selected, after, PAGE_SIZE
            )
        types = await producer.deliveries.event_types([e["event_id"] for e in entries])
        if "replay" in request.query:
            progress = await _replay_progress(producer, request.query["replay"])
    return await render(
        request,
        "webhook.html",
        status=status,
        endpoint=endpoint,
        health=Health.of(recent),
        window=RECENT_WINDOW,
        dead_total=dead_total,
        groups=event_groups(producer.catalogue),
        test=test or TestPanel(),
        query=query,
        outcomes=[o.value for o in AttemptOutcome],
        entries=entries,
        types=types,
        next_link=query.link(endpoint_id, encode_cursor(ENDPOINT_ATTEMPTS_CURSOR, next_position))
        if next_position
        else None,
        replay_since=replay_since or _form_time(datetime.now(UTC) - DEFAULT_REPLAY_WINDOW),
        replay_error=replay_error,
        progress=progress,
    )


async def send_test(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/test``: a worker sends a test event; its answer, shown."""
    endpoint_id = _endpoint_id(request)
    form = await request.post()
    event_type = form.get("type")
    producer = producer_of(request)
    if not isinstance(event_type, str) or event_type not in producer.catalogue:
        panel = TestPanel(field_error="Choose an event type from the list.")
        return await _detail_page(request, test=panel, status=422)
    async with _endpoint_errors("Redis is unavailable; no test event was sent."):
        await producer.endpoints.get(endpoint_id)
    wait_s = settings_of(request).test_send_wait_s
    result = await request_test_send(producer.redis, producer.keys, endpoint_id, event_type, wait_s)
    if result is None:
        panel = TestPanel(
            event_type, error=f"No worker answered within {wait_s:g} s: is a worker running?"
        )
    else:
        panel = TestPanel(event_type, result=result)
    return await _detail_page(request, test=panel)


# ---------------------------------------------------------------- replay


async def replay_since(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/replay``: every failed delivery since a time, again."""
    endpoint_id = _endpoint_id(request)
    form = await request.post()
    raw = form.get("since")
    since = raw.strip() if isinstance(raw, str) else ""
    try:
        since_ms = _form_time_ms(since)
    except ValueError as exc:
        return await _detail_page(
            request, replay_since=since, replay_error=f"{since!r} {exc}.", status=422
        )
    producer = producer_of(request)
    async with _endpoint_errors("Redis is unavailable; replay may be incomplete: retry it."):
        await producer.endpoints.get(endpoint_id)
        dead = await producer.deliveries.dead_ids(endpoint_id, since_ms)
        replayed = await producer.deliveries.replay(dead)
    log.info("dashboard_replay", endpoint_id=endpoint_id, since_ms=since_ms, count=len(replayed))
    if not replayed:
        return await flash_and_redirect(
            request, _page(endpoint_id), "No failed deliveries since then: nothing to replay."
        )
    return await _show_replay(request, endpoint_id, replayed)


async def replay_delivery(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/deliveries/{delivery}/replay``: one failed delivery again."""
    endpoint_id = _endpoint_id(request)
    delivery_id = request.match_info["delivery"]
    producer = producer_of(request)
    missing = web.HTTPNotFound(text="This webhook has no delivery with this id any more.")
    if not ID_PATTERN.match(delivery_id):
        raise missing
    async with redis_deadline("Redis is unavailable; nothing was replayed."):
        try:
            delivery = await producer.deliveries.get(delivery_id)
        except DeliveryNotFound:
            raise missing from None
        if delivery.endpoint_id != endpoint_id:
            raise missing
        replayed = await producer.deliveries.replay([delivery_id])
    if not replayed:
        return await flash_and_redirect(
            request,
            _page(endpoint_id),
            f"Delivery {delivery_id} is {delivery.state.value}, not failed: nothing to replay.",
        )
    return await _show_replay(request, endpoint_id, replayed)


async def _show_replay(request: web.Request, endpoint_id: str, replayed: list[str]) -> web.Response:
    producer = producer_of(request)
    async with redis_deadline("Redis is unavailable; the replay's progress is not shown."):
        replay_id = await _track_replay(producer, replayed)
    tracked = (
        "" if len(replayed) <= REPLAY_TRACKED else f" (progress of the first {REPLAY_TRACKED})"
    )
    return await flash_and_redirect(
        request,
        f"{_page(endpoint_id)}?replay={replay_id}#replay",
        f"Replaying {len(replayed)} failed {'delivery' if len(replayed) == 1 else 'deliveries'}"
        f"{tracked}.",
    )


async def replay_progress(request: web.Request) -> web.Response:
    """``GET /ui/webhooks/{id}/replays/{replay}``: the progress, as JSON for the page."""
    _endpoint_id(request)
    async with redis_deadline("Redis is unavailable."):
        progress = await _replay_progress(producer_of(request), request.match_info["replay"])
    if progress is None:
        raise web.HTTPNotFound(text="This replay is unknown or too old.")
    return web.json_response(progress.to_dict(), headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    """Register the Webhooks screens on the dashboard's application."""
    router = app.router
    router.add_get("/webhooks", list_webhooks)
    router.add_post("/webhooks", create_webhook)
    router.add_get("/webhooks/new", new_webhook)
    router.add_get("/webhooks/{id}", show_webhook)
    router.add_get("/webhooks/{id}/edit", edit_webhook)
    router.add_post("/webhooks/{id}/edit", update_webhook)
    router.add_post("/webhooks/{id}/delete", delete_webhook)
    router.add_post("/webhooks/{id}/enable", enable_webhook)
    router.add_post("/webhooks/{id}/disable", disable_webhook)
    router.add_post("/webhooks/{id}/rotate-secret", rotate_secret)
    router.add_post("/webhooks/{id}/test", send_test)
    router.add_post("/webhooks/{id}/replay", replay_since)
    router.add_post("/webhooks/{id}/deliveries/{delivery}/replay", replay_delivery)
    router.add_get("/webhooks/{id}/replays/{replay}", replay_progress)
