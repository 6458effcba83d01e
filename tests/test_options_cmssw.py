"""Options in CMSSW's words: the new names, today's names as aliases with a warning, TryToContinue."""

from __future__ import annotations

import logging

import pytest
import yaml

from hltrun.framework.cli import main
from hltrun.framework.config import ON_ERROR, load
from hltrun.framework.errors import CMSSW_CATEGORIES, ConfigError, category_of
from hltrun.framework.eventloop import JobFailed
from tests.helpers import run_config

BASE = """
source: {type: TestCountingSource, n: 12}
modules:
  sq: {type: TestSquare}
paths:
  p: [sq]
"""

class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warned():
    """Warnings of the 'hltrun' logger, whatever an earlier CLI test did to its handlers and propagation."""
    logger = logging.getLogger("hltrun")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


OLD_TO_NEW = [
    ("streams", "3", "numberOfThreads", 3),
    ("budget_ms", "50", "budgetMs", 50.0),
    ("input_rate_hz", "1000", "inputRateHz", 1000.0),
    ("report_dir", "rep", "reportDir", "rep"),
    ("want_summary", "false", "wantSummary", False),
    ("on_error", "skip_event", "TryToContinue", list(CMSSW_CATEGORIES)),
]


@pytest.mark.parametrize("old, value, new, expected", OLD_TO_NEW)
def test_old_names_are_aliases_with_one_warning(write_config, warned, old, value, new, expected):
    cfg = load(write_config(BASE), [f"options.{old}={value}"])
    assert getattr(cfg.options, new) == expected
    warnings = [r.getMessage() for r in warned if "deprecated" in r.getMessage()]
    assert len(warnings) == 1 and f"options.{old}" in warnings[0] and new in warnings[0]
    assert "\n" not in warnings[0]


@pytest.mark.parametrize("old, new", [("threads_per_worker", "threadsPerWorker"), ("events_per_task", "eventsPerTask"),
                                      ("max_timing_rows", "maxTimingRows")])
def test_executor_old_names_are_aliases(write_config, warned, old, new):
    cfg = load(write_config(BASE), [f"options.executor.{old}=7"])
    assert getattr(cfg.options.executor, new) == 7
    assert not hasattr(cfg.options.executor, old)  # the old name lives only where YAML is read
    assert sum("deprecated" in r.getMessage() for r in warned) == 1


def test_new_names_give_no_warning(write_config, warned):
    cfg = load(write_config(BASE), ["options.numberOfThreads=2", "options.budgetMs=20", "options.wantSummary=false",
                                    "options.TryToContinue=[ProductNotFound]", "options.executor.type=dask",
                                    "options.executor.eventsPerTask=9"])  # a local job's eventsPerTask is warned
    assert not warned
    assert cfg.options.streams_in_flight == 2 and cfg.options.budgetMs == 20.0 and cfg.options.TryToContinue == ["ProductNotFound"]


def test_old_streams_keeps_its_meaning(write_config):
    """streams: N was N events in flight on N threads; it stays so (numberOfStreams 0 follows the threads)."""
    cfg = load(write_config(BASE), ["options.streams=3"])
    assert (cfg.options.numberOfThreads, cfg.options.numberOfStreams, cfg.options.streams_in_flight) == (3, 0, 3)


def test_old_name_override_replaces_the_files_new_name(write_config):
    """The shipped configs use the new names: an old-name override must override them, not clash."""
    path = write_config(BASE + "options: {numberOfThreads: 1, TryToContinue: [ProductNotFound]}\n")
    cfg = load(path, ["options.streams=2", "options.on_error=stop", "options.executor.events_per_task=5"])
    assert cfg.options.streams_in_flight == 2 and cfg.options.TryToContinue == [] and cfg.options.executor.eventsPerTask == 5


def test_old_name_in_the_file_new_name_on_the_command_line(write_config):
    path = write_config(BASE + "options: {streams: 1, budget_ms: 30}\n")
    cfg = load(path, ["options.numberOfThreads=4", "options.budgetMs=60"])
    assert cfg.options.streams_in_flight == 4 and cfg.options.budgetMs == 60


def test_number_of_streams_zero_means_one_per_thread(write_config):
    cfg = load(write_config(BASE), ["options.numberOfThreads=4"])
    assert cfg.options.numberOfStreams == 0 and cfg.options.streams_in_flight == 4


def test_more_streams_than_threads_is_refused(write_config):
    with pytest.raises(ConfigError, match=r"numberOfStreams \(3\) > numberOfThreads \(2\)"):
        load(write_config(BASE), ["options.numberOfThreads=2", "options.numberOfStreams=3"])


