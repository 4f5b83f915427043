"""Abuse of the API's front door, measured: failed authentications and oversize bodies.

``python -m bench.auth_abuse`` starts its own ``redis-server`` and a ``python -m producer``
process (with an API key) on free ports of 127.0.0.1, then measures the figures of
issue 13 (points 4 and 7) and prints them as JSON:

* ``api_wrong_keys``: 1,000 requests with a wrong API key (20 in flight): how many were
  answered 401 and how many 429, and how long they took;
* ``dashboard_wrong_sign_ins``: 300 sign-ins to ``/ui/login`` with a wrong key (one
  browser session, with its CSRF token), the same figures;
* ``oversize_forms``: ten 10 MB forms posted to ``/ui/login`` at once, without a session
  and then with one: their statuses, the time, and the peak memory growth of the API
  process (a fresh one each time: the rise of ``VmHWM`` over the ``VmRSS`` before them).

Not part of ``make bench``: these are properties of the HTTP front, not throughput. It
is kept to check that the limits still hold (``AUTH_FAILURES_PER_MINUTE`` passes
through, like every setting in the environment).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import PYTHON, Child
from worker.localredis import LocalRedis, free_port

WRONG_KEYS = 1000
WRONG_SIGN_INS = 300
IN_FLIGHT = 20
FORMS = 10
FORM_BYTES = 10 * 1000 * 1000
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def memory_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def _statuses(calls: int, send: Any) -> dict[str, Any]:
    """Run ``send()`` ``calls`` times, :data:`IN_FLIGHT` at a time: statuses and seconds."""
    counts: Counter[int] = Counter()
    pending = iter(range(calls))

    async def lane() -> None:
        for _ in pending:
            counts[await send()] += 1

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
    return {
        "statuses": {str(k): v for k, v in sorted(counts.items())},
        "seconds": round(time.perf_counter() - started, 3),
    }


async def wrong_keys(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """``WRONG_KEYS`` reads of an event with a key that is not one of ``API_KEYS``."""
    headers = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}

    async def send() -> int:
        async with http.get(f"{base}/v1/events/evt_x", headers=headers) as response:
            await response.read()
            return response.status

    return await _statuses(WRONG_KEYS, send)


def browser_session() -> aiohttp.ClientSession:
    """A client that keeps cookies of 127.0.0.1 (aiohttp's jar ignores IP hosts by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _session(http: aiohttp.ClientSession, base: str) -> str:
    """Open a dashboard session (its cookie stays in ``http``); its CSRF token."""
    async with http.get(f"{base}/ui/login") as response:
        found = CSRF.search(await response.text())
    if found is None:
        raise RuntimeError("the login page has no CSRF token")
    return found.group(1)


async def wrong_sign_ins(base: str) -> dict[str, Any]:
    """``WRONG_SIGN_INS`` dashboard sign-ins with a wrong key, in one browser session."""
    async with browser_session() as browser:
        csrf = await _session(browser, base)
        form = {"csrf": csrf, "api_key": "not-the-key", "next": "/ui/webhooks"}

        async def send() -> int:
            async with browser.post(f"{base}/ui/login", data=form) as response:
                await response.read()
                return response.status

        return await _statuses(WRONG_SIGN_INS, send)


async def oversize_forms(base: str, pid: int, with_session: bool) -> dict[str, Any]:
    """``FORMS`` forms of ``FORM_BYTES`` posted at once to ``/ui/login``."""
    body = b"api_key=" + b"x" * (FORM_BYTES - len(b"api_key="))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with browser_session() as browser:
        if with_session:
            headers["X-CSRF-Token"] = await _session(browser, base)
        before = memory_kib(pid, "VmRSS")

        async def send() -> int:
            async with browser.post(f"{base}/ui/login", data=body, headers=headers) as response:
                await response.read()
                return response.status

        started = time.perf_counter()
        statuses = await asyncio.gather(*(send() for _ in range(FORMS)))
        seconds = time.perf_counter() - started
    return {
        "statuses": dict(Counter(str(s) for s in statuses)),
        "seconds": round(seconds, 3),
        "peak_growth_mib": round((memory_kib(pid, "VmHWM") - before) / 1024, 1),
    }


async def measure() -> dict[str, Any]:
    """Start Redis and the API, take every measurement, stop both.

    Each figure comes from a fresh API process of its own: failures are limited per
    process, and the rise of a process's peak memory over its memory before the forms
    is what they cost.
    """
    workdir = Path(tempfile.mkdtemp(prefix="cliq-auth-abuse-"))
    results: dict[str, Any] = {"api_logs": str(workdir)}
    async with LocalRedis() as redis:
        # A process each: the limit of failures counts per process and address.
        for name in ("wrong_keys", "wrong_sign_ins", "forms_without_session", "forms_with_session"):
            port = free_port()
            env = {
                **os.environ,
                "REDIS_URL": redis.url,
                "API_HOST": "127.0.0.1",
                "PORT": str(port),
                "API_KEYS": secrets.token_urlsafe(24),
                "LOG_FORMAT": "json",
            }
            api = Child(name, [PYTHON, "-m", "producer"], env=env, log=workdir / f"{name}.log")
            try:
                await api.wait_for_port(port)
                base = f"http://127.0.0.1:{port}"
                if name == "wrong_keys":
                    async with aiohttp.ClientSession() as http:
                        results["api_wrong_keys"] = await wrong_keys(http, base)
                elif name == "wrong_sign_ins":
                    results["dashboard_wrong_sign_ins"] = await wrong_sign_ins(base)
                else:
                    with_session = name == "forms_with_session"
                    results[f"oversize_{name}"] = await oversize_forms(
                        base, api.pid, with_session=with_session
                    )
            finally:
                await api.stop()
    return results


def main() -> int:
    """Print the measurements as JSON."""
    json.dump(asyncio.run(measure()), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
