"""JSON log lines: one write per event-loop turn, nothing lost at exit, nothing raised."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import orjson

from producer.logs import _Lines

PROJECT = Path(__file__).resolve().parent.parent


class Recording(io.BytesIO):
    """A binary stream that remembers each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return len(data)


class Broken(io.BytesIO):
    """A stream whose reader went away."""

    def write(self, data: bytes) -> int:  # type: ignore[override]
        raise BrokenPipeError(32, "Broken pipe")


async def test_lines_of_one_loop_turn_go_out_together_at_its_end() -> None:
    stream = Recording()
    lines = _Lines(stream)
    for n in range(3):
        lines.msg(b'{"n":%d}' % n)
    assert stream.writes == []  # still in this turn
    await asyncio.sleep(0)
    assert stream.writes == [b'{"n":0}\n{"n":1}\n{"n":2}\n']
    lines.msg(b'{"n":3}')
    await asyncio.sleep(0)
    assert stream.writes[1:] == [b'{"n":3}\n']


def test_a_line_outside_a_running_loop_goes_out_at_once() -> None:
    stream = Recording()
    _Lines(stream).msg(b'{"at":"once"}')
    assert stream.writes == [b'{"at":"once"}\n']


async def test_a_line_that_cannot_be_written_is_dropped_without_an_error() -> None:
    lines = _Lines(Broken())
    lines.msg(b'{"lost":true}')
    await asyncio.sleep(0)
    lines.msg(b'{"next":true}')
    lines.flush()


def test_the_last_lines_of_a_process_are_written_before_it_exits() -> None:
    # The loop stops right after the line is logged, before the turn that would flush it.
    program = (
        "import asyncio, structlog\n"
        "from producer import logs\n"
        "logs.configure('json', 'info')\n"
        "loop = asyncio.new_event_loop()\n"
        "def last():\n"
        "    structlog.get_logger('t').info('last_words', n=1)\n"
        "    loop.stop()\n"
        "loop.call_soon(last)\n"
        "loop.run_forever()\n"
        "loop.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=PROJECT, capture_output=True, timeout=60, check=True
    )
    (line,) = done.stderr.splitlines()
    assert orjson.loads(line)["event"] == "last_words"
