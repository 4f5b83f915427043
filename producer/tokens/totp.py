"""TOTP (RFC 6238): the second factor of the webhook-token module.

Pure functions of a secret and a time; the caller passes "now", so tests inject the
clock. Codes are 6 digits over 30-second steps with HMAC-SHA1, what every
authenticator app (Google Authenticator, Aegis, 1Password, ...) uses by default.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

STEP_S = 30
DIGITS = 6
SECRET_BYTES = 20  # 160 bits, the size RFC 4226 recommends for HMAC-SHA1
# Steps either side of now that are accepted: authenticator clocks drift.
DRIFT_STEPS = 1


def new_secret() -> str:
    """A random secret in base32 without padding (what ``otpauth://`` URIs carry)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    """The HMAC key of a base32 secret (padding optional, case-insensitive)."""
    text = secret.upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def time_step(now_s: float) -> int:
    """The step (counter) that ``now_s`` (seconds since the epoch) falls in."""
    return int(now_s // STEP_S)


def hotp(key: bytes, counter: int, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 HOTP of ``counter``: dynamic truncation of the HMAC, ``digits`` long.

    ``digest`` is a :mod:`hashlib` name; RFC 6238 also defines ``sha256`` and ``sha512``.
    """
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def code_at(secret: str, now_s: float) -> str:
    """The code an authenticator shows for ``secret`` at ``now_s``."""
    return hotp(_key(secret), time_step(now_s))


def matching_step(secret: str, code: str, now_s: float) -> int | None:
    """The step whose code is ``code`` within :data:`DRIFT_STEPS` of now, else ``None``.

    Every candidate is compared in constant time, and all of them are compared, so the
    answer's timing does not tell which step (if any) matched.
    """
    key = _key(secret)
    current = time_step(now_s)
    found: int | None = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(hotp(key, step).encode(), code.encode()) and found is None:
            found = step
    return found


def otpauth_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI that authenticator apps import (as a QR code)."""
    label = quote(f"{issuer}:{account}", safe="")
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_S,
        }
    )
    return f"otpauth://totp/{label}?{query}"
