"""``python -m worker``: run a worker process (same as ``cliq-webhooks worker``)."""

from cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(["worker", *__import__("sys").argv[1:]]))
