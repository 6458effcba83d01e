"""Run a job on Dask.distributed: a LocalCluster of process workers, or an existing scheduler.

The client splits the input into work units (framework/units.py), submits one task per unit with the
configuration as data (worker.py builds the Process once per worker), merges the returned results in a
balanced tree as they arrive, assembles the output parts in input order and removes them. A worker
that dies mid-unit has its unit re-run by the scheduler (``executor.retries`` = Dask's
``allowed-failures``); the job report names every unit that was re-run and on which worker it was lost.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from ..config import ProcessConfig
from ..errors import CMSSW_CATEGORIES, ConfigError, HltError, ModuleError
from ..interrupt import (Interrupted, before_abort, exit_code_of, forget_temporary, handle_signals,
                         register_temporary, signals_held, stop_callback)
from ..provenance import variants_line, with_variants
from ..resources import remote_url
from ..results import JobResult, Merger
from ..extras import need
from ..summary import JobSummary
from ..units import WorkUnit, events_after, plan_units
from .local import Outcome
from .worker import EVENTS_TOPIC, PER_FILE, JobSpec, run_unit

log = logging.getLogger("hltrun")
DRAIN_S = 300.0  # the longest wait for units still running when the job stops (a hang guard)
_ASK_S = 30.0  # the longest wait for one answer from the scheduler or the workers, or to close
# a worker's task states in which it runs, or may still start, a unit (a cancelled one runs on)
_ACTIVE = frozenset({"waiting", "ready", "constrained", "executing", "long-running", "cancelled", "resumed"})


def require_dask() -> None:
    for module in ("dask", "distributed"):
        need(module, "options.executor.type=dask", ConfigError)


class Plan(NamedTuple):
    """The client's plan: the units, the source's counters as a local run counts them, every input as
    configured, the bad files it skipped (``skipBadFiles``): (input as configured, the reports' line), and the
    entries of each input (as configured; None: not opened)."""

    units: list[WorkUnit]
    accounting: dict[str, int]
    inputs: list[str]
    skipped: list[tuple[str, str]]
    entries: list[tuple[str, int | None]]


def plan(cfg: ProcessConfig) -> Plan:
    """Open the inputs once on the client (no module is built) and split them into units; also every input as
    configured, those not opened included (no output may replace one), and the bad files skipped (the workers
    open only their units' files, so no worker sees them). With maxEvents, the files past
    skipEvents + maxEvents are not opened, as a local job leaves them (``files_not_opened``); when duplicates
    in the files opened leave fewer events than maxEvents, the next files are opened, as a local run opens
    the next file when it reaches it."""
    from ..process import source_consumed

    opts = cfg.options
    source = cfg.source
    limit = None if opts.maxEvents < 0 else opts.maxEvents
    if limit == 0:  # no event to read: no unit, whatever selects events (run_dask runs it locally, as it is)
        return Plan([], {}, [], [], [])
    needed = None if limit is None else opts.skipEvents + limit
    while True:
        skipped: list[tuple[str, str]] = []
        try:
            listed = source.cls.plan_inputs(source.params, needed, source_consumed(cfg), skipped)
        except NotImplementedError as exc:
            raise ConfigError(f"options.executor.type=dask: {exc}") from None
        opened = list(itertools.takewhile(lambda item: item[1] is not None, listed))
        # the file the client checked, not whatever a worker finds at that relative name in its own folder
        inputs = [(name if remote_url(name) else os.path.abspath(name), n) for name, n in opened]
        # duplicates over the whole job, as a local run finds them: a check inside each unit alone misses
        # those whose first copy is in another unit (another file, or another part of the same file)
        duplicates = source.cls.plan_duplicates(source.params, inputs, opts.skipEvents, limit)
        short = 0 if limit is None else limit - events_after(inputs, opts.skipEvents, duplicates)
        if short <= 0 or len(opened) == len(listed):
            break
        needed = sum(n for _, n in inputs) + short  # at least one more file: the job reads on into it
    names = [name for name, _ in opened]  # as configured: what the reports call them (``as_configured``)
    units = plan_units(inputs, opts.skipEvents, limit, opts.executor.eventsPerTask, duplicates, names)
    total = sum(n for _, n in listed if n is not None)
    # as a local run counts them: the listed files, the entries of those opened, those never opened
    accounting = {"files": len(listed), "entries_in_files": total,
                  "files_not_opened": sum(n is None for _, n in listed), "skipped": min(opts.skipEvents, total)}
    return Plan(units, accounting, [name for name, _ in listed], skipped, listed)


def _connect(cfg: ProcessConfig):
    from distributed import Client, LocalCluster

    ex = cfg.options.executor
    if ex.address:
        try:
            return Client(ex.address, timeout="20s"), None
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"options.executor.address: no Dask scheduler reachable at {ex.address} "
                              f"({type(exc).__name__}: {exc})") from None
    quiet = logging.ERROR if log.isEnabledFor(logging.DEBUG) else logging.CRITICAL  # tracebacks: --debug
    _start_resource_tracker()
    cluster = LocalCluster(n_workers=ex.workers, threads_per_worker=ex.threadsPerWorker, processes=True,
                           dashboard_address=":0", silence_logs=quiet)
    client = Client(cluster)
    client.register_plugin(_quiet_worker_plugin(quiet), name="hltrun-quiet-worker")
    return client, cluster


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (which our LocalCluster's worker processes share) with
    SIGUSR2 blocked, which it inherits: it ignores SIGINT and SIGTERM but not SIGUSR2, so a graceful stop
    sent to the whole process group (``scancel --signal=USR2``) killed it, and the workers' clean-up then
    printed KeyError tracebacks. Blocked, not ignored: a SIGUSR2 meanwhile reaches hltrun once unblocked."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        return
    from multiprocessing import resource_tracker

    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _quiet_worker_plugin(level: int):
    from distributed import WorkerPlugin

    class QuietWorker(WorkerPlugin):
        """Our LocalCluster's workers share the terminal's process group and its stderr. Ctrl-C is the
        client's to handle (cancel, close the cluster), not a traceback from every worker; and Dask's
        own logs stay below ``level`` (CRITICAL, ERROR with --debug): a worker that loses the scheduler
        while the cluster stops on a busy machine logged "Failed to communicate with scheduler during
        heartbeat" with a traceback, while what goes wrong in a unit comes back through its result (a
        failed unit, a lost worker) as one line. (LocalCluster's ``silence_logs`` quiets only the
        nanny's logger in a worker process.) Also for restarted workers."""

        def __init__(self, level: int) -> None:
            self.level = level

        def setup(self, worker) -> None:  # noqa: ANN001 - runs in the worker's main (event-loop) thread
            logging.getLogger("distributed").setLevel(self.level)
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # a graceful stop sent to the whole group

    return QuietWorker(level)


def check_destinations(cfg: ProcessConfig, inputs: list[str], report_dir: Path | None) -> None:
    """What a local run's ``Process.begin_job`` checks before any module begins, on the client, which builds
    no Process (its workers are other processes, which know nothing of this job's other files): the report
    folder, and each output against the job's input files and its other writers. Without it an output named
    as the input replaced the input, and one named as ``-j`` or a report file was replaced; one named as an
    input past maxEvents (not opened, no unit reads it) replaced it until 2026-12-07, where a local run refuses."""
    from ..module import OutputModule
    from ..process import check_outputs, check_report_folder
    from ..signals import ModuleDescription

    if report_dir is not None:
        check_report_folder(report_dir, [pc.cls(name, pc.params) for name, pc in cfg.services.items()],
                            [pc.cls for pc in cfg.modules.values()])
    outputs = [(ModuleDescription(label, pc.type, pc.cls.kind, i), pc.cls(label, pc.params))
               for i, (label, pc) in enumerate(cfg.modules.items(), start=1) if issubclass(pc.cls, OutputModule)]
    check_outputs(dict.fromkeys(inputs), outputs)


def end_job_not_run(cfg: ProcessConfig) -> list[str]:
    """The modules whose end_job may do more than release (``Module.end_job_releases_only``) and that have no
    end_unit: a Dask worker never calls end_job (its Process serves unit after unit, then is dropped), so what
    they write or flush there does not happen, where a local run did it with no word of the difference."""
    from ..module import Module

    return [f"'{m.label}' ({m.type})" for m in cfg.modules.values()
            if getattr(m.cls, "end_job", None) is not Module.end_job and getattr(m.cls, "end_unit", None) is Module.end_unit
            and not getattr(m.cls, "end_job_releases_only", False)]


def run_dask(cfg: ProcessConfig, started_at: float, progress: bool, report_dir: Path | None = None) -> Outcome:
    require_dask()
    import dask

    unrun = end_job_not_run(cfg)
    if unrun:
        log.warning("Dask: module %s %s an end_job, which Dask workers never call: what it writes or flushes there "
                    "does not happen on Dask (a local run does it); give %s an end_unit, or run locally "
                    "(docs/distributed.md)", ", ".join(unrun), "has" if len(unrun) == 1 else "have",
                    "it" if len(unrun) == 1 else "them")

    t_start = time.time() - (time.perf_counter() - started_at)  # the job's start as epoch seconds
    ex = cfg.options.executor
    units, accounting, inputs, skipped, entries = plan(cfg)
    check_destinations(cfg, inputs, report_dir)
    if not units:
        from .local import run_local

        log.info("nothing to distribute (no events selected): running locally")
        return run_local(cfg, None, started_at, progress)
    spec = JobSpec.from_config(cfg)
    results = Merger()  # merged as units finish: the client holds O(log units) partial results
    failure: tuple[str, int, BaseException | None] | None = None
    client = cluster = None
    signals = contextlib.ExitStack()  # SIGTERM / SIGHUP stop the job like Ctrl-C (framework/interrupt.py)
    signals.enter_context(handle_signals())
    bar = None
    dashboard, threads, retried, futures = None, {}, [], {}
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": ex.retries}):
            client, cluster = _connect(cfg)
        if cluster is not None:  # a second signal's abort stops our workers before it removes their parts
            signals.enter_context(before_abort(lambda: _kill_workers(cluster)))
        dashboard = client.dashboard_link
        info = client.scheduler_info()["workers"]
        threads = {addr: w.get("nthreads", 1) for addr, w in info.items()}
        n_workers = len(info)
        log.info("Dask: %d worker(s), %d unit(s) of at most %d events; dashboard %s",
                 n_workers, len(units), ex.eventsPerTask, dashboard)
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(u.events for u in units), unit="evt", desc="hltrun[dask]", leave=False,
                       dynamic_ncols=True, mininterval=0.5)
        _hold_parts(cfg, units)
        futures = {client.submit(run_unit, spec, unit, key=f"hltrun-{spec.run_id}-{unit.tag}", pure=False): unit
                   for unit in units}
        failure = _collect(client, futures, results, bar, ex.retries)
        retried = _retried_units(client, futures, spec.run_id)
        for fut in futures:
            fut.release()
    except KeyboardInterrupt as exc:
        failure = (f"{str(exc) or 'interrupted'}; the cluster was stopped", exit_code_of(exc), exc)
    except HltError:
        raise
    except OSError as exc:
        failure = (f"Dask: {type(exc).__name__}: {exc}", ModuleError.exit_code, exc)  # the cluster lost the job: 4
    finally:
        if bar is not None:
            bar.close()
        if client is not None and cluster is None:  # our own cluster's workers stop with it
            _drain(client, futures, f"hltrun-{spec.run_id}-")
        _close(client, cluster)
        signals.close()
    merged = results.result() if results.count else JobResult(JobSummary(cfg.process, cfg.options.streams_in_flight,
                                                                     budget_ms=cfg.options.budgetMs,
                                                                     input_rate_hz=cfg.options.inputRateHz))
    s = merged.summary
    s.streams = cfg.options.streams_in_flight
    s.executor = {"type": "dask", "address": ex.address or "LocalCluster", "workers": len(s.workers) or ex.workers,
                  "units": len(units), "units_done": results.count, "events_per_task": ex.eventsPerTask,
                  "dashboard": dashboard, "threads": threads}
    s.retried_units = retried
    _fold_variants(s)
    s.source = with_skipped(as_configured({**s.source, **accounting}, units), s, skipped, entries)
    s.source.update(_cut_short(cfg, units))
    s.events_skipped = accounting["skipped"]
    s.wall_s = time.perf_counter() - started_at
    if merged.first_event_epoch is not None:
        s.time_to_first_event_s = merged.first_event_epoch - t_start
        s.loop_s = merged.last_event_epoch - merged.first_event_epoch
    s.begin_job_s = max((w.get("begin_job_s", 0.0) for w in s.workers.values()), default=0.0)
    noted: list[Interrupted] = []
    # every unit is done: a signal while the parts are assembled is noted, the output finished, the job stopped
    # by it, as a local job's end_job (it was raised at once: no report; or, raised inside a destructor of the
    # reader, printed as "Exception ignored" with its traceback and lost: exit 0)
    # a graceful signal (SIGUSR2, SIGINT: framework/interrupt.py) keeps the parts of the units done, as a local
    # job keeps the events finished before it; an error, SIGTERM or SIGHUP drops them
    keep = failure is None or (isinstance(failure[2], Interrupted) and failure[2].graceful)
    early = failure[2].signame if keep and failure is not None and isinstance(failure[2], Interrupted) else None
    with handle_signals(), stop_callback(noted.append):
        _finish_outputs(cfg, units, merged, stopped=None if keep else failure[0], early=early)
    if failure is None and noted:
        failure = (str(noted[0]), noted[0].exit_code, noted[0])
    if failure is not None:
        s.failure = failure[0]
        if isinstance(failure[2], Interrupted):  # as a local run says it: the signal, not an error
            s.stopped_by_signal = failure[2].signame
        return Outcome(merged, failure[1], failure[2] or HltError(failure[0]))
    return Outcome(merged)


def _cut_short(cfg: ProcessConfig, units: list[WorkUnit]) -> dict[str, Any]:
    """``{"lumis_cut_short": {"run:lumi": 1}}`` where maxEvents ended the job's last unit inside a lumi section its
    file holds more of, as a local run's source records it (the per-lumi rates flag it); {} otherwise, or where the
    source cannot tell (a source without ``lumi_cut_short``) or the file cannot be read again (the flag unknown)."""
    peek = getattr(cfg.source.cls, "lumi_cut_short", None)
    if cfg.options.maxEvents < 0 or not units or peek is None:
        return {}
    last = units[-1]
    try:
        key = peek(cfg.source.params, last.file, last.stop)
    except Exception as exc:  # noqa: BLE001 - a one-entry peek: the job's figures stand, only the flag is unknown
        log.debug("Dask: could not read the entry after maxEvents in %s: %s", last.file, exc)
        return {}
    return {"lumis_cut_short": {key: 1}} if key else {}


def as_configured(source: dict[str, Any], units: list[WorkUnit]) -> dict[str, Any]:
    """The source's per-input counters in input order, as a local run of the same configuration gives
    them: the workers name each input as configured (``worker._named``), but merge in the order units
    finish."""
    order = {name: i for i, name in enumerate(dict.fromkeys(u.name or u.file for u in units))}
    out = dict(source)
    for key in PER_FILE:
        per_file = source.get(key)
        if isinstance(per_file, dict):
            out[key] = {f: per_file[f] for f in sorted(per_file, key=lambda f: order.get(f, len(order)))}
    return out


def with_skipped(source: dict[str, Any], s: JobSummary, skipped: list[tuple[str, str]],
                 entries: Sequence[tuple[str, int | None]] = ()) -> dict[str, Any]:
    """The bad files the plan skipped (``skipBadFiles``) named and counted in ``s`` and ``source`` as a local run
    names them, before those a worker skipped when it reached them (each once: a worker's line comes with every
    unit it ran after it). No worker sees the plan's: it opens only its units' files (until 2026-12-07 every
    worker's begin_job opened every input, and named them). A file a worker skipped whole (one lacking a declared
    input's branch, which no plan sees) leaves the job's files and its entries (``entries``: the plan's, per
    input) as a local run's begin_job leaves them out: the entries in files stay the events read and given up."""
    lines = [line for _, line in skipped]
    s.bad_files = lines + [line for line in s.bad_files if line not in lines]
    out = dict(source)
    said = s.bad_files[len(lines):]  # a worker names a file as listed, or by the unit's path (another folder)
    by_worker = {os.path.realpath(name) for name, _ in entries
                 if any(line.startswith(f"{alias}: whole file skipped (") for line in said
                        for alias in (name, os.path.abspath(name)))}
    gone = [n or 0 for name, n in entries if os.path.realpath(name) in by_worker]
    if gone:
        out["files"] = out.get("files", 0) - len(gone)
        out["entries_in_files"] = out.get("entries_in_files", 0) - sum(gone)
    if skipped or "bad_files" in out:
        out["bad_files"] = len(s.bad_files)
    if skipped:
        out["bad_entries_per_file"] = {**{name: 0 for name, _ in skipped}, **(out.get("bad_entries_per_file") or {})}
    return out


def _fold_variants(s: JobSummary) -> None:
    """The job's facts from every unit's, not the first one's: each worker resolves ``backend: auto``
    (and any cut it reads) itself, as each CMSSW process chooses its accelerators, so workers on other
    CPUs, engines or cached decisions may run another engine. Where the units differ, every variant is
    kept (``facts.variants``, as the output's provenance keeps them) and one warning names it."""
    if s.fact_variants:
        s.facts = with_variants(s.fact_variants)
        if len(s.fact_variants) > 1:
            log.warning("Dask: the units did not all run the same way: %s; each variant is recorded in the "
                        "output's provenance and the report (facts.variants); name the engine (backend) to run "
                        "one everywhere", variants_line(s.fact_variants))
    s.fact_variants = []


def _collect(client, futures: dict, results: Merger, bar, retries: int):
    """Gather results as units finish; on the first failed unit cancel the rest and return the failure."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    pending = as_completed(list(futures))
    for fut in pending:
        unit = futures[fut]
        try:
            status, payload = fut.result()
        except KilledWorker:
            status, payload = "failed", (f"{unit}: its worker died {retries + 1} time(s) while running it "
                                         f"(options.executor.retries={retries} exhausted)", ModuleError.exit_code, None, None)  # the job failed running it: 4
        if status == "ok":
            with signals_held():  # a signal acts between units: the merged result and its parts stay one
                results.add(payload)
            if bar is not None:
                bar.update(unit.events)
            continue
        message, code, partial, category = payload
        if partial is not None:
            with signals_held():
                results.add(partial)
        client.cancel([f for f in futures if not f.done()])
        return message, code, unit_error(message, category)
    return None


def unit_error(message: str, category: str | None) -> HltError:
    """The error a failed unit stopped the job with, of the category the worker's error had, so that the
    job report's FrameworkError is what a local run gives (a corrupt file: 8021 FileReadError, not 8001)."""
    error = HltError(message)
    if category is not None:
        error.cmssw_type = category
        error.cmssw_code = CMSSW_CATEGORIES.get(category, HltError.cmssw_code)
    return error


def _retried_units(client, futures: dict, run_id: str) -> list[dict[str, Any]]:
    """Units the scheduler re-ran because their worker was lost, with the worker(s) lost."""
    keys = [f.key for f in futures]

    def suspicious(dask_scheduler=None, keys=keys):  # noqa: ANN001 - runs on the scheduler
        return {k: dask_scheduler.tasks[k].suspicious for k in keys
                if k in dask_scheduler.tasks and dask_scheduler.tasks[k].suspicious}

    try:
        lost = client.run_on_scheduler(suspicious, callback_timeout=_ASK_S)
    except Exception:  # noqa: BLE001 - reporting only
        log.debug("could not ask the scheduler for retried units", exc_info=True)
        return []
    starts: dict[int, list[str]] = {}
    try:
        for _, msg in client.get_events(EVENTS_TOPIC):
            if msg.get("job") == run_id:
                starts.setdefault(msg["unit"], []).append(msg["worker"])
    except Exception:  # noqa: BLE001
        pass
    by_key = {f.key: u for f, u in futures.items()}
    out = []
    for key, times in sorted(lost.items(), key=lambda kv: by_key[kv[0]].index):
        unit = by_key[key]
        workers = starts.get(unit.index, [])
        if len(workers) < 2:  # only queued on the lost worker, never started there: re-assigned, not re-run
            log.debug("%s was queued on a lost worker and re-assigned", unit)
            continue
        out.append({"unit": unit.index, "file": unit.file, "start": unit.start, "stop": unit.stop,
                    "retries": len(workers) - 1,
                    "reason": f"worker {', '.join(workers[:-1])} was lost while running it (killed or out of "
                              f"memory); re-run on {workers[-1]}"})
    return out


def _unfinished(prefix: str, dask_worker=None) -> list[str]:  # noqa: ANN001 - runs on each worker
    """This run's tasks the worker still runs or may start. A cancelled task runs on to its end (Dask
    cannot stop a running function), and its unit then writes its output part."""
    return [str(k) for k, ts in dask_worker.state.tasks.items() if str(k).startswith(prefix) and ts.state in _ACTIVE]


def _scheduled(prefix: str, dask_scheduler=None) -> list[str]:  # noqa: ANN001 - runs on the scheduler
    """This run's tasks the scheduler may still hand to a worker (a cancel not yet processed)."""
    return [str(k) for k, ts in dask_scheduler.tasks.items()
            if str(k).startswith(prefix) and ts.state in ("waiting", "queued", "no-worker", "processing")]


def _drain(client, futures: dict, prefix: str) -> None:
    """On a scheduler we do not own, the job's units still running when it stops (an error in
    another unit, a signal) run on after ``cancel``: wait for them, so that the parts they write
    exist before ``_finish_outputs`` removes them. Bounded by ``DRAIN_S``; then one warning."""
    client.cancel([f for f in futures if not f.done()])
    deadline = time.monotonic() + DRAIN_S
    said = False
    while True:
        try:
            busy = client.run_on_scheduler(_scheduled, prefix, callback_timeout=_ASK_S) + \
                [k for keys in client.run(_unfinished, prefix, on_error="ignore", callback_timeout=_ASK_S).values()
                 for k in keys]
        except Exception:  # noqa: BLE001 - the scheduler is gone: nothing of ours runs any more
            log.debug("asking Dask for running units", exc_info=True)
            return
        if not busy:
            return
        if time.monotonic() > deadline:
            log.warning("Dask: %d unit(s) still running after %.0f s; their output parts may be left beside "
                        "the output file", len(busy), DRAIN_S)
            return
        if not said:
            log.info("Dask: waiting for %d unit(s) still running on the workers", len(busy))
            said = True
        time.sleep(0.05)


def _close(client, cluster) -> None:
    for thing in (client, cluster):
        if thing is not None:
            try:
                thing.close(timeout=_ASK_S)
            except Exception:  # noqa: BLE001 - shutting down: nothing more to do
                log.debug("closing Dask", exc_info=True)


def _kill_workers(cluster: Any, wait_s: float = 2.0) -> None:
    """SIGKILL our LocalCluster's worker processes and wait (at most ``wait_s``) until they are gone: a unit a
    worker was finishing could otherwise rename its part into place just after a second signal's abort
    removed the parts (seen under load: ``o.root.unit00003.part`` left for ever). Called from the signal
    handler: nothing but reading the nannies' pids and system calls."""
    pids = [pid for nanny in list(cluster.workers.values()) if (pid := getattr(nanny, "pid", None))]
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _running(pid)]
        if pids:
            time.sleep(0.005)


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, killed but not yet reaped, no longer does)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _held_parts(cfg: ProcessConfig, units: list[WorkUnit]) -> list[Path]:
    """The output parts the units will leave (``OutputModule.part_file``)."""
    from ..module import OutputModule

    modules = [pc.cls(label, pc.params) for label, pc in cfg.modules.items() if issubclass(pc.cls, OutputModule)]
    return [part for module in modules for unit in units if (part := module.part_file(unit)) is not None]


