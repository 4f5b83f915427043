"""Endpoint signing secrets at rest: sealed with AES-256-GCM when a key is configured.

With ``SECRET_ENCRYPTION_KEY`` set, a Redis dump, backup or replica alone does not
reveal any endpoint's secret. The key itself lives only in the processes'
environment: whoever has both the dump and the key has the secrets. Without a key,
secrets are stored as they are (and say so in the logs at start).

Sealed values look like ``enc:v1:<base64 of nonce + ciphertext>``; plain values are
read as they are, so a key can be introduced on a running system (secrets written
before it stay readable and get sealed when next rotated).
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED_PREFIX = "enc:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
# Binds a ciphertext to its use: a sealed secret cannot be passed off as other data.
ASSOCIATED_DATA = b"cliq-webhooks endpoint secret"
TOTP_ASSOCIATED_DATA = b"cliq-webhooks totp secret"


class SecretBoxError(ValueError):
    """A key that cannot be used, or a sealed value that does not open with it."""


def new_key() -> str:
    """A fresh key in the form ``SECRET_ENCRYPTION_KEY`` expects."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_key(raw: str) -> bytes | None:
    """``SECRET_ENCRYPTION_KEY``: empty, or URL-safe base64 of 32 bytes."""
    if not raw.strip():
        return None
    try:
        key = base64.urlsafe_b64decode(raw.strip())
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be URL-safe base64 of 32 random bytes") from exc
    if len(key) != KEY_BYTES:
        raise ValueError(f"must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


class SecretBox:
    """Seals and opens stored secrets; without a key, both are the identity."""

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = AESGCM(key) if key else None

    @property
    def encrypting(self) -> bool:
        """Whether new secrets are sealed."""
        return self._aead is not None

    def seal(self, secret: str, purpose: bytes = ASSOCIATED_DATA) -> str:
        """The stored form of ``secret``; ``purpose`` must be given again to open it."""
        if self._aead is None or not secret:
            return secret
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), purpose)
        return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, stored: str, purpose: bytes = ASSOCIATED_DATA) -> str:
        """The secret from its stored form."""
        if not stored.startswith(SEALED_PREFIX):
            return stored
        if self._aead is None:
            raise SecretBoxError("a secret is sealed but SECRET_ENCRYPTION_KEY is not set")
        raw = base64.b64decode(stored.removeprefix(SEALED_PREFIX))
        try:
            opened = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose)
        except InvalidTag as exc:
            raise SecretBoxError(
                "a sealed secret does not open with SECRET_ENCRYPTION_KEY"
            ) from exc
        return opened.decode()
