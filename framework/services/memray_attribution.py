"""Per-module allocation accounting from a memray capture (CMSSW's ModuleAllocMonitor, after the job).

memray records every allocation with the Python stack that made it. An allocation belongs to the
module whose ``begin_job`` / ``produce`` / ``filter`` / ``analyze`` / ``write`` / ``end_job`` frame is
the innermost such frame on that stack, so a producer run on demand inside a filter's ``event.get``
is charged, correctly, to the producer. A thread a module starts for its work (the ROOT source's
decompression pool and read-ahead thread) has none of its methods on the stack: an allocation with no
module frame made on a thread whose name starts with one of the module's ``helper_threads`` is the
module's. Frees carry no stack: each is matched by address to the
allocation it releases and charged to that allocation's owner.

Per owner: number of allocations, bytes allocated, bytes freed, peak of live bytes (the high-water
mark of what it held at once) and what it still held at the end. Allocations made outside module
frames (the framework, the source's chunk reading before the loop, services) go to ``OUTSIDE``.

Limits, stated where the numbers are shown: memray tracks the system allocator by default, so small
Python objects served by pymalloc arenas are seen as arena allocations; two labels of one module
class share their code, and are reported together as ``a+b``. Two classes sharing a user base class's
method are told apart by their own method that called it (``super().produce``), where there is one.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping

MODULE_METHODS = ("begin_job", "produce", "filter", "analyze", "write", "end_job", "events")
OUTSIDE = "(outside modules)"


@dataclass
class AllocStats:
    """What one owner allocated and released over the captured job."""

    count: int = 0
    allocated: int = 0  # bytes
    freed: int = 0  # bytes
    peak: int = 0  # highest live bytes at any time
    live: int = 0  # live bytes at the end of the capture

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


FrameKey = tuple[str, str]  # (filename, function name)


def module_frames(modules: Iterable[tuple[str, type]]) -> dict[FrameKey, list[tuple[int, int, str, str]]]:
    """Map (file, function) to line ranges of module code: (first, last, owners, direct owners).

    ``modules`` are (label, class) pairs. Methods inherited from the framework's base classes are
    not module code and are left out. A method's *owners* are the labels whose class runs it: as its
    own ``produce`` (the *direct* owners, those the framework calls it for) or through ``super()``
    from a subclass's. Code that labels share (two labels of one class, two classes with one base) is
    owned by all of them, ``a+b``; ``_owner`` narrows that down where the stack tells them apart.
    """
    owners_of: dict[tuple[FrameKey, int, int], tuple[list[str], list[str]]] = {}
    for label, cls in modules:
        for name in MODULE_METHODS:
            for depth, func in enumerate(_methods(cls, name)):
                code = func.__code__
                try:
                    lines, first = inspect.getsourcelines(func)
                    last = first + len(lines) - 1
                except (OSError, TypeError):
                    first, last = code.co_firstlineno, 10**9
                every, direct = owners_of.setdefault(((code.co_filename, code.co_name), first, last), ([], []))
                for owners, applies in ((every, True), (direct, depth == 0)):
                    if applies and label not in owners:
                        owners.append(label)
    frames: dict[FrameKey, list[tuple[int, int, str, str]]] = {}
    for (key, first, last), (every, direct) in owners_of.items():
        frames.setdefault(key, []).append((first, last, "+".join(every), "+".join(direct)))
    return frames


def thread_owners(modules: Iterable[tuple[str, type]]) -> dict[str, str]:
    """Map each thread name prefix a module class declares (``helper_threads``) to its label(s),
    merged as ``module_frames`` merges labels of one class."""
    by_class: dict[type, list[str]] = {}
    for label, cls in modules:
        by_class.setdefault(cls, []).append(label)
    return {prefix: "+".join(labels) for cls, labels in by_class.items()
            for prefix in getattr(cls, "helper_threads", ())}


def _thread_owner(thread_name: str, threads: Mapping[str, str]) -> str:
    for prefix, owner in threads.items():
        if thread_name.startswith(prefix):
            return owner
    return OUTSIDE


def _methods(cls: type, name: str) -> list:
    """The plain functions named ``name`` along ``cls``'s MRO, the one it resolves to first, down to the
    framework's base classes (not module code): ``super().name(...)`` runs the ones after the first."""
    found = []
    for klass in cls.__mro__:
        if name in vars(klass):
            func = vars(klass)[name]
            func = getattr(func, "__func__", func)
            module = getattr(klass, "__module__", "")
            if module.startswith("hltrun.framework.") or not hasattr(func, "__code__"):
                break
            found.append(func)
    return found


