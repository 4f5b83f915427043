"""cliq-webhooks worker: signs and delivers webhooks, retries them, tells owners of failures."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cliq-webhooks")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
