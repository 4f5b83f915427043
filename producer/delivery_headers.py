"""The headers a delivery carries besides ``User-Agent``: the endpoint's custom ones,
the signatures and the ``X-Cliq-*`` headers. One rule for a worker's POST
(:mod:`worker.request`) and a poll endpoint's fetched messages (:mod:`producer.polling`),
so a message fetched verifies exactly as one POSTed."""

from __future__ import annotations

from producer.endpoints import Endpoint
from producer.signing import signature_headers


def delivery_headers(
    endpoint: Endpoint,
    event_id: str,
    event_type: str,
    delivery_id: str,
    attempt: int,
    body: bytes,
    now_s: float,
) -> dict[str, str]:
    """Every header of a delivery of ``body`` except ``User-Agent``.

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
    headers["X-Cliq-Delivery"] = delivery_id
    headers["X-Cliq-Attempt"] = str(attempt)
    return headers
