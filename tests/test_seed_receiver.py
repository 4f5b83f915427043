"""The seed's own Express receiver (real Node.js) accepts every delivery we send."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from producer.events import parse_event

from harness import NodeReceiverFactory
from harness.polling import wait_until
from support import PROJECT, make_event, producer_for, start_worker, worker_env

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


# Compressed: the grace period the API defaults to a day.
ROTATION_GRACE_S = 4


async def test_seed_receiver_keeps_verifying_across_a_rotation(
    redis_url: str, node_receiver_factory: NodeReceiverFactory, tmp_path: Path
) -> None:
    """Old secret until the grace period ends (the seed's receiver holds one secret),
    then the new one: a receiver switched at ``signature_switches_at`` never sees a 401."""
    async with producer_for(redis_url) as producer:
        endpoint = await producer.endpoints.create(
            workspace_id="ws_1",
            url="https://placeholder.example/",
            events=["*"],
            owner_email="o@example.com",
        )
        old_node = await node_receiver_factory(endpoint.secret)
        await producer.endpoints.update(endpoint.id, url=old_node.url)
        worker = await start_worker(worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path)))
        try:
            await producer.publisher.publish(make_event(producer))
            await old_node.wait_for(1, 20)
            rotated = await producer.endpoints.rotate_secret(endpoint.id, ROTATION_GRACE_S)
            switch_s = rotated.previous_secret_until_ms / 1000
            # During the grace period: the receiver still holding the old secret verifies.
            in_grace = [await producer.publisher.publish(make_event(producer)) for _ in range(3)]
            during = await old_node.wait_for(4, ROTATION_GRACE_S / 2)
            assert time.time() < switch_s, "deliveries took longer than the grace period"
            # After it: the receiver switched to the new secret, as it was told to.
            new_node = await node_receiver_factory(rotated.secret)
            await producer.endpoints.update(endpoint.id, url=new_node.url)
            await wait_until(lambda: time.time() > switch_s, ROTATION_GRACE_S + 1)
            after = [await producer.publisher.publish(make_event(producer)) for _ in range(3)]
            switched = await new_node.wait_for(3, 20)
        finally:
            await worker.stop()
    assert {r["event_id"] for r in during} >= {p.event_id for p in in_grace}
    assert {r["event_id"] for r in switched} == {p.event_id for p in after}
    invalid = [r for r in during + switched if not r["valid"]]
    assert invalid == [], invalid


def readme_rotation_receiver() -> str:
    """The README's "accept either secret" receiver, as a runnable CommonJS script: the
    README's block between the Express setup and a listener, plus a record of answers."""
    readme = (PROJECT / "README.md").read_text()
    section = readme[readme.index("### Rotating a secret") :]
    block = section[section.index("```js\n") + len("```js\n") :]
    block = block[: block.index("```")]
    return "\n".join(
        [
            "const express = require('express');",
            "const crypto = require('crypto');",
            "const app = express();",
            "app.use(express.json());",
            "const received = [];",
            "app.post('/webhooks/cliq', (req, res, next) => {",
            "  res.on('finish', () => received.push({",
            "    valid: res.statusCode === 200, event_id: req.body?.id ?? null,",
            "    type: req.body?.type ?? null, signature: req.headers['x-cliq-signature'] ?? null,",
            "  }));",
            "  next();",
            "});",
            block,
            "app.get('/received', (req, res) => res.json(received));",
            "const server = app.listen(0, '127.0.0.1', () => {",
            "  console.log(String(server.address().port));",
            "});",
            "process.on('SIGTERM', () => { server.close(() => process.exit(0)); "
            "server.closeAllConnections(); });",
        ]
    )


async def test_the_readme_receiver_accepts_either_secret_during_the_switch(
    redis_url: str, node_receiver_factory: NodeReceiverFactory, tmp_path: Path
) -> None:
    script = tmp_path / "either.cjs"
    script.write_text(readme_rotation_receiver())
    async with producer_for(redis_url) as producer:
        endpoint = await producer.endpoints.create(
            workspace_id="ws_1",
            url="https://placeholder.example/",
            events=["*"],
            owner_email="o@example.com",
        )
        rotated = await producer.endpoints.rotate_secret(endpoint.id, ROTATION_GRACE_S)
        switch_s = rotated.previous_secret_until_ms / 1000
        # Given both secrets at the rotation, it never needs to be told the exact moment.
        node = await node_receiver_factory(
            endpoint.secret, script, {"CLIQ_WEBHOOK_SECRET_NEW": rotated.secret}
        )
        await producer.endpoints.update(endpoint.id, url=node.url)
        worker = await start_worker(worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path / "out")))
        try:
            during = [await producer.publisher.publish(make_event(producer)) for _ in range(2)]
            in_grace = await node.wait_for(2, ROTATION_GRACE_S / 2)
            assert time.time() < switch_s, "deliveries took longer than the grace period"
            await wait_until(lambda: time.time() > switch_s, ROTATION_GRACE_S + 1)
            after = [await producer.publisher.publish(make_event(producer)) for _ in range(2)]
            received = await node.wait_for(4, 20)
        finally:
            await worker.stop()
    assert {r["event_id"] for r in in_grace} == {p.event_id for p in during}
    assert {r["event_id"] for r in received} == {p.event_id for p in during + after}
    invalid = [r for r in received if not r["valid"]]
    assert invalid == [], invalid
    # After the switch X-Cliq-Signature is the new secret's: the receiver took either.
    assert len({r["signature"] for r in received}) == 4
