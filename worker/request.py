"""What a delivery request carries besides its signed headers
(:func:`producer.signing.request_headers`): the User-Agent."""

from __future__ import annotations

from worker import __version__


def user_agent() -> str:
    """``cliq-webhooks/<version>``: the User-Agent of every request (set on the session)."""
    return f"cliq-webhooks/{__version__}"
