"""Base classes for plugins, mirroring CMSSW's EDProducer / EDFilter / EDAnalyzer / OutputModule.

A plugin declares its parameters as a dataclass in ``Parameters``; the configuration validates the
YAML against it before any module is built, so a module receives typed, checked values.

``concurrency`` says how the framework shares the module between streams:

* ``"stream"`` - one instance per stream (no locking needed; the default),
* ``"global"`` - one instance shared by all streams; its per-event method must be thread-safe,
* ``"one"``    - one instance, and the framework serialises its per-event calls with a lock.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal, Mapping, Sequence

from .context import Consumes, ProductInfo
from .errors import ConfigError
from .schema import InputTag, input_tag_fields

if TYPE_CHECKING:
    from pathlib import Path

    from .context import ModuleContext, SourceContext
    from .event import Event, EventID
    from .units import WorkUnit

Concurrency = Literal["stream", "global", "one"]


@dataclass
class NoParameters:
    """For modules that take no parameters."""


class _Declares:
    """What Modules and Sources declare about their products (CMSSW's ``produces<T>()``/``consumes<T>()``).

    ``produces``: product instance (``""``: the main one) -> type; ``event.put`` checks it, and the
    configuration refuses a consumer expecting another type. None: undeclared (not checked).
    ``consumes``: parameter field holding an ``InputTag`` -> the type expected there."""

    Parameters: ClassVar[type] = NoParameters
    produces: ClassVar[Mapping[str, type] | None] = None
    consumes: ClassVar[Mapping[str, type]] = {}
    # name prefixes of the threads the plugin starts to do its work (decompression pools, read-ahead):
    # their stacks hold none of its methods, so the Memory service's memray attribution goes by name
    helper_threads: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def declared_consumes(cls, params: Any) -> tuple[Consumes, ...]:
        """Every InputTag of ``params``, with the type ``consumes`` expects for its field (else None)."""
        missing = [name for name in cls.consumes if not isinstance(getattr(params, name, None), InputTag)]
        if missing:
            raise ConfigError(f"{cls.__name__}.consumes: {', '.join(missing)} is not an InputTag parameter of "
                              f"{type(params).__name__}")
        typed = [Consumes(name, getattr(params, name), t, f".{name}") for name, t in cls.consumes.items()]
        seen = {c.tag for c in typed}
        return (*typed, *(Consumes("", tag, at=at) for at, tag in input_tag_fields(params) if tag not in seen))

    @classmethod
    def product_metadata(cls, params: Any) -> Mapping[str, Any]:
        """What this plugin's products will carry, known from its parameters alone (a scorer's model and
        thresholds, a batcher's constituent count): consumers check their configuration against it."""
        return {}

    @classmethod
    def check_config(cls, label: str, params: Any, inputs: Mapping[str, ProductInfo]) -> None:
        """Configuration validation across modules: ``inputs`` maps each ``consumes`` field to what its
        producer declares. Raise ConfigError (one line, ``modules.<label>...``) on a mismatch."""


class Module(_Declares):
    """Common part of every event-processing plugin."""

    concurrency: ClassVar[Concurrency] = "stream"
    kind: ClassVar[str] = "module"
    # framework services the module asks for by name (``context.MODULE_SERVICES``), found in its context
    services: ClassVar[tuple[str, ...]] = ()
    # files of the report folder (--report-dir) that the report set writes from this module's summary (a
    # filter's score histogram: scores.root): claimed before the first event with the set's own, so one named
    # as an input of the job, or as another output, is refused then, not after every event
    report_folder_files: ClassVar[tuple[str, ...]] = ()
    # True where end_job only releases what begin_job took (a backend, open files) and every result is in
    # ``summary``: a Dask worker, which never calls end_job (its Process serves unit after unit), loses nothing.
    # A module that overrides end_job, not end_unit, and leaves this False is named when a job runs on Dask
    end_job_releases_only: ClassVar[bool] = False

    def __init__(self, label: str, params: Any) -> None:
        self.label = label
        self.params = params

    @property
    def type_name(self) -> str:
        return getattr(type(self), "registered_name", type(self).__name__)

    def begin_job(self, ctx: "ModuleContext") -> None:
        """Called once before the first event (load models, open files)."""

    def end_job(self) -> None:
        """Called once after the last event (close files, write summaries). Not on Dask workers: write a
        distributed run's results in ``end_unit`` (``end_job_releases_only``)."""

    # Run and lumi transitions (CMSSW's beginRun / beginLuminosityBlock): called on every instance,
    # between events, never while an event is in flight on any stream (framework/eventloop.py).
    # Only modules that override one are called: a plain module costs nothing at a transition.

    def begin_run(self, run: int) -> None:
        """Before the first event of ``run`` (e.g. re-read conditions that change per run)."""

    def end_run(self, run: int) -> None:
        """After the last event of ``run``."""

    def begin_lumi(self, run: int, lumi: int) -> None:
        """Before the first event of lumi section ``lumi`` (e.g. HLTPrescaler re-reads its prescale)."""

    def end_lumi(self, run: int, lumi: int) -> None:
        """After the last event of lumi section ``lumi``."""

    def begin_unit(self, unit: "WorkUnit") -> None:
        """Distributed runs only: called before the events of a work unit (after begin_job, once per unit)."""

    def end_unit(self, unit: "WorkUnit", failed: bool) -> dict[str, Any] | None:
        """Distributed runs only: after a unit's events. An output module commits its part here and
        returns ``{"target": final file, "part": part file, "events": n}`` for the client to assemble."""
        return None

    def summary(self) -> dict[str, Any]:
        """Extra per-module facts for the end-of-job report (counters, backend description)."""
        return {}

    def data_quality(self) -> dict[str, int]:
        """Counts of odd data this module met (non-finite inputs, events without a score, ...):
        shown in the console and HTML reports; summed over per-stream instances."""
        return {}


class Producer(Module):
    kind = "producer"

    def produce(self, event: "Event") -> None:
        raise NotImplementedError


class Filter(Module):
    kind = "filter"

    def filter(self, event: "Event") -> bool:
        raise NotImplementedError


class Analyzer(Module):
    kind = "analyzer"
    produces = {}  # an analyzer reads only (as in CMSSW): consuming one is a configuration error

    def analyze(self, event: "Event") -> None:
        raise NotImplementedError


class OutputModule(Module):
    """Writes selected events. ``select_events`` in its parameters works like CMSSW's SelectEvents."""

    kind = "output"
    concurrency = "one"
    produces = {}  # writes files, puts nothing

    def write(self, event: "Event") -> None:
        raise NotImplementedError

    def skip(self, event: "Event") -> None:
        """An event its ``select_events`` rejected (nothing to write): an output that records what the
        job processed, not only what it kept, counts it here. Called under the module's lock."""

    def selected_paths(self) -> list[str]:
        return list(getattr(self.params, "select_events", []) or [])

    def output_file(self) -> "Path | None":
        """The file this module writes (where a distributed run leaves ``<file>.unitNNNNN.part`` parts)."""
        return None

    def part_file(self, unit: Any) -> "Path | None":
        """Where a distributed run's work ``unit`` leaves its part of ``output_file()``: known to the client
        before any unit runs, so an abort can remove the parts of units done but not yet collected."""
        target = self.output_file()
        return None if target is None else target.with_name(f"{target.name}.{unit.tag}.part")

    def check_destination(self) -> None:
        """Refuse a file this module could not write, in one line. Called for every output before any
        module's begin_job, so that a bad path costs no model loading nor ``auto``'s timing."""

    @classmethod
    def check_paths(cls, label: str, params: Any, paths: Sequence[str]) -> None:
        """Refuse, in one ConfigError line (``modules.<label>: ...``), job paths this output cannot write
        side by side (two names for one branch). Called when the configuration is validated: a clash
        said there costs no model loading."""

    @classmethod
    def check_products(cls, label: str, params: Any, consumed: Mapping[str, ProductInfo]) -> None:
        """Refuse, in one ConfigError line, products this output cannot write side by side; ``consumed``
        maps every tag it consumes to what its producer declares (``ProductInfo``). Called when the
        configuration is validated, after ``check_config``."""

    @classmethod
    def dropped(cls, summary: dict[str, Any]) -> dict[str, Any]:
        """Its ``summary()`` (merged over streams or work units) once the job stopped and dropped its file:
        what the summary says was written must be nothing, whatever was staged before the stop. The
        default changes nothing (an output that reports no written events)."""
        return summary

    @classmethod
    def assemble(cls, parts: "list[Path]", target: "Path", params: Any, stopped_by: str | None = None) -> int:
        """Join the parts written by ``end_unit`` (in input order) into ``target``, atomically; return
        the number of events. ``stopped_by``: the graceful signal the job stopped on (the parts are the
        units done before it), which the file records as a local job's kept output does. Output modules
        that support distributed runs implement it."""
        raise NotImplementedError(f"{cls.__name__} cannot assemble parts of a distributed run")


class Source(_Declares):
    """Provides events. The framework calls ``events()`` once and pulls from one stream at a time.

    ``events`` yields ``(EventID, products)`` where products maps instance name (``""`` for the
    main product) to value; they are put into the event under the source's label.
    The source honours ``skip`` and ``limit`` itself so that skipped entries are never read.
    """

    kind: ClassVar[str] = "source"
    bulk_pending: tuple[int, int] | None = None  # see __init__ (here too for sources that skip it)

    def __init__(self, label: str, params: Any) -> None:
        self.label = label
        self.params = params
        # bulk work (file open, chunk read and conversion) done inside the last pull, as (real ns,
        # CPU ns) measured by ``bulk_io``; the event loop takes it after each pull and reports it
        # apart from the event that happened to trigger it (an HLT source pays it spread over events)
        self.bulk_pending: tuple[int, int] | None = None

    @contextmanager
    def bulk_io(self) -> Iterator[None]:
        """Wrap a source's bulk work: its time is taken out of the per-event times and reported on
        its own, amortised per event."""
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        try:
            yield
        finally:
            w, c = time.perf_counter_ns() - w0, time.thread_time_ns() - c0
            pending = self.bulk_pending
            self.bulk_pending = (w, c) if pending is None else (pending[0] + w, pending[1] + c)

    def begin_job(self, ctx: "SourceContext") -> None:
        """Open inputs and check them (files, tree, branches) before the first event."""

    def consumers_known(self) -> None:
        """Every module's begin_job has run: what the consumers requested (``SourceContext.requests``)
        is complete. A source whose consumers may ask for more than it checked at begin_job (extra
        branches of a model's declared inputs) checks that here, still before the first event."""

    def events(self, skip: int, limit: int | None) -> Iterator[tuple["EventID", dict[str, Any]]]:
        raise NotImplementedError

    def end_job(self) -> None:
        """Release inputs."""

    def next_run(self) -> None:
        """Distributed runs only: a worker runs another job of the same configuration on this source (it keeps
        the built Process): what it found of the last job's inputs may no longer hold (a file mended, rewritten)."""

    @classmethod
    def plan_inputs(cls, params: Any, entries_needed: int | None, consumed: frozenset[str] = frozenset(),
                    skipped: list[tuple[str, str]] | None = None) -> list[tuple[str, int | None]]:
        """Planning a distributed run (no event is read, no module built): (input name, number of entries)
        in reading order, checked as ``begin_job`` checks them; ``entries_needed``: skip + max events, or
        None; entries None: an input past ``entries_needed``, not opened (the planner asks again with more
        entries needed if duplicates make the job read on); ``consumed``: the source's product instances
        modules consume (``SourceContext.consumed``); ``skipped``: given, it receives (input name, the
        reports' line) for each input skipped as bad (``bad_files``): the workers never see those.
        A source that cannot be split keeps this default and runs only locally."""
        raise NotImplementedError(f"{cls.__name__} cannot be split into work units")

    @classmethod
    def plan_duplicates(cls, params: Any, inputs: list[tuple[str, int]], skip: int, limit: int | None
                        ) -> list[tuple[tuple[int, int], ...]]:
        """Planning a distributed run: per input of ``plan_inputs``, the entry runs [a, b) that repeat an
        event read before them in the job (skipped and counted, as ``events`` does), looked for over the
        whole job in input order from entry ``skip`` until ``limit`` events are found. Each unit then
        skips exactly what a local run skips. Default: a source without event ids has no duplicates."""
        return [() for _ in inputs]

    def input_names(self) -> list[str]:
        """After begin_job: the input names in reading order (what an output must not overwrite). A source
        that may leave inputs unopened (past maxEvents) gives them without opening them; default: from
        ``inputs``."""
        return [name for name, _ in self.inputs()]

    def inputs(self) -> list[tuple[str, int]]:
        """After begin_job: (input name, number of entries) in reading order, to split into work units.
        A source that cannot be split keeps this default and runs only locally."""
        raise NotImplementedError(f"{type(self).__name__} cannot be split into work units")

    def read_range(self, name: str, start: int, stop: int, duplicates: tuple[tuple[int, int], ...] = ()
                   ) -> Iterator[tuple["EventID", dict[str, Any]]]:
        """Events of entries ``start``..``stop`` of input ``name`` (one work unit), like ``events``;
        ``duplicates``: its entry runs that ``plan_duplicates`` found, to skip and count."""
        raise NotImplementedError(f"{type(self).__name__} cannot read work units")

    def accounting(self) -> dict[str, int]:
        """Counts for the job report: entries read and skipped, files opened."""
        return {}

    def data_quality(self) -> dict[str, int]:
        """Counts of odd data in the inputs (invalid index links, jets without constituents)."""
        return {}
