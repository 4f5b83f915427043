"""Garbage-collector settings for the long-running processes (API, worker).

Python's cycle collector runs after every 700 net new container objects, and each full
collection walks the whole heap, the tens of thousands of objects of the imported
modules included. A busy worker spent 14% of its CPU there, with pauses of up to 50 ms
(measured with ``gc.callbacks`` during ``make bench``'s worker-1proc). Most objects of
a delivery die by reference counting alone, so collecting less often frees the same.
"""

from __future__ import annotations

import gc

# Net new container objects between young collections (Python's default: 700).
YOUNG_THRESHOLD = 10_000
# Young collections per middle one, middle ones per full one (defaults: 10 and 10).
OLDER_THRESHOLD = 20


def tune_for_service() -> None:
    """Freeze what startup built (the collector skips it from now on); collect less often.

    Call once, after the imports and before the event loop starts serving.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
