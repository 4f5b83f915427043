"""The delivery log's store: what is written after each batch of work, and every read.

Redis keeps the hot path (queues, leases, what a worker needs to send the next
attempt); with ``DATABASE_URL`` set the record of what happened (events, deliveries,
attempts) goes to a :class:`LogStore`, PostgreSQL
(:class:`producer.store.postgres.PostgresLogStore`), written by the workers' log writers
(:mod:`worker.logwriter`) and read through :class:`producer.store.reads.StoredDeliveryLog`.
Without it the log stays in Redis, bounded (``LOG_KEEP_PER_ENDPOINT``), and is read by
:class:`producer.deliveries.DeliveryLog`, whose methods both answer alike.

Writes are batches (:meth:`LogStore.write`), group-committed by the workers like their
Redis outcomes, and idempotent: a batch written twice (say after a timeout whose commit
did happen) leaves every row once, so a flush can always be retried. A delivery takes
the state of its highest-numbered attempt, whatever order batches arrive in.

Reads return the dataclasses of :mod:`producer.deliveries` (:class:`Delivery`,
:class:`Attempt`), so the API, the CLI and the dashboard render them as they do today.
Positions (cursors) are the API's: an endpoint's attempts are walked by delivery
creation time, delivery id, then attempt number, all descending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from producer.deliveries import Attempt, AttemptOutcome, Delivery, DeliveryState

T = TypeVar("T")
P = TypeVar("P")

# (delivery created_ms, delivery id): where a delivery stands in an endpoint's list.
DeliveryPosition = tuple[int, str]
# (delivery created_ms, delivery id, attempt number): where an attempt stands in an
# endpoint's log. Number 0 stands after every attempt of that delivery.
AttemptPosition = tuple[int, str, int]

# A listing with filters examines at most this many attempts per page, so that a
# filter matching little costs bounded work: the page then ends early, with a cursor.
SCAN_BUDGET = 1000


@dataclass(frozen=True)
class EventRecord:
    """A published event and the deliveries it fanned out to.

    ``published_ms`` is when it was published, which is every one of its deliveries'
    ``created_ms``; ``created_ms`` is the event's own ``created_at``.
    """

    id: str
    type: str
    workspace_id: str
    created_ms: int
    body: bytes
    published_ms: int
    # (delivery id, endpoint id) of each delivery, in fan-out order.
    deliveries: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OutcomeRecord:
    """One attempt's outcome, with what identifies its delivery.

    ``delivery_created_ms`` is the delivery's ``created_ms``: with the delivery id it is
    the delivery's key (the PostgreSQL store partitions by it).
    """

    delivery_id: str
    delivery_created_ms: int
    event_id: str
    endpoint_id: str
    attempt: Attempt


@dataclass(frozen=True)
class WriteResult:
    """What a batch changed; all zero for a batch written a second time."""

    events_new: int
    deliveries_new: int
    attempts_new: int
    # Deliveries already stored moved to the state of a newer attempt (a new delivery
    # is written in the state of its latest attempt of the batch, and not counted here).
    deliveries_moved: int
    # Rows skipped because their day is past retention (already dropped).
    expired: int


@dataclass(frozen=True)
class LoggedAttempt:
    """An attempt with its delivery, event and endpoint: one line of the delivery log."""

    delivery_id: str
    event_id: str
    endpoint_id: str
    delivery_created_ms: int
    attempt: Attempt

    @property
    def position(self) -> AttemptPosition:
        """Where this attempt stands in its endpoint's log."""
        return (self.delivery_created_ms, self.delivery_id, self.attempt.number)


@dataclass(frozen=True)
class Page(Generic[T, P]):
    """Items newest first and the position to continue after (``None``: the last page)."""

    items: tuple[T, ...]
    next: P | None


@dataclass(frozen=True)
class AttemptQuery:
    """A filter of the delivery log: an outcome and a time window (ms, inclusive)."""

    outcome: AttemptOutcome | None = None
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True)
class RecentSummary:
    """How an endpoint's latest ``window`` deliveries went (the API's ``recent``)."""

    window: int
    deliveries: int
    delivered: int
    dead: int
    pending: int
    last_attempt_ms: int | None
    last_delivered_ms: int | None
    # The latest attempt that did not deliver.
    last_error: LoggedAttempt | None


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored: its record without the fan-out."""

    id: str
    type: str
    workspace_id: str
    created_ms: int
    published_ms: int
    body: bytes


class LogStore(Protocol):
    """Where the delivery log lives. Every method may raise the store's connection errors."""

    async def write(
        self, events: Sequence[EventRecord], outcomes: Sequence[OutcomeRecord]
    ) -> WriteResult:
        """Write one batch in one round trip, idempotently (see the module docstring)."""
        ...

    async def get_delivery(self, delivery_id: str) -> Delivery:
        """One delivery with its attempts; :class:`producer.deliveries.DeliveryNotFound`."""
        ...

    async def load_deliveries(self, delivery_ids: Sequence[str]) -> list[Delivery | None]:
        """Deliveries by id, in that order; ``None`` for one not (or no longer) stored."""
        ...

    async def endpoint_deliveries(
        self, endpoint_id: str, limit: int, before: DeliveryPosition | None = None
    ) -> Page[Delivery, DeliveryPosition]:
        """An endpoint's deliveries, newest first, from just after ``before``."""
        ...

    async def endpoint_attempts(
        self,
        endpoint_id: str,
        query: AttemptQuery,
        limit: int,
        after: AttemptPosition | None = None,
    ) -> Page[LoggedAttempt, AttemptPosition]:
        """An endpoint's attempts matching ``query``: newest deliveries first, each one's
        attempts newest first, from just after ``after``. A page examines at most
        :data:`SCAN_BUDGET` attempts: it may hold fewer than ``limit`` and a cursor."""
        ...

    async def event_deliveries(self, event_id: str) -> list[Delivery]:
        """Every delivery of an event, oldest first (then by id)."""
        ...

    async def get_event(self, event_id: str) -> StoredEvent | None:
        """The event, ``None`` when not (or no longer) stored."""
        ...

    async def load_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        """Those of these events still stored, in any order."""
        ...

    async def known_events(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these event ids were published within the retention (idempotency)."""
        ...

    async def event_types(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The type of each of these events still stored."""
        ...

    async def dead_delivery_ids(self, endpoint_id: str, since_ms: int = 0) -> list[str]:
        """Ids of an endpoint's dead deliveries that died at or after ``since_ms``,
        oldest death first."""
        ...

    async def recent_summaries(
        self, endpoint_ids: Sequence[str], window: int
    ) -> dict[str, RecentSummary]:
        """The summary of each endpoint's latest ``window`` deliveries, in one read."""
        ...

    async def state_counts(self, endpoint_id: str | None = None) -> dict[DeliveryState, int]:
        """Deliveries within the retention in each state, overall or of one endpoint."""
        ...

    async def outcome_counts(
        self, endpoint_id: str, since_ms: int, bucket_ms: int
    ) -> dict[tuple[int, str], int]:
        """An endpoint's attempts made since ``since_ms`` counted per (start of the UTC
        hour or day ``bucket_ms`` they fall in, outcome value): the dashboard's chart."""
        ...

    async def mark_replayed(self, delivery_ids: Sequence[str], at_ms: int) -> list[str]:
        """Move those of these deliveries that are dead back to queued (a replay);
        returns the ones moved. Replaying twice moves nothing the second time."""
        ...

    async def close(self) -> None:
        """Release the store's connections."""
        ...
