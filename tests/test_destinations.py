"""The SSRF guard: which addresses deliveries may reach, checked at connection time."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from producer.context import Producer
from worker.destinations import (
    DestinationPolicy,
    DestinationRefused,
    GuardedResolver,
    is_public,
    parse_networks,
)

from harness import Receiver
from harness.polling import wait_until
from support import make_event, start_worker, worker_env


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.1.2.3", "::1",                      # loopback
        "10.0.0.1", "172.16.5.4", "192.168.1.1",               # private
        "169.254.169.254", "fe80::1", "fe80::1%eth0",          # link-local, cloud metadata
        "fc00::1", "fd12:3456::1",                             # unique-local
        "224.0.0.1", "ff02::1",                                # multicast
        "0.0.0.0", "::",                                       # unspecified
        "100.64.0.1", "192.0.2.1", "2001:db8::1", "240.0.0.1",  # shared, documentation, reserved
        "::ffff:127.0.0.1", "::ffff:169.254.169.254",           # IPv4-mapped
        "2002:7f00:1::1", "64:ff9b::a9fe:a9fe",                 # 6to4 / NAT64 forms
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(address)
    assert not DestinationPolicy().permits(address)


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(address)


def test_an_allowlist_opens_exactly_its_networks() -> None:
    policy = DestinationPolicy(parse_networks("10.20.0.0/16, fd00::/8"))
    assert policy.permits("10.20.3.4")
    assert policy.permits("fd00::5")
    assert not policy.permits("10.21.0.1")
    assert not policy.permits("127.0.0.1")


def test_ip_literals_are_checked_before_connecting() -> None:
    policy = DestinationPolicy()
    with pytest.raises(DestinationRefused, match="not a public address"):
        policy.check_literal("169.254.169.254")
    with pytest.raises(DestinationRefused):
        policy.check_literal("[::1]")
    policy.check_literal("example.com")  # names are left to the resolver
    policy.check_literal("93.184.216.34")


class MappingResolver(AbstractResolver):
    """A local resolver: fixed names to fixed addresses (what a rebinding attacker controls)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.table[host]
        ]

    async def close(self) -> None:
        return None


async def test_resolution_to_loopback_is_refused_even_after_a_rebind() -> None:
    names = MappingResolver({"hooks.example": ["93.184.216.34"]})
    resolver = GuardedResolver(DestinationPolicy(), names)
    assert [r["host"] for r in await resolver.resolve("hooks.example", 443)] == ["93.184.216.34"]
    names.table["hooks.example"] = ["127.0.0.1"]  # the attacker's DNS now answers loopback
    with pytest.raises(DestinationRefused, match="non-public addresses only"):
        await resolver.resolve("hooks.example", 443)
    # Mixed answers keep only the public address.
    names.table["hooks.example"] = ["10.0.0.1", "93.184.216.34"]
    assert [r["host"] for r in await resolver.resolve("hooks.example", 443)] == ["93.184.216.34"]


Url = Callable[[Receiver], str]


@pytest.mark.parametrize(
    "url",
    [lambda r: r.url(), lambda r: r.url().replace("127.0.0.1", "localhost")],
    ids=["ip-literal", "name-resolving-to-loopback"],
)
async def test_a_real_worker_refuses_private_destinations(
    producer: Producer, receiver: Receiver, redis_url: str, tmp_path: Path, url: Url
) -> None:
    endpoint = await producer.endpoints.create(
        workspace_id="ws_1", url=url(receiver), events=["*"], owner_email="o@example.com"
    )
    env = worker_env(
        redis_url,
        ALLOW_PRIVATE_DESTINATIONS="0",
        RETRY_SCHEDULE="0,30",
        NOTIFY_OUTBOX=str(tmp_path),
    )
    worker = await start_worker(env)
    try:
        await producer.publisher.publish(make_event(producer, data={}))

        async def attempted() -> bool:
            deliveries = await producer.deliveries.for_endpoint(endpoint.id)
            return bool(deliveries and deliveries[0].attempts)

        await wait_until(attempted, 10, message="no attempt recorded")
    finally:
        await worker.stop()
    (delivery,) = await producer.deliveries.for_endpoint(endpoint.id)
    assert (delivery.attempts[0].error or "").startswith("refused:")
    assert receiver.received == []