def _hold_parts(cfg: ProcessConfig, units: list[WorkUnit]) -> None:
    """Every unit's output parts are this job's temporaries, from before the first unit runs until
    ``_finish_outputs`` assembles or removes them: a second signal's abort removes them too
    (framework/interrupt.py). It left them: after Ctrl-C twice, or a graceful stop then Ctrl-C,
    ``o.root.unit00000.part`` files stayed beside the output for ever; registered only once collected, the
    part of a unit done but not yet collected when the abort came stayed too."""
    for part in _held_parts(cfg, units):
        register_temporary(part)


def _finish_outputs(cfg: ProcessConfig, units: list[WorkUnit], merged: JobResult, stopped: str | None,
                    early: str | None = None) -> None:
    """Assemble each output module's parts in input order into its file (atomically); remove every part
    (also those of units whose result never arrived because the job stopped: ``stopped`` says why the
    outputs are dropped; None after a graceful signal too, which keeps the units done: their events are the
    merged summary's, so the file, ``events_written`` and the job report's <File> agree; ``early`` names
    that signal, which each file records as a local job's kept output does)."""
    from ..module import OutputModule

    by_module: dict[str, list[dict[str, Any]]] = {}
    for part in merged.parts:
        by_module.setdefault(part["module"], []).append(part)
    modules = {label: pc.cls(label, pc.params) for label, pc in cfg.modules.items() if issubclass(pc.cls, OutputModule)}
    targets = {label: module.output_file() for label, module in modules.items()}
    try:
        for label, parts in by_module.items():
            parts.sort(key=lambda p: p["unit"])
            target = Path(parts[0]["target"])
            if stopped is None:
                pc = cfg.modules[label]
                n = pc.cls.assemble([Path(p["part"]) for p in parts], target, pc.params, stopped_by=early)
                log.info("output %s: %d events from %d part(s)%s", target, n, len(parts),
                         f" (stopped by {early}: the units done when it came)" if early else "")
        summaries = merged.summary.module_summaries
        for label, module in modules.items():
            if stopped is None and (label in by_module or early is None):
                continue
            # dropped, or no unit done before a graceful stop: no file, and the summary says so as a local
            # job's does (it had no entry for the output, and nothing was said of it after a graceful stop)
            if targets[label]:
                log.warning("output %s not written: the job stopped (%s)", targets[label],
                            stopped or f"stopped by {early} before any work unit was done")
            # the units done said what their parts held: no file holds it now
            summaries[label] = type(module).dropped(summaries.get(label) or module.summary())
    finally:
        for target in filter(None, targets.values()):
            for leftover in Path(target).parent.glob(f"{Path(target).name}.unit*.part*"):
                leftover.unlink(missing_ok=True)
        for part in merged.parts:
            forget_temporary(Path(part["part"]))
        merged.parts = []
        for part in _held_parts(cfg, units):  # removed above (or never written): no longer this job's
            forget_temporary(part)
