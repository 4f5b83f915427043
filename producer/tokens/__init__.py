"""Seed 001: users, their webhook tokens and second factor, and incoming webhooks.

A product of its own beside the outbound webhooks, on the same Redis and key layout:

* :mod:`.users`: users, the channels and bots they claim, their extension apps;
* :mod:`.registry`: webhook tokens (at most five per user) and their usage history;
* :mod:`.totp`, :mod:`.twofactor`: TOTP codes (RFC 6238) and the 2FA sessions they open;
* the Lua scripts that keep the limits and counters atomic.
"""
