"""A real ``prometheus`` server on 127.0.0.1 for the monitoring tests, stopped by its PID."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from .polling import wait_until
from .processes import stop_process
from .redis_server import free_port


class PrometheusUnavailable(RuntimeError):
    """The ``prometheus`` binary is missing (Debian's ``prometheus`` package has it)."""


class PrometheusServer:
    """``prometheus`` with a given configuration and a private storage folder.

    ``config`` is the parsed prometheus.yml; it is written into ``directory``, where the
    server keeps its data and its log (``prometheus.log``).
    """

    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._directory = directory
        self._config_path = directory / "prometheus.yml"
        self._config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = directory / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Start the server and wait until it reports ready."""
        self._launch()
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                if self._process is not None and self._process.poll() is not None:
                    raise PrometheusUnavailable(f"prometheus exited:\n{self.log_text()}")
                try:
                    async with http.get(f"{self.url}/-/ready") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, 20, interval=0.1, message="prometheus not ready")

    def _launch(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusUnavailable("prometheus is missing: `make system-deps` installs it")
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self._config_path}",
                    f"--storage.tsdb.path={self._directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; returns its ``data`` (asserts the status is success)."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/api/v1/{path}", params=params) as response,
        ):
            body = await response.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now."""
        data = await self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    async def scalar(self, expr: str) -> float | None:
        """The value of a single-sample query, ``None`` while it has no sample."""
        result = await self.query(expr)
        return float(result[0]["value"][1]) if result else None

    async def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts."""
        return list((await self.api("alerts"))["alerts"])

    def log_text(self) -> str:
        """Everything the server logged."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it does not stop within 10 s."""
        process, self._process = self._process, None
        stop_process(process, 10)
