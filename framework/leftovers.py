"""The temporaries a killed job left behind: named so that a later job can tell they are stale, and removed by it.

framework/atomic.py writes every output, report and cache entry to a temporary beside its destination and
removes it on every failure path, a first or second signal included. A SIGKILL (a batch system's hard
limit, the OOM killer) or a SIGQUIT leaves it no chance: the temporary stays next to the final name for
ever, and a physicist who runs many jobs into one folder collects litter (and, with big outputs, a full
disk). So each temporary's name says who wrote it::

    <name>.hltrun-<machine>-<pid>-<start>.<random>.tmp[<suffix>]

``<machine>`` is a short hash of this boot of this machine and of this process's pid namespace (a
container has its own), ``<pid>`` the writer's process id, ``<start>`` its start time in clock ticks since
boot (0 where /proc does not say). A job that writes into a folder (``sweep``: once per folder and process)
removes a temporary there only when every one of these holds, and says so in one log line:

* its name has that form and it is a regular file of this user (nothing that is not hltrun's, or is
  another user's, is ever touched; a temporary named the old way, without the writer, is left alone);
* ``<machine>`` is this one: a job on another host of a shared file system, in another container or in
  an earlier boot has pids that mean nothing here, so its temporaries are left alone;
* its writer is gone: no process ``<pid>`` lives, or the one that does is a zombie or started at another
  time than ``<start>`` (the pid was reused). Two jobs writing into one folder at once is a real use: a
  living writer's temporary is never removed, however old;
* it was last modified more than ``STALE_AFTER_S`` ago (a margin for what the checks above cannot see).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import stat
import threading
import time
from functools import lru_cache
from pathlib import Path

log = logging.getLogger("hltrun")

STALE_AFTER_S = 60.0  # a temporary modified more recently is left, even if its writer is gone
_NAME = re.compile(r"\.hltrun-(?P<machine>[0-9a-f]{8})-(?P<pid>[0-9]{1,10})-(?P<start>[0-9]{1,20})\.[^./]+"
                   r"\.tmp(?:\.[A-Za-z0-9]{1,16})?\Z")
_SHOWN = 3  # names in the log line; the rest are counted

_lock = threading.Lock()
_swept: set[str] = set()


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


@lru_cache(maxsize=1)
def machine() -> str:
    """8 hex digits naming this boot of this machine and this pid namespace: where a pid means a process."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    parts = (socket.gethostname(), _read("/proc/sys/kernel/random/boot_id").strip(), namespace)
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses):
    [0] is the state, [19] the start time in clock ticks since boot. None where it cannot be read."""
    text = _read(f"/proc/{pid}/stat")
    fields = text[text.rfind(")") + 1:].split()
    return fields if len(fields) > 19 else None


def start_ticks(pid: int | str = "self") -> int:
    """When process ``pid`` started (clock ticks since boot), 0 where /proc does not say."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and fields[19].isdigit() else 0


def tag() -> str:
    """What this process puts in a temporary's name before mkstemp's random part (``<name>`` + tag)."""
    return f".hltrun-{machine()}-{os.getpid()}-{start_ticks()}."


def writer_gone(pid: int, start: int) -> bool:
    """Whether the process that wrote as ``pid`` with start time ``start`` (0: unknown) has ended."""
    if pid <= 0:
        return False  # not a pid one writer had: kill(0 or -1, 0) asks about groups
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # PermissionError: a process of another user lives with this pid
    fields = _stat_fields(pid)
    if fields is None:
        return False  # alive, and nothing more is known: left alone
    if fields[0] in ("Z", "X"):
        return True  # a zombie or a dying process writes nothing more
    return start != 0 and fields[19].isdigit() and int(fields[19]) != start


def _stale(entry: os.DirEntry[str], now: float) -> bool:
    match = _NAME.search(entry.name)
    if match is None or match.group("machine") != machine():
        return False
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or now - info.st_mtime < STALE_AFTER_S:
        return False
    return writer_gone(int(match.group("pid")), int(match.group("start")))


def sweep(folder: str | os.PathLike[str]) -> list[str]:
    """Remove the stale temporaries of killed hltrun jobs from ``folder`` (see above), once per folder in
    this process; return their names. Never fails: a folder that cannot be listed is the writer's to say."""
    key = os.path.realpath(folder)
    with _lock:
        if key in _swept:
            return []
        _swept.add(key)
    now = time.time()
    removed: list[str] = []
    try:
        with os.scandir(key) as entries:
            stale = [entry for entry in entries if ".hltrun-" in entry.name and _stale(entry, now)]
    except OSError:
        return removed
    for entry in stale:
        try:
            os.unlink(entry.path)
        except OSError:
            continue  # another job swept it first, or it cannot be removed: not this job's business
        removed.append(entry.name)
    if removed:
        shown = ", ".join(removed[:_SHOWN]) + (f" and {len(removed) - _SHOWN} more" if len(removed) > _SHOWN else "")
        log.info("removed %d temporar%s left by killed hltrun jobs in %s: %s", len(removed),
                 "y" if len(removed) == 1 else "ies", Path(folder), shown)
    return removed
