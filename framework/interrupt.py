"""SIGINT, SIGTERM, SIGHUP and SIGUSR2 stop a job in the loop the same way, as a batch system expects of cmsRun
(unless the caller ignores one: ``nohup`` its SIGHUP, a shell its background jobs' SIGINT; it stays ignored);
they differ in what becomes of the outputs, as in cmsRun.

First signal: the event loop stops taking events, the events in flight finish, every module's
``end_job`` runs, the reports are written marked "stopped by signal", and the process exits with 128 + the
signal number. The outputs:

- SIGUSR2 and SIGINT (``GRACEFUL``) keep them: each output file is closed and committed (atomically, as at
  a normal end) with exactly the events that finished before the stop, and the job report lists it. This
  is cmsRun's graceful stop: FWCore/Services/plugins/UnixSignalService.cc installs ``ep_sigusr2`` for
  SIGUSR2, and for SIGINT too when ``EnableCtrlC`` (its default, true: "you can stop a cmsRun job
  gracefully by sending it a '<control> c'"); the handler (FWCore/Utilities/src/UnixSignalHandlers.cc)
  only sets ``edm::shutdown_flag``; FWCore/Framework/src/EventProcessor.cc's ``nextTransitionType`` then
  answers ``IsStop`` (``checkForAsyncStopRequest``), so no new event starts, those in flight finish,
  endLumi/endRun run and the output modules close their files as at the input's end. WMCore's
  PerformanceMonitor sends SIGUSR2 as its soft kill (SIGTERM only as the hard one, after it) so that the
  events done are kept.
- SIGTERM and SIGHUP drop them (their temporaries removed; ``hltrun.json`` says ``committed: false``,
  ``events_written: 0``, the job report lists no ``<File>``), as a job an error stopped does. cmsRun is not
  graceful there: FWCore/Services/plugins/InitRootHandlers.cc (``AbortOnSignal``, default true) installs
  ``sig_dostack_then_abort`` for SIGTERM (a stack trace, then abort: no file closed), and nothing handles
  SIGHUP (the default action kills it). A SIGTERM is a batch system's hard kill, often seconds before its
  SIGKILL: hltrun still stops cleanly and writes its reports, but keeps no output a user could mistake for
  a finished one.

The exit code stays 128 + the signal, also after a graceful stop: cmsRun does not exit 0 either
(FWCore/Framework/bin/cmsRun.cpp's main returns ``edm::errors::CaughtSignal``, 9000, when
``runToCompletion`` answers ``epSignal``: exit status 9000 mod 256 = 40), and a batch system must learn
that the job ended early with part of its input;
the job report's ``<FrameworkError ExitStatus="9000" Type="CaughtSignal">`` says it too, beside the kept
``<File>`` with its real event count and lumi sections.

After the loop (end_job, the reports: hltrun's stop callbacks) the same: noted, the reports begun after it
written marked (the one being written is finished as begun, not written again; the outputs, all events
processed, are committed whatever the signal). Before it (loading
models in begin_job) and while the job report is written, the first signal interrupts at once, as
Ctrl-C does; an error some code made of that interrupt (an import it cut) is re-raised as the
interrupt (``reraise_interrupt``).

Second signal: abort now, but still remove every registered temporary file.

Temporary files (framework/atomic.py's, for outputs and reports) are registered here while they exist,
so that even an abort leaves nothing half-written behind. While a set of files is renamed into place
(``signals_held``: the report folder), a signal waits for the last rename, so an abort leaves the
whole set or none of it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator
from contextlib import contextmanager

# SIGUSR2: cmsRun's graceful stop (its UnixSignalService), which a batch system's wrapper may send it
HANDLED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR2") if hasattr(signal, name))
# the signals that stop a job in its loop keeping its outputs, as cmsRun's UnixSignalService (module docstring)
GRACEFUL = frozenset(getattr(signal, name) for name in ("SIGINT", "SIGUSR2") if hasattr(signal, name))

_lock = threading.Lock()
_temporaries: set[Path] = set()
_stop_callback: Callable[["Interrupted"], None] | None = None
_abort_hooks: list[Callable[[], None]] = []  # run by a second signal's abort before the temporaries go
_received: list[int] = []
_raised: list["Interrupted"] = []  # the interrupts raised at once (no stop callback): the job is stopping
_held = 0  # > 0 while signals_held() blocks run: a signal acts when the outermost ends
_installed = False  # handle_signals() is active: only then can an error stand for an interrupt raised in this job
_depth = 0  # nested handle_signals() blocks (the CLI's around a Dask run's)


class Interrupted(KeyboardInterrupt):
    """The job was stopped by a signal; ``exit_code`` is 128 + the signal number (130 for Ctrl-C)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum

    @property
    def graceful(self) -> bool:
        """A graceful stop (``GRACEFUL``): in the loop, the outputs keep the events finished before it."""
        return self.signum in GRACEFUL

    @property
    def signame(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:  # pragma: no cover
            return f"signal {self.signum}"

    def __str__(self) -> str:
        if self.signum == signal.SIGINT:
            return "interrupted by the user (Ctrl-C, SIGINT)"
        return f"stopped by {self.signame}"


def exit_code_of(exc: BaseException) -> int:
    """128 + signal for Interrupted, 130 for a plain KeyboardInterrupt."""
    return getattr(exc, "exit_code", 130) if isinstance(exc, KeyboardInterrupt) else 1


def register_temporary(path: Path) -> None:
    with _lock:
        _temporaries.add(Path(path))


def forget_temporary(path: Path) -> None:
    with _lock:
        _temporaries.discard(Path(path))


def remove_temporaries() -> list[Path]:
    """Unlink every registered temporary; return those removed."""
    with _lock:
        paths = list(_temporaries)
        _temporaries.clear()
    removed = []
    for path in paths:
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


@contextmanager
def before_abort(hook: Callable[[], None]) -> Iterator[None]:
    """While the block runs, a second signal's abort calls ``hook`` before it removes the temporaries: what
    could still write one of them (a Dask LocalCluster's worker finishing its unit and renaming its part into
    place) is stopped first, or the part it renames a moment after the removal stays for ever."""
    _abort_hooks.append(hook)
    try:
        yield
    finally:
        _abort_hooks.remove(hook)


@contextmanager
def stop_callback(callback: Callable[[Interrupted], None]) -> Iterator[None]:
    """While the event loop runs (and while the reports of a job whose loop ended are written), a first
    signal calls ``callback`` instead of raising. Nested blocks: the innermost callback is called."""
    global _stop_callback
    previous, _stop_callback = _stop_callback, callback
    try:
        yield
    finally:
        _stop_callback = previous


def _handler(signum: int, frame: object) -> None:  # noqa: ARG001 - signal handler signature
    _received.append(signum)
    if not _held:
        _act(signum)


def _act(signum: int) -> None:
    exc = Interrupted(signum)
    if len(_received) > 1:  # second signal: abort now, but leave nothing half-written
        for hook in list(_abort_hooks):
            try:
                hook()
            except Exception:  # noqa: BLE001 - aborting: the temporaries go whatever a hook met
                pass
        remove_temporaries()
        try:
            sys.stderr.write(f"hltrun: {exc}: second signal, aborting (unfinished files removed)\n")
            sys.stderr.flush()
        finally:
            os._exit(exc.exit_code)
    callback = _stop_callback
    if callback is None:
        _raised.append(exc)
        raise exc
    callback(exc)


def interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The interrupt that the error ``exc`` stands for, None for a real error. A signal that cuts an
    import (or a library's call) can come out as that code's own error: pybind11's ImportError
    "initialization failed" raised from it, then ``extras.need``'s "... is not installed" or a plugin
    that "failed to load". Found in ``exc``'s chain of causes and contexts; or, when the library kept no
    trace of it, the interrupt raised at once since ``handle_signals`` began (the job is stopping)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return _raised[0] if _raised and _installed else None


def signal_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """``interrupt_behind`` for a tool that runs a Process: the signal may come as the failed job's
    ``cause`` (eventloop.JobFailed), which a tool must say in one line with 128 + signal, not as an error."""
    cause = getattr(exc, "cause", None)
    return interrupt_behind(cause if isinstance(cause, BaseException) else exc)


def reraise_interrupt(exc: BaseException) -> None:
    """Raise the interrupt ``exc`` stands for (``interrupt_behind``), if any: where a broad ``except``
    turns errors into a user's one line, a signal must stay a signal (exit 128 + it, its one line)."""
    interrupt = interrupt_behind(exc)
    if interrupt is not None:
        raise interrupt


@contextmanager
def signals_held() -> Iterator[None]:
    """Run a short step that must finish whole (renaming a set of files into place); a signal that
    arrives meanwhile acts when the step ends, as it would have acted at once."""
    global _held
    seen = len(_received)
    _held += 1
    try:
        yield
    finally:
        _held -= 1
    if not _held and len(_received) > seen:
        _act(_received[-1])


@contextmanager
def handle_signals() -> Iterator[None]:
    """Install the handlers (main thread only) for the duration of a job; restore them after. Nested (the
    CLI around a Dask run's own): only the outermost starts and ends the job's signal state, so a first
    signal noted inside still makes a second one abort, and errors after it can still be that signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _installed, _depth
    outermost = _depth == 0
    if outermost:
        _received.clear()
        _raised.clear()
    # a signal the caller set to be ignored stays ignored: ``nohup hltrun ...`` must survive the terminal's
    # SIGHUP, ``hltrun ... &`` in a script the terminal's Ctrl-C (the shell ignores SIGINT for it), as
    # Python itself leaves an ignored SIGINT alone; hltrun's handler made them stop the job (exit 129, 130)
    previous = {s: h for s in HANDLED if (h := signal.getsignal(s)) is not signal.SIG_IGN}
    for s in previous:
        signal.signal(s, _handler)
    _installed = True
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for s, h in previous.items():
            signal.signal(s, h)
        if outermost:  # a later job (or test) in this process starts with no interrupt behind its errors
            _installed = False
            _received.clear()
            _raised.clear()
