"""What the framework hands plugins at begin_job, apart from process.py so that the core modules
(config, module, service, schedule) never import the Process that builds them.

* ``JobContext``: what services see (the configuration, signals, module descriptions): services
  observe the whole job by design.
* ``ModuleContext``: what one module sees, as a CMSSW EDProducer does: its label, the job's static
  facts, its declared (typed) consumes and produces, the services it asked for, and three typed
  channels (``request``, ``global_cache``, ``record_accelerator``, ``record_cut``) in place of writable
  dicts, and the job's ``provenance`` for the files it writes.
* ``SourceContext``: the source's version: the event range and what consumers requested of it.
* ``LoopState``: the event loop's own state (events in flight, draining, failed). Modules reach it
  only through the read-only ``StreamActivity`` service, and only if they ask for it.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Mapping, Sequence, TypeVar

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import ProcessConfig
    from .schema import InputTag
    from .signals import ActivityRegistry, ModuleDescription

T = TypeVar("T")
IDLE = sys.maxsize  # LoopState.in_flight of a stream that holds no event (above any event index)


@dataclass(frozen=True)
class JobContext:
    """What services may know about the job (never the modules' instances)."""

    config: "ProcessConfig"
    signals: "ActivityRegistry"
    descriptions: "list[ModuleDescription]"
    report_dir: Path | None = None
    units: bool = False  # events come in work units (distributed run): outputs write one part per unit
    worker: str | None = None  # the distributed worker running this Process (its address), for reports
    # a distributed worker with one thread: its units run one at a time, so the process's CPU over a unit is
    # that unit's (the Timing service's unattributed CPU); with more, several units share the process
    units_in_turn: bool = False

    @property
    def options(self):  # noqa: ANN201 - the config's Options
        return self.config.options


class LoopState:
    """The event loop's state; written by the loop only. ``in_flight``: per stream, the index of the
    event it processes (``IDLE`` if none); ``draining``: no new event will be taken; ``failed``: the
    job stops early, on an error or a signal; ``graceful``: only a graceful signal stopped it (SIGUSR2,
    SIGINT: framework/interrupt.py), so the outputs commit the events finished before it; ``stopped_by``:
    that signal's name, which each kept output records (its file must not pass for the whole input)."""

    __slots__ = ("in_flight", "draining", "failed", "graceful", "stopped_by")

    def __init__(self, streams: int = 1) -> None:
        self.in_flight: list[int] = [IDLE] * streams
        self.draining = False
        self.failed = False
        self.graceful = False
        self.stopped_by: str | None = None


class StreamActivity:
    """A read-only view of ``LoopState``: the one service a module may ask for to see which events are
    in flight (a cross-event batcher, an output ordering its writes). Modules never write it."""

    name = "StreamActivity"
    __slots__ = ("_state",)

    def __init__(self, state: LoopState) -> None:
        self._state = state

    def in_flight(self) -> Sequence[int]:
        return self._state.in_flight

    def draining(self) -> bool:
        return self._state.draining

    def failed(self) -> bool:
        """The job stops early (an error or a signal): nothing may wait on more input."""
        return self._state.failed

    def commit_outputs(self) -> bool:
        """At end_job: may the outputs commit what they wrote? Yes at a normal end and after a graceful
        stop (cmsRun's SIGUSR2 / SIGINT); no after an error or a hard signal (SIGTERM, SIGHUP)."""
        return not self._state.failed or self._state.graceful

    def stopped_by(self) -> str | None:
        """The graceful signal (``SIGUSR2``, ``SIGINT``) after which the outputs commit only the events
        finished before it; None when they hold every event of the job (or are dropped)."""
        return self._state.stopped_by if self._state.graceful else None


class Prescales:
    """The job's prescale table, read-only: the factor of a path in the default column (CMSSW's
    ``PrescaleService::getPrescale(pathName)``), the column in force in a lumi section and a path's
    factor in it (``getPrescale(set, pathName)``); 1 for every path when the job configures no
    ``PrescaleService`` (as HLTPrescaler without the service)."""

    name = "Prescales"
    __slots__ = ("column", "_factors", "_table")

    def __init__(self, state: LoopState, config: "ProcessConfig") -> None:
        cfg = config.services.get("PrescaleService")
        table = cfg.params if cfg is not None else None
        self._table = table
        self.column: str | None = table.lvl1DefaultLabel if table is not None else None
        self._factors: dict[str, int] = ({row.pathName: row.prescales[table.column(None)] for row in table.prescaleTable}
                                         if table is not None else {})

    def prescale(self, path: str) -> int:
        return self._factors.get(path, 1)

    def column_at(self, run: int, lumi: int) -> int:
        """The index of the column in force in (run, lumi) (the emulated L1 GT's; -1: no table)."""
        return self._table.column_at(run, lumi) if self._table is not None else -1

    def prescale_in(self, path: str, index: int) -> int:
        return self._table.prescale_in(path, index) if self._table is not None else 1

    def factors(self, path: str) -> list[tuple[str, int]]:
        """(column, the path's factor) for each column the job can run in; empty when no table."""
        if self._table is None:
            return []
        return [(label, self._table.prescale(path, label)) for label in self._table.columns_in_use()]


# what a module may ask for in ``Module.services`` (a name -> how the framework makes it, from the
# loop's state and the validated configuration)
MODULE_SERVICES: dict[str, Callable[[LoopState, "ProcessConfig"], Any]] = {
    StreamActivity.name: lambda state, config: StreamActivity(state),
    Prescales.name: Prescales,
}


@dataclass(frozen=True)
class AcceleratorChoice:
    """Where a module runs its inference and why (``--job-report`` and the reports' facts)."""

    backend: str
    device: str
    reason: str
    model: str
    model_id: str
    # ``auto`` by measurement: one row per engine timed (backend, us_per_jet, max_rel_diff, agrees, note)
    timings: tuple[dict[str, Any], ...] = ()
    model_sha256: str = ""  # of the file that runs (and its external data): which network, months later
    # how the scores are not plain float32 scores of each jet alone, measured (modules/inference/fidelity.py)
    caveats: tuple[str, ...] = ()
    # a network imported into ONNX (modules/inference/model_import.py): the original file, its sha256, the converter
    imported_from: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend, "device": self.device, "reason": self.reason,
                               "model": self.model, "model_id": self.model_id}
        if self.model_sha256:
            out["model_sha256"] = self.model_sha256
        if self.timings:
            out["timings"] = [dict(row) for row in self.timings]
        if self.caveats:
            out["caveats"] = list(self.caveats)
        if self.imported_from:
            out["imported_from"] = dict(self.imported_from)
        return out


