"""The HTTP sinks deliveries are POSTed to, started and stopped by the benchmark.

The throughput sink must never be the bottleneck, so it is nginx when installed
(one process, ``return 200``, no logging) and otherwise several aiohttp processes
sharing one port. The latency scenario uses a single recording aiohttp process,
which notes each event's arrival time (nginx cannot tell us that). The isolation
and retry-timing scenarios start their own misbehaving receivers for one run: one
that never answers, one that answers 503.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.procs import PYTHON, BenchError, Child
from bench.sinkserver import READY
from worker.localredis import free_port

# Debian installs nginx in /usr/sbin, which is not on every user's PATH.
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
AIOHTTP_SINK_PROCESSES = 2

NGINX_CONF = """\
# One process without a master, so the benchmark's PID is the one serving (and the
# one whose CPU time it reads). Unlimited keep-alive: reconnecting is not measured.
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{
            return 200 "ok";
        }}
    }}
}}
"""


def find_nginx() -> str | None:
    """The nginx binary, or None when it is not installed."""
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@dataclass
class Sink:
    """A running receiver: where to POST, and the processes that serve it."""

    kind: str
    port: int
    children: list[Child]

    @property
    def url(self) -> str:
        """The base URL (any path answers)."""
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU seconds used by all of the sink's processes so far."""
        return sum(child.cpu_seconds() for child in self.children)

    def check_alive(self) -> None:
        """Raise if a process of the sink has exited."""
        for child in self.children:
            if not child.running:
                raise child.failure("exited")

    async def stop(self) -> None:
        """Stop every process of the sink, by PID."""
        for child in self.children:
            await child.stop()


def nginx_argv(nginx: str, workdir: Path, port: int) -> list[str]:
    """Write the config into ``workdir``; the command line that serves it in the foreground."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=port))
    return [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]


async def start_nginx(nginx: str, workdir: Path) -> Sink:
    """nginx on a free loopback port, with its config and files in ``workdir``."""
    port = free_port()
    child = Child("nginx sink", nginx_argv(nginx, workdir, port), log=workdir / "stderr.log")
    sink = Sink("nginx", port, [child])
    try:
        await child.wait_for_port(port)
    except BenchError:
        await sink.stop()
        raise
    return sink


async def start_aiohttp(
    workdir: Path,
    processes: int,
    *,
    record: bool = False,
    status: int = 200,
    delay_ms: float = 0.0,
) -> Sink:
    """``processes`` aiohttp receivers sharing one free loopback port; logs in ``workdir``.

    They answer ``status`` to every POST (``delay_ms`` after reading it), or record
    arrivals (``record``).
    """
    port = free_port()
    argv = [PYTHON, "-m", "bench.sinkserver", "--port", str(port)]
    if record:
        argv.append("--record")
        role = "recorder"
    elif status != 200:
        argv += ["--status", str(status)]
        role = f"sink-{status}"
    else:
        role = "sink"
    if delay_ms:
        argv += ["--delay-ms", str(delay_ms)]
        role += f"-slow{delay_ms:g}ms"
    children = [
        Child(f"aiohttp {role} {n}", argv, log=workdir / f"{role}-{n}.log")
        for n in range(processes)
    ]
    return await ready(Sink(f"aiohttp {role} x{processes}", port, children))


async def start_hang_sink(workdir: Path) -> Sink:
    """A receiver that accepts connections and never answers, on a free loopback port."""
    port = free_port()
    argv = [PYTHON, "-m", "bench.sinkserver", "--port", str(port), "--hang"]
    child = Child("hanging sink", argv, log=workdir / "sink-hang.log")
    return await ready(Sink("hanging", port, [child]))


async def ready(sink: Sink) -> Sink:
    """Wait until every process of ``sink`` says it listens; stop them all if one fails."""
    try:
        for child in sink.children:
            await child.wait_for_output(READY)
    except BenchError:
        await sink.stop()
        raise
    return sink


@asynccontextmanager
async def temporary(starting: Awaitable[Sink]) -> AsyncIterator[Sink]:
    """A sink for one run: ``async with temporary(start_hang_sink(dir)) as sink``."""
    sink = await starting
    try:
        yield sink
    finally:
        await sink.stop()


async def start_throughput_sink(choice: str, workdir: Path) -> Sink:
    """The sink of the throughput scenarios: ``choice`` is auto, nginx or aiohttp."""
    nginx = find_nginx() if choice in ("auto", "nginx") else None
    if nginx is not None:
        return await start_nginx(nginx, workdir / "nginx")
    if choice == "nginx":
        raise BenchError("nginx is not installed (apt-get install -y nginx-light)")
    return await start_aiohttp(workdir, AIOHTTP_SINK_PROCESSES)
