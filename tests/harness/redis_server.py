"""A private ``redis-server`` for the test session, started and stopped by its own PID.

The tests never talk to any other Redis (a system one may listen on 6379): every
connection goes to the free loopback port this class picked and the process it started.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .polling import wait_until_sync
from .ports import free_port as free_port  # the tests import it from here too
from .processes import stop_process

DEFAULT_ARGS: tuple[str, ...] = (
    *("--save", "", "--appendonly", "no"),
    *("--maxmemory-policy", "noeviction"),
)
"""No persistence unless a test asks for it with ``extra_args``; never evicting keys (the
API and the workers refuse a Redis that may, see producer/redis_guard.py), unless a test
says otherwise in ``extra_args`` (the last value given wins)."""

SYSTEM_REDIS_PORT = 6379  # in harness.ports.SYSTEM_PORTS


class RedisServerError(RuntimeError):
    """``redis-server`` is missing, or did not start or stop in time."""


def find_redis_server() -> str:
    """The ``redis-server`` binary on PATH, or a clear error telling how to install it."""
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerError(
            "redis-server is not on PATH; the integration tests start their own private "
            "Redis and need it installed (Debian/Ubuntu: `apt-get install redis-server`)"
        )
    return found


def ping(port: int, timeout_s: float = 0.5) -> bool:
    """True when the server on ``127.0.0.1:port`` answers ``PING`` with ``+PONG``.

    A raw RESP exchange, so no client object is left behind to close. A server that is
    still loading its data answers ``-LOADING`` and counts as not ready.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    return False
                reply += chunk
    except OSError:
        return False
    return reply == b"+PONG\r\n"


def server_pid(port: int, timeout_s: float = 0.5) -> int | None:
    """The ``process_id`` that the server on ``127.0.0.1:port`` reports, if it answers.

    Used to make sure the server answering on our port is the process we started, not
    some other Redis that grabbed the port first. ``None`` while it is not ready.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                reply += chunk
                if not reply.startswith(b"$"):  # an error such as -LOADING
                    return None
                header, sep, rest = reply.partition(b"\r\n")
                if sep and len(rest) >= int(header[1:]):
                    break
    except (OSError, ValueError):
        return None
    for line in rest.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.partition(":")[2])
    return None


class RedisServer:
    """``redis-server`` on a free 127.0.0.1 port, in its own folder.

    ``start()`` waits until the server on that port answers and reports our PID;
    ``stop()`` sends SIGTERM to the PID this object started and SIGKILL if it has not
    exited by the deadline; ``restart()`` starts it again on the same port and folder
    (so ``--appendonly yes`` data survives).
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        directory: Path | None = None,
        start_timeout_s: float = 15.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self._binary = find_redis_server()
        self._owns_dir = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="cliq-test-redis-")) if directory is None else directory
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.extra_args = tuple(extra_args)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    # -- addresses -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of this private server."""
        self._require_port()
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The PID of the running ``redis-server`` this object started."""
        if self._process is None:
            raise RedisServerError("redis-server is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def logfile(self) -> Path:
        return self.directory / "redis.log"

    @property
    def stderr_file(self) -> Path:
        return self.directory / "redis.stderr"

    def _require_port(self) -> None:
        if self.port == 0:
            raise RedisServerError("redis-server has not been started yet")

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start on a fresh free port (a few tries, in case another process grabs it)."""
        if self.running:
            raise RedisServerError(f"redis-server already running (pid {self.pid})")
        last_error: RedisServerError | None = None
        for _ in range(3):
            self.port = free_port()
            try:
                self._launch()
            except RedisServerError as exc:
                last_error = exc
                continue
            return
        assert last_error is not None
        raise last_error

    def restart(self) -> None:
        """Stop (if running) and start again on the same port, in the same folder."""
        self._require_port()
        self.stop()
        self._launch()

    def stop(self) -> None:
        """SIGTERM the PID this object started; SIGKILL it if it outlives the deadline."""
        process, self._process = self._process, None
        stop_process(process, self.stop_timeout_s)

    def kill(self) -> None:
        """SIGKILL the PID this object started, as a crash would (no shutdown save)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(timeout=self.stop_timeout_s)
        self._process = None

    def close(self) -> None:
        """Stop the server and remove the folder this object created."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _arguments(self) -> list[str]:
        """The command line that starts this server."""
        return [
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", str(self.logfile),
            "--daemonize", "no",
            *DEFAULT_ARGS,
            *self.extra_args,
        ]  # fmt: skip

    def _launch(self) -> None:
        args = self._arguments()
        with self.stderr_file.open("ab") as stderr:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        self._process = process

        def ready() -> bool:
            return process.poll() is not None or server_pid(self.port) == process.pid

        try:
            wait_until_sync(
                ready,
                self.start_timeout_s,
                message=f"redis-server (pid {process.pid}) did not answer on 127.0.0.1:{self.port}",
            )
        except AssertionError as exc:
            self.stop()
            raise RedisServerError(f"{exc}\n{self._log_tail()}") from None
        if process.poll() is not None:
            self._process = None
            raise RedisServerError(
                f"redis-server exited with code {process.returncode} on port {self.port}:\n"
                f"{self._log_tail()}"
            )

    def _log_tail(self, lines: int = 20) -> str:
        parts: list[str] = []
        for path in (self.stderr_file, self.logfile):
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                if tail:
                    parts.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> RedisServer:
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
        return f"RedisServer(port={self.port}, pid={pid}, dir={str(self.directory)!r})"


class SentinelServer(RedisServer):
    """``redis-server --sentinel`` on a free 127.0.0.1 port, with its own config file.

    It monitors nothing until told to (``SENTINEL MONITOR``); Sentinel rewrites the file
    as it learns, so the file lives in this server's folder.
    """

    @property
    def config_file(self) -> Path:
        return self.directory / "sentinel.conf"

    def _arguments(self) -> list[str]:
        self.config_file.touch()
        binary, *options = super()._arguments()
        return [binary, str(self.config_file), "--sentinel", *options]


class ClusterNodeServer(RedisServer):
    """``redis-server --cluster-enabled yes`` on a free 127.0.0.1 port: one node of a cluster.

    It serves no slot and knows no other node until told to; its cluster state file (which
    the node rewrites as it learns) lives in this server's folder. Its cluster bus gets a
    free port of its own (by default Redis takes the port + 10000, which may be taken or
    above 65535). With ``tls`` (a certificate and its key) it also serves TLS clients on
    ``tls_port`` and speaks TLS on the bus.
    """

    def __init__(
        self, directory: Path, tls: tuple[Path, Path] | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        super().__init__(extra_args, directory=directory)
        self.tls = tls
        self.bus_port = 0
        self.tls_port = 0

    @property
    def config_file(self) -> Path:
        return self.directory / "nodes.conf"

    def _arguments(self) -> list[str]:
        self.bus_port = self.bus_port or free_port()
        args = [
            *super()._arguments(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.config_file),
            "--cluster-port", str(self.bus_port),
        ]  # fmt: skip
        if self.tls is not None:
            self.tls_port = self.tls_port or free_port()
            cert, key = self.tls
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cluster", "yes",
                "--tls-cert-file", str(cert),
                "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(cert),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        return args
