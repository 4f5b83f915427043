"""A real DNS server on 127.0.0.1 (UDP) whose answers a test controls, and a resolver for it.

The server answers A and AAAA questions from a table, NXDOMAIN for names it does not
know, and nothing at all for the names in ``silent`` (a resolver's timeout). The resolver
is an aiohttp :class:`AbstractResolver` that sends real queries to it, so code that takes
an aiohttp resolver resolves through real DNS packets without leaving the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import struct

from aiohttp.abc import AbstractResolver, ResolveResult

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
RCODE_NXDOMAIN = 3
HEADER = struct.Struct("!HHHHHH")


def encode_name(name: str) -> bytes:
    """A domain name in wire format (length-prefixed labels, then a zero byte)."""
    labels = [label.encode("ascii") for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def decode_question(packet: bytes) -> tuple[int, str, int, int]:
    """The id, name, type and end offset of a query's single question."""
    query_id = HEADER.unpack_from(packet)[0]
    offset, labels = HEADER.size, []
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    qtype, _qclass = struct.unpack_from("!HH", packet, offset + 1)
    return query_id, ".".join(labels).lower(), qtype, offset + 5


class DnsServer(asyncio.DatagramProtocol):
    """Answers from ``records`` (name -> addresses); counts the questions it got."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.silent: set[str] = set()
        self.questions: list[tuple[str, int]] = []
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        """Listen on a free 127.0.0.1 UDP port."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def stop(self) -> None:
        """Stop listening."""
        if self._transport is not None:
            self._transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        query_id, name, qtype, end = decode_question(data)
        self.questions.append((name, qtype))
        if name in self.silent or self._transport is None:
            return
        rcode = 0 if name in self.records else RCODE_NXDOMAIN
        answers = [
            ipaddress.ip_address(a).packed
            for a in self.records.get(name, [])
            if (ipaddress.ip_address(a).version == 4) == (qtype == TYPE_A)
        ]
        header = HEADER.pack(query_id, 0x8180 | rcode, 1, len(answers), 0, 0)
        body = b"".join(
            struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, 0, len(rdata)) + rdata
            for rdata in answers
        )
        self._transport.sendto(header + data[HEADER.size : end] + body, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if not self.reply.done():
            self.reply.set_result(data)


class DnsResolver(AbstractResolver):
    """Resolves by asking a :class:`DnsServer` (or any DNS server) at ``127.0.0.1:port``.

    Like ``getaddrinfo``: an unknown name, or one without addresses, raises
    ``socket.gaierror``. It waits as long as its caller lets it (no timeout of its own).
    """

    def __init__(self, port: int) -> None:
        self._port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of ``host``: A for AF_INET, AAAA for AF_INET6, both for AF_UNSPEC."""
        kinds = {socket.AF_INET: [TYPE_A], socket.AF_INET6: [TYPE_AAAA]}.get(
            family, [TYPE_A, TYPE_AAAA]
        )
        results: list[ResolveResult] = []
        for qtype in kinds:
            for address in await self._query(host, qtype):
                results.append(
                    ResolveResult(
                        hostname=host,
                        host=address,
                        port=port,
                        family=socket.AF_INET if qtype == TYPE_A else socket.AF_INET6,
                        proto=0,
                        flags=socket.AI_NUMERICHOST,
                    )
                )
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return results

    async def _query(self, host: str, qtype: int) -> list[str]:
        query_id = secrets.randbits(16)
        packet = HEADER.pack(query_id, 0x0100, 1, 0, 0, 0) + encode_name(host)
        packet += struct.pack("!HH", qtype, CLASS_IN)
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_datagram_endpoint(
            _Client, remote_addr=("127.0.0.1", self._port)
        )
        try:
            transport.sendto(packet)
            reply = await client.reply
        finally:
            transport.close()
        flags, _, count = HEADER.unpack_from(reply)[1:4]
        if flags & 0xF == RCODE_NXDOMAIN:
            return []
        offset = decode_question(reply)[3]
        addresses = []
        for _ in range(count):
            _type, _class, _ttl, length = struct.unpack_from("!HHIH", reply, offset + 2)
            rdata = reply[offset + 12 : offset + 12 + length]
            addresses.append(str(ipaddress.ip_address(rdata)))
            offset += 12 + length
        return addresses

    async def close(self) -> None:
        """Nothing to release: each query has its own socket."""
