"""The framework's signals (CMSSW's ActivityRegistry): services subscribe, modules never see them.

A ``Signal`` is a tuple of callbacks. The hot path calls ``fire = sig.fire; if fire is not None:
fire(...)``, so a signal nobody listens to costs one attribute read and one listener costs one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class ModuleDescription:
    """What services learn about a module: label, registered type and kind."""

    label: str
    type: str
    kind: str  # source, producer, filter, analyzer, output
    index: int  # position in the process's module list (source is 0) for array-based bookkeeping


class Signal:
    """``fire`` is what the hot path calls: None with no slot, the slot itself with one (no extra
    Python call per signal), a loop over the slots with several.

    Slots run in the order they were connected, except *innermost* ones: a measuring service (Timing)
    wants its ``pre_*`` slot to run after every other service's and its ``post_*`` slot before them,
    so that the other services' hooks (the Memory service's RSS reads) fall outside the window it
    measures, whatever order the configuration lists the services in."""

    __slots__ = ("name", "_outer", "_inner", "_slots", "fire")

    def __init__(self, name: str) -> None:
        self.name = name
        self._outer: tuple[Callable[..., Any], ...] = ()
        self._inner: tuple[Callable[..., Any], ...] = ()
        self._slots: tuple[Callable[..., Any], ...] = ()
        self.fire: Callable[..., Any] | None = None

    def connect(self, slot: Callable[..., Any], *, innermost: bool = False) -> None:
        """Add a slot; ``innermost``: closest to the activity the signal brackets (see the class)."""
        if innermost:
            self._inner = self._inner + (slot,)
        else:
            self._outer = self._outer + (slot,)
        if self.name.startswith("post_"):  # leaving the activity: the innermost slots go first
            self._slots = self._inner[::-1] + self._outer
        else:
            self._slots = self._outer + self._inner
        self.fire = self._slots[0] if len(self._slots) == 1 else self.__call__

    def __bool__(self) -> bool:
        return bool(self._slots)

    def __call__(self, *args: Any) -> None:
        for slot in self._slots:
            slot(*args)


class ActivityRegistry:
    """All signals of a job. Arguments per signal:

    * ``pre_begin_job(job)`` / ``post_begin_job(job)``
    * ``pre_module_begin_job(desc)`` / ``post_module_begin_job(desc)``
    * ``pre_source(stream)`` / ``post_source(stream, event_id_or_None)``
    * ``source_bulk(stream, real_ns, cpu_ns)``: between those two, when the pull did bulk work (file
      open, chunk read and conversion) that belongs to no single event; the times are inside the pull.
      ``stream`` -1: the source read data for the loop during begin_job (files its check read whole)
    * ``pre_begin_run(run)`` / ``post_begin_run(run)``, ``pre_begin_lumi(run, lumi)`` /
      ``post_begin_lumi(run, lumi)`` and their ``end`` counterparts (``pre_end_lumi(run, lumi)``, ...):
      fired by the event loop when the (run, luminosityBlock) of the events read changes, and at the
      end of the loop for the last one open; a lumi begins before its first event, ends after its last
      (eventloop's module docstring says how, with several streams)
    * ``transition(stream, wait_ns, real_ns, cpu_ns)``: after ``post_source``, when the event read
      began a new lumi (or run) and the pulling stream did the transition: ``wait_ns`` waiting for the
      other streams' events in flight to end, ``real_ns`` the end/begin signals and hooks, ``cpu_ns``
      the thread's CPU over both. Neither is the event's time (CMSSW's event begins after its lumi)
    * ``pre_event(event)`` / ``post_event(event, status)``; status is ``"accept"``, ``"reject"`` or ``"error"``
    * ``pre_path(event, path_name)`` / ``post_path(event, path_name, accepted)``
    * ``pre_module(event, desc)`` / ``post_module(event, desc)`` (also after an exception)
    * ``pre_module_end_job(desc)`` / ``post_module_end_job(desc)``
    * ``pre_end_job()`` / ``post_end_job(summary)``
    """

    NAMES = (
        "pre_begin_job", "post_begin_job", "pre_module_begin_job", "post_module_begin_job",
        "pre_source", "post_source", "source_bulk", "transition",
        "pre_begin_run", "post_begin_run", "pre_begin_lumi", "post_begin_lumi",
        "pre_end_lumi", "post_end_lumi", "pre_end_run", "post_end_run", "pre_event", "post_event", "pre_path", "post_path",
        "pre_module", "post_module", "pre_module_end_job", "post_module_end_job",
        "pre_end_job", "post_end_job",
    )

    def __init__(self) -> None:
        for name in self.NAMES:
            setattr(self, name, Signal(name))

    def __getattr__(self, name: str) -> Signal:  # only reached for unknown names
        raise AttributeError(f"no signal named {name!r} (known: {', '.join(self.NAMES)})")
