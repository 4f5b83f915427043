"""RFC 6238 TOTP: the RFC's own test vectors, drift, and the otpauth URI."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest

from producer.tokens import totp

# RFC 6238, appendix B: the seeds (ASCII) of each hash, then time -> 8-digit code.
SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("now", "sha1", "sha256", "sha512"), VECTORS)
def test_rfc_6238_appendix_b(now: int, sha1: str, sha256: str, sha512: str) -> None:
    step = totp.time_step(now)
    for digest, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        assert totp.hotp(SEEDS[digest], step, digits=8, digest=digest) == expected


def test_six_digit_codes_are_the_low_digits_of_the_rfc_vectors() -> None:
    secret = base64.b32encode(SEEDS["sha1"]).decode().rstrip("=")
    for now, sha1, _, _ in VECTORS:
        assert totp.code_at(secret, now) == sha1[-6:]


def test_a_code_matches_its_step_and_one_step_either_side_only() -> None:
    secret = totp.new_secret()
    now = 1_700_000_000.0
    code = totp.code_at(secret, now)
    step = totp.time_step(now)
    assert totp.matching_step(secret, code, now) == step
    assert totp.matching_step(secret, code, now + totp.STEP_S) == step
    assert totp.matching_step(secret, code, now - totp.STEP_S) == step
    assert totp.matching_step(secret, code, now + 2 * totp.STEP_S) is None
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    assert totp.matching_step(secret, wrong, now) != step


def test_new_secrets_are_160_bit_base32_and_differ() -> None:
    first, second = totp.new_secret(), totp.new_secret()
    assert first != second
    assert len(first) == 32  # 20 bytes in base32, unpadded
    assert set(first) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def test_otpauth_uri_carries_what_authenticators_need() -> None:
    uri = totp.otpauth_uri("JBSWY3DPEHPK3PXP", "user 1", "cliq-webhooks")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert parts.path == "/cliq-webhooks%3Auser%201"
    query = parse_qs(parts.query)
    assert query == {
        "secret": ["JBSWY3DPEHPK3PXP"],
        "issuer": ["cliq-webhooks"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
