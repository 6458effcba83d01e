"""Test-only plugins, registered under names starting with ``Test``."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hltrun.framework.event import EventID
from hltrun.framework.module import Analyzer, Filter, Producer, Source
from hltrun.framework.registry import register_module, register_service
from hltrun.framework.schema import InputTag, limited
from hltrun.framework.service import Service


def burn_cpu(ms: float) -> None:
    """Spin on the thread's CPU clock for ``ms`` milliseconds of CPU time."""
    end = time.thread_time() + ms * 1e-3
    while time.thread_time() < end:
        pass


@dataclass
class CountingSourceParameters:
    n: int = limited(10, 0, 100_000)  # the configuration fuzz test may set it: a job of seconds at most


@register_module("TestCountingSource")
class CountingSource(Source):
    """Yields events 1..n with the event number as the product."""

    Parameters = CountingSourceParameters

    def events(self, skip: int, limit: int | None):
        stop = self.params.n if limit is None else min(self.params.n, skip + limit)
        for i in range(skip, stop):
            yield EventID(1, 1, i + 1), {"": i + 1}


@dataclass
class ModParameters:
    src: InputTag = InputTag("source")
    divisor: int = 2
    fail_on: int = -1  # raise on this event number
    sleep_ms: float = 0.0


@register_module("TestModuloFilter")
class ModuloFilter(Filter):
    """Passes events whose number is divisible by ``divisor``."""

    Parameters = ModParameters

    def filter(self, event) -> bool:
        n = event.get(self.params.src)
        if n == self.params.fail_on:
            raise ValueError(f"boom on {n}")
        if self.params.sleep_ms:
            time.sleep(self.params.sleep_ms / 1000)
        return n % self.params.divisor == 0


@register_module("TestSquare")
class Square(Producer):
    """Puts the square of its input; counts its calls (one instance per stream)."""

    Parameters = ModParameters

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.calls = 0

    def produce(self, event) -> None:
        self.calls += 1
        n = event.get(self.params.src)
        if n == self.params.fail_on:
            raise ValueError(f"boom on {n}")
        if self.params.sleep_ms:
            time.sleep(self.params.sleep_ms / 1000)
        event.put(n * n)

    def summary(self) -> dict:
        return {"calls": self.calls}


@dataclass
class RecorderParameters:
    src: list[InputTag] = field(default_factory=list)


RECORDED: dict[str, list] = {}
_LOCK = threading.Lock()


@register_module("TestRecorder")
class Recorder(Analyzer):
    """Records (event number, products) into RECORDED[label] for assertions."""

    Parameters = RecorderParameters
    concurrency = "global"

    def analyze(self, event) -> None:
        with _LOCK:
            RECORDED.setdefault(self.label, []).append(
                (event.id.event, tuple(event.get(t) for t in self.params.src)))


@dataclass
class KillOnceParameters:
    marker: str = ""  # file created just before the kill: the module fires once per marker
    event: int = 0  # event number (EventID.event) on which to kill this process
    run: int = 1


