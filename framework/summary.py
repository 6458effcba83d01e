"""End-of-job counters: what TrigReport prints and every report builds on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModuleCounters:
    """CMSSW's Visited / Executed / Passed / Failed / Error of one module (or one module on one path).

    Visited counts every time a path reached the module (a module on two paths is visited twice);
    Executed counts the times it actually ran (once per event at most), as Schedule.cc's timesRun."""

    visited: int = 0
    executed: int = 0
    passed: int = 0
    failed: int = 0
    error: int = 0

    def add(self, other: "ModuleCounters") -> None:
        self.visited += other.visited
        self.executed += other.executed
        self.passed += other.passed
        self.failed += other.failed
        self.error += other.error


@dataclass
class PathModuleCounters:
    """Visited / Passed / Failed / Error of one module on one path: CMSSW's "Modules in Path" rows. No
    Executed here: a module runs at most once per event whatever its paths, so that count is the
    module's own (``JobSummary.modules``); the label makes each row readable in ``hltrun.json``."""

    label: str = ""
    visited: int = 0
    passed: int = 0
    failed: int = 0
    error: int = 0

    def add(self, other: "PathModuleCounters") -> None:
        self.visited += other.visited
        self.passed += other.passed
        self.failed += other.failed
        self.error += other.error


@dataclass
class PathCounters:
    """Executed / Passed / Failed / Error of one path, plus its modules' counters in path order."""

    executed: int = 0
    passed: int = 0
    failed: int = 0
    error: int = 0
    modules: list[PathModuleCounters] = field(default_factory=list)

    @classmethod
    def for_labels(cls, labels: "list[str]") -> "PathCounters":
        """Zeroed counters for a path holding these module labels, in order."""
        return cls(modules=[PathModuleCounters(label) for label in labels])

    def add(self, other: "PathCounters") -> None:
        self.executed += other.executed
        self.passed += other.passed
        self.failed += other.failed
        self.error += other.error
        for mine, theirs in zip(self.modules, other.modules):
            mine.add(theirs)


@dataclass
class JobSummary:
    """Everything counted in one job; every event read is accounted for here."""

    process: str
    streams: int
    events_read: int = 0  # events handed out by the source
    events_skipped: int = 0  # skipEvents: entries passed over without being read
    events_processed: int = 0
    events_passed: int = 0
    events_failed: int = 0
    events_error: int = 0
    events_not_processed: int = 0  # read but not processed because the job stopped on an error
    events_duplicate: int = 0  # read from a file but skipped: (run, lumi, event) seen before (duplicateCheckMode)
    begin_run_calls: int = 0  # run transitions (CMSSW's NumberBeginRunCalls); a Dask unit begins its own
    begin_lumi_calls: int = 0  # lumi transitions (NumberBeginLumiCalls)
    bad_files: list[str] = field(default_factory=list)  # "path: reason" of files skipped (skipBadFiles)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)  # module -> error kind -> failed events
    # label -> counter -> count: odd data met on the way (non-finite jets, empty events, events without a
    # score, invalid index links, jets without constituents); all counters add up over streams and jobs
    data_quality: dict[str, dict[str, int]] = field(default_factory=dict)
    paths: dict[str, PathCounters] = field(default_factory=dict)
    endpaths: dict[str, PathCounters] = field(default_factory=dict)
    path_entries: dict[str, list[str]] = field(default_factory=dict)  # name -> ["~label", ...]
    modules: dict[str, ModuleCounters] = field(default_factory=dict)
    module_types: dict[str, str] = field(default_factory=dict)
    module_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: dict[str, int] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # job-level facts modules recorded (accelerator choice)
    # a distributed run's units: each way they ran (facts, units, workers; framework/provenance.variant),
    # folded into ``facts`` by the client (its ``variants`` where they differ)
    fact_variants: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0  # from the process start (interpreter included) to the end of the job
    loop_s: float = 0.0  # from the first pull (its chunk read included) to the last event done: the throughput window
    time_to_first_event_s: float | None = None
    begin_job_s: float = 0.0
    failure: str | None = None  # the one-line error that stopped the job, if any
    stopped_by_signal: str | None = None  # SIGINT / SIGTERM / SIGHUP / SIGUSR2 when a signal stopped the job
    budget_ms: float = 100.0
    input_rate_hz: float = 100_000.0
    executor: dict[str, Any] = field(default_factory=dict)  # type, workers, dashboard, units (distributed runs)
    workers: dict[str, dict[str, float]] = field(default_factory=dict)  # per worker: units, events, busy_s, begin_job_s
    retried_units: list[dict[str, Any]] = field(default_factory=list)  # units re-run after a lost worker, and why

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        from .weights import readable

        out = asdict(self)
        out.pop("fact_variants")  # the client's working list: what it found is in ``facts``
        # the modules' fixed-point weight sums as floats: exact integers to merge, unreadable as JSON numbers
        out["module_summaries"] = {label: readable(counters) if isinstance(counters, dict) else counters
                                   for label, counters in out["module_summaries"].items()}
        return out
