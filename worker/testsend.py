"""``send-test``: the seed's "Send Test Event", answered with the receiver's response.

The test event is signed and sent like a real delivery, but directly: it is not
queued, retried or recorded, so it cannot turn an endpoint failing.
"""

from __future__ import annotations

import time
from typing import Any

from producer.context import Producer
from producer.events import example_data, parse_event
from producer.jobs import DeliveryItem
from producer.publisher import new_delivery_id
from worker import __version__
from worker.delivery import request_headers
from worker.sender import Sender
from worker.settings import WorkerSettings


async def send_test_event(
    settings: WorkerSettings, endpoint_id: str, event_type: str
) -> dict[str, Any]:
    """POST a test event of ``event_type`` to the endpoint; return what came back."""
    async with Producer(settings.producer) as producer:
        endpoint = await producer.endpoints.get(endpoint_id)
        event = parse_event(
            {
                "type": event_type,
                "workspace_id": endpoint.workspace_id,
                "data": example_data(event_type),
            },
            producer.catalogue,
            max_payload_bytes=settings.producer.max_payload_bytes,
        )
    sender = Sender(
        timeout_s=settings.delivery_timeout,
        max_connections=1,
        policy=settings.destination_policy,
        user_agent=f"cliq-webhooks/{__version__}",
    )
    await sender.start()
    try:
        item = DeliveryItem(new_delivery_id(), 1)
        headers = request_headers(endpoint, event.id, event.type, item, event.body, time.time())
        response = await sender.post(endpoint.url, event.body, headers)
    finally:
        await sender.close()
    return {
        "endpoint_id": endpoint.id,
        "event_id": event.id,
        "event_type": event.type,
        "ok": response.ok,
        "status": response.status,
        "error": response.error,
        "latency_ms": round(response.duration_s * 1000, 3),
        "response": response.excerpt,
    }
