"""``hltrun CONFIG [key.path=value ...]``: run an HLT path and print the CMSSW-style reports."""

from __future__ import annotations

from .clock import PROCESS_START  # first: the clock reads how long start-up took so far

import argparse
import errno
import logging
import resource  # imported now: with the descriptors exhausted, importing it (a .so) would fail too
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import __version__

if TYPE_CHECKING:
    from .executors import Outcome
    from .interrupt import Interrupted
    from .service import Service
    from .summary import JobSummary

log = logging.getLogger("hltrun")

EPILOG = """examples:
  hltrun configs/path.yaml                                  run the default HLT path
  hltrun configs/path.yaml -n 1000 options.numberOfThreads=4 1000 events on 4 streams
  hltrun configs/path.yaml modules.vae.backend=tensorflow   same path, other backend
  hltrun configs/path.yaml --dump                           print the resolved configuration
  hltrun configs/path.yaml --report-dir reports/run1        also write JSON + HTML reports
  hltrun configs/menu.yaml --prescale 1p0E34                 a menu with another prescale column
  hltrun configs/path.yaml --dask 2                         on a local Dask cluster of 2 process workers
  hltrun configs/path.yaml options.executor.type=dask options.executor.address=tcp://host:8786
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hltrun", usage="hltrun [options] CONFIG [key.path=value ...]",
        description="Run a CMSSW-style HLT path over ROOT files and report time, memory and trigger "
                    "decisions per module and per event.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", metavar="CONFIG", help="YAML configuration of the process (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="override any configuration value; the value is parsed as YAML")
    p.add_argument("-n", "--max-events", type=int, metavar="N", help="process at most N events (options.maxEvents)")
    p.add_argument("--report-dir", metavar="DIR", help="write JSON and HTML reports into DIR (options.reportDir)")
    p.add_argument("--prescale", metavar="COLUMN",
                   help="run the whole job in this column of the prescale table, whatever lumiColumns say (as "
                        "hltGetConfiguration --prescale: services.PrescaleService.lvl1DefaultLabel and forceDefault)")
    p.add_argument("--dask", type=int, metavar="WORKERS",
                   help="run on Dask: a LocalCluster of WORKERS process workers, or the scheduler of "
                        "options.executor.address (needs the dist extra); same as options.executor.type=dask")
    p.add_argument("-j", "--job-report", metavar="FILE",
                   help="write CMSSW's FrameworkJobReport XML (cmsRun -j): events read per input, events "
                        "written per output, timing and memory summary, FrameworkError with the CMSSW code")
    p.add_argument("--dump", action="store_true", help="print the fully resolved configuration and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no informational messages")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug messages")
    p.add_argument("--version", action="version", version=f"hltrun {__version__}")
    return p


class OncePerMessage(logging.Filter):
    """Lets a record marked ``extra={"once": True}`` through once per distinct message: a line that each
    stream's copy of a module logs at begin_job (its backend, its model) is printed once, not N times."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "once", False):
            return True
        message = record.getMessage()
        with self._lock:
            if message in self._seen:
                return False
            self._seen.add(message)
        return True