# the framework's files as code objects name them (as imported, and with links resolved)
_FRAMEWORK_DIR = tuple({os.path.join(str(d), "") for d in (Path(__file__).parent.parent,
                                                           Path(__file__).resolve().parent.parent)})


def _owner(stack: list[tuple[str, str, int]], frames: dict[FrameKey, list[tuple[int, int, str, str]]]) -> str:
    """The label whose module code made the allocation: the module frames from the innermost one out to
    the first framework frame (the schedule calling the module, or an on-demand ``event.get``: the
    module outside it is another one) are one module's ``super()`` chain, so its label owns every one
    of them and is a direct owner of the outermost. Where several labels qualify (two labels of one
    class), all of them, ``a+b``."""
    owners: list[str] | None = None
    direct = ""
    for function, filename, lineno in stack:  # innermost first
        if owners is not None and filename.startswith(_FRAMEWORK_DIR):
            break
        for first, last, every, outermost in frames.get((filename, function), ()):
            if first <= lineno <= last:
                labels = every.split("+")
                owners = labels if owners is None else [label for label in owners if label in labels] or owners
                direct = outermost
                break
    if owners is None:
        return OUTSIDE
    called = [label for label in owners if label in direct.split("+")]
    return "+".join(called or owners)


def attribute(capture: Path, frames: dict[FrameKey, list[tuple[int, int, str, str]]],
              threads: Mapping[str, str] | None = None) -> dict[str, AllocStats]:
    """Read a memray capture and account every allocation and free to its owner (``threads``:
    ``thread_owners``, for allocations whose stack holds no module method)."""
    import memray

    free_kinds = {memray.AllocatorType.FREE.value, memray.AllocatorType.PYMALLOC_FREE.value}
    unmap = memray.AllocatorType.MUNMAP.value
    stats: dict[str, AllocStats] = {}
    owner_of_stack: dict[int, str] = {}
    owner_of_thread: dict[str, str] = {}
    live: dict[int, tuple[str, int]] = {}  # address -> (owner, size)
    reader = memray.FileReader(str(capture))
    try:
        for rec in reader.get_allocation_records():
            kind = rec.allocator
            if kind in free_kinds or kind == unmap:
                owner, size = live.pop(rec.address, (None, 0))
                if owner is None:
                    continue  # allocated before the capture started
                if kind == unmap and rec.size and rec.size < size:  # partial munmap: keep the rest
                    live[rec.address + rec.size] = (owner, size - rec.size)
                    size = rec.size
                s = stats[owner]
                s.freed += size
                s.live -= size
                continue
            owner = owner_of_stack.get(rec.stack_id)
            if owner is None:
                try:
                    stack = rec.stack_trace()
                except NotImplementedError:
                    stack = []
                owner = owner_of_stack[rec.stack_id] = _owner(stack, frames)
            if owner == OUTSIDE and threads:
                name = rec.thread_name
                owner = owner_of_thread.get(name) or owner_of_thread.setdefault(name, _thread_owner(name, threads))
            s = stats.setdefault(owner, AllocStats())
            s.count += rec.n_allocations
            s.allocated += rec.size
            s.live += rec.size
            s.peak = max(s.peak, s.live)
            live[rec.address] = (owner, rec.size)
    finally:
        reader.close()
    return stats
