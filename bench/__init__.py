"""The project's benchmark: ``python -m bench`` (``make bench``); see ``bench/README.md``.

Everything it talks to is started by it on 127.0.0.1 (a private Redis, an HTTP sink,
worker processes) and stopped by PID when it ends.
"""
