"""The destination policy where endpoints are registered (API, CLI) and where they are
delivered to (a real worker): refused at once, with the rule named.

These run with the policy on (``ALLOW_PRIVATE_DESTINATIONS=0``), as in production. Names
used here resolve without leaving the machine: ``localhost`` through the system's
resolver, IP literals not at all. No request is ever sent to a refused address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_api import Client, problem
from test_cli import cli

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.endpoint import EndpointStatus
from producer.http.app import create_app
from producer.http.state import ApiSettings

from harness import Receiver, SmtpServer
from harness.polling import wait_until
from support import make_event, start_worker, worker_env

STRICT = {"ALLOW_PRIVATE_DESTINATIONS": "0"}
FIELDS = {"workspace_id": "ws_1", "events": ["*"], "owner_email": "owner@example.com"}


@pytest.fixture
async def strict_api(redis_url: str) -> AsyncIterator[Any]:
    """Starts APIs with the destination policy on, plus the given settings."""
    clients: list[Client] = []

    async def factory(**env: str) -> Client:
        settings = ApiSettings.from_env({"REDIS_URL": redis_url, **STRICT, **env})
        client: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


async def post_endpoint(api: Client, url: str) -> aiohttp.ClientResponse:
    return await api.post("/v1/endpoints", json={**FIELDS, "url": url})


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            "destination 169.254.169.254 is not a public address: it is link-local, where "
            "cloud metadata services answer (169.254.0.0/16, RFC 3927)",
        ),
        ("http://10.0.0.5/", "it is in a private network (10.0.0.0/8, RFC 1918)"),
        ("http://localhost:1/", "destination localhost resolves to "),
        ("http://[::1]:8080/", "it is loopback (::1/128, RFC 4291)"),
        ("http://[64:ff9b:1::a9fe:a9fe]/", "NAT64 local-use prefix"),
        ("http://[::ffff:0:7f00:1]/", "IPv4-translated address"),
        ("http://[::7f00:1]/", "IPv4-compatible address"),
    ],
    ids=["metadata", "private", "localhost", "ipv6-loopback", "nat64", "translated", "compatible"],
)
async def test_the_api_refuses_non_public_destinations_naming_the_rule(
    strict_api: Any, url: str, rule: str
) -> None:
    api = await strict_api()
    body = await problem(await post_endpoint(api, url), 422, "destination-refused")
    assert rule in body["detail"]
    assert body["detail"].endswith(
        "set ALLOW_PRIVATE_DESTINATIONS=1, or add its network to ALLOWED_PRIVATE_NETWORKS, "
        "to deliver there"
    )
    assert body["errors"] == [{"field": "url", "message": body["detail"]}]
    listed = await api.get("/v1/endpoints")
    assert (await listed.json())["items"] == []


async def test_an_allowlist_entry_or_allowing_private_destinations_accepts_them(
    strict_api: Any,
) -> None:
    allowlisted = await strict_api(ALLOWED_PRIVATE_NETWORKS="10.0.0.0/8, 127.0.0.0/8, ::1")
    for url in ("http://10.0.0.5/", "http://localhost:1/"):
        response = await post_endpoint(allowlisted, url)
        assert response.status == 201, await response.text()
        assert (await response.json())["status"] == "active"
    refused = await post_endpoint(allowlisted, "http://192.168.1.1/")
    await problem(refused, 422, "destination-refused")
    open_api = await strict_api(ALLOW_PRIVATE_DESTINATIONS="1")
    assert (await post_endpoint(open_api, "http://169.254.169.254/")).status == 201


async def test_a_public_address_is_accepted_and_a_url_change_is_checked(strict_api: Any) -> None:
    api = await strict_api()
    created = await post_endpoint(api, "https://93.184.216.34/hook")
    assert created.status == 201, await created.text()
    endpoint_id = (await created.json())["id"]
    changed = await api.patch(f"/v1/endpoints/{endpoint_id}", json={"url": "http://localhost/"})
    body = await problem(changed, 422, "destination-refused")
    assert "localhost resolves to" in body["detail"]
    shown = await (await api.get(f"/v1/endpoints/{endpoint_id}")).json()
    assert shown["url"] == "https://93.184.216.34/hook"
    renamed = await api.patch(f"/v1/endpoints/{endpoint_id}", json={"description": "kept"})
    assert renamed.status == 200


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0177.0.0.1"])
async def test_legacy_ipv4_forms_are_refused_whatever_the_policy(
    strict_api: Any, host: str
) -> None:
    api = await strict_api(ALLOW_PRIVATE_DESTINATIONS="1")
    body = await problem(await post_endpoint(api, f"http://{host}:8080/"), 422, "invalid-fields")
    assert f"host {host} is not a canonical IPv4 address" in body["detail"]


def test_the_cli_refuses_with_exit_status_2_and_the_rule(redis_url: str) -> None:
    args = ["endpoint", "add", "--workspace", "ws_1", "--events", "*", "--email", "o@example.com"]
    refused = cli(redis_url, *args, "--url", "http://10.0.0.5/", "--json", **STRICT)
    assert refused.returncode == 2
    assert "url: destination 10.0.0.5 is not a public address" in refused.stderr
    assert "(10.0.0.0/8, RFC 1918); set ALLOW_PRIVATE_DESTINATIONS=1" in refused.stderr
    assert refused.stdout == ""
    flagged = cli(
        redis_url,
        *args,
        "--url",
        "http://10.0.0.5/",
        "--allowed-private-networks",
        "10.0.0.0/24",
        "--json",
        **STRICT,
    )
    assert flagged.returncode == 0, flagged.stderr
    legacy = cli(redis_url, *args, "--url", "http://127.1/")
    assert legacy.returncode == 2
    assert "host 127.1 is not a canonical IPv4 address" in legacy.stderr


async def test_a_destination_refused_at_delivery_is_dead_at_once_and_its_owner_told(
    strict_api: Any, producer: Producer, receiver: Receiver, smtp_server: SmtpServer
) -> None:
    # Registered while the API allows 127.0.0.1; the worker has no such entry.
    api = await strict_api(ALLOWED_PRIVATE_NETWORKS="127.0.0.1/32")
    created = await post_endpoint(api, receiver.url())
    assert created.status == 201, await created.text()
    endpoint_id = (await created.json())["id"]
    env = worker_env(producer.settings.effective_redis_url, SMTP_URL=smtp_server.url, **STRICT)
    worker = await start_worker(env)  # five attempts (the test schedule)
    try:
        await producer.publisher.publish(make_event(producer, data={}))

        async def dead() -> bool:
            found = await producer.deliveries.for_endpoint(endpoint_id)
            return bool(found) and found[0].state == DeliveryState.DEAD

        await wait_until(dead, 10, message="the delivery did not die")
        await wait_until(lambda: len(smtp_server.messages) >= 1, 10, message="no email")
        (delivery,) = await producer.deliveries.for_endpoint(endpoint_id)
        assert len(delivery.attempts) == 1  # not retried
        (attempt,) = delivery.attempts
        assert attempt.error == (
            "refused: destination 127.0.0.1 is not a public address: it is loopback "
            "(127.0.0.0/8, RFC 1122)"
        )
        assert attempt.next_attempt_ms is None
        assert (await producer.endpoints.get(endpoint_id)).status == EndpointStatus.FAILING
        (message,) = smtp_server.messages
        assert message.rcpt_tos == ("owner@example.com",)
        assert message.subject == f"[cliq-webhooks] Webhook endpoint {endpoint_id} is failing"
        assert "refused\nby the destination policy" in message.text
        assert "Attempts:   1 " in message.text
        assert f"Last error: {attempt.error}" in message.text
    finally:
        await worker.stop()
    assert receiver.received == []
