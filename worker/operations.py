"""Operational events, worker side: the jobs outcomes cause, publishing them, and the
operations endpoint registered from ``OPERATIONS_WEBHOOK_URL`` at start.

What the events are and why they are ordinary deliveries: :mod:`producer.operations`.
The recorder hands :func:`outcome_jobs` to ``record.lua``, which writes them to the
outbox only when the outcome makes the transition they report (a delivery dead, an
endpoint failing, disabled by 410 Gone, or recovered); :class:`OperationsPublisher`
turns each job into an event of the operations workspace and publishes it.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from producer.deliveries import AttemptOutcome
from producer.destinations import DestinationPolicy, DestinationRefused, RegistrationCheck
from producer.endpoint import Endpoint, EndpointStatus
from producer.endpoint_rules import DestinationError, EndpointNotFound, url_host_port
from producer.endpoints import EndpointRegistry
from producer.events import OPERATIONS_WORKSPACE, Event, iso_time
from producer.jsonwire import JSONValue
from producer.keys import OPERATIONS_QUEUE
from producer.operations import (
    OPERATIONS_ENDPOINT_ID,
    OperationalJob,
    OperationalType,
    endpoint_disabled,
    is_operational,
)
from producer.publisher import Publisher
from producer.settings import SettingsError
from worker.metrics import Metrics
from worker.notify import dashboard_page
from worker.outcomes import Outcome

log = structlog.get_logger("cliq.worker.operations")


def outcome_jobs(outcome: Outcome) -> tuple[OperationalJob | None, OperationalJob | None]:
    """The operational events ``outcome`` may cause: ``delivery.dead`` (an attempted
    delivery that ended dead), and the endpoint's transition (``endpoint.failing``,
    ``endpoint.disabled`` after 410 Gone, ``endpoint.recovered`` for a delivery to an
    endpoint loaded as failing). record.lua keeps the second only if the endpoint turns.

    None about the operations endpoint itself: its failures must not report themselves.
    """
    if is_operational(outcome.endpoint_id):
        return None, None
    endpoint = outcome.endpoint
    if outcome.kind == AttemptOutcome.DELIVERED:
        if endpoint is None or endpoint.status != EndpointStatus.FAILING:
            return None, None
        return None, recovered_job(outcome)
    if outcome.kind != AttemptOutcome.DEAD:
        return None, None
    item = outcome.item
    details: dict[str, Any] = {
        "workspace_id": endpoint.workspace_id if endpoint else "",
        "endpoint_url": endpoint.url if endpoint else "",
        "event_id": outcome.event_id,
        "delivery_id": item.delivery_id,
        "attempts": item.attempt,
        "last_error": outcome.last_error,
    }
    transition = f"{item.delivery_id}-{item.attempt}"
    at_ms = outcome.attempt.at_ms
    why = "gone" if outcome.disable else "refused" if outcome.refused else "exhausted"
    # A delivery not attempted (its endpoint deleted or disabled) was reported already.
    dead = (
        None
        if endpoint is None
        else OperationalJob(
            OperationalType.DELIVERY_DEAD, outcome.endpoint_id, transition, at_ms, why, **details
        )
    )
    if outcome.disable:
        turn = endpoint_disabled(
            outcome.endpoint_id, transition=transition, at_ms=at_ms, reason="gone", **details
        )
    else:
        turn = OperationalJob(
            OperationalType.ENDPOINT_FAILING,
            outcome.endpoint_id,
            transition,
            at_ms,
            "refused" if outcome.refused else "failing",
            **details,
        )
    return dead, turn


def recovered_job(outcome: Outcome) -> OperationalJob:
    """``endpoint.recovered``: ``outcome`` delivered to a failing endpoint."""
    endpoint = outcome.endpoint
    return OperationalJob(
        OperationalType.ENDPOINT_RECOVERED,
        outcome.endpoint_id,
        f"{outcome.item.delivery_id}-{outcome.item.attempt}",
        outcome.attempt.at_ms,
        "delivered",
        workspace_id=endpoint.workspace_id if endpoint else "",
        endpoint_url=endpoint.url if endpoint else "",
        event_id=outcome.event_id,
        delivery_id=outcome.item.delivery_id,
        attempts=outcome.item.attempt,
    )


def operational_event(
    job: OperationalJob, workspace_id: str, endpoint_url: str, public_url: str
) -> Event:
    """The event ``job`` publishes: the seed's shape, in the operations workspace.

    Built directly, not by ``parse_event``: that refuses the reserved workspace and
    types outside the catalogue, which is what keeps everyone else out of it.
    """
    data: dict[str, JSONValue] = {
        "endpoint_id": job.endpoint_id,
        "endpoint_url": endpoint_url or None,
        "workspace_id": workspace_id or None,
        "event_id": job.event_id or None,
        "delivery_id": job.delivery_id or None,
        "attempts": job.attempts or None,
        "last_error": job.last_error or None,
        "reason": job.reason,
        "occurred_at": iso_time(job.at_ms),
        "dashboard_url": dashboard_page(public_url, job.endpoint_id),
    }
    if job.type == OperationalType.ENDPOINT_PAUSED_BACKLOG_FULL:
        data["backlog"] = job.backlog
    return Event(
        id=job.operational_event_id,
        type=job.type.value,
        created_at=iso_time(job.at_ms),
        workspace_id=OPERATIONS_WORKSPACE,
        data=data,
    )


class OperationsPublisher:
    """The processor of the operations queue: publishes each job's event."""

    def __init__(
        self,
        *,
        registry: EndpointRegistry,
        publisher: Publisher,
        metrics: Metrics,
        public_url: str,
    ) -> None:
        """``public_url``: the base of the dashboard links (``PUBLIC_URL``). Only workers
        with ``OPERATIONS_WEBHOOK_URL`` run it."""
        self._registry = registry
        self._publisher = publisher
        self._metrics = metrics
        self._public_url = public_url

    async def process(self, job: Any, _token: str) -> str:
        """Publish one operational event; Redis errors propagate (bullmq retries)."""
        try:
            operational = OperationalJob.from_dict(job.data)
        except ValueError as exc:
            self._metrics.bad_jobs.inc()
            log.error("bad_job", queue=OPERATIONS_QUEUE, job_id=job.id, error=str(exc))
            return "bad job"
        bound = log.bind(
            type=operational.type.value,
            endpoint_id=operational.endpoint_id,
            delivery_id=operational.delivery_id or None,
        )
        if is_operational(operational.endpoint_id):
            bound.debug("operational_event_skipped", reason="about the operations endpoint")
            return "skipped"
        workspace_id, url = operational.workspace_id, operational.endpoint_url
        if not workspace_id or not url:
            try:
                endpoint = await self._registry.get(operational.endpoint_id)
            except EndpointNotFound:
                pass
            else:
                workspace_id, url = workspace_id or endpoint.workspace_id, url or endpoint.url
        event = operational_event(operational, workspace_id, url, self._public_url)
        result = await self._publisher.publish(event)
        bound.info(
            "operational_event_published",
            event_id=event.id,
            deliveries=result.deliveries,
            duplicate=result.duplicate,
        )
        return event.id