class Channels:
    """The job's typed channels between modules, shared by every ModuleContext of one Process:
    consumer requests by producer label, per-label global caches, accelerator choices, the cuts the
    filters apply. ``configuration``: the job's validated configuration as plain data (provenance)."""

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        self.requests: dict[str, set[Hashable]] = {}
        self.caches: dict[str, Any] = {}
        self.accelerators: dict[str, AcceleratorChoice] = {}
        self.cuts: dict[str, dict[str, Any]] = {}
        self.lumi_mask: dict[str, Any] | None = None  # the source's certification JSON (file, sha256)
        self.configuration = dict(configuration or {})
        self.lock = threading.Lock()

    def facts(self) -> dict[str, Any]:
        """What the report shows of the channels (``JobSummary.facts``), as strict JSON (``hltrun.json``)."""
        from .provenance import strict_json

        with self.lock:
            out: dict[str, Any] = {}
            if self.accelerators:
                out["accelerators"] = {label: c.as_dict() for label, c in self.accelerators.items()}
            if self.cuts:
                out["cuts"] = {label: dict(cut) for label, cut in self.cuts.items()}
            if self.lumi_mask:
                out["lumi_mask"] = dict(self.lumi_mask)
            return strict_json(out)

    def provenance(self) -> dict[str, Any]:
        """What made this job's decisions, for its output files: hltrun's version, the configuration,
        the networks that ran (with their sha256) and the cuts applied (CMSSW keeps the ParameterSets
        and the process history in every file for the same reason)."""
        from . import __version__
        from .provenance import record

        return record(__version__, self.configuration, self.facts())


class ProductInfo:
    """What a consumer may know of a product before any event: who makes it, its type, and what the
    producer publishes about it from its own parameters (``Module.product_metadata``, computed once,
    on first use). It is all ``check_config`` sees of another module."""

    def __init__(self, label: str, type_name: str, product_type: type | None, producer: type, params: Any) -> None:
        self.label = label
        self.type_name = type_name  # the producer's registered type
        self.type = product_type  # None: the producer declares no types
        self._producer, self._params = producer, params
        self._metadata: Mapping[str, Any] | None = None

    @property
    def metadata(self) -> Mapping[str, Any]:
        if self._metadata is None:
            self._metadata = self._producer.product_metadata(self._params)
        return self._metadata


@dataclass(frozen=True)
class Consumes:
    """One declared input: the parameter that names it, the tag, the product type expected, and the key
    path the tag sits at (``.keep[1]``), which an error about it names."""

    field: str
    tag: "InputTag"
    type: type | None = None
    at: str = ""


