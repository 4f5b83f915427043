"""The dashboard: seed 000's "Settings → Webhooks" as web pages served by the API.

Server-rendered HTML (Jinja2, autoescaped) with one small script and one stylesheet, no
build step. :mod:`producer.dashboard.app` assembles the sub-application that
:func:`producer.http.app.create_app` mounts under :data:`PREFIX`; :mod:`.sessions`
keeps the sign-in, :mod:`.auth` signs in and out; :mod:`.webhooks`, :mod:`.webhook_page`
and :mod:`.webhook_forms` have the Webhooks screens, :mod:`.tokens` the Webhook Tokens
screens.
"""

from producer.dashboard.app import PREFIX, create_app

__all__ = ["PREFIX", "create_app"]
