"""A private PostgreSQL for the test session, started and stopped by its own PID.

The tests never talk to any other PostgreSQL (a shared one may listen on 5432): every
connection goes to the free loopback port this class picked, to the postmaster it
started from a data folder it made with ``initdb`` in a temporary folder, removed at the
end. As root (initdb and postgres refuse to run as root) both run as the ``postgres``
user, which then owns the folder. Durability is off: it is a test server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg

from .polling import wait_until_sync
from .ports import free_port as free_port  # the tests import it from here too
from .processes import stop_process

SUPERUSER = "cliq"
# Speed over durability; a small server (the machine is shared).
SERVER_SETTINGS: tuple[tuple[str, str], ...] = (
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "50"),
    ("shared_buffers", "128MB"),
    ("log_min_messages", "warning"),
)


class PostgresServerError(RuntimeError):
    """PostgreSQL is missing, or did not start or stop in time."""


def find_bindir() -> Path:
    """The folder of ``initdb`` and ``postgres``: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``; a clear error telling how to install them."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            )
            candidates.append(Path(out.stdout.strip()))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(
        (Path(p) for p in versions), key=lambda p: int(p.parent.name), reverse=True
    )
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise PostgresServerError(
        "PostgreSQL's initdb and postgres were not found (pg_config --bindir, "
        "/usr/lib/postgresql/*/bin); the tests start their own private server and need "
        "them installed (Debian/Ubuntu: `make postgres`, or `apt-get install postgresql`)"
    )


class PostgresServer:
    """``postgres`` on a free 127.0.0.1 port with its own data folder and socket folder.

    ``start()`` runs ``initdb`` (first time) and the postmaster, and waits until the
    postmaster's PID file says it is ours and ready; ``stop()`` asks it for a fast
    shutdown (SIGINT) by its PID and SIGKILLs it if it outlives the deadline.
    """

    def __init__(self, start_timeout_s: float = 60.0, stop_timeout_s: float = 20.0) -> None:
        self._bindir = find_bindir()
        self.directory = Path(tempfile.mkdtemp(prefix="cliq-test-pg-"))
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        # As root, run as postgres (it must own the data folder).
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            self._user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The postmaster's PID (this object started it)."""
        if self._process is None:
            raise PostgresServerError("postgres is not running")
        return self._process.pid

    def url(self, database: str = "postgres") -> str:
        """``postgresql://cliq@127.0.0.1:PORT/database`` (trust authentication)."""
        if self.port == 0:
            raise PostgresServerError("postgres has not been started yet")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle -------------------------------------------------------------------

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self._bindir / args[0]), *args[1:]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=self.start_timeout_s,
            cwd=self.directory,
            check=False,
            **self._user,
        )
        if result.returncode != 0:
            raise PostgresServerError(
                f"{args[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )

    def start(self) -> None:
        """initdb (once), then the postmaster on a free port (a few tries)."""
        if self.running:
            raise PostgresServerError(f"postgres already running (pid {self.pid})")
        if not self.data_dir.exists():
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
        last_error: PostgresServerError | None = None
        for _ in range(3):
            self.port = free_port()
            try:
                self._launch()
            except PostgresServerError as exc:
                last_error = exc
                continue
            return
        assert last_error is not None
        raise last_error

    def restart(self) -> None:
        """Start again after :meth:`stop`, on the same port, so that clients holding its
        URL reconnect (a test of the database going away and coming back)."""
        if self.running:
            raise PostgresServerError(f"postgres already running (pid {self.pid})")
        if self.port == 0:
            raise PostgresServerError("postgres has not been started yet")
        self._launch()

    def _launch(self) -> None:
        settings = [arg for name, value in SERVER_SETTINGS for arg in ("-c", f"{name}={value}")]
        args = [
            str(self._bindir / "postgres"),
            "-D", str(self.data_dir),
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-k", str(self.directory),
            *settings,
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            if self._user:
                os.chown(self.log_file, self._user["user"], self._user["group"])
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, **self._user
            )
        self._process = process
        try:
            wait_until_sync(
                lambda: process.poll() is not None or self._ready(process.pid),
                self.start_timeout_s,
                message=f"postgres (pid {process.pid}) did not get ready on port {self.port}",
            )
        except AssertionError as exc:
            self.stop()
            raise PostgresServerError(f"{exc}\n{self._log_tail()}") from None
        if process.poll() is not None:
            self._process = None
            raise PostgresServerError(
                f"postgres exited with code {process.returncode} on port {self.port}:\n"
                f"{self._log_tail()}"
            )

    def _ready(self, pid: int) -> bool:
        """The PID file names our process, our port, and says ``ready``."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and lines[0] == str(pid)
            and lines[3] == str(self.port)
            and lines[7].strip() == "ready"
        )

    def stop(self) -> None:
        """Fast shutdown (SIGINT) of the PID this object started; SIGKILL past the deadline."""
        process, self._process = self._process, None
        stop_process(process, self.stop_timeout_s, signal.SIGINT)

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- databases -------------------------------------------------------------------

    async def create_database(self, template: str = "template0") -> str:
        """A new database (a copy of ``template``); returns its name."""
        name = "test_" + secrets.token_hex(6)
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        """Drop a database, closing whatever connections a test left open on it."""
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        pid = self._process.pid if self._process is not None else None
        return f"PostgresServer(port={self.port}, pid={pid}, dir={str(self.directory)!r})"
