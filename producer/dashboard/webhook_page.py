"""A webhook's page, ``/ui/webhooks/{id}``: its health, "Send Test Event" with the
receiver's answer, the delivery log filtered by outcome and time, and replay of one
failed delivery or every one since a time, with its progress.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from aiohttp import web

from producer import testlog
from producer.context import Producer
from producer.dashboard.chart import endpoint_charts
from producer.dashboard.log_rows import with_tests
from producer.dashboard.pages import flash_and_redirect, producer_of, render, settings_of
from producer.dashboard.webhook_forms import (
    PAGE_SIZE,
    Health,
    LogQuery,
    endpoint_errors,
    endpoint_id_of,
    event_groups,
    form_time,
    form_time_ms,
    page_url,
)
from producer.deliveries import RECENT_WINDOW, AttemptOutcome, DeliveryNotFound, DeliveryState
from producer.endpoint_rules import ROTATION_GRACE_S
from producer.events import ID_PATTERN
from producer.http.bodies import ENDPOINT_ATTEMPTS_CURSOR, decode_cursor, encode_cursor
from producer.http.problems import redis_deadline, unknown_query_parameters
from producer.messages import TestSendResult
from producer.testsends import request_test_send, untestable_reason

log = structlog.get_logger("cliq.producer.dashboard")

# A replay's progress follows at most this many of its deliveries, for an hour.
REPLAY_TRACKED = 1000
REPLAY_TTL_S = 3600
DEFAULT_REPLAY_WINDOW = timedelta(hours=24)


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
    endpoint_id = endpoint_id_of(request)
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
    async with endpoint_errors("Redis is unavailable; the webhook could not be read."):
        endpoint = await producer.endpoints.get(endpoint_id)
        recent = await producer.deliveries.recent(endpoint_id)
        dead_total = await producer.deliveries.dead_total(endpoint_id)
        paused = await producer.pausing.paused(endpoint_id)
        drop = await producer.pausing.drops(endpoint_id)
        if not query.errors:
            entries, next_position = await producer.deliveries.scan_attempts(
                endpoint_id, query.selected, after, PAGE_SIZE
            )
        types = await producer.deliveries.event_types([e["event_id"] for e in entries])
        # A row's Replay button follows its delivery's state now, not its attempt's.
        loaded = await producer.deliveries.load(sorted({e["delivery_id"] for e in entries}))
        states = {d.id: d.state.value for d in loaded if d is not None}
        tests = await testlog.recent(producer.redis, producer.keys_of(endpoint), endpoint_id)
        charts = await endpoint_charts(producer, endpoint_id)
        if "replay" in request.query:
            progress = await _replay_progress(producer, request.query["replay"])
    if not query.errors:
        entries = with_tests(
            entries, tests, query, first_page=after is None, last_page=next_position is None
        )
        types.update({t.event_id: t.event_type for t in tests})
    return await render(
        request,
        "webhook.html",
        status=status,
        endpoint=endpoint,
        health=Health.of(recent),
        window=RECENT_WINDOW,
        dead_total=dead_total,
        paused=paused,
        paused_max=producer.settings.paused_max_per_endpoint,
        # The grace the dashboard's rotation gives (webhooks.rotate_secret: the default).
        rotation_grace_hours=f"{ROTATION_GRACE_S / 3600:g}",
        drop=drop,
        groups=event_groups(producer.catalogue),
        test=test or TestPanel(),
        query=query,
        outcomes=[o.value for o in AttemptOutcome],
        entries=entries,
        types=types,
        states=states,
        charts=charts,
        next_link=query.link(endpoint_id, encode_cursor(ENDPOINT_ATTEMPTS_CURSOR, next_position))
        if next_position
        else None,
        replay_since=replay_since or form_time(datetime.now(UTC) - DEFAULT_REPLAY_WINDOW),
        replay_error=replay_error,
        progress=progress,
    )


async def send_test(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/test``: a worker sends a test event; its answer, shown."""
    endpoint_id = endpoint_id_of(request)
    form = await request.post()
    event_type = form.get("type")
    producer = producer_of(request)
    if not isinstance(event_type, str) or event_type not in producer.catalogue:
        panel = TestPanel(field_error="Choose an event type from the list.")
        return await _detail_page(request, test=panel, status=422)
    async with endpoint_errors("Redis is unavailable; no test event was sent."):
        endpoint = await producer.endpoints.get(endpoint_id)
    reason = untestable_reason(endpoint)
    if reason is not None:
        return await _detail_page(request, test=TestPanel(event_type, error=reason), status=409)
    wait_s = settings_of(request).test_send_wait_s
    result = await request_test_send(
        producer.redis,
        producer.keys_of(endpoint),
        endpoint_id,
        event_type,
        wait_s,
    )
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
    endpoint_id = endpoint_id_of(request)
    form = await request.post()
    raw = form.get("since")
    since = raw.strip() if isinstance(raw, str) else ""
    try:
        since_ms = form_time_ms(since)
    except ValueError as exc:
        return await _detail_page(
            request, replay_since=since, replay_error=f"{since!r} {exc}.", status=422
        )
    producer = producer_of(request)
    async with endpoint_errors("Redis is unavailable; replay may be incomplete: retry it."):
        await producer.endpoints.get(endpoint_id)
        dead = await producer.deliveries.dead_ids(endpoint_id, since_ms)
        replayed = await producer.deliveries.replay(dead)
    log.info("dashboard_replay", endpoint_id=endpoint_id, since_ms=since_ms, count=len(replayed))
    if not replayed:
        return await flash_and_redirect(
            request, page_url(endpoint_id), "No failed deliveries since then: nothing to replay."
        )
    return await _show_replay(request, endpoint_id, replayed)


async def replay_delivery(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/deliveries/{delivery}/replay``: one failed delivery again."""
    endpoint_id = endpoint_id_of(request)
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
            page_url(endpoint_id),
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
        f"{page_url(endpoint_id)}?replay={replay_id}#replay",
        f"Replaying {len(replayed)} failed {'delivery' if len(replayed) == 1 else 'deliveries'}"
        f"{tracked}.",
    )


async def replay_progress(request: web.Request) -> web.Response:
    """``GET /ui/webhooks/{id}/replays/{replay}``: the progress, as JSON for the page
    (which takes no query parameter: any is refused, 400, as by the API)."""
    endpoint_id_of(request)
    if request.query:
        return unknown_query_parameters(sorted(set(request.query)), ()).response()
    async with redis_deadline("Redis is unavailable."):
        progress = await _replay_progress(producer_of(request), request.match_info["replay"])
    if progress is None:
        raise web.HTTPNotFound(text="This replay is unknown or too old.")
    return web.json_response(progress.to_dict(), headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    """Register a webhook's page and what it posts."""
    router = app.router
    router.add_get("/webhooks/{id}", show_webhook)
    router.add_post("/webhooks/{id}/test", send_test)
    router.add_post("/webhooks/{id}/replay", replay_since)
    router.add_post("/webhooks/{id}/deliveries/{delivery}/replay", replay_delivery)
    router.add_get("/webhooks/{id}/replays/{replay}", replay_progress)
