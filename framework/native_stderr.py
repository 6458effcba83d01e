"""Drop a native library's known notice from file descriptor 2, keep everything else.

Why: some engines print from C++ straight to fd 2, past ``sys.stderr``, ``logging`` and ``-q``, with no
option to silence them (LiteRT writes "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on its
first allocation in a process). A physicist's console should hold hltrun's lines and real warnings only.
The call that prints is run with fd 2 pointed at a pipe; afterwards every captured line that is not the
known notice is written back to the real fd 2, in order, so a genuine error is never lost. A pipe (read by
a thread) rather than a temporary file: it needs no disk, so a full ``$TMPDIR`` cannot eat the messages.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def without_native_notice(is_notice: Callable[[str], bool]) -> Iterator[None]:
    """Run the block with fd 2 captured; replay every captured line for which ``is_notice`` is false."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 (closed by the caller), or sys.stderr closed: nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        while data := os.read(read_end, 65536):
            chunks.append(data)

    reader = threading.Thread(target=drain, name="native-stderr", daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # the pipe's last write end closes: the reader sees EOF
        os.close(saved)
        reader.join()
        os.close(read_end)
        text = b"".join(chunks).decode(errors="replace")
        kept = "".join(line for line in text.splitlines(keepends=True) if not is_notice(line))
        data = kept.encode()
        while data:  # a short write is possible on a pipe or a terminal
            data = data[os.write(2, data):]


__all__ = ["without_native_notice"]
