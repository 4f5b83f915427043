"""The HTTP client of the commands that go through the API (``users``, ``tokens``,
``event-types``, ``api-keys``, ``portal-link``; ``listen`` shares its settings): where
the API is (``API_URL``, ``--api-url``), its key (``API_KEY``, ``--api-key``), and how
its answers become output or errors.

An RFC 9457 problem answer becomes a usage error (exit status 2) for a 4xx, naming
every field the API named; a 5xx or an unreachable API is a failure (exit status 1).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from cli.base import CommandFailed, UsageError, add_command
from producer.settings import Option, env_with_flags
from producer.tokens.routes import SESSION_HEADER


def parse_http_url(raw: str) -> str:
    """An http(s) base URL, without its trailing slash."""
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return raw.rstrip("/")


API_URL = Option(
    "API_URL",
    "http://127.0.0.1:8080",
    "Base URL of the HTTP API that the users, tokens, event-types, api-keys, "
    "portal-link and listen commands call.",
    parse_http_url,
)
API_KEY = Option(
    "API_KEY",
    "",
    "One of the API's API_KEYS, sent as 'Authorization: Bearer <key>' (empty: none).",
    secret=True,
)
CLIENT_OPTIONS = (API_URL, API_KEY)
# A request that takes longer than this is reported as a failure.
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Answer:
    """A successful answer: its status and JSON body (None for a 204)."""

    status: int
    body: Any


class ApiClient:
    """One command's calls to the API (an ``aiohttp`` session, closed on exit)."""

    def __init__(self, base_url: str, api_key: str) -> None:
        """``base_url``: such as ``http://127.0.0.1:8080``; ``api_key``: '' for none."""
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ApiClient:
        """A client for the API of ``--api-url``/``API_URL`` with ``--api-key``/``API_KEY``."""
        env = env_with_flags(args, CLIENT_OPTIONS)
        return cls(API_URL.read(env), API_KEY.read(env))

    async def __aenter__(self) -> ApiClient:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        session: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """The JSON body of :meth:`request`'s answer."""
        answer = await self.request(method, path, body, session=session, params=params)
        return answer.body

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        session: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """``method path`` with a JSON ``body``; the answer, or the error it stands for.

        ``session``: a 2FA session, sent as ``X-Cliq-2FA-Session``."""
        if self._session is None:
            raise RuntimeError("use the client as `async with`")
        headers = {SESSION_HEADER: session} if session else {}
        url = self.base_url + path
        try:
            async with self._session.request(
                method, url, json=body, headers=headers, params=params
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise CommandFailed(f"cannot reach the API at {self.base_url}: {reason}") from None
        if status >= 400:
            raise _problem_error(method, path, status, text)
        return Answer(status, json.loads(text) if text else None)


def _problem_error(method: str, path: str, status: int, text: str) -> Exception:
    """The usage error (4xx) or failure (5xx) an error answer stands for."""
    try:
        problem = json.loads(text)
    except json.JSONDecodeError:
        problem = None
    if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
        message = problem["detail"]
        errors = problem.get("errors")
        if isinstance(errors, list) and errors:
            message += " " + "; ".join(
                f"{e.get('field')}: {e.get('message')}" for e in errors if isinstance(e, dict)
            )
    else:
        message = f"{method} {path} answered {status}: {text[:200]}"
    if status >= 500:
        return CommandFailed(message)
    return UsageError(message)


async def call_api(
    args: argparse.Namespace, method: str, path: str, body: Mapping[str, Any] | None = None
) -> Any:
    """One call of a command: the JSON answer of ``method path``, or the error it stands
    for (a usage error for a 4xx answer, a failure otherwise)."""
    async with ApiClient.from_args(args) as client:
        return await client.call(method, path, body)


def add_api_command(parent: Any, name: str, handler: Any, help: str) -> argparse.ArgumentParser:
    """Add a command that calls the API: ``--json``, ``--api-url`` and ``--api-key``."""
    return add_command(parent, name, handler, help, CLIENT_OPTIONS)


def add_session_flags(parser: argparse.ArgumentParser) -> None:
    """``--session`` or ``--code``: the 2FA step every token change needs."""
    step = parser.add_mutually_exclusive_group(required=True)
    step.add_argument(
        "--session", help="an open 2FA session (from `users 2fa verify`), X-Cliq-2FA-Session"
    )
    step.add_argument(
        "--code", help="a current 6-digit code of the user's authenticator (opens a session)"
    )


async def two_factor_session(client: ApiClient, user_id: str, args: argparse.Namespace) -> str:
    """The session of ``--session``, or one opened now with ``--code`` (``2fa/verify``)."""
    if args.session:
        return str(args.session)
    opened = await client.call("POST", f"{user_path(user_id)}/2fa/verify", {"code": args.code})
    return str(opened["session"])


def user_path(user_id: str) -> str:
    """``/v1/users/{user_id}``."""
    return "/v1/users" + segments(user_id)


def segments(*values: str) -> str:
    """``/a/b`` of path segments, each quoted: the API refuses ids outside
    ``[A-Za-z0-9_-]``, and anything else must reach it (and its 404) intact."""
    return "".join("/" + quote(value, safe="") for value in values)
