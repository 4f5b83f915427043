"""Per-endpoint custom headers and timeout, through a real worker and a real receiver."""

from __future__ import annotations

from pathlib import Path

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.secretbox import new_key
from producer.settings import ProducerSettings

from harness import ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from support import make_event, start_worker, worker_env


async def test_custom_headers_arrive_and_the_endpoints_timeout_cuts_the_attempt(
    redis_url: str, producer: Producer, receiver_factory: ReceiverFactory, tmp_path: Path
) -> None:
    receiver = await receiver_factory()
    ep = await producer.endpoints.create(
        workspace_id="ws_1",
        url=receiver.url(),
        events=["*"],
        owner_email="o@example.com",
        headers=[("Authorization", "Bearer receiver-token"), ("X-Team", "billing")],
        timeout_s=0.5,
    )
    # The receiver answers the first request after 1.5 s: later than the endpoint's 0.5 s,
    # well within the workers' DELIVERY_TIMEOUT of 5 s.
    receiver.script(ScriptedResponse(delay_s=1.5))
    worker = await start_worker(
        worker_env(
            redis_url, DELIVERY_TIMEOUT="5", RETRY_SCHEDULE="0,0.1", NOTIFY_OUTBOX=str(tmp_path)
        )
    )
    try:
        published = await producer.publisher.publish(make_event(producer))

        async def delivered() -> bool:
            (d,) = await producer.deliveries.for_event(published.event_id)
            return d.state == DeliveryState.DELIVERED

        await wait_until(delivered, 15, message="not delivered on the second attempt")
    finally:
        await worker.stop()
    (delivery,) = await producer.deliveries.for_event(published.event_id)
    first, second = delivery.attempts
    assert first.error == "timeout: no complete answer within 0.5s"
    assert first.latency_ms < 1400
    assert second.status == 200
    for request in receiver.received:
        assert request.headers["Authorization"] == "Bearer receiver-token"
        assert request.headers["X-Team"] == "billing"
        # Ours are intact beside them.
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Cliq-Delivery"] == delivery.id
    assert ep.id == delivery.endpoint_id


async def test_custom_header_values_are_sealed_at_rest(redis_url: str) -> None:
    settings = ProducerSettings.from_env(
        {
            "REDIS_URL": redis_url,
            "SECRET_ENCRYPTION_KEY": new_key(),
            "ALLOW_PRIVATE_DESTINATIONS": "1",
        }
    )
    async with Producer(settings) as producer:
        ep = await producer.endpoints.create(
            workspace_id="ws_1",
            url="http://127.0.0.1:9/cliq",
            events=["*"],
            owner_email="o@example.com",
            headers=[("Authorization", "Bearer receiver-token")],
        )
        stored = await producer.redis.hgetall(producer.keys.endpoint(ep.id))
        assert "receiver-token" not in str(stored)
        assert (await producer.endpoints.get(ep.id)).headers == (
            ("Authorization", "Bearer receiver-token"),
        )
