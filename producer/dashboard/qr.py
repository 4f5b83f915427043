"""QR codes of TOTP enrolment URIs, rendered on the server as inline SVG.

Inline markup rather than an image URL: the ``otpauth://`` URI holds the secret, so it
must not appear in a URL (logs, history) and is shown in the enrolling user's own page
only. The SVG uses presentation attributes, no ``style``: the Content-Security-Policy
allows no inline style.
"""

from __future__ import annotations

import io

import segno
from markupsafe import Markup


def qr_svg(text: str, title: str = "QR code for your authenticator app") -> Markup:
    """``text`` as a QR code, an ``<svg>`` element safe to place in a page."""
    out = io.BytesIO()
    segno.make(text, error="m").save(
        out, kind="svg", xmldecl=False, svgns=True, scale=5, border=4, title=title, nl=False
    )
    # Generated from our own data by segno: markup, not text to escape.
    return Markup(out.getvalue().decode("utf-8"))