def setup_logging(quiet: bool, debug: bool) -> None:
    """hltrun's log lines ("hltrun: ..." on the stderr of now), for every command that runs a path in-process:
    a handler left by an earlier run would write to a stream that is gone."""
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hltrun: %(message)s"))
    handler.addFilter(OncePerMessage())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def _out_of_descriptors(exc: BaseException | None) -> str | None:
    """The line for a job that ran out of file descriptors (EMFILE: this process's ``ulimit -n``; ENFILE:
    the system's table), or None. Looked for in ``exc`` and in what it wraps: it surfaces wherever the
    next file happens to be opened (a lazy import, a ROOT file, the model, a report), and the user must
    read the cause, not that place, nor an "internal error"."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            return _descriptors_line(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def _descriptors_line(exc: OSError) -> str:
    """``exc`` (EMFILE or ENFILE) as one line: which limit, the file being opened, what to do."""
    opening = f" (opening {exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENFILE:
        return (f"too many open files in the system{opening}: the system's table is full (ENFILE), not this "
                f"process's limit; retry when other processes have closed theirs")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(4096, 2 * soft)
    if hard != resource.RLIM_INFINITY and hard < wanted:   # ulimit -n cannot go over the hard limit unprivileged
        hint = f"ulimit -n {hard} (this process's hard limit; beyond it ask the administrator)" if hard > soft \
            else "ask the administrator for a higher hard limit (ulimit -Hn)"
    else:
        hint = f"ulimit -n {wanted}"
    return (f"too many open files{opening}: this process may have {soft} open (ulimit -n); raise the limit, "
            f"e.g. {hint}")


def _say(line: str) -> None:
    """``hltrun: <line>`` on stderr as one line, whatever the message quotes (``errors.printable``). stderr is
    ``stdio.standard_streams``'s, as every tool's: its reader gone (2>&1 | head -1) or its disk full, the line goes
    nowhere and the exit code says it (no later line fails on it: an internal error, exit 1)."""
    from .errors import printable

    sys.stderr.write(f"hltrun: {printable(line)}\n")
    sys.stderr.flush()


def _error_line(exc: BaseException | None, line: str, code: int, record: dict) -> int:
    """Print ``line`` (or the descriptor line, if ``exc`` ran out of them, said once per job: the job
    report may run out of them again); the exit code to return."""
    limit = _out_of_descriptors(exc)
    if limit and record.get("out_of_descriptors"):
        return DESCRIPTORS_EXIT
    record["out_of_descriptors"] = bool(limit)
    from .resources import beside_config

    _say(f"error: {limit or line + beside_config(line, record.get('config'))}")
    return DESCRIPTORS_EXIT if limit else code


DESCRIPTORS_EXIT = 1  # not the input's, the configuration's nor a module's fault: the machine's limit


def main(argv: list[str] | None = None) -> int:
    from .stdio import standard_streams

    standard_streams()  # the tools' one mechanism: closed descriptors filled, a stderr whose failure is nowhere
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)  # options may come between overrides
    if args.config is None:  # checked here: argparse would call the optional overrides required too
        parser.error("the configuration is required, e.g. hltrun configs/path.yaml (overrides key.path=value are optional)")
    setup_logging(args.quiet, args.debug)
    from .destinations import folders_made_undone, one_job, refused
    from .interrupt import handle_signals

    record: dict = {}  # what the job report needs: the summary and the error, as far as the job got
    # a job refused after its output folders were checked (and made) leaves none of them behind empty
    # one_job: its outputs are compared with each other and with its inputs (none may replace another)
    with handle_signals(), folders_made_undone() as undo, one_job():  # SIGTERM / SIGHUP stop the job like Ctrl-C
        code = _main(args, record)
        # its destination passed the check, and the inputs read later are not it (a refused one was said once)
        if "job_report" in record and not refused("--job-report"):
            code = _write_job_report(record["job_report"], record, code)
        if code:
            undo()
    return code


def _interrupted(exc: KeyboardInterrupt, record: dict) -> int:
    """A signal that stops what hltrun does at once: its temporaries removed, one line, 128 + signal."""
    from .interrupt import exit_code_of, remove_temporaries

    record["error"] = exc
    remove_temporaries()
    _say(str(exc) or "interrupted")
    return exit_code_of(exc)


def _write_job_report(path: Path, record: dict, code: int) -> int:
    """The FrameworkJobReport, also for a job that failed before its first event. A signal while it is
    written (a FIFO waiting for its reader) stops the writing: no job report, no temporary left."""
    from .errors import HltError

    try:
        from .report.jobreport_xml import gather, write
        from .summary import JobSummary

        summary = record.get("summary") or JobSummary(record.get("process", "hltrun"), 0)
        write(path, gather(summary, code, record.get("error"), record.get("memory")))
    except HltError as exc:
        _say(f"error: {exc}")
        return code or exc.exit_code
    except OSError as exc:
        if _out_of_descriptors(exc) is None:
            raise
        return _error_line(exc, "", code, record)
    except KeyboardInterrupt as exc:
        return _interrupted(exc, record)
    log.info("wrote %s", path)
    return code


def _write_reports(report_dir: Path, summary: JobSummary, services: Sequence[Service]) -> int:
    """The report folder's files, all or none (a full disk: one line, the previous set untouched)."""
    from .errors import HltError
    from .report import write_report_files

    try:
        for path in write_report_files(report_dir, summary, services):
            log.info("wrote %s", path)
    except HltError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    return 0


def _print(text: str, what: str) -> int:
    """``text`` on stdout, flushed; 0, or 4 after one line when stdout cannot take it. stdout is a
    destination like the others: closed (``>&-``), full (``> /dev/full``) or a reader gone is said in
    one line (exit 4, as for any destination), not an internal error."""
    from .destinations import printing
    from .errors import HltError

    try:
        with printing(what):
            sys.stdout.write(text)
    except HltError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    return 0


