"""Private servers that do not outlive the process that started them.

The demo's Redis and PostgreSQL (:mod:`worker.localredis`, :mod:`worker.localpostgres`)
are stopped by their owner on the way out; a SIGKILLed owner cannot do that, and they
would keep running, orphaned. On Linux the kernel sends them a signal when their parent
dies (``prctl(PR_SET_PDEATHSIG)``; strictly, when the thread that started them ends: start
them from the event loop's thread, which lives as long as the process); elsewhere
nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def tied_to_parent(
    sig: signal.Signals, before: Callable[[], None] | None = None
) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``sig`` when this process dies, after
    ``before`` (which may change the child's account: that clears the setting, so it comes
    first). Only ``before`` (maybe ``None``) where the kernel has no such setting."""
    if not sys.platform.startswith("linux"):
        return before
    # Loaded here, in the parent: the child runs only the call.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        if before is not None:
            before()
        if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the call: no signal will come
            os._exit(1)

    return preexec