@dataclass(frozen=True)
class ModuleContext:
    """What a module receives at begin_job: nothing of the scheduler, nor of other modules' parameters."""

    label: str
    process: str = "HLTX"
    streams: int = 1
    accelerators: tuple[str, ...] = ("*",)
    paths: tuple[str, ...] = ()  # the job's path names (an output writes a decision per path)
    on_paths: tuple[str, ...] = ()  # the paths (and end paths) this module sits on
    report_dir: Path | None = None
    units: bool = False  # a distributed run: events come in work units (``begin_unit``)
    consumes: tuple[Consumes, ...] = ()
    # per ``consumes`` field: what its producer declares (type, published metadata such as thresholds)
    inputs: Mapping[str, ProductInfo] = field(default_factory=dict)
    produces: Mapping[str, type] = field(default_factory=dict)
    services: Mapping[str, Any] = field(default_factory=dict)
    channels: Channels = field(default_factory=Channels, repr=False, compare=False)
    prescaled_paths: tuple[str, ...] = ()  # the job's paths with an HLTPrescaler (an output records its stops)
    # per consumed tag (``label`` / ``label:instance``), typed or not: what its producer declares (an
    # output names a kept product's branch by it)
    consumed: Mapping[str, ProductInfo] = field(default_factory=dict)

    def service(self, name: str) -> Any:
        """A service the module listed in its class's ``services``; anything else is a programming error."""
        try:
            return self.services[name]
        except KeyError:
            raise ConfigError(f"modules.{self.label}: uses service {name!r} without asking for it "
                              f"(list it in the module class's services)") from None

    def request(self, producer: str, spec: Hashable) -> None:
        """Tell ``producer`` (a label this module consumes) what it will read of its products, so that
        it prepares exactly that (CMSSW's consumes; the source reads per chunk what was requested)."""
        if producer not in {c.tag.label for c in self.consumes}:
            raise ConfigError(f"modules.{self.label}: requests inputs of '{producer}', which it does not consume")
        with self.channels.lock:
            self.channels.requests.setdefault(producer, set()).add(spec)

    def requests(self) -> set[Hashable]:
        """What this module's consumers requested of it; live: complete once every module's begin_job
        has run (a batcher forwards its consumers' declared inputs to the source this way)."""
        with self.channels.lock:
            return self.channels.requests.setdefault(self.label, set())

    def global_cache(self, make: Callable[[], T]) -> tuple[T, bool]:
        """The one object all instances of this label share (CMSSW's GlobalCache): made by the first
        instance that asks; returns it and whether this call made it."""
        with self.channels.lock:
            if self.label in self.channels.caches:
                return self.channels.caches[self.label], False
            made = self.channels.caches[self.label] = make()
            return made, True

    def record_accelerator(self, choice: AcceleratorChoice) -> None:
        """Where this module runs (shown by the reports)."""
        with self.channels.lock:
            self.channels.accelerators[self.label] = choice

    def record_cut(self, cut: Mapping[str, Any]) -> None:
        """The cut this filter applies, as resolved (a card's threshold, not only its file name): the
        reports' facts and the output files' provenance."""
        with self.channels.lock:
            self.channels.cuts[self.label] = dict(cut)

    def provenance(self) -> dict[str, Any]:
        """The job's provenance record (``Channels.provenance``); complete once every begin_job ran."""
        return self.channels.provenance()


@dataclass(frozen=True)
class SourceContext:
    """What the source receives at begin_job: the events the job reads and what consumers requested."""

    label: str = "source"
    skip_events: int = 0
    max_events: int = -1  # -1: all
    units: bool = False  # a distributed run: this process reads only some ranges (``read_range``)
    channels: Channels = field(default_factory=Channels, repr=False, compare=False)
    activity: StreamActivity | None = field(default=None, repr=False, compare=False)
    # the source's product instances ("" its main one) that modules consume, from the configuration:
    # one that not every input can give is refused at the source's begin_job, before any model loads
    consumed: frozenset[str] = frozenset()

    @classmethod
    def standalone(cls, *requests: Hashable, label: str = "source") -> "SourceContext":
        """A source used on its own (tests, benchmarks): every entry, and these consumer requests."""
        ctx = cls(label)
        ctx.requests().update(requests)
        return ctx

    def job_failed(self) -> bool:
        """At end_job: did the job stop on an error (then the source waits for no reader)?"""
        return self.activity is not None and self.activity.failed()

    @property
    def entries_needed(self) -> int | None:
        """Entries the job reads (skip + max); None: every entry may be read."""
        return None if self.max_events < 0 else self.skip_events + self.max_events

    def requests(self) -> set[Hashable]:
        """What consumers requested of this source; live: filled by the modules' begin_job, after the source's."""
        with self.channels.lock:
            return self.channels.requests.setdefault(self.label, set())

    def record_lumi_mask(self, mask: Mapping[str, Any]) -> None:
        """The certification JSON that selected the job's lumi sections (its file and sha256): the reports'
        facts and the output files' provenance, as a scorer's network is recorded."""
        with self.channels.lock:
            self.channels.lumi_mask = dict(mask)
