"""Drop a native library's known notice from file descriptor 2, keep everything else.

Why: some engines print from C++ straight to fd 2, past ``sys.stderr``, ``logging`` and ``-q``, with no
option to silence them (LiteRT writes "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on its
first allocation in a process). A physicist's console should hold hltrun's lines and real warnings only.
The call that prints is run with fd 2 pointed at a pipe; afterwards every captured line that is not the
known notice is written back to the real fd 2, in order, so a genuine error is never lost. A pipe (read by
a thread) rather than a temporary file: it needs no disk, so a full ``$TMPDIR`` cannot eat the messages.
``without_native_lines`` does the same through a child process, for a call that may abort the process (an import).
fd 2 is the process's, not a thread's: one filter at a time (``_ONE_AT_A_TIME``), else two threads' blocks (the two
threads of a Dask worker of ``threadsPerWorker: 2``, each loading its model) ended out of order left fd 2 on the
first one's pipe for good, that block waiting forever for its end of file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

# held for a whole filtered block: each restores fd 2 to what it saved, which is the real one only if no other
# thread's block began or ended in between (re-entrant: a block inside a block of the same thread nests rightly)
_ONE_AT_A_TIME = threading.RLock()


def _flush_stderr() -> None:
    """Python's buffered stderr written out, where there is one: None where the process started with fd 2 closed
    (``2>&-``, pythonw), closed by the caller, or a stream that cannot flush."""
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _saved_stderr() -> int | None:
    """A duplicate of fd 2 to restore it from (Python's buffered stderr flushed first); None where there is no
    fd 2 (closed by the caller): nothing to filter."""
    _flush_stderr()
    try:
        return os.dup(2)
    except OSError:
        return None


@contextmanager
def _stderr_into(write_end: int, saved: int) -> Iterator[None]:
    """The block with fd 2 on ``write_end`` (closed here: fd 2 is then its only holder), then fd 2 restored from
    ``saved`` (closed), so the pipe's reader sees EOF once the block's writes are flushed."""
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        _flush_stderr()
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def without_native_notice(is_notice: Callable[[str], bool]) -> Iterator[None]:
    """Run the block with fd 2 captured; replay every captured line for which ``is_notice`` is false."""
    with _ONE_AT_A_TIME:
        with _notice_filtered(is_notice):
            yield


@contextmanager
def _notice_filtered(is_notice: Callable[[str], bool]) -> Iterator[None]:
    saved = _saved_stderr()
    if saved is None:
        yield
        return
    read_end, write_end = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        while data := os.read(read_end, 65536):
            chunks.append(data)

    reader = threading.Thread(target=drain, name="native-stderr", daemon=True)
    reader.start()
    try:
        with _stderr_into(write_end, saved):
            yield
    finally:  # the pipe's last write end is closed: the reader sees EOF
        reader.join()
        os.close(read_end)
        text = b"".join(chunks).decode(errors="replace")
        kept = "".join(line for line in text.splitlines(keepends=True) if not is_notice(line))
        data = kept.encode()
        while data:  # a short write is possible on a pipe or a terminal
            data = data[os.write(2, data):]


# the child of ``without_native_lines``: fd 0 the pipe, fd 1 the real fd 2, argv[1] the pattern of lines to drop.
# It ignores Ctrl-C (sent to the whole process group), so it drains the pipe until its writers are gone.
_FILTER = """
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
drop = re.compile(sys.argv[1]).search
def put(data):
    while data:
        data = data[os.write(1, data):]
rest = b""
while data := os.read(0, 65536):
    *lines, rest = (rest + data).split(b"\\n")
    put(b"".join(line + b"\\n" for line in lines if not drop(line.decode(errors="replace"))))
if rest and not drop(rest.decode(errors="replace")):
    put(rest)
"""


@contextmanager
def without_native_lines(pattern: str) -> Iterator[None]:
    """Run the block with every fd 2 line that ``pattern`` (a regex, searched in each line) matches dropped by a
    child process, which writes every other line to the real fd 2 as it comes. Why a process, not a thread: a
    library that aborts inside the block (TensorFlow's fatal log on a CPU without the instructions it was built
    for, in its import) takes a thread and its unwritten lines with it, and the user would see the crash without
    its reason; the child holds the pipe and still writes them. Costs a small interpreter's start (~30 ms), so it
    is for a once-per-process call (an import), not per event. No child (no fd 2, or it cannot start): no filter."""
    with _ONE_AT_A_TIME:
        with _lines_filtered(pattern):
            yield


@contextmanager
def _lines_filtered(pattern: str) -> Iterator[None]:
    saved = _saved_stderr()
    if saved is None:
        yield
        return
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, pattern],
                                 stdin=read_end, stdout=saved, stderr=saved)
    except OSError:
        for fd in (read_end, write_end, saved):
            os.close(fd)
        yield
        return
    os.close(read_end)
    try:
        with _stderr_into(write_end, saved):
            yield
    finally:  # the pipe's last write end is closed: the child sees EOF, writes its rest and exits
        child.wait()


__all__ = ["without_native_lines", "without_native_notice"]
