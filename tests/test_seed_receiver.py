"""The seed's own Express receiver (real Node.js) accepts every delivery we send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from producer.events import parse_event

from harness import NodeReceiverFactory
from support import producer_for, start_worker, worker_env

# Values whose JSON differs between Python and JavaScript unless normalized.
TRICKY_DATA: list[dict[str, Any]] = [
    {"title": "Grüße aus Köln", "emoji": "🎉🚀", "cjk": "漢字", "rtl": "שלום"},
    {"nested": {"deep": {"deeper": [1, [2, [3, {"x": None}]]]}}, "empty": {}, "list": []},
    {"int": 42, "negative": -7, "max_safe": 2**53 - 1, "zero": 0},
    {"float": 0.1, "small": 1e-7, "tiny": 5e-324, "huge": 1e21, "big": 1.5e16, "third": 1 / 3},
    {"integral_float": 1.0, "negative_zero": -0.0, "sci": 123e-20},
    {"b": 1, "10": "ten", "2": "two", "a": 3, "-1": "not an index", "01": "not an index"},
    {
        "controls": "tab\there\nnew\x01\x1f",
        "quotes": "\"'\\",
        "separators": "\u2028\u2029",
        "del": "\x7f",
    },
]


async def test_seed_verify_signature_accepts_every_delivery(
    redis_url: str, node_receiver_factory: NodeReceiverFactory, tmp_path: Path
) -> None:
    async with producer_for(redis_url) as producer:
        endpoint = await producer.endpoints.create(
            workspace_id="ws_1",
            url="https://placeholder.example/",
            events=["*"],
            owner_email="o@example.com",
        )
        node = await node_receiver_factory(endpoint.secret)
        await producer.endpoints.update(endpoint.id, url=node.url)
        worker = await start_worker(worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path)))
        try:
            events = [
                parse_event(
                    {"type": "issue.updated", "workspace_id": "ws_1", "data": data},
                    producer.catalogue,
                    max_payload_bytes=256 * 1024,
                )
                for data in TRICKY_DATA
            ]
            await producer.publisher.publish_many(events)
            received = await node.wait_for(len(events), 20)
        finally:
            await worker.stop()
    assert {r["event_id"] for r in received} == {e.id for e in events}
    invalid = [r for r in received if not r["valid"]]
    assert invalid == [], invalid
