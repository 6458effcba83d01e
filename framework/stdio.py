"""The standard streams of a console command as its caller left them: closed (``2>&-``, a daemon), full, or
a pipe whose reader left (``2>&1 | head -1``). Every command (hltcard, hltdiff, hltinputs, hltbench, and the
physics tools run as ``python -m hltrun.tools.physics.X``) calls ``standard_streams`` first, so that none of them
fails on them in its own way: a message no stream can take goes nowhere, and the exit code still says what
happened (it was exit 1 with nothing said, or a refusal's line written into stdout, the command's product).
hltrun calls ``fill_closed_descriptors``; its one error line (``cli._say``) survives a failing stderr itself."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


def fill_closed_descriptors() -> None:
    """Descriptors 0-2 that the caller closed (``2>&-``, a daemon) are opened on /dev/null, as daemons
    do: else the next file opened takes the number, and what a library writes to "stderr" lands in it
    (an output file, a cache), while the command's own messages failed on ``sys.stderr`` being None (exit 1,
    silently, or ``print(file=sys.stderr)`` writing into stdout). A closed stdout stays ``sys.stdout is
    None``: a command says it cannot print its product (``destinations.printing``)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # the messages go where the caller sent them: nowhere


class _Stderr:
    """``sys.stderr`` of a command: the caller's stream until a write or flush fails (its reader gone, its disk
    full), then /dev/null: nowhere is left to say anything, and a failed message must not end the command
    with another exit code than its own (a BrokenPipeError on the error line made a refusal exit 1)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError:
            self._gone()

    def _gone(self) -> None:
        self.stream = open(os.devnull, "w")

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's own
        return getattr(self.stream, name)


def standard_streams() -> None:
    """At a command's start: closed descriptors filled (``fill_closed_descriptors``) and ``sys.stderr`` one that
    never fails (``_Stderr``). Idempotent: a command called in-process again (tests) wraps it once."""
    fill_closed_descriptors()
    if not isinstance(sys.stderr, _Stderr):
        sys.stderr = _Stderr(sys.stderr)