async def register_operations_endpoint(
    registry: EndpointRegistry, url: str, secret: str
) -> Endpoint:
    """Create or update the operations endpoint from ``OPERATIONS_WEBHOOK_URL`` and
    ``OPERATIONS_WEBHOOK_SECRET``; its status stays as it is (an operator may have
    disabled it). :class:`SettingsError` if the destination policy refuses the URL."""
    now_ms = int(time.time() * 1000)
    endpoint = Endpoint(
        id=OPERATIONS_ENDPOINT_ID,
        workspace_id=OPERATIONS_WORKSPACE,
        url=url,
        secret=secret,
        events=tuple(kind.value for kind in OperationalType),
        # Nobody to email: its own failures are logged and counted, never emailed.
        owner_email="",
        description="Operational events (OPERATIONS_WEBHOOK_URL), registered by the workers",
        status=EndpointStatus.ACTIVE,
        created_ms=now_ms,
        updated_ms=now_ms,
    )
    try:
        return await registry.ensure(endpoint)
    except DestinationError as exc:
        raise SettingsError(f"OPERATIONS_WEBHOOK_URL={url!r}: {exc.message}") from None


async def check_operations_destination(url: str, policy: DestinationPolicy | None) -> None:
    """Refuse ``OPERATIONS_WEBHOOK_URL`` (:class:`SettingsError`) if the destination
    policy would: checked before a worker connects anything, so that it stops cleanly."""
    check = RegistrationCheck(policy)
    try:
        await check.check(*url_host_port(url))
    except DestinationRefused as exc:
        raise SettingsError(f"OPERATIONS_WEBHOOK_URL={url!r}: {exc}") from None
    finally:
        await check.close()
