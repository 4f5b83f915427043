"""Small pure parts of the HTTP side."""

from datetime import UTC, datetime
from email.utils import format_datetime

from worker.sender import parse_retry_after


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    date = format_datetime(datetime.fromtimestamp(now + 300, UTC), usegmt=True)
    assert parse_retry_after(date, now) == 300.0
    past = format_datetime(datetime.fromtimestamp(now - 10, UTC), usegmt=True)
    assert parse_retry_after(past, now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
