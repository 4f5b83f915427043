"""``cliq-webhooks listen`` end to end: the real command in a subprocess, the API on
127.0.0.1 (with a key), a private Redis, and real local servers behind it: a Python
receiver that checks the signatures and scripts failures, and the seed's Express
receiver in Node.js. Ctrl-C is a real SIGINT, a killed ``listen`` a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_api import Client

from producer.http.app import create_app
from producer.http.state import ApiSettings
from producer.signing import verify_standard

from harness import NodeReceiverFactory, Receiver
from harness.polling import wait_until
from harness.processes import stop_process
from support import PROJECT

KEY = "listen-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Client]:
    settings = ApiSettings.from_env({"REDIS_URL": redis_url, "API_KEYS": KEY})
    client: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
    await client.start_server()
    yield client
    await client.close()


class Listen:
    """``python -m cli listen …`` with its output in files, stopped by its PID."""

    def __init__(self, api: Client, tmp_path: Path, *args: str) -> None:
        self.out = tmp_path / f"listen-{time.monotonic_ns()}.out"
        self.err = self.out.with_suffix(".err")
        env = {
            **os.environ,
            "API_URL": str(api.make_url("")).rstrip("/"),
            "API_KEY": KEY,
            "LISTEN_RETRY_SCHEDULE": "0.1,0.2",
            "LOG_LEVEL": "warning",
        }
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "listen", *args],
                cwd=PROJECT,
                env=env,
                stdout=out,
                stderr=err,
            )

    def output(self) -> str:
        return self.out.read_text()

    def describe(self) -> str:
        return f"stdout:\n{self.output()}\nstderr:\n{self.err.read_text()}"

    async def started(self) -> None:
        def listening() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"listen exited {self.process.returncode}\n{self.describe()}")
            return "Listening on" in self.output()

        await wait_until(listening, 15, message="listen did not start")

    def header(self) -> tuple[str, str]:
        """The endpoint id and the secret it printed."""
        endpoint = re.search(r"Listening on (ep_\w+)", self.output())
        secret = re.search(r"Secret: (whsec_\S+)", self.output())
        assert endpoint is not None, self.describe()
        assert secret is not None, self.describe()
        return endpoint.group(1), secret.group(1)

    async def interrupt(self) -> int:
        """Ctrl-C; its exit status (waited for without blocking the API it calls)."""
        self.process.send_signal(signal.SIGINT)
        await wait_until(lambda: self.process.poll() is not None, 15, message="listen kept on")
        return self.process.returncode

    async def kill(self) -> None:
        self.process.kill()
        await wait_until(lambda: self.process.poll() is not None, 15, message="not killed")


@pytest.fixture
def listens() -> Iterator[list[Listen]]:
    started: list[Listen] = []
    yield started
    for listen in started:
        stop_process(listen.process, 10)


async def publish(api: Client, workspace: str, *events: tuple[str, str]) -> None:
    body = [
        {"id": event_id, "type": event_type, "workspace_id": workspace, "data": {"id": event_id}}
        for event_id, event_type in events
    ]
    response = await api.post("/v1/events", json=body, headers=AUTH)
    assert response.status == 202, await response.text()


async def backlog(api: Client, endpoint_id: str) -> int:
    response = await api.get(f"/v1/endpoints/{endpoint_id}/messages", headers=AUTH)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return int(body["backlog"])


def first_seen(event_ids: list[str]) -> list[str]:
    """Each id once, in the order it first arrived."""
    return list(dict.fromkeys(event_ids))


async def test_listen_forwards_signed_deliveries_in_order_retries_and_cleans_up(
    api: Client, receiver: Receiver, tmp_path: Path, listens: list[Listen]
) -> None:
    receiver.respond(500, "not yet", times=2)  # the first delivery fails twice
    listen = Listen(
        api, tmp_path, "--forward-to", receiver.url(), "--workspace", "ws_l", "--events", "issue.*"
    )
    listens.append(listen)
    await listen.started()
    endpoint_id, secret = listen.header()
    await publish(
        api,
        "ws_l",
        ("evt_l1", "issue.created"),
        ("evt_lc", "comment.created"),  # not subscribed to
        ("evt_l2", "issue.updated"),
    )
    await publish(api, "ws_l", ("evt_l3", "issue.deleted"))
    received = await receiver.wait_for(5, 15)
    for request in received:
        verify_standard(secret, request.headers, request.body, now_s=time.time())
        assert request.headers["User-Agent"].startswith("cliq-webhooks/")
    ids = [request.json()["id"] for request in received]
    assert ids[:3] == ["evt_l1"] * 3  # retried until 2xx before the next one
    assert first_seen(ids) == ["evt_l1", "evt_l2", "evt_l3"]

    async def drained() -> bool:
        return await backlog(api, endpoint_id) == 0

    await wait_until(drained, 10, message="listen did not acknowledge every delivery")
    lines = listen.output().splitlines()
    assert any(" issue.created  evt_l1  500 " in line and "retry in" in line for line in lines)
    assert any(re.search(r" issue.deleted  evt_l3  200  \d+ ms$", line) for line in lines), lines

    assert await listen.interrupt() == 0, listen.describe()
    assert f"Deleted {endpoint_id}." in listen.output()
    gone = await api.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH)
    assert gone.status == 404


async def test_the_seed_receiver_verifies_every_delivery_and_a_killed_listen_loses_nothing(
    api: Client,
    node_receiver_factory: NodeReceiverFactory,
    tmp_path: Path,
    listens: list[Listen],
) -> None:
    response = await api.post(
        "/v1/endpoints",
        json={"workspace_id": "ws_n", "kind": "poll", "events": ["*"]},
        headers=AUTH,
    )
    created = await response.json()
    assert response.status == 201, created
    endpoint_id = created["id"]
    node = await node_receiver_factory(created["secret"])
    first = [(f"evt_n{i}", "issue.created") for i in range(6)]
    await publish(api, "ws_n", *first)

    killed = Listen(api, tmp_path, "--endpoint", endpoint_id, "--forward-to", node.url)
    listens.append(killed)
    await killed.started()
    await node.wait_for(2, 15)
    await killed.kill()
    later = [(f"evt_n{i}", "comment.created") for i in range(6, 9)]
    await publish(api, "ws_n", *later)

    resumed = Listen(api, tmp_path, "--endpoint", endpoint_id, "--forward-to", node.url)
    listens.append(resumed)
    await resumed.started()

    async def drained() -> bool:
        return await backlog(api, endpoint_id) == 0

    await wait_until(drained, 20, message="the resumed listen did not drain the feed")
    received = await node.received()
    assert [r for r in received if not r["valid"]] == []
    # At least once: what the killed listen forwarded but had not acknowledged comes again.
    assert first_seen([r["event_id"] for r in received]) == [e for e, _ in first + later]
    assert await resumed.interrupt() == 0, resumed.describe()
    # Not created by this listen: left in place.
    kept = await api.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH)
    assert kept.status == 200


async def test_print_only_prints_bodies_and_forwards_nothing(
    api: Client, tmp_path: Path, listens: list[Listen]
) -> None:
    listen = Listen(api, tmp_path, "--print-only", "--workspace", "ws_p")
    listens.append(listen)
    await listen.started()
    endpoint_id, _ = listen.header()
    await publish(api, "ws_p", ("evt_p1", "project.created"))

    def printed() -> bool:
        return '"id":"evt_p1"' in listen.output()

    await wait_until(printed, 10, message="listen --print-only printed nothing")
    body_line = next(line for line in listen.output().splitlines() if '"id":"evt_p1"' in line)
    assert json.loads(body_line)["type"] == "project.created"
    assert await listen.interrupt() == 0, listen.describe()
    assert (await api.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH)).status == 404


def test_listen_needs_one_destination_and_a_reachable_api() -> None:
    for args in ([], ["--print-only", "--forward-to", "http://127.0.0.1:9/x"]):
        usage = subprocess.run(
            [sys.executable, "-m", "cli", "listen", *args],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert usage.returncode == 2, usage
        assert "--forward-to" in usage.stderr
    result = subprocess.run(
        [sys.executable, "-m", "cli", "listen", "--print-only", "--api-url", "http://127.0.0.1:9"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result
    assert "cannot reach the API at http://127.0.0.1:9" in result.stderr
