"""Finding things: ``/ui/search?q=`` and the webhooks list's workspace picker.

A search is for an endpoint URL (or part of one), or an id: an endpoint's, an event's
or a delivery's. Ids are looked up exactly (one read each); URLs are matched in the
endpoint index, at most :data:`producer.scans.SCAN_BUDGET` endpoints a page, so the
results page on with a cursor. One match alone is opened at once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from aiohttp import web

from producer.context import Producer
from producer.dashboard.pages import producer_of, render, see_other, session_of
from producer.dashboard.webhook_forms import PAGE_SIZE, page_url
from producer.deliveries import Delivery, DeliveryNotFound
from producer.endpoint import Endpoint
from producer.endpoint_rules import EndpointNotFound
from producer.events import ID_PATTERN
from producer.http.access import Owner
from producer.http.bodies import ENDPOINT_CURSOR, decode_cursor, encode_cursor
from producer.http.ownership import workspace_of
from producer.http.problems import redis_deadline
from producer.scans import SCAN_BUDGET

SEARCH = "/ui/search"
MAX_QUERY_LENGTH = 2048


@dataclass(frozen=True)
class Found:
    """What a search found."""

    endpoints: tuple[Endpoint, ...] = ()
    delivery: Delivery | None = None
    event_id: str | None = None
    event_type: str | None = None
    next_link: str | None = None

    @property
    def count(self) -> int:
        """How many things were found (on this page)."""
        return len(self.endpoints) + (self.delivery is not None) + (self.event_id is not None)

    def only_link(self) -> str | None:
        """The page of the one thing found, when exactly one was and no more may follow."""
        if self.count != 1 or self.next_link:
            return None
        if self.delivery is not None:
            return f"/ui/deliveries/{self.delivery.id}"
        if self.event_id is not None:
            return f"/ui/events/{self.event_id}"
        return page_url(self.endpoints[0].id)


async def _by_id(producer: Producer, text: str) -> Found:
    """The endpoint, delivery or event with this id, if any."""
    endpoints: tuple[Endpoint, ...] = ()
    with contextlib.suppress(EndpointNotFound):
        endpoints = (await producer.endpoints.get(text),)
    delivery = None
    with contextlib.suppress(DeliveryNotFound):
        delivery = await producer.deliveries.get(text)
    event = await producer.deliveries.sent_event(text)
    event_id = text if event is not None or await producer.deliveries.for_event(text) else None
    return Found(
        endpoints=endpoints,
        delivery=delivery,
        event_id=event_id,
        event_type=event.type if event is not None else None,
    )


async def _by_url(
    producer: Producer, text: str, cursor: str | None, workspace: str | None
) -> Found:
    """Endpoints whose URL contains ``text`` (any case), a page at a time; only those of
    ``workspace`` when it is given (a portal's), chosen before the page is cut."""
    after: tuple[int, str] | None = None
    if cursor:
        created_ms, endpoint_id = decode_cursor(cursor, ENDPOINT_CURSOR, (int, str))
        after = (created_ms, endpoint_id)
    needle = text.lower()
    scanned, position = await producer.endpoints.scan(None, after, SCAN_BUDGET)
    matches = [
        e for e in scanned if needle in e.url.lower() and workspace in (None, e.workspace_id)
    ]
    if len(matches) > PAGE_SIZE:
        last = matches[PAGE_SIZE - 1]
        position = (last.created_ms, last.id)
        matches = matches[:PAGE_SIZE]
    next_link = None
    if position is not None:
        params = {"q": text, "cursor": encode_cursor(ENDPOINT_CURSOR, position)}
        next_link = f"{SEARCH}?{urlencode(params)}"
    return Found(endpoints=tuple(matches), next_link=next_link)


async def _within(request: web.Request, found: Found, workspace: str) -> Found:
    """What a portal session may see of ``found``: its own workspace's, nothing else
    (another workspace's ids are not found, as in the API)."""
    delivery, event_id = found.delivery, found.event_id
    if (
        delivery is not None
        and await workspace_of(request, Owner.DELIVERY, delivery.id) != workspace
    ):
        delivery = None
    if event_id is not None and await workspace_of(request, Owner.EVENT, event_id) != workspace:
        event_id = None
    return replace(
        found,
        endpoints=tuple(e for e in found.endpoints if e.workspace_id == workspace),
        delivery=delivery,
        event_id=event_id,
        event_type=found.event_type if event_id is not None else None,
    )


async def search(request: web.Request) -> web.Response:
    """``GET /ui/search?q=``: endpoints by URL or id, an event or a delivery by id."""
    text = request.query.get("q", "").strip()[:MAX_QUERY_LENGTH]
    cursor = request.query.get("cursor")
    found = Found()
    if text:
        producer = producer_of(request)
        session = session_of(request)
        portal = session.portal.workspace_id if session and session.portal else None
        async with redis_deadline("Redis is unavailable; nothing could be searched."):
            if ID_PATTERN.match(text) and not cursor:
                found = await _by_id(producer, text)
                if portal is not None:
                    found = await _within(request, found, portal)
            if not found.count:
                found = await _by_url(producer, text, cursor, portal)
        only = found.only_link()
        if only is not None and not cursor:
            return see_other(only)
    return await render(request, "search.html", q=text, found=found)


async def known_workspaces(producer: Producer) -> list[str]:
    """The workspaces of the first :data:`SCAN_BUDGET` endpoints, sorted: the picker's."""
    endpoints, _ = await producer.endpoints.scan(None, None, SCAN_BUDGET)
    return sorted({e.workspace_id for e in endpoints})


def add_routes(app: web.Application) -> None:
    """Register the search page."""
    app.router.add_get("/search", search)
