"""Durations as people write them: ``5d``, ``12h``, ``30m``, ``45s``, ``1.5h``, or seconds."""

from __future__ import annotations

import re

UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw]?)")


def parse_duration(raw: str) -> float:
    """Seconds in ``raw``: a number with an optional unit (s, m, h, d, w); a bare number
    is seconds. Empty or ``0`` is 0 (off, for the settings that use it).

    ``ValueError`` names what is wrong.
    """
    text = raw.strip().lower()
    if not text:
        return 0.0
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{raw!r} is not a duration: a number with an optional unit s, m, h, d or w "
            "(e.g. 5d, 12h, 90s)"
        )
    return float(match["number"]) * UNITS_S[match["unit"] or "s"]
