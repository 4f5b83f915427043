"""The garbage-collector settings of the API and worker processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from producer.collector import OLDER_THRESHOLD, YOUNG_THRESHOLD

PROJECT = Path(__file__).resolve().parent.parent


def test_startup_objects_are_frozen_and_collections_are_rarer() -> None:
    # In a process of its own: freezing is for the rest of a process's life.
    program = (
        "import gc\n"
        "from producer.collector import tune_for_service\n"
        "before = gc.get_freeze_count()\n"
        "tune_for_service()\n"
        "print(before, gc.get_freeze_count(), *gc.get_threshold())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    before, frozen, young, middle, full = map(int, done.stdout.split())
    assert before == 0
    assert frozen > 1000  # the imported modules' objects
    assert (young, middle, full) == (YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
