"""``cliq-webhooks listen``: real deliveries to a local server, without a tunnel.

It creates a temporary poll endpoint through the API (or uses ``--endpoint``), prints its
secret, and then fetches its messages in order (a long poll) and POSTs each to
``--forward-to`` with the exact body and the headers a worker's POST carries, so the
local server verifies them as it would real ones. A message is acknowledged (counted as
delivered) once the local server answered 2xx; another answer, or none, is retried on
``LISTEN_RETRY_SCHEDULE``, the last step repeating: the feed is ordered and an
acknowledgement covers everything before it, so a message is never skipped. Ctrl-C (or
SIGTERM) deletes the endpoint it created. A ``listen`` that is killed leaves its endpoint
and unacknowledged messages behind: ``listen --endpoint ep_…`` fetches them again.

With ``--json`` every line it prints on stdout is one JSON object instead (JSON Lines,
docs/cli-api.md), so a script can follow the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from cli.api_client import CLIENT_OPTIONS
from cli.base import CommandFailed, UsageError, add_command
from producer.endpoint_kind import EndpointKind
from producer.events import iso_time
from producer.polling import MAX_WAIT_S, PollMessage
from producer.settings import LISTEN_RETRY_SCHEDULE, env_with_flags, read_options
from worker.request import user_agent

LISTEN_OPTIONS = (*CLIENT_OPTIONS, LISTEN_RETRY_SCHEDULE)

# How long one fetch waits for a message: under the API's longest long poll.
FETCH_WAIT_S = min(25.0, MAX_WAIT_S)
FETCH_LIMIT = 100
# The local server's answer: a POST taking longer is a failure, retried.
FORWARD_TIMEOUT_S = 30.0


def say(as_json: bool, record: dict[str, Any], text: str) -> None:
    """One line on stdout: ``record`` as JSON with ``--json`` (a stream: one object a
    line), else ``text``; flushed, as whoever follows the stream waits for it."""
    print(json.dumps(record, ensure_ascii=False) if as_json else text, flush=True)


class ListenError(CommandFailed):
    """The API refused or could not be reached: what it said."""


class Api:
    """The few API calls ``listen`` makes, with the API key."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of a 2xx (``None`` for 204); :class:`ListenError` otherwise."""
        try:
            async with self._session.request(method, self._base + path, **kwargs) as response:
                text = await response.text()
                if response.status == 204:
                    return None
                if response.status // 100 != 2:
                    raise ListenError(f"{method} {path}: {response.status} {text[:500]}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ListenError(f"cannot reach the API at {self._base}: {exc!r}") from None


class Listener:
    """Fetches, forwards and acknowledges one poll endpoint's messages, in order."""

    def __init__(
        self,
        api: Api,
        session: aiohttp.ClientSession,
        endpoint_id: str,
        forward_to: str | None,
        schedule: Sequence[float],
        as_json: bool = False,
    ) -> None:
        """``forward_to`` None: print the bodies instead (``--print-only``); ``as_json``:
        each line as a JSON object."""
        self._json = as_json
        self._api = api
        self._session = session
        self._endpoint_id = endpoint_id
        self._forward_to = forward_to
        self._schedule = tuple(schedule)
        self._messages_path = f"/v1/endpoints/{endpoint_id}/messages"

    async def run(self) -> None:
        """Until cancelled. A cursor of 0 fetches every unacknowledged message first."""
        cursor = 0
        api_failures = 0
        while True:
            try:
                page = await self._api.call(
                    "GET",
                    self._messages_path,
                    params={"after": cursor, "limit": FETCH_LIMIT, "wait_s": FETCH_WAIT_S},
                )
                for raw in page["data"]:
                    message = PollMessage.from_dict(raw)
                    await self._deliver(message, cursor)
                    await self._api.call(
                        "POST", self._messages_path + "/ack", json={"until": message.cursor}
                    )
                    cursor = message.cursor
                api_failures = 0
            except ListenError as exc:
                # The API restarting, or a network blip: say so and keep going.
                delay = self._delay(api_failures)
                api_failures += 1
                print(f"warning: {exc}; trying again in {delay:g} s", file=sys.stderr, flush=True)
                await asyncio.sleep(delay)

    def _delay(self, failures: int) -> float:
        """The retry schedule's step for the ``failures``-th failure (the last repeats)."""
        return self._schedule[min(failures, len(self._schedule) - 1)]

    async def _deliver(self, message: PollMessage, after: int) -> None:
        """Forward ``message`` until the local server takes it (2xx), or print it."""
        if self._forward_to is None:
            at = _now()
            say(
                self._json,
                {**_head_record(message, at), "body": message.body},
                f"{_line_head(message, at)}\n{message.body}",
            )
            return
        failures = 0
        while True:
            status, latency_ms, error = await self._forward(message)
            at = _now()
            outcome = str(status) if error is None else f"error: {error}"
            record = {
                **_head_record(message, at),
                "status": status,
                "latency_ms": round(latency_ms, 1),
                "error": error,
            }
            if status is not None and 200 <= status < 300:
                text = f"{_line_head(message, at)}  {outcome}  {latency_ms:.0f} ms"
                say(self._json, {**record, "retry_in_s": None}, text)
                return
            delay = self._delay(failures)
            failures += 1
            text = (
                f"{_line_head(message, at)}  {outcome}  {latency_ms:.0f} ms  retry in {delay:g} s"
            )
            say(self._json, {**record, "retry_in_s": delay}, text)
            await asyncio.sleep(delay)
            # Signed anew: a retry after the signature's tolerance must still verify.
            message = await self._refetch(message, after)

    async def _refetch(self, message: PollMessage, after: int) -> PollMessage:
        page = await self._api.call("GET", self._messages_path, params={"after": after, "limit": 1})
        fresh = [PollMessage.from_dict(raw) for raw in page["data"]]
        if fresh and fresh[0].cursor == message.cursor:
            return fresh[0]
        return message

    async def _forward(self, message: PollMessage) -> tuple[int | None, float, str | None]:
        """POST the message as a worker would; (status, latency ms, error)."""
        assert self._forward_to is not None
        headers = {**message.headers, "User-Agent": user_agent()}
        started = time.monotonic()
        try:
            async with self._session.post(
                self._forward_to,
                data=message.body.encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
            ) as response:
                await response.read()
                return response.status, (time.monotonic() - started) * 1000, None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, (time.monotonic() - started) * 1000, repr(exc)


def _now() -> str:
    return iso_time(int(time.time() * 1000))


def _line_head(message: PollMessage, at: str) -> str:
    """Time, type and event id: the start of every line printed for a delivery."""
    return f"{at}  {message.type}  {message.event_id}"


def _head_record(message: PollMessage, at: str) -> dict[str, Any]:
    """The same, as the first keys of a ``--json`` line."""
    return {"at": at, "type": message.type, "event_id": message.event_id}


async def listen(args: argparse.Namespace) -> int:
    """Create (or take) a poll endpoint and forward its messages until Ctrl-C."""
    if args.print_only == bool(args.forward_to):
        raise UsageError("give --forward-to URL, or --print-only")
    if args.forward_to and not args.forward_to.startswith(("http://", "https://")):
        raise UsageError(f"--forward-to: {args.forward_to!r} is not an http(s) URL")
    options = read_options(LISTEN_OPTIONS, env_with_flags(args, LISTEN_OPTIONS))
    headers = {"Authorization": f"Bearer {options['api_key']}"} if options["api_key"] else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        api = Api(session, options["api_url"])
        endpoint, created = await _endpoint(api, args)
        listener = Listener(
            api,
            session,
            endpoint["id"],
            args.forward_to,
            options["listen_retry_schedule"],
            args.json,
        )
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await listener.run()
        except asyncio.CancelledError:
            pass
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            if created:
                await api.call("DELETE", f"/v1/endpoints/{endpoint['id']}")
                say(args.json, {"deleted": endpoint["id"]}, f"Deleted {endpoint['id']}.")
    return 0


async def _endpoint(api: Api, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """The poll endpoint to listen on, and whether this command created it."""
    target = args.forward_to or "this terminal"
    if args.endpoint:
        endpoint: dict[str, Any] = await api.call("GET", f"/v1/endpoints/{args.endpoint}")
        if endpoint["kind"] != EndpointKind.POLL:
            raise UsageError(f"--endpoint: {args.endpoint} is not a poll endpoint")
        say(
            args.json,
            _started(endpoint, args.forward_to, created=False),
            f"Listening on {endpoint['id']}, forwarding to {target} (Ctrl-C to stop).",
        )
        return endpoint, False
    endpoint = await api.call(
        "POST",
        "/v1/endpoints",
        json={
            "workspace_id": args.workspace,
            "kind": EndpointKind.POLL.value,
            "events": [e for e in args.events.split(",") if e.strip()],
            "description": f"cliq-webhooks listen → {target} (deleted on Ctrl-C)",
        },
    )
    say(
        args.json,
        _started(endpoint, args.forward_to, created=True),
        f"Listening on {endpoint['id']} (workspace {endpoint['workspace_id']}, events "
        f"{', '.join(endpoint['events'])}), forwarding to {target} (Ctrl-C to stop and "
        f"delete it).\nSecret: {endpoint['secret']}\n(give it to your local server as "
        "CLIQ_WEBHOOK_SECRET)",
    )
    return endpoint, True


def _started(endpoint: dict[str, Any], forward_to: str | None, created: bool) -> dict[str, Any]:
    """The first ``--json`` line: the endpoint listened on (its secret only when this
    command made it: an existing one's is not shown again)."""
    return {
        "endpoint_id": endpoint["id"],
        "workspace_id": endpoint["workspace_id"],
        "events": endpoint["events"],
        "secret": endpoint["secret"] if created else None,
        "forward_to": forward_to,
        "created": created,
    }


def add_commands(commands: Any) -> None:
    """Add ``listen`` to the top-level ``commands``."""
    sub = add_command(
        commands,
        "listen",
        listen,
        "forward real deliveries to a local server through a temporary poll endpoint",
        LISTEN_OPTIONS,
    )
    sub.add_argument("--forward-to", metavar="URL", help="local URL to POST each delivery to")
    sub.add_argument(
        "--print-only", action="store_true", help="print each delivery's body, forward nothing"
    )
    sub.add_argument("--workspace", default="local", help="workspace whose events it receives")
    sub.add_argument("--events", default="*", help="types or wildcards: 'issue.*,comment.created'")
    sub.add_argument(
        "--endpoint",
        metavar="EP_ID",
        help="listen on this existing poll endpoint (e.g. after a killed listen) instead of "
        "creating one; it is not deleted on Ctrl-C",
    )