@register_module("TestKillOnce")
class KillOnce(Analyzer):
    """Kills its own process (SIGKILL, as an OOM kill would) on one event, once: a lost Dask worker."""

    Parameters = KillOnceParameters

    def analyze(self, event) -> None:
        import os
        import signal

        if (event.id.run, event.id.event) != (self.params.run, self.params.event):
            return
        try:
            fd = os.open(self.params.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # already fired once: the re-run of the unit goes through
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class SleepParameters:
    sleep_ms: float = 10.0
    started_file: str | None = None  # created at the first event: a test knows events are flowing
    started_after: int = 1  # ... or once this many events reached the module (a job well under way)
    lumi: str | None = None  # "run:lumi": sleep only on that lumi section's events (a Dask unit that ends last)


@register_module("TestSleep")
class Sleep(Analyzer):
    """Sleeps on every event: a slow job to interrupt."""

    Parameters = SleepParameters
    concurrency = "global"  # one instance (``started_after`` counts the job's events); streams sleep side by side

    def __init__(self, label: str, params: SleepParameters) -> None:
        super().__init__(label, params)
        self._seen = 0
        self._lock = threading.Lock()

    def analyze(self, event) -> None:
        if self.params.started_file is not None:
            with self._lock:
                self._seen += 1
                if self._seen == self.params.started_after:
                    open(self.params.started_file, "a").close()
        if self.params.lumi is None or self.params.lumi == f"{event.id.run}:{event.id.luminosityBlock}":
            time.sleep(self.params.sleep_ms / 1000)


@dataclass
class FailOnParameters:
    run: int = 1
    events: list[int] = field(default_factory=list)  # event numbers (EventID.event) that raise


@register_module("TestFailOn")
class FailOn(Analyzer):
    """Raises on the listed events: a module error for on_error tests on real ROOT input."""

    Parameters = FailOnParameters

    def analyze(self, event) -> None:
        if event.id.run == self.params.run and event.id.event in self.params.events:
            raise ValueError(f"bad event {event.id.event}")


@dataclass
class EventNumberFilterParameters:
    divisor: int = 2


@register_module("TestEventNumberFilter")
class EventNumberFilter(Filter):
    """Passes events whose EventID.event is divisible by ``divisor`` (a prefilter on real ROOT input)."""

    Parameters = EventNumberFilterParameters
    concurrency = "global"

    def filter(self, event) -> bool:
        return event.id.event % self.params.divisor == 0


@dataclass
class SlowReportParameters:
    started: str = ""  # touched after the first event: the loop runs, a signal now stops it cleanly
    writing: str = ""  # a line added each time this service's report file starts being written
    sleep_s: float = 60.0  # a hang guard: the test sends the signals it waits for
    until_signals: int = 1  # the report waits until the job has received this many signals


class _NoData:
    """A snapshot with nothing in it (reports are rendered only for services that measured)."""

    def merge(self, other: "_NoData") -> "_NoData":
        return self


@register_service("TestSlowReport")
class SlowReport(Service):
    """Says when events flow, and takes its time writing its report file, after the services before it
    wrote theirs: a test can send a signal during the loop, then while the report folder is written."""

    Parameters = SlowReportParameters

    def connect(self, signals, job) -> None:  # noqa: ANN001
        signals.post_event.connect(self._post_event)

    def _post_event(self, event, status) -> None:  # noqa: ANN001
        if self.params.started:
            Path(self.params.started).touch()

    def snapshot(self) -> _NoData:
        return _NoData()

    def write_files(self, report_dir, summary) -> list:  # noqa: ANN001
        from hltrun.framework.report.files import atomic_write_text

        from hltrun.framework import interrupt

        with open(self.params.writing, "a") as fh:
            fh.write("writing\n")
        deadline = time.monotonic() + self.params.sleep_s
        while len(interrupt._received) < self.params.until_signals and time.monotonic() < deadline:
            time.sleep(0.01)  # until the test's signal has arrived, however busy the machine
        return [atomic_write_text(report_dir / "slow.txt", "written\n")]


@dataclass
class WaitForFileParameters:
    path: str = ""  # the file whose creation lets the unit begin
    unit_start: int = 0  # the work unit (by its first entry) that waits
    timeout_s: float = 120.0  # a hang guard, not a timing: the test creates the file


@register_module("TestWaitForFile")
class WaitForFile(Analyzer):
    """Holds the start of one work unit until a file exists: a unit that begins (and opens its output
    part) only after another unit has stopped the job. List it before the output module."""

    Parameters = WaitForFileParameters

    def begin_unit(self, unit) -> None:  # noqa: ANN001
        import os

        if unit.start != self.params.unit_start:
            return
        deadline = time.monotonic() + self.params.timeout_s
        while not os.path.exists(self.params.path) and time.monotonic() < deadline:
            time.sleep(0.01)

    def analyze(self, event) -> None:
        pass


@dataclass
class RecordChoiceParameters:
    env: str = "HLTRUN_TEST_ENGINE"  # the environment variable of its process that names the engine


@register_module("TestRecordChoice")
class RecordChoice(Analyzer):
    """Records an accelerator choice named by its process's environment (``engine-a`` without it): Dask
    workers that choose differently, as ``backend: auto`` may on other CPUs or with another cached decision."""

    Parameters = RecordChoiceParameters

    def begin_job(self, ctx) -> None:  # noqa: ANN001
        from hltrun.framework.context import AcceleratorChoice

        ctx.record_accelerator(AcceleratorChoice(os.environ.get(self.params.env, "engine-a"), "cpu", "test",
                                                 "model.onnx", "test_model"))

    def analyze(self, event) -> None:
        pass


def statm() -> tuple[int, int]:
    """(virtual size, RSS) in bytes from /proc/self/statm: the tests' own reading, not the service's."""
    import os

    with open("/proc/self/statm") as fh:
        size, resident = fh.read().split()[:2]
    page = os.sysconf("SC_PAGE_SIZE")
    return int(size) * page, int(resident) * page


@dataclass
class MemoryBumpParameters:
    mb: int = limited(96, 1, 1024)
    hold_from: int = 0  # event number (EventID.event) whose call maps and fills ``mb`` MB
    hold_until: int = 0  # event number whose call unmaps them


WITNESS: dict[str, dict[str, tuple[int, int]]] = {}  # label -> {"before"/"held": (vsize, RSS) bytes}


@register_module("TestMemoryBump")
class MemoryBump(Analyzer):
    """Holds ``mb`` MB of fresh, written pages from event ``hold_from`` to ``hold_until``: the job's
    peak RSS and virtual size lie in between, ``mb`` above the values before and after. Its own
    readings just before mapping and with the pages held go to ``WITNESS[label]``. A fresh anonymous
    mapping (not malloc, which may reuse resident pages) that ``close`` returns to the system."""

    Parameters = MemoryBumpParameters

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self._block: Any = None

    def analyze(self, event) -> None:
        import mmap

        import numpy as np

        if event.id.event == self.params.hold_from:
            before = statm()
            self._block = mmap.mmap(-1, self.params.mb << 20)
            np.frombuffer(self._block, dtype=np.uint8).fill(1)  # every page written
            WITNESS[self.label] = {"before": before, "held": statm()}
        elif event.id.event == self.params.hold_until and self._block is not None:
            self._block.close()
            self._block = None


@dataclass
class LumiRecorderParameters:
    sleep_ms: float = 0.0  # per event: keeps several streams' events in flight at once


LUMI_CALLS: dict[str, list] = {}  # label -> [("begin_lumi", run, lumi), ("event", run, lumi, open), ...]


@dataclass
class LumiFailParameters:
    lumi: int = 2  # begin_lumi of this lumi section raises


@register_module("TestLumiFail")
class LumiFail(Analyzer):
    """begin_lumi raises at one lumi section: the job stops with one line naming module and hook."""

    Parameters = LumiFailParameters

    def begin_lumi(self, run: int, lumi: int) -> None:
        if lumi == self.params.lumi:
            raise RuntimeError("conditions not found")

    def analyze(self, event) -> None:
        pass


@register_module("TestLumiRecorder")
class LumiRecorder(Analyzer):
    """Records its run/lumi hooks and, per event, the (run, lumi) open when the event ran, so a test
    can check that no event runs outside its own lumi section on any stream."""

    Parameters = LumiRecorderParameters

    def __init__(self, label: str, params: LumiRecorderParameters) -> None:
        super().__init__(label, params)
        self._open: tuple[int, int] | None = None

    def _note(self, *what: Any) -> None:
        with _LOCK:
            LUMI_CALLS.setdefault(self.label, []).append(what)

    def begin_run(self, run: int) -> None:
        self._note("begin_run", run)

    def end_run(self, run: int) -> None:
        self._note("end_run", run)

    def begin_lumi(self, run: int, lumi: int) -> None:
        self._open = (run, lumi)
        self._note("begin_lumi", run, lumi)

    def end_lumi(self, run: int, lumi: int) -> None:
        self._open = None
        self._note("end_lumi", run, lumi)

    def analyze(self, event) -> None:
        if self.params.sleep_ms:
            time.sleep(self.params.sleep_ms * 1e-3)
        self._note("event", event.id.run, event.id.luminosityBlock, self._open)


@dataclass
class LeakOnFirstUnitParameters:
    kb_per_event: int = 64


@register_module("TestLeakOnFirstUnit")
class LeakOnFirstUnit(Producer):
    """A leak in one Dask worker only: from the job's first event (index 0) on, the process that ran it keeps
    ``kb_per_event`` more per event (a fresh mapping, every page written, so RSS grows whatever malloc holds
    free). A local run is that one process all along."""

    Parameters = LeakOnFirstUnitParameters

    def begin_job(self, job) -> None:
        import mmap

        self._mmap = mmap.mmap
        self.kept: list[Any] = []
        self.leaking = False

    def produce(self, event) -> None:
        self.leaking = self.leaking or event.index == 0
        if self.leaking and self.params.kb_per_event:
            block = self._mmap(-1, self.params.kb_per_event * 1024)
            block.write(b"\1" * len(block))
            self.kept.append(block)
        event.put(len(self.kept))


@dataclass
class PooledBurnParameters:
    burn_ms: float = 2.0


@register_module("TestPooledBurn")
class PooledBurn(Analyzer):
    """Hands ``burn_ms`` of CPU per event to a thread it starts and joins (as numpy hands a matmul to
    OpenBLAS's threads): its stream's thread only waits, so no module's CPU time holds the burn."""

    Parameters = PooledBurnParameters

    def analyze(self, event) -> None:
        pool = threading.Thread(target=burn_cpu, args=(self.params.burn_ms,), name="pool")
        pool.start()
        pool.join()


@dataclass
class EndJobWriterParameters:
    file: str = ""  # where end_job writes the events counted


@register_module("TestEndJobWriter")
class EndJobWriter(Analyzer):
    """A user's analyzer that writes its result in end_job (a histogram file, say), as the Module docstring
    invites: Dask workers never call end_job."""

    Parameters = EndJobWriterParameters
    concurrency = "global"

    def begin_job(self, ctx) -> None:  # noqa: ANN001
        self.events = 0

    def analyze(self, event) -> None:
        self.events += 1

    def end_job(self) -> None:
        Path(self.params.file).write_text(f"{self.events}\n")
