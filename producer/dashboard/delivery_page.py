"""What was sent: a delivery's page (``/ui/deliveries/{id}``) and an event's
(``/ui/events/{id}``).

A delivery's page shows the exact body its requests carried, the headers of each
attempt, computed again with the signing code the workers use
(:func:`producer.signing.request_headers`, at the attempt's time, which is when it was
signed) and each attempt's answer. Signatures are shown; secrets never: the
endpoint's custom header values are sealed at rest like its secret, so only their
names appear.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from producer import testlog
from producer.activity import SentEvent
from producer.dashboard.pages import producer_of, render
from producer.dashboard.webhook_forms import endpoint_errors, endpoint_id_of
from producer.deliveries import Attempt, Delivery, DeliveryNotFound, DeliveryState
from producer.endpoint import Endpoint
from producer.endpoint_rules import ROTATION_GRACE_S, EndpointNotFound
from producer.events import ID_PATTERN
from producer.http.problems import redis_deadline
from producer.jobs import DeliveryItem
from producer.signing import request_headers

HIDDEN = "(hidden: sealed like a secret)"


def _user_agent() -> str:
    """The workers' ``User-Agent`` (``worker.request.user_agent``: the same version)."""
    try:
        return f"cliq-webhooks/{version('cliq-webhooks')}"
    except PackageNotFoundError:  # a source tree that was not installed
        return "cliq-webhooks/0.0.0"


@dataclass(frozen=True)
class SentAttempt:
    """One attempt with the headers its request carried."""

    attempt: Attempt
    headers: tuple[tuple[str, str], ...]
    # Why the headers shown may differ from those sent, if they may.
    caveat: str | None


def _secrets_then(endpoint: Endpoint, at_ms: int) -> tuple[tuple[str, ...], str | None]:
    """The secrets that signed an attempt at ``at_ms``, and a caveat when unsure.

    The registry keeps when the previous secret stops signing, not when it was rotated:
    a rotation is taken to have had the default grace (``ROTATION_GRACE_S``).
    """
    rotated_ms = endpoint.previous_secret_until_ms - ROTATION_GRACE_S * 1000
    if endpoint.previous_secret and at_ms < rotated_ms:
        return (endpoint.previous_secret,), (
            "Sent before the secret was last rotated: signed with the previous secret "
            "(if it was rotated more than once since, the signatures shown differ)."
        )
    if endpoint.previous_secret and at_ms < endpoint.updated_ms:
        return endpoint.signing_secrets(at_ms), (
            "The webhook changed after this attempt: if that was a rotation with a grace "
            "other than 24 hours, the signatures shown may differ from those sent."
        )
    return endpoint.signing_secrets(at_ms), None


def sent_attempts(
    delivery: Delivery, endpoint: Endpoint | None, event: SentEvent | None
) -> list[SentAttempt]:
    """Every attempt of ``delivery``, newest first, with the headers it carried (none
    when the endpoint was deleted or the event left the log)."""
    found: list[SentAttempt] = []
    for attempt in sorted(delivery.attempts, key=lambda a: -a.number):
        if endpoint is None or event is None:
            found.append(SentAttempt(attempt, (), None))
            continue
        secrets, caveat = _secrets_then(endpoint, attempt.at_ms)
        # An endpoint signing with exactly those secrets at that time.
        signer = replace(
            endpoint,
            secret=secrets[0],
            previous_secret=secrets[1] if len(secrets) > 1 else "",
            previous_secret_until_ms=attempt.at_ms + 1 if len(secrets) > 1 else 0,
        )
        headers = request_headers(
            signer,
            event.id,
            event.type,
            DeliveryItem(delivery.id, attempt.number),
            event.body,
            attempt.at_ms / 1000,
        )
        custom = {name for name, _ in endpoint.headers}
        if endpoint.updated_ms > attempt.at_ms and endpoint.headers:
            caveat = caveat or "The custom headers are the endpoint's current ones."
        shown = [(name, HIDDEN if name in custom else value) for name, value in headers.items()]
        shown.append(("User-Agent", _user_agent()))
        found.append(SentAttempt(attempt, tuple(shown), caveat))
    return found


async def show_delivery(request: web.Request) -> web.Response:
    """``GET /ui/deliveries/{id}``: the body, each attempt's headers and answer."""
    delivery_id = request.match_info["delivery_id"]
    producer = producer_of(request)
    missing = web.HTTPNotFound(
        text=f"There is no delivery {delivery_id} (or its retention ran out)."
    )
    if not ID_PATTERN.match(delivery_id):
        raise missing
    async with redis_deadline("Redis is unavailable; the delivery could not be read."):
        try:
            delivery = await producer.deliveries.get(delivery_id)
        except DeliveryNotFound:
            raise missing from None
        event = await producer.deliveries.sent_event(delivery.event_id)
        try:
            endpoint: Endpoint | None = await producer.endpoints.get(delivery.endpoint_id)
        except EndpointNotFound:
            endpoint = None
    return await render(
        request,
        "delivery.html",
        delivery=delivery,
        endpoint=endpoint,
        event=event,
        attempts=sent_attempts(delivery, endpoint, event),
        replayable=delivery.state == DeliveryState.DEAD and endpoint is not None,
        test=False,
    )


async def show_event(request: web.Request) -> web.Response:
    """``GET /ui/events/{id}``: the event as sent and its deliveries."""
    event_id = request.match_info["event_id"]
    producer = producer_of(request)
    missing = web.HTTPNotFound(text=f"There is no event {event_id} (or its retention ran out).")
    if not ID_PATTERN.match(event_id):
        raise missing
    async with redis_deadline("Redis is unavailable; the event could not be read."):
        deliveries = await producer.deliveries.for_event(event_id)
        event = await producer.deliveries.sent_event(event_id)
    if event is None and not deliveries:
        raise missing
    return await render(
        request, "event.html", event_id=event_id, event=event, deliveries=deliveries
    )


async def show_test(request: web.Request) -> web.Response:
    """``GET /ui/webhooks/{id}/tests/{delivery}``: a test send, as a delivery's page."""
    endpoint_id = endpoint_id_of(request)
    delivery_id = request.match_info["delivery"]
    producer = producer_of(request)
    async with endpoint_errors("Redis is unavailable; the test send could not be read."):
        endpoint = await producer.endpoints.get(endpoint_id)
        kept = await testlog.recent(producer.redis, producer.keys_of(endpoint), endpoint_id)
    sent = next((t for t in kept if t.delivery_id == delivery_id), None)
    if sent is None:
        raise web.HTTPNotFound(text="This webhook kept no test send with this id.")
    return await render(
        request,
        "delivery.html",
        delivery=sent.delivery,
        endpoint=endpoint,
        event=sent.event,
        attempts=sent_attempts(sent.delivery, endpoint, sent.event),
        replayable=False,
        test=True,
    )


def add_routes(app: web.Application) -> None:
    """Register the delivery, test send and event pages."""
    # Named parameters, so that the portal gate checks whose they are (portal.py).
    app.router.add_get("/deliveries/{delivery_id}", show_delivery)
    app.router.add_get("/events/{event_id}", show_event)
    app.router.add_get("/webhooks/{id}/tests/{delivery}", show_test)
