"""Operational events: what happens to endpoints and deliveries, told to the operator.

Svix's operational webhooks (``message.attempt.exhausted``, ``endpoint.disabled``) in
this project's terms. Each event is an ordinary event of the seed's shape published
into the reserved workspace :data:`~producer.events.OPERATIONS_WORKSPACE`, whose one
endpoint, :data:`OPERATIONS_ENDPOINT_ID`, the workers register from
``OPERATIONS_WEBHOOK_URL`` and ``OPERATIONS_WEBHOOK_SECRET``: it is signed, retried and
logged like every other delivery.

An event starts as an :class:`OperationalJob` on the operations queue, written to the
outbox *with the transition that causes it* (``worker/record.lua``,
:meth:`producer.endpoints.EndpointRegistry.set_status`), so that none is lost. A worker
publishes it (``worker/operations.py``) under an event id derived from the job's
:attr:`~OperationalJob.job_id`, which names the transition: a job run twice, or the
same transition reported by two processes, publishes one event.

Nothing here is emitted about the operations endpoint itself: its own failures would
otherwise report themselves to it without end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from producer.jobs import JobDispatcher, JobSpec
from producer.keys import OPERATIONS_QUEUE

# The operations endpoint's fixed id: ordinary ids are "ep_" + 16 hex characters.
OPERATIONS_ENDPOINT_ID = "ep_operations"


class OperationalType(StrEnum):
    """The operational event types (an event's ``type``)."""

    ENDPOINT_FAILING = "endpoint.failing"
    ENDPOINT_RECOVERED = "endpoint.recovered"
    ENDPOINT_DISABLED = "endpoint.disabled"
    ENDPOINT_PAUSED_BACKLOG_FULL = "endpoint.paused_backlog_full"
    DELIVERY_DEAD = "delivery.dead"


def is_operational(endpoint_id: str) -> bool:
    """Whether ``endpoint_id`` is the operations endpoint (nothing is emitted about it)."""
    return endpoint_id == OPERATIONS_ENDPOINT_ID


def _text(data: dict[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {value!r}")
    return value


def _count(data: dict[str, Any], name: str) -> int:
    value = data.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    return value


@dataclass(frozen=True)
class OperationalJob:
    """One operational event to publish: what happened to which endpoint, and when.

    ``transition`` names the change it reports (a delivery's attempt, the state an
    endpoint left): with the type and the endpoint it makes :attr:`job_id`, hence the
    event id, so the same transition is published once. Empty strings and zeros are
    unknown (the event's ``data`` has ``null`` for them).
    """

    type: OperationalType
    endpoint_id: str
    transition: str
    at_ms: int
    reason: str
    workspace_id: str = ""
    endpoint_url: str = ""
    event_id: str = ""
    delivery_id: str = ""
    attempts: int = 0
    last_error: str = ""
    backlog: int = 0

    @property
    def job_id(self) -> str:
        """The bullmq job id: the type, the endpoint and the transition."""
        return f"o-{self.type.value.replace('.', '-')}-{self.endpoint_id}-{self.transition}"

    @property
    def operational_event_id(self) -> str:
        """The id of the event it publishes, the same for every run of the job."""
        return "evt_op_" + hashlib.sha256(self.job_id.encode()).hexdigest()[:20]

    def to_dict(self) -> dict[str, Any]:
        """The job data stored in bullmq."""
        return {
            "type": self.type.value,
            "endpoint_id": self.endpoint_id,
            "transition": self.transition,
            "at_ms": self.at_ms,
            "reason": self.reason,
            "workspace_id": self.workspace_id,
            "endpoint_url": self.endpoint_url,
            "event_id": self.event_id,
            "delivery_id": self.delivery_id,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "backlog": self.backlog,
        }

    @classmethod
    def from_dict(cls, data: object) -> OperationalJob:
        """Parse job data; ``ValueError`` names what is malformed."""
        if not isinstance(data, dict):
            raise ValueError("operational job data must be a JSON object")
        try:
            kind = OperationalType(_text(data, "type"))
        except ValueError as exc:
            raise ValueError(f"type: {exc}") from None
        return cls(
            type=kind,
            endpoint_id=_text(data, "endpoint_id"),
            transition=_text(data, "transition"),
            at_ms=_count(data, "at_ms"),
            reason=_text(data, "reason"),
            workspace_id=_text(data, "workspace_id", ""),
            endpoint_url=_text(data, "endpoint_url", ""),
            event_id=_text(data, "event_id", ""),
            delivery_id=_text(data, "delivery_id", ""),
            attempts=_count(data, "attempts"),
            last_error=_text(data, "last_error", ""),
            backlog=_count(data, "backlog"),
        )

    def spec(self) -> JobSpec:
        """The job on its way to bullmq; ``spec().to_json()`` is its outbox member."""
        return JobSpec(OPERATIONS_QUEUE, self.job_id, self.to_dict())


def endpoint_disabled(
    endpoint_id: str,
    *,
    transition: str,
    at_ms: int,
    reason: str,
    workspace_id: str = "",
    endpoint_url: str = "",
    event_id: str = "",
    delivery_id: str = "",
    attempts: int = 0,
    last_error: str = "",
) -> OperationalJob:
    """``endpoint.disabled``: the endpoint stopped receiving deliveries.

    Call it where the endpoint *turns* disabled, once per transition: ``transition``
    must name that change so that a second report of it is the same job (e.g.
    ``f"m{before.updated_ms}"`` for a status change read at ``before``, or
    ``f"{delivery_id}-{attempt}"`` for the attempt that caused it). ``reason``:
    ``manual`` (API, CLI, dashboard), ``gone`` (410), ``auto`` (automatic disabling),
    or another word the caller documents. Write ``.spec().to_json()`` to the outbox in
    the script or transaction that disables it, or hand the job to :func:`emit` after.
    """
    return OperationalJob(
        OperationalType.ENDPOINT_DISABLED,
        endpoint_id,
        transition,
        at_ms,
        reason,
        workspace_id,
        endpoint_url,
        event_id,
        delivery_id,
        attempts,
        last_error,
    )


def endpoint_paused_backlog_full(
    endpoint_id: str,
    *,
    transition: str,
    at_ms: int,
    backlog: int,
    workspace_id: str = "",
    endpoint_url: str = "",
    last_error: str = "",
) -> OperationalJob:
    """``endpoint.paused_backlog_full``: a paused endpoint's backlog reached its cap.

    Call it when the backlog *reaches* the cap, once per transition: ``transition``
    names it (e.g. ``f"p{paused_since_ms}"``, the moment the pause began, so that one
    pause reports once however many events are refused after). ``backlog``: the
    deliveries held. Write ``.spec().to_json()`` to the outbox in the script that
    detects it, or hand the job to :func:`emit` after.
    """
    return OperationalJob(
        OperationalType.ENDPOINT_PAUSED_BACKLOG_FULL,
        endpoint_id,
        transition,
        at_ms,
        "backlog_full",
        workspace_id,
        endpoint_url,
        last_error=last_error,
        backlog=backlog,
    )


async def emit(dispatcher: JobDispatcher, jobs: Sequence[OperationalJob]) -> None:
    """Queue operational events outside a script (a worker publishes them).

    Safe to call twice for one transition (same job id, same event id). Jobs about the
    operations endpoint itself are dropped: they would report themselves to it.
    """
    specs = [job.spec() for job in jobs if not is_operational(job.endpoint_id)]
    if specs:
        await dispatcher.add(specs)
