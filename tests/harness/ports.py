"""Free loopback ports for the servers the tests start, never the shared servers' own."""

from __future__ import annotations

import socket

# The machine's shared Redis and PostgreSQL: tests never listen on, or talk to, these.
SYSTEM_PORTS = frozenset({6379, 5432})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (never a shared server's)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in SYSTEM_PORTS:
            return port
