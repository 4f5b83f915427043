"""The headers a delivery's page shows are those the worker sent, before and after a
rotation of the secret, with the custom headers' values hidden."""

from __future__ import annotations

import time
from dataclasses import replace

from producer.activity import SentEvent
from producer.dashboard.delivery_page import HIDDEN, sent_attempts
from producer.deliveries import Attempt, AttemptOutcome, Delivery, DeliveryState
from producer.endpoint import Endpoint, EndpointStatus
from producer.endpoint_rules import ROTATION_GRACE_S, new_secret
from producer.jobs import DeliveryItem
from producer.signing import cliq_signature, request_headers

NOW_MS = int(time.time() * 1000)
BODY = b'{"id":"evt_1","type":"issue.created"}'
EVENT = SentEvent("evt_1", "issue.created", "ws_1", NOW_MS, BODY)


def endpoint(**fields: object) -> Endpoint:
    base = Endpoint(
        id="ep_1",
        workspace_id="ws_1",
        url="https://hooks.example.com/cliq",
        secret=new_secret(),
        events=("*",),
        owner_email="o@example.com",
        description="",
        status=EndpointStatus.ACTIVE,
        created_ms=NOW_MS - 10 * 86_400_000,
        updated_ms=NOW_MS - 10 * 86_400_000,
        headers=(("Authorization", "Bearer s3cret"),),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def delivery(at_ms: int) -> Delivery:
    attempt = Attempt(1, at_ms, 200, None, 3.0, "ok", AttemptOutcome.DELIVERED)
    return Delivery("dlv_1", "evt_1", "ep_1", DeliveryState.DELIVERED, 1, at_ms, (attempt,))


def test_the_headers_are_the_workers_own_with_custom_values_hidden() -> None:
    at_ms = NOW_MS - 60_000
    hook = endpoint()
    (shown,) = sent_attempts(delivery(at_ms), hook, EVENT)
    sent = request_headers(
        hook, "evt_1", "issue.created", DeliveryItem("dlv_1", 1), BODY, at_ms / 1000
    )
    headers = dict(shown.headers)
    assert headers["Authorization"] == HIDDEN
    assert "s3cret" not in str(shown.headers)
    assert hook.secret not in str(shown.headers)
    assert {k: v for k, v in headers.items() if k not in ("Authorization", "User-Agent")} == {
        k: v for k, v in sent.items() if k != "Authorization"
    }
    assert headers["User-Agent"].startswith("cliq-webhooks/")
    assert shown.caveat is None


def test_an_attempt_before_a_rotation_shows_the_old_secrets_signature() -> None:
    old, rotated_ms = new_secret(), NOW_MS - 3_600_000
    hook = endpoint(
        previous_secret=old,
        previous_secret_until_ms=rotated_ms + ROTATION_GRACE_S * 1000,
        updated_ms=rotated_ms,
    )
    (before,) = sent_attempts(delivery(rotated_ms - 60_000), hook, EVENT)
    headers = dict(before.headers)
    assert headers["X-Cliq-Signature"] == cliq_signature(old, BODY)
    assert "X-Cliq-Signature-New" not in headers
    assert len(headers["webhook-signature"].split()) == 1
    assert before.caveat is not None
    assert "previous secret" in before.caveat

    (after,) = sent_attempts(delivery(rotated_ms + 60_000), hook, EVENT)
    headers = dict(after.headers)
    # During the grace period: the old secret's X-Cliq-Signature, the new one's -New.
    assert headers["X-Cliq-Signature"] == cliq_signature(old, BODY)
    assert headers["X-Cliq-Signature-New"] == cliq_signature(hook.secret, BODY)
    assert len(headers["webhook-signature"].split()) == 2


def test_without_the_endpoint_or_the_event_no_headers_are_made_up() -> None:
    (shown,) = sent_attempts(delivery(NOW_MS), None, EVENT)
    assert shown.headers == ()
    (shown,) = sent_attempts(delivery(NOW_MS), endpoint(), None)
    assert shown.headers == ()
