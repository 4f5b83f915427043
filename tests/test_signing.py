"""Both signature schemes, checked against independent verifiers."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from producer.endpoint_rules import new_secret
from producer.signing import cliq_signature, signature_headers, standard_key

BODY = json.dumps(
    {"id": "evt_1", "type": "issue.created", "data": {"title": "héllo 🎉", "n": 12, "x": 1.5}},
    ensure_ascii=False,
    separators=(",", ":"),
).encode()


def test_secret_shape() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert new_secret() != secret


def test_cliq_signature_is_hex_hmac_keyed_with_the_secret_string() -> None:
    secret = new_secret()
    expected = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    assert cliq_signature(secret, BODY) == expected


def test_standard_webhooks_library_verifies_our_headers() -> None:
    secret = new_secret()
    now = int(time.time())
    headers = signature_headers([secret], "evt_1", now, BODY)
    payload = Webhook(secret).verify(BODY, headers)
    assert payload["data"]["title"] == "héllo 🎉"


def test_standard_webhooks_rejects_a_tampered_body() -> None:
    secret = new_secret()
    headers = signature_headers([secret], "evt_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"12", b"13"), headers)


def test_rotation_signs_with_both_secrets_during_the_grace_period() -> None:
    old, new = new_secret(), new_secret()
    headers = signature_headers([new, old], "evt_1", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    # A receiver still configured with the old secret keeps verifying...
    Webhook(old).verify(BODY, headers)
    # ...and one already switched to the new secret does too.
    Webhook(new).verify(BODY, headers)
    # The seed's header keeps the old secret until the grace period ends (its receivers
    # hold one secret and compare the whole value); the new one's is beside it (issue 16).
    assert headers["X-Cliq-Signature"] == cliq_signature(old, BODY)
    assert headers["X-Cliq-Signature-New"] == cliq_signature(new, BODY)


def test_standard_key_strips_the_prefix() -> None:
    raw = b"0123456789abcdef0123456789abcdef"
    assert standard_key("whsec_" + base64.b64encode(raw).decode()) == raw


def test_verify_standard_accepts_fresh_and_rejects_replayed_or_tampered_requests() -> None:
    from producer.signing import VerificationError, verify_cliq, verify_standard

    secret = new_secret()
    sent_at = 1_700_000_000
    headers = signature_headers([secret], "evt_1", sent_at, BODY)
    verify_standard(secret, headers, BODY, now_s=sent_at + 10)
    # A capture replayed ten minutes later is refused: the timestamp is signed.
    with pytest.raises(VerificationError, match="outside the 300s tolerance"):
        verify_standard(secret, headers, BODY, now_s=sent_at + 600)
    # Moving the timestamp forward breaks the signature.
    forged = {**headers, "webhook-timestamp": str(sent_at + 600)}
    with pytest.raises(VerificationError, match="no webhook-signature matches"):
        verify_standard(secret, forged, BODY, now_s=sent_at + 600)
    with pytest.raises(VerificationError, match="no webhook-signature matches"):
        verify_standard(secret, headers, BODY + b" ", now_s=sent_at)
    with pytest.raises(VerificationError, match="missing"):
        verify_standard(secret, {}, BODY, now_s=sent_at)
    # The seed's scheme: body only (no replay protection), kept for compatibility.
    verify_cliq(secret, BODY, headers["X-Cliq-Signature"])
    with pytest.raises(VerificationError):
        verify_cliq(secret, BODY, "0" * 64)