def test_old_and_new_name_together_is_refused(write_config):
    with pytest.raises(ConfigError, match=r"options.streams: give options.numberOfThreads only"):
        load(write_config(BASE + "options: {streams: 2, numberOfThreads: 2}\n"))


def test_on_error_values(write_config):
    assert load(write_config(BASE), ["options.on_error=stop"]).options.TryToContinue == ON_ERROR["stop"] == []
    with pytest.raises(ConfigError, match=r"options.on_error: expected 'stop' or 'skip_event', got 'maybe'"):
        load(write_config(BASE), ["options.on_error=maybe"])


def test_unknown_category_is_refused_with_a_suggestion(write_config):
    with pytest.raises(ConfigError, match=r"unknown exception category 'ProductNotFund'; did you mean 'ProductNotFound'"):
        load(write_config(BASE), ["options.TryToContinue=[ProductNotFund]"])


def test_dump_prints_the_new_names(write_config, capsys):
    path = write_config(BASE + "options: {streams: 2, budget_ms: 40, on_error: skip_event}\n")
    assert main([str(path), "--dump"]) == 0
    options = yaml.safe_load(capsys.readouterr().out)["options"]
    assert options["numberOfThreads"] == 2 and options["numberOfStreams"] == 0 and options["budgetMs"] == 40
    assert set(options) >= {"maxEvents", "numberOfThreads", "numberOfStreams", "wantSummary", "accelerators",
                            "TryToContinue", "reportDir", "inputRateHz"}
    assert not set(options) & {"streams", "budget_ms", "input_rate_hz", "on_error", "report_dir", "want_summary"}
    assert set(options["executor"]) >= {"threadsPerWorker", "eventsPerTask", "maxTimingRows"}


# ------------------------------------------------------------------ TryToContinue

MISSING = BASE.replace("sq: {type: TestSquare}", "sq: {type: TestSquare}\n  rec: {type: TestRecorder, src: ['source:nothere']}") \
    .replace("p: [sq]", "p: [sq, rec]")
FAILING = BASE.replace("sq: {type: TestSquare}", "sq: {type: TestSquare, fail_on: 5}")


def test_python_exception_in_a_module_is_std_exception(write_config):
    with pytest.raises(JobFailed) as info:
        run_config(write_config(FAILING))
    assert category_of(info.value.cause) == "StdException"


def test_listed_category_skips_and_counts_the_event(write_config):
    summary, _ = run_config(write_config(FAILING), "options.TryToContinue=[StdException]")
    assert summary.events_processed == 12 and summary.events_error == 1 and summary.modules["sq"].error == 1
    assert summary.errors == {"sq": {"ValueError": 1}}


def test_unlisted_category_stops_with_the_module_exit_code(write_config, capsys):
    code = main([str(write_config(FAILING)), "options.TryToContinue=[ProductNotFound]"])
    assert code == 4
    assert "boom on 5" in capsys.readouterr().err


def test_product_not_found_is_its_own_category(write_config, capsys):
    path = write_config(MISSING)
    assert main([str(path), "options.TryToContinue=[StdException]"]) == 4  # not listed: stops
    assert "hltrun: error:" in capsys.readouterr().err
    summary, _ = run_config(path, "options.TryToContinue=[ProductNotFound]")
    assert summary.events_processed == 12 and summary.events_error == 12


def test_old_and_new_name_together_on_the_command_line_is_refused(write_config):
    """As in a file: the last override silently winning would hide which one the user meant."""
    with pytest.raises(ConfigError, match=r"command line: overrides 'options.numberOfThreads' and "
                                          r"'options.streams' set the same option"):
        load(write_config(BASE), ["options.numberOfThreads=2", "options.streams=3"])
    cfg = load(write_config(BASE), ["options.numberOfThreads=2", "options.numberOfThreads=3"])
    assert cfg.options.numberOfThreads == 3  # one name given twice: the last one counts, as for any key


def test_the_code_reads_one_name_per_option():
    """Old option names are translated where YAML and overrides are read; the typed options carry
    only the new attribute (an old-name property would let code keep reading two names)."""
    from hltrun.framework.config import EXECUTOR_ALIASES, OPTION_ALIASES, ExecutorOptions, Options

    for cls, aliases in ((Options, OPTION_ALIASES), (ExecutorOptions, EXECUTOR_ALIASES)):
        for old in aliases:
            assert not hasattr(cls(), old), f"{cls.__name__}.{old} still readable"
