"""The aiohttp receiver process: ``python -m bench.sinkserver --port P [--record]``.

Without ``--record`` it answers every POST with 200 and nothing else; several such
processes share one port (``SO_REUSEPORT``) when nginx is not installed. With
``--record`` it also notes when each event id first arrived, for the latency
scenario, and ``GET /arrivals`` returns (and forgets) those times as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

from aiohttp import web

from worker.cli import run_event_loop

READY = "sink listening"


def build_app(record: bool) -> web.Application:
    """The receiver: 200 for every POST, plus arrival times when ``record`` is set."""
    arrivals: dict[str, float] = {}

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

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
    app.router.add_post("/{tail:.*}", recording if record else ok)
    if record:
        app.router.add_get("/arrivals", take_arrivals)
    return app


async def serve(port: int, record: bool) -> int:
    """Serve on ``127.0.0.1:port`` until SIGTERM or SIGINT."""
    runner = web.AppRunner(build_app(record), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=1024).start()
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
        await runner.cleanup()
    return 0


def main() -> int:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", action="store_true", help="record arrival times")
    args = parser.parse_args()
    return run_event_loop(serve(args.port, args.record))


if __name__ == "__main__":
    raise SystemExit(main())
