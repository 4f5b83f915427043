"""The SSRF guard: which addresses deliveries may reach, at registration and on connecting."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from producer.addresses import embedded_ipv4, rfc6052_extract
from producer.context import Producer
from producer.destinations import (
    DestinationPolicy,
    DestinationRefused,
    GuardedResolver,
    RegistrationCheck,
    is_public,
    parse_networks,
)
from producer.endpoint_rules import DestinationError, EndpointError, validate_url
from producer.settings import ProducerSettings
from worker.sender import Sender

from harness import Receiver
from harness.dns import DnsResolver, DnsServer
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


# ---------------------------------------------------------------- IPv4 inside IPv6

# (RFC, address, the IPv4 address it carries, permitted): the embedded address is judged.
EMBEDDINGS = [
    ("RFC 4291 IPv4-mapped", "::ffff:127.0.0.1", "127.0.0.1", False),
    ("RFC 4291 IPv4-mapped", "::ffff:169.254.169.254", "169.254.169.254", False),
    ("RFC 4291 IPv4-mapped", "::ffff:8.8.8.8", "8.8.8.8", True),
    ("RFC 6145 IPv4-translated", "::ffff:0:7f00:1", "127.0.0.1", False),
    ("RFC 6145 IPv4-translated", "::ffff:0:a00:5", "10.0.0.5", False),
    ("RFC 6145 IPv4-translated", "::ffff:0:808:808", "8.8.8.8", True),
    ("RFC 4291 IPv4-compatible", "::7f00:1", "127.0.0.1", False),
    ("RFC 4291 IPv4-compatible", "::a9fe:a9fe", "169.254.169.254", False),
    ("RFC 4291 IPv4-compatible", "::808:808", "8.8.8.8", True),
    ("RFC 6052 well-known NAT64 /96", "64:ff9b::a9fe:a9fe", "169.254.169.254", False),
    ("RFC 6052 well-known NAT64 /96", "64:ff9b::7f00:1", "127.0.0.1", False),
    ("RFC 6052 well-known NAT64 /96", "64:ff9b::808:808", "8.8.8.8", True),
    ("RFC 8215 local-use, RFC 6052 /96", "64:ff9b:1::a9fe:a9fe", "169.254.169.254", False),
    ("RFC 8215 local-use, RFC 6052 /48", "64:ff9b:1:a9fe:a9:fe00::", "169.254.169.254", False),
    ("RFC 8215 local-use, RFC 6052 /56", "64:ff9b:1:aba9:fe:a9fe::", "169.254.169.254", False),
    ("RFC 8215 local-use, RFC 6052 /64", "64:ff9b:1:abcd:a9:fea9:fe00:0", "169.254.169.254", False),
    # A non-zero u octet rules out /48 to /64: only the /96 reading remains.
    ("RFC 8215 local-use, RFC 6052 /96 only", "64:ff9b:1:abcd:ff00::808:808", "8.8.8.8", True),
    # A zero one leaves /48 too, whose reading here is 0.0.0.0: refused (fail closed).
    ("RFC 8215 local-use, RFC 6052 /48 reading", "64:ff9b:1::808:808", "0.0.0.0", False),
    ("RFC 3056 6to4", "2002:7f00:1::1", "127.0.0.1", False),
    ("RFC 3056 6to4", "2002:a9fe:a9fe::1", "169.254.169.254", False),
    ("RFC 3056 6to4", "2002:808:808::1", "8.8.8.8", True),
    ("RFC 4380 Teredo, client", "2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1", False),
    ("RFC 4380 Teredo, server", "2001:0:a00:5::f7f7:f7f7", "10.0.0.5", False),
    ("RFC 4380 Teredo, both public", "2001:0:4136:e378:8000:63bf:f7f7:f7f7", "8.8.8.8", True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rfc", "address", "carried", "permitted"),
    EMBEDDINGS,
    ids=[f"{row[0]}: {row[1]}" for row in EMBEDDINGS],
)
def test_ipv6_forms_of_ipv4_are_judged_by_the_ipv4_address_they_carry(
    rfc: str, address: str, carried: str, permitted: bool
) -> None:
    found = embedded_ipv4(ipaddress.IPv6Address(address))
    assert found is not None
    form, inner = found
    assert ipaddress.IPv4Address(carried) in inner
    assert rfc.split()[1] in form.rfc  # the number of the RFC that defines the form
    why = DestinationPolicy().refusal(address)
    assert (why is None) is permitted, why
    if not permitted:
        assert f"for {carried}, which is " in (why or "")
        assert form.describe() in (why or "")


# RFC 6052 section 2.4's own examples: 192.0.2.33 after a prefix of each length.
RFC6052_EXAMPLES = [
    (32, "2001:db8:c000:221::"),
    (40, "2001:db8:1c0:2:21::"),
    (48, "2001:db8:122:c000:2:2100::"),
    (56, "2001:db8:122:3c0:0:221::"),
    (64, "2001:db8:122:344:c0:2:2100:0"),
    (96, "2001:db8:122:344::192.0.2.33"),
]


@pytest.mark.parametrize(("prefix_length", "address"), RFC6052_EXAMPLES)
def test_rfc6052_embedding_skips_the_u_octet(prefix_length: int, address: str) -> None:
    extracted = rfc6052_extract(ipaddress.IPv6Address(address), prefix_length)
    assert extracted == ipaddress.IPv4Address("192.0.2.33")


def test_the_unspecified_and_loopback_addresses_are_themselves_not_ipv4_compatible() -> None:
    assert DestinationPolicy().refusal("::1") == "loopback (::1/128, RFC 4291)"
    assert DestinationPolicy().refusal("::") == "the unspecified address (::/128, RFC 4291)"


def test_an_allowlisted_ipv4_network_covers_its_ipv6_forms() -> None:
    policy = DestinationPolicy(parse_networks("10.0.0.0/8"))
    assert policy.permits("::ffff:10.0.0.5")
    assert policy.permits("2002:a00:5::1")
    assert not policy.permits("::ffff:127.0.0.1")


@pytest.mark.parametrize(
    ("address", "named"),
    [
        ("fec0::1", "site-local (deprecated) (fec0::/10, RFC 3879)"),
        ("4000::1", "outside the global unicast space (2000::/3, RFC 4291)"),
        ("3fff::1", "reserved for documentation (3fff::/20, RFC 9637)"),
        ("198.18.0.1", "reserved for benchmarking (198.18.0.0/15, RFC 2544)"),
        ("10.0.0.5", "in a private network (10.0.0.0/8, RFC 1918)"),
    ],
)
def test_a_refusal_names_the_range_and_its_rfc(address: str, named: str) -> None:
    assert DestinationPolicy().refusal(address) == named


# ---------------------------------------------------------------- legacy IPv4 forms


LEGACY_HOSTS = ["2130706433", "127.1", "0177.0.0.1", "0x7f.0.0.1", "017700000001"]


@pytest.mark.parametrize("host", LEGACY_HOSTS)
def test_legacy_ipv4_forms_are_refused_at_registration(host: str) -> None:
    with pytest.raises(
        EndpointError, match=re.escape(f"host {host} is not a canonical IPv4 address")
    ):
        validate_url(f"http://{host}:8080/hook")


@pytest.mark.parametrize("host", ["127.0.0.1", "hooks.example.com", "1.2.3.4.example", "[::1]"])
def test_canonical_hosts_pass_url_validation(host: str) -> None:
    assert validate_url(f"http://{host}/hook")


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0177.0.0.1"])
async def test_workers_refuse_the_same_forms_with_the_same_words(
    receiver: Receiver, host: str
) -> None:
    sender = Sender(timeout_s=2, max_connections=4, policy=None, user_agent="test")
    await sender.start()
    try:
        url = f"http://{host}:{receiver.port}/hook"
        response = await sender.post(url, b"{}", {})
    finally:
        await sender.close()
    assert "is not a canonical IPv4 address" in (response.error or "")
    assert receiver.received == []


# ---------------------------------------------------------------- at registration


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    """A real DNS server on 127.0.0.1 whose answers the test sets."""
    server = DnsServer()
    await server.start()
    try:
        yield server
    finally:
        server.stop()


def registration(dns: DnsServer, allowed: str = "", timeout_s: float = 2.0) -> RegistrationCheck:
    policy = DestinationPolicy(parse_networks(allowed))
    return RegistrationCheck(policy, DnsResolver(dns.port), timeout_s)


async def test_a_name_is_checked_on_every_address_it_resolves_to(dns: DnsServer) -> None:
    dns.records["hooks.example"] = ["93.184.216.34", "2606:4700:4700::1111"]
    dns.records["hooks.internal"] = ["10.1.2.3"]
    dns.records["mixed.example"] = ["93.184.216.34", "fd00::1"]
    check = registration(dns)
    await check.check("hooks.example", 443)
    assert ("hooks.example", 1) in dns.questions  # A
    assert ("hooks.example", 28) in dns.questions  # AAAA: workers may connect over either
    with pytest.raises(DestinationRefused) as refused:
        await check.check("hooks.internal", 443)
    assert str(refused.value) == (
        "destination hooks.internal resolves to 10.1.2.3, which is not a public address: it is "
        "in a private network (10.0.0.0/8, RFC 1918); set ALLOW_PRIVATE_DESTINATIONS=1, or add "
        "its network to ALLOWED_PRIVATE_NETWORKS, to deliver there"
    )
    with pytest.raises(DestinationRefused, match=r"resolves to fd00::1, .* unique-local"):
        await check.check("mixed.example", 443)
    await registration(dns, allowed="10.1.0.0/16").check("hooks.internal", 443)


async def test_a_name_that_does_not_resolve_is_refused(dns: DnsServer) -> None:
    with pytest.raises(DestinationRefused, match=r"typo\.example does not resolve"):
        await registration(dns).check("typo.example", 443)
    dns.silent.add("slow.example")
    with pytest.raises(DestinationRefused, match=r"slow\.example did not resolve within 0\.2 s"):
        await registration(dns, timeout_s=0.2).check("slow.example", 443)


async def test_with_every_destination_allowed_nothing_is_resolved(dns: DnsServer) -> None:
    await RegistrationCheck(None, DnsResolver(dns.port)).check("typo.example", 443)
    await RegistrationCheck(None).check("10.0.0.5", 80)
    assert dns.questions == []


async def test_localhost_is_refused_through_the_systems_resolver() -> None:
    check = RegistrationCheck(DestinationPolicy())  # getaddrinfo, as workers resolve
    try:
        with pytest.raises(DestinationRefused, match=r"localhost resolves to (127\.0\.0\.1|::1)"):
            await check.check("localhost", 80)
        await RegistrationCheck(DestinationPolicy(parse_networks("127.0.0.0/8,::1"))).check(
            "localhost", 80
        )
    finally:
        await check.close()


async def test_the_registry_refuses_a_destination_and_stores_nothing(
    redis_url: str, dns: DnsServer
) -> None:
    dns.records["hooks.example"] = ["93.184.216.34"]
    dns.records["hooks.internal"] = ["192.168.7.7"]
    settings = ProducerSettings.from_env({"REDIS_URL": redis_url})
    async with Producer(settings, resolver=DnsResolver(dns.port)) as producer:
        fields: dict[str, Any] = {
            "workspace_id": "ws_1", "events": ["*"], "owner_email": "o@example.com"
        }  # fmt: skip
        with pytest.raises(DestinationError) as refused:
            await producer.endpoints.create(url="http://hooks.internal/x", **fields)
        assert refused.value.field == "url"
        assert "192.168.0.0/16, RFC 1918" in refused.value.message
        assert await producer.endpoints.all() == []
        endpoint = await producer.endpoints.create(url="https://hooks.example/x", **fields)
        with pytest.raises(DestinationError, match=r"192\.168\.7\.7"):
            await producer.endpoints.update(endpoint.id, url="http://hooks.internal/y")
        assert (await producer.endpoints.get(endpoint.id)).url == "https://hooks.example/x"
        # An edit that keeps the URL does not resolve it again (DNS may be down meanwhile).
        dns.silent.add("hooks.example")
        asked = len(dns.questions)
        changed = await producer.endpoints.update(endpoint.id, description="renamed")
        assert changed.description == "renamed"
        assert len(dns.questions) == asked
