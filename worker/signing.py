"""Request signatures: the seed's body HMAC and the Standard Webhooks scheme.

* ``X-Cliq-Signature``: hex HMAC-SHA256 of the body, keyed with the secret string
  exactly as shown to its owner (``whsec_...``), as the seed's ``verifySignature``
  computes it.
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of ``"{id}.{timestamp}.{body}"``
  keyed with the base64-decoded part after ``whsec_`` (standardwebhooks.com); several
  signatures are space-separated while a rotated secret is still in its grace period.
"""

from __future__ import annotations

import base64
import functools
import hmac
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"


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
    """The signature headers for ``body``; ``secrets[0]`` is the current secret."""
    return {
        "X-Cliq-Signature": cliq_signature(secrets[0], body),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_signature(standard_key(s), message_id, timestamp, body) for s in secrets
        ),
    }
