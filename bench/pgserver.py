"""The bench's own PostgreSQL, for the runs with ``DATABASE_URL``: the demo's throwaway
server (:class:`worker.localpostgres.LocalPostgres`: ``initdb`` in a temporary folder, a
free loopback port, stopped by its PID), one fresh migrated database per run."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from bench.procs import PYTHON, BenchError
from worker.localpostgres import LocalPostgres, find_postgres_bindir


class BenchPostgres:
    """A started private server; :meth:`fresh_database` makes each run's database."""

    def __init__(self, server: LocalPostgres) -> None:
        self._server = server

    async def fresh_database(self) -> str:
        """A new, migrated database of the server; its URL."""
        name = "bench_" + secrets.token_hex(4)
        admin = await asyncpg.connect(self._server.url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        url = self._server.url.rsplit("/", 1)[0] + "/" + name
        # As an operator would (its log line stays off the bench's stdout, the table's).
        done = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "cli", "migrate",
            env={**os.environ, "DATABASE_URL": url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await done.communicate()
        if done.returncode != 0:
            raise BenchError(f"cliq-webhooks migrate failed: {output.decode(errors='replace')}")
        return url


@asynccontextmanager
async def bench_postgres() -> AsyncIterator[BenchPostgres]:
    """Start the private server, stop it (and remove its folder) at the end."""
    bindir = find_postgres_bindir()
    if bindir is None:
        raise BenchError("PostgreSQL's initdb and postgres are not installed (make postgres)")
    server = LocalPostgres(bindir)
    try:
        await server.start()
    except RuntimeError as exc:
        raise BenchError(f"the bench's PostgreSQL did not start: {exc}") from exc
    try:
        yield BenchPostgres(server)
    finally:
        await server.stop()
