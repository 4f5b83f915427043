"""Request signatures: the seed's body HMAC and the Standard Webhooks scheme, and every
header a delivery request carries (:func:`request_headers`).

The workers sign what they send; the dashboard computes the same headers again to show
what a delivery carried (:mod:`producer.dashboard.delivery_page`), so both use this one
module.

* ``X-Cliq-Signature``: hex HMAC-SHA256 of the body, keyed with the secret string
  exactly as shown to its owner (``whsec_...``), as the seed's ``verifySignature``
  computes it. During a rotation's grace period it is made with the OLD secret (the
  seed's receivers hold one secret and switch when told, at ``signature_switches_at``),
  and ``X-Cliq-Signature-New`` carries the new secret's, so a receiver can accept either.
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of ``"{id}.{timestamp}.{body}"``
  keyed with the base64-decoded part after ``whsec_`` (standardwebhooks.com); several
  signatures are space-separated while a rotated secret is still in its grace period.
"""

from __future__ import annotations

import base64
import functools
import hmac
from collections.abc import Mapping, Sequence

from producer.endpoint import Endpoint
from producer.endpoint_rules import SECRET_PREFIX
from producer.jobs import DeliveryItem


def cliq_signature(secret: str, body: bytes) -> str:
    """The seed's signature: ``hex(HMAC-SHA256(secret, body))``."""
    return hmac.digest(secret.encode(), body, "sha256").hex()


@functools.lru_cache(maxsize=4096)
def standard_key(secret: str) -> bytes:
    """The Standard Webhooks key: the bytes base64-encoded after ``whsec_`` (cached)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def standard_signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = hmac.digest(key, signed, "sha256")
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(
    secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The signature headers for ``body``; ``secrets[0]`` is the current secret, a
    second one the previous secret during a rotation's grace period."""
    headers = {
        "X-Cliq-Signature": cliq_signature(secrets[-1], body),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_signature(standard_key(s), message_id, timestamp, body) for s in secrets
        ),
    }
    if len(secrets) > 1:
        headers["X-Cliq-Signature-New"] = cliq_signature(secrets[0], body)
    return headers


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


class VerificationError(ValueError):
    """A request that must not be trusted: bad signature, or a timestamp out of tolerance."""


DEFAULT_TOLERANCE_S = 300


def verify_standard(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now_s: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Receiver side of Standard Webhooks: check one ``v1`` signature and the timestamp.

    The timestamp is signed, so rejecting one more than ``tolerance_s`` away from
    ``now_s`` stops a captured request from being replayed later. Receivers should also
    remember ``webhook-id`` values for that long to drop duplicates within the window.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        offered = lowered["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise VerificationError("missing or malformed webhook-* headers") from exc
    if abs(now_s - timestamp) > tolerance_s:
        raise VerificationError(f"timestamp {timestamp} is outside the {tolerance_s:g}s tolerance")
    expected = standard_signature(standard_key(secret), message_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise VerificationError("no webhook-signature matches")


def verify_cliq(secret: str, body: bytes, signature: str) -> None:
    """The seed's compatibility scheme: hex HMAC of the body. It has no timestamp, so it
    cannot tell a replay from the original; prefer :func:`verify_standard`."""
    if not hmac.compare_digest(cliq_signature(secret, body), signature):
        raise VerificationError("X-Cliq-Signature does not match")