def _stopped_after_loop(outcome: Outcome, signals: list[Interrupted], record: dict) -> None:
    """A first signal received after the event loop ended (``signals``, noted while the reports are
    made): the job is reported as one the signal stopped in the loop is, all its events processed:
    marked "stopped by" the signal, exit 128 + its number (a job an error stopped keeps the error, as
    in the loop). Only the reports begun after this call are marked: one being written when the signal
    came is finished as it began, never written again (a batch system's SIGTERM before its SIGKILL
    must not double the time the job needs to end; that report describes every event, all processed)."""
    summary = outcome.result.summary
    if not signals or outcome.code:  # stopped already, or an error stopped it: that stays the reason
        return
    exc = signals[0]
    summary.stopped_by_signal, summary.failure = exc.signame, str(exc)
    outcome.code, outcome.cause = exc.exit_code, exc
    record["error"] = exc


def _main(args: argparse.Namespace, record: dict) -> int:
    from .errors import HltError  # loaded with destinations, before the signal handlers: the except needs it
    from .interrupt import Interrupted, interrupt_behind, stop_callback

    try:
        from .config import load  # inside the try: a signal cutting these imports (PyYAML, ...) is its one line
        from .report import text_report

        if args.job_report and not args.dump:  # first: a job report that cannot be written is said once
            from .destinations import check_file_destination

            check_file_destination(args.job_report, "--job-report")
            from .resources import user_path

            record["job_report"] = user_path(args.job_report)  # a file:// URL (or ~) as the check took it
        record["config"] = args.config  # its folder: where a relative name not found may be (beside_config)
        overrides = list(args.overrides)
        if args.report_dir:
            overrides.append(f"options.reportDir={args.report_dir}")
        if args.prescale:
            # hltGetConfiguration's --prescale: the column for the whole job, the GT's per-lumi index ignored
            overrides += [f"services.PrescaleService.lvl1DefaultLabel={args.prescale}",
                          "services.PrescaleService.forceDefault=true"]
        if args.dask is not None:
            overrides += ["options.executor.type=dask", f"options.executor.workers={args.dask}"]
        cfg = load(args.config, overrides, args.max_events)
        record["process"] = cfg.process
        from .destinations import reading
        from .resources import find_file, user_path

        reading([find_file(args.config)])  # as load found it: no output of the job may replace it
        if args.dump:
            return _print(cfg.dump(), "the configuration")
        report_dir = user_path(cfg.options.reportDir) if cfg.options.reportDir else None
        from .executors import execute, report_services

        outcome = execute(cfg, report_dir, PROCESS_START, progress=not args.quiet and sys.stderr.isatty())
        signals: list[Interrupted] = []
        with stop_callback(signals.append):  # the loop has ended: a first signal now still gets the reports
            summary = outcome.result.summary
            record.update(summary=summary, error=outcome.cause)
            if outcome.code and args.debug and outcome.cause is not None \
                    and not isinstance(outcome.cause, KeyboardInterrupt):
                log.error("job failed", exc_info=outcome.cause)
            services = report_services(cfg, outcome.result)
            if any(type(s).__name__ == "Memory" for s in services):  # import it only when configured
                from .services.memory import Memory

                for service in services:  # the job report's PeakValueRss is the MemoryReport's peak
                    if isinstance(service, Memory):  # also configured as SimpleMemoryCheck
                        record["memory"] = service.results()
            _stopped_after_loop(outcome, signals, record)
            print_code = _print(text_report(summary, services), "the reports") if cfg.options.wantSummary else 0
            _stopped_after_loop(outcome, signals, record)
            report_code = _write_reports(report_dir, summary, services) if report_dir is not None else 0
            _stopped_after_loop(outcome, signals, record)  # the job report and the exit code say it
        code = outcome.code
        if code:
            code = _error_line(outcome.cause, str(summary.failure), code, record)
        return code or print_code or report_code
    except HltError as exc:
        if (interrupt := interrupt_behind(exc)) is not None:  # a signal some code turned into its error
            return _interrupted(interrupt, record)
        record["error"] = exc
        if args.debug:
            log.exception("error")
        return _error_line(exc, str(exc), exc.exit_code, record)
    except KeyboardInterrupt as exc:
        return _interrupted(exc, record)
    except Exception as exc:  # a bug, not a user error: still one line unless --debug
        if (interrupt := interrupt_behind(exc)) is not None:
            return _interrupted(interrupt, record)
        if args.debug:
            raise
        if _out_of_descriptors(exc):
            return _error_line(exc, "", 1, record)
        _say(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
