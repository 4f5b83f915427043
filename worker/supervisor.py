"""``cliq-webhooks worker --processes N``: several worker processes on one machine.

The supervisor starts N ``python -m worker`` children, restarts any that dies
(with a growing pause if it keeps dying), and serves one ``/metrics`` that adds
them up (prometheus-client's multiprocess mode: each child writes its values to
files in a private folder). ``/healthz`` is 200 while every child runs. SIGTERM or
SIGINT is passed on to the children, which drain; the supervisor waits for them
for ``SHUTDOWN_GRACE`` plus a margin, then kills what is left. A child that exits 2
(bad configuration: a Redis that may evict keys) stops them all, with status 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from producer.backoff import restart_pause_s
from producer.health import liveness, readiness
from worker.settings import WorkerSettings

log = structlog.get_logger("cliq.worker.supervisor")

KILL_MARGIN_S = 5.0
# A child's exit status for bad configuration (cli.main), such as a Redis that may
# evict keys: restarting it would not help, so the supervisor stops with it.
EXIT_BAD_CONFIGURATION = 2


class Child:
    """One worker process and its restart bookkeeping."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.pause_s = 0.0

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.returncode is None


class Supervisor:
    """Keeps N workers running and serves their metrics as one."""

    def __init__(self, settings: WorkerSettings, processes: int, env: Mapping[str, str]) -> None:
        self._settings = settings
        self._env = dict(env)
        self._children = [Child(i) for i in range(processes)]
        self._stop = asyncio.Event()
        self._metrics_dir = tempfile.mkdtemp(prefix="cliq-metrics-")
        self._refused = False

    async def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; returns 0 after a clean stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        runner = await self._serve_metrics()
        try:
            for child in self._children:
                await self._start(child)
            log.info("supervisor_started", processes=len(self._children))
            while not self._stop.is_set():
                waits = [
                    asyncio.ensure_future(c.process.wait()) for c in self._children if c.process
                ]
                stop = asyncio.ensure_future(self._stop.wait())
                await asyncio.wait([*waits, stop], return_when=asyncio.FIRST_COMPLETED)
                for task in [*waits, stop]:
                    task.cancel()
                if not self._stop.is_set():
                    await self._restart_dead()
            return await self._shutdown()
        finally:
            if runner is not None:
                await runner.cleanup()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    async def _start(self, child: Child) -> None:
        env = {
            **self._env,
            "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir,
            "METRICS_PORT": "0",  # the supervisor serves the metrics of all children
        }
        child.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", env=env
        )
        child.started_at = time.monotonic()
        log.info("child_started", child=child.index, pid=child.process.pid)

    async def _restart_dead(self) -> None:
        for child in self._children:
            if child.running or child.process is None:
                continue
            pid, code = child.process.pid, child.process.returncode
            mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]
            if code == EXIT_BAD_CONFIGURATION:
                log.error("child_refused_to_start", child=child.index, pid=pid, exit_code=code)
                self._refused = True
                self._stop.set()
                return
            child.pause_s = restart_pause_s(child.pause_s, time.monotonic() - child.started_at)
            child.restarts += 1
            log.warning(
                "child_died", child=child.index, pid=pid, exit_code=code, restart_in_s=child.pause_s
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), child.pause_s)
            if self._stop.is_set():
                return
            await self._start(child)

    async def _shutdown(self) -> int:
        log.info("supervisor_stopping")
        alive = [c.process for c in self._children if c.running and c.process]
        for process in alive:
            process.send_signal(signal.SIGTERM)
        deadline = self._settings.shutdown_grace + KILL_MARGIN_S
        _done, pending = await asyncio.wait(
            [asyncio.ensure_future(p.wait()) for p in alive], timeout=deadline
        )
        if pending:
            log.warning("children_killed", count=len(pending))
            for process in alive:
                if process.returncode is None:
                    process.kill()
            await asyncio.gather(*(p.wait() for p in alive))
        codes = [p.returncode for p in alive]
        log.info("supervisor_stopped", exit_codes=codes)
        if self._refused:
            return EXIT_BAD_CONFIGURATION
        # -SIGTERM: a child still starting up, before its handler was installed.
        return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1

    async def _serve_metrics(self) -> web.AppRunner | None:
        if self._settings.metrics_port == 0:
            return None

        async def metrics(_request: web.Request) -> web.Response:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self._metrics_dir)  # type: ignore[no-untyped-call]
            return web.Response(
                body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        def children() -> tuple[bool, dict[str, object]]:
            alive = [c.running for c in self._children]
            ok = all(alive) and not self._stop.is_set()
            pids = [c.process.pid for c in self._children if c.running and c.process]
            restarts = sum(c.restarts for c in self._children)
            return ok, {"children": len(alive), "pids": pids, "restarts": restarts}

        async def healthz(_request: web.Request) -> web.Response:
            ok, details = children()
            return liveness(ok, **details)

        async def readyz(_request: web.Request) -> web.Response:
            ok, details = children()
            return readiness(ok, **details)

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self._settings.metrics_host, self._settings.metrics_port).start()
        return runner
