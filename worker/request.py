"""What a delivery request carries besides its body: signed headers and the User-Agent."""

from __future__ import annotations

from producer.delivery_headers import delivery_headers
from producer.endpoints import Endpoint
from producer.jobs import DeliveryItem
from worker import __version__


def user_agent() -> str:
    """``cliq-webhooks/<version>``: the User-Agent of every request (set on the session)."""
    return f"cliq-webhooks/{__version__}"


def request_headers(
    endpoint: Endpoint,
    event_id: str,
    event_type: str,
    item: DeliveryItem,
    body: bytes,
    now_s: float,
) -> dict[str, str]:
    """Every header of a delivery request except ``User-Agent`` (set on the session),
    the endpoint's custom ones included (:func:`producer.delivery_headers.delivery_headers`)."""
    return delivery_headers(
        endpoint, event_id, event_type, item.delivery_id, item.attempt, body, now_s
    )
