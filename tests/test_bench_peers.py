"""The benchmark's peers (bench/peers.py): what they send, and the table comparing them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bench.peers import NodeQueue, fill_node_queue, node_binary, start_node_worker
from bench.procs import BenchError
from bench.raw_aiohttp import header_maker
from bench.results import Results
from bench.table import build_rows
from bench.workload import sample_body, sample_endpoint
from producer.signing import verify_cliq

from harness import Receiver, ScriptedResponse
from harness.polling import wait_until

JOBS = 30


def test_the_minimal_signer_sends_one_valid_signature_and_nothing_else() -> None:
    endpoint = sample_endpoint("http://127.0.0.1:1")
    body = sample_body()

    headers = header_maker("signature", endpoint, body)(7)

    assert set(headers) == {"Content-Type", "X-Cliq-Signature"}
    verify_cliq(endpoint.secret, body, headers["X-Cliq-Signature"])


def test_the_full_header_client_signs_like_the_worker() -> None:
    endpoint = sample_endpoint("http://127.0.0.1:1")
    body = sample_body()

    headers = header_maker("worker", endpoint, body)(7)

    assert {"webhook-id", "webhook-signature", "X-Cliq-Delivery"} <= set(headers)
    assert headers["X-Cliq-Delivery"] == "dlv_7"
    verify_cliq(endpoint.secret, body, headers["X-Cliq-Signature"])


def node_ready() -> None:
    """Fail (not skip) when Node.js or bench/node's packages are missing, like the receiver."""
    try:
        node_binary()
    except BenchError as exc:
        pytest.fail(f"{exc} (make bench/node/node_modules/.package-lock.json)", pytrace=False)


async def test_the_node_peer_delivers_every_job_signed_and_is_counted(
    redis_url: str, redis: aioredis.Redis, receiver: Receiver, tmp_path: Path
) -> None:
    node_ready()
    body = sample_body()
    secret = sample_endpoint(receiver.base_url).secret
    await fill_node_queue(redis_url, receiver.base_url, body, JOBS, tmp_path)
    queue = NodeQueue(redis, JOBS)
    assert await queue.finished() == 0

    worker = start_node_worker(redis_url, 10, secret, tmp_path / "node.log")
    try:
        await wait_until(lambda: _finished(queue, JOBS), timeout=30, message="jobs pending")
        requests = await receiver.wait_for(JOBS)
    finally:
        status = await worker.stop()

    assert status == 0
    assert len(requests) == JOBS
    for request in requests:
        assert request.method == "POST"
        assert request.body == body
        assert request.headers["Content-Type"] == "application/json"
        verify_cliq(secret, request.body, request.headers["X-Cliq-Signature"])
    assert Counter(r.path for r in requests) == {f"/hook/{n}": JOBS // 10 for n in range(10)}
    assert await queue.failed() == 0
    summary = worker.log.read_text().splitlines()[-1]
    assert json.loads(summary) == {"completed": JOBS, "failed": 0}


async def test_the_node_peer_fails_the_jobs_a_receiver_refuses(
    redis_url: str, redis: aioredis.Redis, receiver: Receiver, tmp_path: Path
) -> None:
    node_ready()
    receiver.default = ScriptedResponse(status=500, body=b"no")
    await fill_node_queue(redis_url, receiver.base_url, sample_body(), 5, tmp_path)
    queue = NodeQueue(redis, 5)

    worker = start_node_worker(redis_url, 5, "whsec_test", tmp_path / "node.log")
    try:
        await wait_until(lambda: _failed(queue, 5), timeout=30, message="jobs not failed")
    finally:
        await worker.stop()

    assert await queue.finished() == 5  # finished, but failed: the bench checks failed()


async def _finished(queue: NodeQueue, count: int) -> bool:
    return await queue.finished() == count


async def _failed(queue: NodeQueue, count: int) -> bool:
    return await queue.failed() == count


def test_the_table_compares_one_worker_with_every_peer_of_the_same_round() -> None:
    results = Results(["raw-signer", "raw-aiohttp", "node-bullmq", "worker-1proc"])
    rates = {"raw-signer": 8000.0, "raw-aiohttp": 6000.0, "node-bullmq": 5000.0}
    for round_, worker_rate in enumerate((4000.0, 4500.0, 3000.0)):
        for name, rate in rates.items():
            results.add(name, round_, run(rate))
        results.add("worker-1proc", round_, {**run(worker_rate), "redis_us": 40.0})

    rows = {row.scenario: row for row in build_rows(results)}

    assert list(rows) == ["raw-signer", "raw-aiohttp", "node-bullmq", "worker-1proc"]
    assert rows["raw-signer"].ratio == "1.00x (ref)"
    assert rows["raw-aiohttp"].ratio == "0.75x raw-signer"
    assert rows["node-bullmq"].ratio == "0.62x raw-signer"
    # Medians of the per-round ratios: 4000 is the middle round against every peer.
    assert rows["worker-1proc"].ratio == "0.80x node-bullmq, 0.50x raw-signer, 0.67x raw-aiohttp"
    assert "C=200" in rows["worker-1proc"].notes
    assert "+ redis 40 µs" in rows["worker-1proc"].notes


def test_the_table_leaves_out_the_peers_that_did_not_run() -> None:
    results = Results(["raw-aiohttp", "worker-1proc"])
    results.add("raw-aiohttp", 0, run(6000.0))
    results.add("worker-1proc", 0, run(3000.0))

    rows = {row.scenario: row for row in build_rows(results)}

    assert rows["raw-aiohttp"].ratio == "1.00x (ref)"
    assert rows["worker-1proc"].ratio == "0.50x raw-aiohttp"


def run(rate: float) -> dict[str, float]:
    """The metrics of one throughput run at ``rate``, one core busy."""
    return {
        "rate": rate,
        "per_cpu_s": rate,
        "concurrency": 200,
        "cpu_client": 1.0,
        "cpu_worker0": 1.0,
        "cpu_redis": 0.2,
        "cpu_sink": 0.1,
        "cpu_other": 0.0,
    }
