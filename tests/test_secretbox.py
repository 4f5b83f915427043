"""Secrets at rest: a Redis dump alone does not reveal them when a key is set."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as aioredis

from producer.context import Producer
from producer.secretbox import SecretBox, SecretBoxError, new_key, parse_key
from producer.settings import ProducerSettings, SettingsError

from harness import Receiver
from support import make_event, start_worker, worker_env


def test_seal_and_open_round_trip_and_tampering_is_detected() -> None:
    box = SecretBox(parse_key(new_key()))
    sealed = box.seal("whsec_abc")
    assert sealed.startswith("enc:v1:")
    assert "whsec_abc" not in sealed
    assert box.seal("whsec_abc") != sealed  # a fresh nonce each time
    assert box.open(sealed) == "whsec_abc"
    with pytest.raises(SecretBoxError, match="does not open"):
        SecretBox(parse_key(new_key())).open(sealed)
    with pytest.raises(SecretBoxError, match="not set"):
        SecretBox().open(sealed)
    assert SecretBox().open("whsec_plain") == "whsec_plain"  # written before a key existed


def test_a_bad_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as caught:
        ProducerSettings.from_env({"SECRET_ENCRYPTION_KEY": "not-a-real-key-value"})
    assert "SECRET_ENCRYPTION_KEY=<hidden>" in str(caught.value)
    assert "not-a-real-key-value" not in str(caught.value)


async def test_stored_secrets_are_sealed_and_deliveries_still_verify(
    redis_url: str, redis: aioredis.Redis, receiver: Receiver, tmp_path: Path
) -> None:
    key = new_key()
    settings = ProducerSettings.from_env(
        {"REDIS_URL": redis_url, "SECRET_ENCRYPTION_KEY": key, "ALLOW_PRIVATE_DESTINATIONS": "1"}
    )
    async with Producer(settings) as producer:
        endpoint = await producer.endpoints.create(
            workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
        )
        # No grace period: X-Cliq-Signature is made with the rotated secret at once.
        rotated = await producer.endpoints.rotate_secret(endpoint.id, grace_s=0)
        dump = cast(dict[str, str], await redis.hgetall(producer.keys.endpoint(endpoint.id)))
        assert endpoint.secret not in str(dump)
        assert rotated.secret not in str(dump)
        assert dump["secret"].startswith("enc:v1:")
        assert (await producer.endpoints.get(endpoint.id)).secret == rotated.secret

        worker = await start_worker(
            worker_env(redis_url, SECRET_ENCRYPTION_KEY=key, NOTIFY_OUTBOX=str(tmp_path))
        )
        try:
            await producer.publisher.publish(make_event(producer, data={}))
            (request,) = await receiver.wait_for(1, 10)
        finally:
            await worker.stop()
    expected = hmac.new(rotated.secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Cliq-Signature"] == expected
