"""Managed Redis over TLS: ``rediss://`` URLs work for the producer and the workers."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from worker.localredis import free_port

from harness import Receiver
from harness.tls import self_signed
from support import make_event, producer_for, start_worker, worker_env


@pytest.fixture
def tls_redis_url(tmp_path: Path) -> Iterator[str]:
    """A private ``redis-server`` that speaks TLS only, and its ``rediss://`` URL."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (make system-deps)"
    cert, key = self_signed(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            *("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"),
            *("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
            *("--tls-auth-clients", "no", "--save", "", "--dir", str(tmp_path)),
            *("--maxmemory-policy", "noeviction"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}"
    try:
        deadline = time.monotonic() + 10
        while not asyncio.run(_answers(url)):
            assert process.poll() is None, "redis-server with TLS did not start"
            assert time.monotonic() < deadline, "redis-server with TLS did not answer"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(await client.ping())
    except (OSError, aioredis.ConnectionError):
        return False
    finally:
        await client.aclose()


async def test_publish_and_deliver_through_a_tls_only_redis(
    tls_redis_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    async with producer_for(tls_redis_url) as producer:
        await producer.endpoints.create(
            workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
        )
        worker = await start_worker(worker_env(tls_redis_url, NOTIFY_OUTBOX=str(tmp_path)))
        try:
            result = await producer.publisher.publish(make_event(producer, data={"tls": True}))
            (request,) = await receiver.wait_for(1, 15)
        finally:
            assert await worker.stop() == 0
    assert request.json()["id"] == result.event_id


async def test_a_certificate_that_is_not_trusted_is_refused(tls_redis_url: str) -> None:
    untrusted = tls_redis_url.split("&ssl_ca_certs=")[0]  # the system CAs do not know it
    async with producer_for(untrusted) as producer:
        with pytest.raises(aioredis.ConnectionError, match="certificate verify failed"):
            await producer.redis.ping()
