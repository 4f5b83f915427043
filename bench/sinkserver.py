"""The aiohttp receiver process: ``python -m bench.sinkserver --port P [--record | ...]``.

Without options it answers every POST with 200 and nothing else; several such
processes share one port (``SO_REUSEPORT``) when nginx is not installed. With
``--record`` it also notes when each event id first arrived, for the latency
scenario, and ``GET /arrivals`` returns (and forgets) those times as JSON.
``--status 503`` answers every POST with that status instead (retry-timing).
``--delay-ms D`` answers 200 only D ms after reading the request, like a slow receiver
(fifo: a FIFO endpoint's turn held most of the time, at almost no CPU).
``--hang`` is no HTTP server at all: it accepts connections, reads what comes and
never answers, like a receiver that hangs (isolation); a connection lasts until
the client gives up and closes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from producer.loop import run_event_loop

READY = "sink listening"
READ_CHUNK_BYTES = 64 * 1024

# Stops a server; returned by the functions that start one.
Closer = Callable[[], Awaitable[None]]


def build_app(record: bool, status: int = 200, delay_ms: float = 0.0) -> web.Application:
    """The receiver: ``status`` for every POST (``delay_ms`` after reading it), plus
    arrival times when ``record`` is set."""
    arrivals: dict[str, float] = {}

    async def answer(request: web.Request) -> web.Response:
        if delay_ms:
            await request.read()
            await asyncio.sleep(delay_ms / 1000)
        return web.Response(status=status, text="ok" if status < 300 else "unavailable")

    async def recording(request: web.Request) -> web.Response:
        # The clock is read before the body so parsing does not count as latency.
        now = time.time()
        event_id = json.loads(await request.read())["id"]
        arrivals.setdefault(event_id, now)
        return web.Response(text="ok")

    async def take_arrivals(_request: web.Request) -> web.Response:
        taken = dict(arrivals)
        arrivals.clear()
        return web.json_response(taken)

    app = web.Application()
    app.router.add_post("/{tail:.*}", recording if record else answer)
    if record:
        app.router.add_get("/arrivals", take_arrivals)
    return app


async def start_http(port: int, record: bool, status: int, delay_ms: float = 0.0) -> Closer:
    """The aiohttp receiver on ``127.0.0.1:port``."""
    runner = web.AppRunner(build_app(record, status, delay_ms), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=1024).start()
    return runner.cleanup


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read and discard until the client closes: the request is never answered."""
    try:
        while await reader.read(READ_CHUNK_BYTES):
            pass
    except ConnectionError:
        pass  # the client reset the connection when its timeout expired
    finally:
        writer.close()


async def start_hang(port: int) -> Closer:
    """A TCP server on ``127.0.0.1:port`` that accepts and never answers."""
    server = await asyncio.start_server(hold, "127.0.0.1", port, backlog=1024)

    async def close() -> None:
        # Only stop listening: the connections still open end with the process.
        server.close()

    return close


async def serve(port: int, record: bool, status: int, hang: bool, delay_ms: float = 0.0) -> int:
    """Serve on ``127.0.0.1:port`` until SIGTERM or SIGINT."""
    close = await (start_hang(port) if hang else start_http(port, record, status, delay_ms))
    # The parent waits for this line: with SO_REUSEPORT a successful connect does not
    # tell which of the processes sharing the port is already listening.
    print(READY, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await close()
    return 0


def main() -> int:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--record", action="store_true", help="record arrival times")
    mode.add_argument("--status", type=int, default=200, help="answer every POST with this")
    mode.add_argument("--hang", action="store_true", help="accept, never answer")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="answer this much later")
    args = parser.parse_args()
    return run_event_loop(serve(args.port, args.record, args.status, args.hang, args.delay_ms))


if __name__ == "__main__":
    raise SystemExit(main())
