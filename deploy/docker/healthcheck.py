"""The image's HEALTHCHECK: 0 when ``/healthz`` answers 200 on the API's or the worker's port.

One image runs either process; only one of the two ports is served in a container,
so whichever answers is the one that counts.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def healthy(port: str) -> bool:
    """Whether ``http://127.0.0.1:<port>/healthz`` answers 200 within 3 s."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    """Exit status for Docker: 0 healthy, 1 not."""
    ports = (os.environ.get("PORT") or "8080", os.environ.get("METRICS_PORT") or "9464")
    return 0 if any(healthy(port) for port in ports if port != "0") else 1


if __name__ == "__main__":
    sys.exit(main())
