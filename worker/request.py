"""What a delivery request carries besides its body: signed headers and the User-Agent."""

from __future__ import annotations

from producer.endpoints import Endpoint
from producer.jobs import DeliveryItem
from worker import __version__
from worker.signing import signature_headers


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
    the endpoint's custom ones included.

    ``webhook-id`` is the event id: stable across retries and replays, so receivers
    can deduplicate on it as the seed advises.
    """
    # The endpoint's own headers first: registration refused any of ours among them.
    headers = dict(endpoint.headers)
    headers.update(
        signature_headers(endpoint.signing_secrets(int(now_s * 1000)), event_id, int(now_s), body)
    )
    headers["Content-Type"] = "application/json"
    headers["X-Cliq-Event"] = event_type
    headers["X-Cliq-Delivery"] = item.delivery_id
    headers["X-Cliq-Attempt"] = str(item.attempt)
    return headers
