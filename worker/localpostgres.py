"""A private, throwaway PostgreSQL for the demo: Debian's server programs (``make
postgres`` installs them), ``initdb`` in a temporary folder, ``postgres`` on a free
loopback port, stopped by its PID and removed afterwards.

As root (``initdb`` and ``postgres`` refuse to run as root) both run as the ``postgres``
user, which then owns the folder. Durability is off: it is a demo server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from worker.lifeline import tied_to_parent
from worker.localredis import free_port

SUPERUSER = "cliq"
_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=30")


def find_postgres_bindir() -> Path | None:
    """The folder of ``initdb`` and ``postgres`` (``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``), or ``None`` when they are not installed."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            )
            candidates.append(Path(out.stdout.strip()))
    found = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates + found:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def _become(uid: int, gid: int) -> None:
    """In the child, before exec: run as that account (groups first, while still root)."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


class LocalPostgres:
    """``postgres`` on a free 127.0.0.1 port with its own data folder; ``url`` once started."""

    def __init__(self, bindir: Path) -> None:
        self._bindir = bindir
        root = os.geteuid() == 0
        # As root the server runs as `postgres`, which must reach its folder: TMPDIR may be
        # a folder only root can enter (pytest's are), /tmp is open to every account.
        # Named after this process: what a killed one leaves there can be found.
        self._dir = Path(
            tempfile.mkdtemp(prefix=f"cliq-pg-{os.getpid()}-", dir="/tmp" if root else None)
        )
        self.port = free_port()
        self.url = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        self._process: asyncio.subprocess.Process | None = None
        self._user: dict[str, Any] = {}
        become: Callable[[], None] | None = None
        if root:
            account = pwd.getpwnam("postgres")
            os.chown(self._dir, account.pw_uid, account.pw_gid)
            # preexec_fn rather than user=/group=: uvloop's subprocesses (the bench's
            # loop) take only the former.
            become = functools.partial(_become, account.pw_uid, account.pw_gid)
            self._user = {"preexec_fn": become}
        # The server ends (fast shutdown) with this process even when it is killed and
        # cannot stop it; its backends follow the postmaster.
        self._server_preexec = tied_to_parent(signal.SIGINT, become)

    async def start(self, timeout_s: float = 60.0) -> None:
        """initdb, then the server; returns once it accepts connections."""
        data = self._dir / "data"
        initdb = await asyncio.create_subprocess_exec(
            str(self._bindir / "initdb"),
            *("-D", str(data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"),
            *("--locale=C", "--no-sync"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self._dir,
            **self._user,
        )
        _, err = await asyncio.wait_for(initdb.communicate(), timeout_s)
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {err.decode(errors='replace').strip()}")
        settings = [arg for setting in _SETTINGS for arg in ("-c", setting)]
        self._process = await asyncio.create_subprocess_exec(
            str(self._bindir / "postgres"),
            *("-D", str(data), "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self._dir)),
            *settings,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self._dir,
            preexec_fn=self._server_preexec,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = await asyncpg.connect(self.url, timeout=2)
            except (OSError, asyncpg.PostgresError):
                if time.monotonic() > deadline or self._process.returncode is not None:
                    await self.stop()
                    raise RuntimeError(f"postgres did not start on port {self.port}") from None
                await asyncio.sleep(0.1)
                continue
            await conn.close()
            return

    async def stop(self) -> None:
        """Fast shutdown of the server this object started (SIGINT, by its PID), then
        remove its folder."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self._process.wait(), 20)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)
