"""The dashboard: seed 000's "Settings → Webhooks" as web pages served by the API.

Server-rendered HTML (Jinja2, autoescaped) with one small script and one stylesheet, no
build step. :mod:`producer.dashboard.app` assembles the sub-application that
:func:`producer.api.create_app` mounts under :data:`PREFIX`; :mod:`.sessions` keeps the
sign-in, :mod:`.auth` signs in and out, :mod:`.webhooks` has the Webhooks screens.
"""

from producer.dashboard.app import PREFIX, create_app

__all__ = ["PREFIX", "create_app"]
