"""The standard streams of a console command as its caller left them: closed (``2>&-``, a daemon), full, or
a pipe whose reader left (``2>&1 | head -1``). Every entry point in tools/ (hltcard, hltdiff, hltinputs, hltbench,
tools/physics/*: evaluate_models, generate_events, ...) calls ``standard_streams`` first, through ``entry_point``,
which also makes their stdout a destination (framework/destinations.py ``printing``), so that none of them fails on
them in its own way: a message no stream can take goes nowhere, and the exit code still says what happened (it was
exit 1 with nothing said, or a refusal's line written into stdout, the command's product). hltrun calls
``standard_streams`` too (its stdout is written by its own ``printing`` blocks, one per report, each naming what it
could not print, so it does not take ``entry_point``'s one block around the whole command)."""

from __future__ import annotations

import os
import sys
from functools import wraps
from typing import Any, Callable, Optional, TextIO


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


Main = Callable[[Optional[list[str]]], int]


def entry_point(prog: str, stdout_exit: int | None = None) -> Callable[[Main], Main]:
    """A tool's ``main(argv) -> int`` run as a command, the one mechanism of every entry point in tools/:
    ``standard_streams`` first (a closed stderr no longer sends the tool's refusals into stdout), and everything it
    prints a ``printing`` block, flushed before it returns or before its SystemExit (argparse's ``--help``, a usage
    error) goes on: ``> /dev/full`` or a reader gone is one line naming the tool, exit ``stdout_exit`` (default the
    error's, 4), where it was a traceback (exit 1) after the work, or exit 0 with the text lost. A closed stdout
    (``>&-``) prints nothing and keeps the tool's exit code: its files are its product. A block of the tool's own
    (hltcard's summary, hltdiff's table) says its stdout failure itself, as before."""
    def wrap(main: Main) -> Main:
        @wraps(main)
        def run(argv: list[str] | None = None) -> int:
            from .destinations import printing
            from .errors import HltError, printable

            standard_streams()
            said: int | None = None  # main's code, once a block of its own said stdout's failure
            try:
                with printing("its output", required=False):
                    guard = sys.stdout
                    try:
                        code = main(argv)
                    except SystemExit:
                        if sys.stdout is not None:
                            sys.stdout.flush()  # what --help wrote: said here if it cannot go out
                        raise
                    if getattr(guard, "failed", False):
                        said = code
                    return code
            except HltError as exc:  # stdout's failure, or one of hltrun's errors the tool let through
                if said is not None:  # hltdiff's table, hltcard's summary: said, with the tool's own exit code
                    return said
                sys.stderr.write(f"{prog}: error: {printable(str(exc))}\n")
                return exc.exit_code if stdout_exit is None else stdout_exit
        return run
    return wrap
