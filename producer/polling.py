"""Poll endpoints' messages: each fetched delivery with the exact body and the headers a
POST of it would carry (:func:`producer.signing.request_headers`, the signing
code the workers use), and the long poll that waits for the first of them.

``PollMessage`` is the one shape of a message on the wire (the API's
``GET /v1/endpoints/{id}/messages``, read back by ``cliq-webhooks listen``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from producer.backoff import TEST_POLL_FIRST_S, next_poll_s
from producer.endpoint import Endpoint
from producer.feeds import FeedEntry, PollFeeds
from producer.jobs import DeliveryItem
from producer.signing import request_headers

DEFAULT_FETCH_LIMIT = 100
MAX_FETCH_LIMIT = 1000
# The longest long poll: below common proxies' idle timeouts (60 s).
MAX_WAIT_S = 30.0


@dataclass(frozen=True)
class PollMessage:
    """One delivery fetched from a poll endpoint's feed."""

    cursor: int
    delivery_id: str
    event_id: str
    type: str
    attempt: int
    created_ms: int
    headers: dict[str, str]
    body: str

    @classmethod
    def of(cls, endpoint: Endpoint, entry: FeedEntry, now_s: float) -> PollMessage:
        """The message of ``entry``, signed now with the endpoint's secrets."""
        headers = request_headers(
            endpoint,
            entry.event_id,
            entry.event_type,
            DeliveryItem(entry.delivery_id, entry.attempt),
            entry.body.encode(),
            now_s,
        )
        return cls(
            cursor=entry.cursor,
            delivery_id=entry.delivery_id,
            event_id=entry.event_id,
            type=entry.event_type,
            attempt=entry.attempt,
            created_ms=entry.created_ms,
            headers=headers,
            body=entry.body,
        )

    def to_dict(self) -> dict[str, Any]:
        """The message as the API sends it."""
        return {
            "cursor": self.cursor,
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "type": self.type,
            "attempt": self.attempt,
            "created_ms": self.created_ms,
            "headers": dict(self.headers),
            "body": self.body,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PollMessage:
        """Parse :meth:`to_dict`'s form; ``ValueError`` naming what is wrong."""
        try:
            message = cls(
                cursor=int(raw["cursor"]),
                delivery_id=str(raw["delivery_id"]),
                event_id=str(raw["event_id"]),
                type=str(raw["type"]),
                attempt=int(raw["attempt"]),
                created_ms=int(raw["created_ms"]),
                headers={str(k): str(v) for k, v in dict(raw["headers"]).items()},
                body=raw["body"],
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a poll message: {exc!r}") from None
        if not isinstance(message.body, str):
            raise ValueError("not a poll message: body is not a string")
        return message


async def fetch_messages(
    feeds: PollFeeds,
    endpoint: Endpoint,
    after: int,
    limit: int,
    wait_s: float,
    gone: Callable[[], bool] = lambda: False,
) -> list[PollMessage]:
    """Up to ``limit`` messages after cursor ``after``, oldest first; when there are none,
    wait up to ``wait_s`` for the first (a long poll, checking more rarely as it waits).

    ``gone``: whether the consumer went away (its connection closed): the wait ends."""
    deadline = time.monotonic() + wait_s
    interval = TEST_POLL_FIRST_S
    while True:
        entries = await feeds.entries(endpoint.id, after, limit)
        remaining = deadline - time.monotonic()
        if entries or remaining <= 0 or gone():
            now_s = time.time()
            return [PollMessage.of(endpoint, entry, now_s) for entry in entries]
        await asyncio.sleep(min(interval, remaining))
        interval = next_poll_s(interval)
