"""A real Prometheus scrapes two worker processes and the API, with the project's rules.

It gets the real prometheus.yml (job names, rule files) with the targets pointed at
this test's processes, 1 s intervals, and a copy of the alert rules whose ``for:`` is
1 s: the expressions are the real ones, only the waiting is compressed.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from producer.context import Producer
from producer.endpoint import EndpointStatus
from producer.http.app import create_app
from producer.http.state import ApiSettings

from deploy_checks import PROMETHEUS, load_yaml
from harness import ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from harness.prometheus import PrometheusServer, PrometheusUnavailable
from support import LOG_WRITER_COMMAND, WorkerProcess, worker_env

EVENTS = 30
API_JOB = "cliq-webhooks-api"
WORKER_JOB = "cliq-webhooks-worker"
LOG_WRITER_JOB = "cliq-webhooks-log-writer"


def compressed_alerts(directory: Path) -> Path:
    """A copy of alerts.yml with every ``for:`` shortened to 1 s."""
    rules = load_yaml(PROMETHEUS / "rules" / "alerts.yml")
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path = directory / "alerts.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def scrape_config(targets: dict[str, list[str]], alerts: Path) -> dict[str, Any]:
    """The real prometheus.yml, scraping ``targets`` (job -> host:port) every second."""
    config: dict[str, Any] = copy.deepcopy(load_yaml(PROMETHEUS / "prometheus.yml"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS / "rules" / "recording.yml"), str(alerts)]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(targets)
    for name, job in jobs.items():
        for discovery in [key for key in job if key.endswith("_sd_configs")]:
            del job[discovery]
        job["static_configs"] = [{"targets": targets[name]}]
    return config


async def failing_alerts(server: PrometheusServer) -> list[dict[str, Any]]:
    """The CliqEndpointsFailing alerts, pending or firing."""
    return [a for a in await server.alerts() if a["labels"]["alertname"] == "CliqEndpointsFailing"]


@pytest.fixture
async def prometheus_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    return directory


@pytest.fixture
async def api_port(redis_url: str) -> AsyncIterator[int]:
    """The HTTP API on a free 127.0.0.1 port."""
    settings = ApiSettings.from_env({"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1"})
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(create_app(settings), host="127.0.0.1", port=0)
    )
    await client.start_server()
    try:
        assert client.port is not None
        yield client.port
    finally:
        await client.close()


@pytest.mark.timeout(120)
async def test_prometheus_counts_what_receivers_got_and_fires_the_failing_endpoint_alert(
    redis_url: str,
    producer: Producer,
    receiver_factory: ReceiverFactory,
    api_port: int,
    prometheus_dir: Path,
    tmp_path: Path,
) -> None:
    good = await receiver_factory()
    bad = await receiver_factory(default=ScriptedResponse(status=500, body="boom"))
    await producer.endpoints.create(
        workspace_id="ws_1", url=good.url(), events=["issue.*"], owner_email="o@example.com"
    )
    broken = await producer.endpoints.create(
        workspace_id="ws_1", url=bad.url(), events=["comment.created"], owner_email="o@example.com"
    )
    env = worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path / "outbox"))
    workers: list[WorkerProcess] = []
    server: PrometheusServer | None = None
    try:
        workers += [WorkerProcess(env, tmp_path / f"worker{n}.log") for n in (1, 2)]
        # Without DATABASE_URL a log-writer has nothing to write, but it serves its metrics.
        writer = WorkerProcess(env, tmp_path / "log-writer.log", LOG_WRITER_COMMAND)
        workers.append(writer)
        server = PrometheusServer(
            scrape_config(
                {
                    API_JOB: [f"127.0.0.1:{api_port}"],
                    WORKER_JOB: [f"127.0.0.1:{w.metrics_port}" for w in workers[:2]],
                    LOG_WRITER_JOB: [f"127.0.0.1:{writer.metrics_port}"],
                },
                compressed_alerts(prometheus_dir),
            ),
            prometheus_dir,
        )
        try:
            await server.start()
        except PrometheusUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)

        async def all_targets_up() -> bool:
            up = {
                job: await server.scalar(f'sum(up{{job="{job}"}})')
                for job in (WORKER_JOB, API_JOB, LOG_WRITER_JOB)
            }
            return up == {WORKER_JOB: 2, API_JOB: 1, LOG_WRITER_JOB: 1}

        await wait_until(all_targets_up, 30, interval=0.2, message="targets not scraped")
        assert not await failing_alerts(server)

        async with aiohttp.ClientSession() as http:
            for n in range(EVENTS):
                body = {"type": "issue.created", "workspace_id": "ws_1", "data": {"n": n}}
                async with http.post(f"http://127.0.0.1:{api_port}/v1/events", json=body) as r:
                    assert r.status == 202, await r.text()
            body = {"type": "comment.created", "workspace_id": "ws_1", "data": {"n": 0}}
            async with http.post(f"http://127.0.0.1:{api_port}/v1/events", json=body) as r:
                assert r.status == 202, await r.text()

        await good.wait_for(EVENTS, 30)

        async def prometheus_counts_every_delivery() -> bool:
            delivered = await server.scalar('sum(cliq_deliveries_total{outcome="delivered"})')
            return delivered == len(good.received)

        await wait_until(
            prometheus_counts_every_delivery, 30, interval=0.2, message="delivered count differs"
        )
        assert len(good.received) == EVENTS

        # The API is a target of its own, scraped on its own schedule.
        async def prometheus_counts_every_publish() -> bool:
            published = await server.scalar("sum(cliq_api_events_published_total)")
            return published == EVENTS + 1

        await wait_until(
            prometheus_counts_every_publish, 15, interval=0.2, message="published count differs"
        )
        # The recording rules the dashboard reads are computed from the real series.

        async def recorded() -> bool:
            rate = await server.scalar('cliq:deliveries:rate5m{outcome="delivered"}')
            return rate is not None and rate > 0

        await wait_until(recorded, 15, interval=0.2, message="recording rules produced nothing")
        # Both workers are scraped separately and their counters add up.
        per_worker = await server.query(f'sum by (instance) (cliq_worker_up{{job="{WORKER_JOB}"}})')
        assert sorted(float(s["value"][1]) for s in per_worker) == [1.0, 1.0]

        # The comment goes to the broken endpoint: 5 attempts on the compressed schedule.
        await bad.wait_for(5, 30)

        async def endpoint_failing() -> bool:
            return (await producer.endpoints.get(broken.id)).status == EndpointStatus.FAILING

        await wait_until(endpoint_failing, 15, message="endpoint not failing")

        async def failing_alert_fires() -> bool:
            return any(a["state"] == "firing" for a in await failing_alerts(server))

        await wait_until(failing_alert_fires, 30, interval=0.2, message="alert did not fire")
        (alert,) = await failing_alerts(server)
        assert alert["labels"] == {"alertname": "CliqEndpointsFailing", "severity": "warning"}
        assert alert["annotations"]["summary"] == "1 webhook endpoint(s) failing"
        # Only the broken endpoint's attempts count against delivery; none was delivered.
        assert await server.scalar('sum(cliq_deliveries_total{outcome="dead"})') == 1
        assert await server.scalar('sum(cliq_deliveries_total{outcome="delivered"})') == EVENTS
    finally:
        if server is not None:
            server.stop()
        for worker in workers:
            worker.kill()
