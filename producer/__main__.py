"""``python -m producer`` (also ``cliq-webhooks api``): the producers' HTTP API, the
Procfile's ``web`` process.

Every setting is an environment variable and a flag (``--help`` lists them); ``$PORT``
is honoured as platforms such as Heroku set it. SIGTERM and SIGINT stop accepting
connections and give in-flight requests ``SHUTDOWN_GRACE`` seconds to finish.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

import structlog
from aiohttp import web

from producer import logs
from producer.collector import tune_for_service
from producer.http.app import create_app
from producer.http.state import SERVE_OPTIONS, ApiSettings
from producer.loop import new_event_loop
from producer.settings import SettingsError, add_flags, env_with_flags, without_password
from producer.store.startup import DatabaseUnreachable

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
NO_AUTH_REFUSAL = (
    "error: API_KEYS is empty: the API would let anyone who reaches it publish events and "
    "manage endpoints. Set API_KEYS (python3 -c 'import secrets; "
    "print(secrets.token_urlsafe(24))'), or ALLOW_NO_AUTH=1 to run without authentication."
)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per setting, built from the same declarations."""
    parser = argparse.ArgumentParser(
        prog="python -m producer",
        description="cliq-webhooks HTTP API: events, endpoints, delivery log, replay, "
        "test sends, event types (GET /openapi.json describes every route); "
        "/healthz, /readyz, /metrics.",
    )
    add_flags(parser, SERVE_OPTIONS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the API until SIGTERM/SIGINT; returns the exit status."""
    args = build_parser().parse_args(argv)
    return serve(env_with_flags(args, SERVE_OPTIONS))


def serve(env: Mapping[str, str]) -> int:
    """Run the API configured from ``env`` until SIGTERM/SIGINT; returns the exit status.

    ``python -m producer`` and ``cliq-webhooks api`` both come here.
    """
    try:
        settings = ApiSettings.from_env(env)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not settings.api_keys and not settings.allow_no_auth:
        print(NO_AUTH_REFUSAL, file=sys.stderr)
        return EXIT_BAD_INPUT
    logs.configure(settings.log_format, settings.log_level)
    log = structlog.get_logger("cliq.producer.http")
    if settings.producer.redis_notice:
        log.warning("redis_url_empty", detail=settings.producer.redis_notice)
    log.info(
        "api_starting",
        host=settings.api_host,
        port=settings.port,
        dashboard_url=settings.dashboard_url,
        api_keys=len(settings.api_keys),
        redis_url=without_password(settings.producer.effective_redis_url),
    )
    app = create_app(settings)
    tune_for_service()
    try:
        web.run_app(
            app,
            host=settings.api_host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_grace,
            print=None,
            access_log=None,  # one structured line per request comes from the app itself
            loop=new_event_loop(),
        )
    except SettingsError as exc:  # an evicting Redis, a database schema older than ours
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DatabaseUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        log.error("api_failed", error=str(exc), host=settings.api_host, port=settings.port)
        return EXIT_FAILURE
    log.info("api_stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
