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
class share their code, and are reported together as ``a+b``.
"""

from __future__ import annotations

import inspect
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


def module_frames(modules: Iterable[tuple[str, type]]) -> dict[FrameKey, list[tuple[int, int, str]]]:
    """Map (file, function) to line ranges owned by a label, for each module class's own methods.

    ``modules`` are (label, class) pairs. Methods inherited from the framework's base classes are
    not module code and are left out. Labels sharing a class share its frames: they are merged.
    """
    by_class: dict[type, list[str]] = {}
    for label, cls in modules:
        by_class.setdefault(cls, []).append(label)
    frames: dict[FrameKey, list[tuple[int, int, str]]] = {}
    for cls, labels in by_class.items():
        owner = "+".join(labels)
        for name in MODULE_METHODS:
            func = _own_method(cls, name)
            if func is None:
                continue
            code = func.__code__
            try:
                lines, first = inspect.getsourcelines(func)
                last = first + len(lines) - 1
            except (OSError, TypeError):
                first, last = code.co_firstlineno, 10**9
            frames.setdefault((code.co_filename, code.co_name), []).append((first, last, owner))
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


def _own_method(cls: type, name: str):
    """The plain function ``cls.name`` resolves to, unless it comes from the framework package."""
    for klass in cls.__mro__:
        if name in vars(klass):
            func = vars(klass)[name]
            func = getattr(func, "__func__", func)
            module = getattr(klass, "__module__", "")
            if module.startswith("hltrun.framework.") or not hasattr(func, "__code__"):
                return None
            return func
    return None


def _owner(stack: list[tuple[str, str, int]], frames: dict[FrameKey, list[tuple[int, int, str]]]) -> str:
    for function, filename, lineno in stack:  # innermost first
        for first, last, owner in frames.get((filename, function), ()):
            if first <= lineno <= last:
                return owner
    return OUTSIDE


def attribute(capture: Path, frames: dict[FrameKey, list[tuple[int, int, str]]],
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
