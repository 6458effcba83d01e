"""Farm projection from the measured throughput (CMS's way), next to the per-event projection."""

from __future__ import annotations

import os

import pytest

from hltrun.framework.services.timing_results import _throughput_projection
from hltrun.framework.summary import JobSummary


def test_loaded_machine_projection():
    machine = os.cpu_count() or 1
    s = JobSummary("P", streams=machine)
    t = _throughput_projection(s, throughput_hz=1000.0 * machine, rate_hz=100_000)
    assert t["fully_loaded"] and t["cores_used"] == machine
    assert t["events_per_s_per_core"] == pytest.approx(1000.0)
    assert t["cores"] == pytest.approx(100.0)  # 100 kHz / 1 kHz per core


def test_partial_load_is_flagged_and_dask_counts_worker_threads():
    machine = os.cpu_count() or 1
    t = _throughput_projection(JobSummary("P", streams=1), 500.0, 100_000)
    assert t["cores_used"] == 1 and t["cores"] == pytest.approx(200.0)
    assert t["fully_loaded"] is (machine == 1)
    s = JobSummary("P", streams=1)
    s.executor = {"type": "dask", "threads": {"tcp://a": 1, "tcp://b": 2}}
    t = _throughput_projection(s, 3000.0, 100_000)
    assert t["cores_used"] == 3 and t["cores"] == pytest.approx(100.0) and t["fully_loaded"]


def test_farm_report_prints_both_projections_labelled(write_config):
    from hltrun.framework.report.timereport import farm_report
    from tests.helpers import run_config

    summary, process = run_config(write_config(
        "source: {type: TestCountingSource, n: 20}\nmodules:\n  sq: {type: TestSquare, sleep_ms: 1}\n"
        "paths:\n  p: [sq]\nservices:\n  Timing: {}\n"))
    (timing,) = process.services
    text = farm_report(timing.result(summary))
    assert "cores needed (per-event real time)" in text and "cores needed (measured throughput)" in text


def test_the_throughput_projection_says_it_leaves_out_the_begin_job_read(write_config):
    """The shipped path's file check reads a one-basket file whole at begin_job and keeps it for the loop:
    the per-event figures carry that read (amortised), the loop's events/s does not. Side by side without
    a word, 53 against 33 cores (199.7 against 41 with -n 300) read as a contradiction."""
    from hltrun.framework.report.timereport import farm_report
    from tests.helpers import run_config

    summary, process = run_config(write_config(
        "source: {type: TestCountingSource, n: 20}\nmodules:\n  sq: {type: TestSquare}\n"
        "paths:\n  p: [sq]\nservices:\n  Timing: {}\n"))
    (timing,) = process.services
    res = timing.result(summary)
    assert "begin_job" not in farm_report(res)  # nothing read at begin_job: no note
    res.setdefault("source_bulk", {"real_per_event_ms": 0.0, "cores": 0.0})["at_begin_job_real_ms"] = 892.7
    line = next(x for x in farm_report(res).splitlines() if "892.7 ms" in x)
    assert "begin_job" in line and "not in the measured throughput" in line


def test_a_dask_worker_that_ran_no_unit_is_not_a_core_of_the_throughput():
    # kills: 1 unit on `--dask 2` divided the one busy worker's events/s by 2 cores: the farm's cores doubled
    s = JobSummary("P", streams=1)
    s.executor = {"type": "dask", "threads": {"tcp://busy": 1, "tcp://idle": 1}}
    s.workers = {"tcp://busy": {"units": 1.0, "events": 1500.0, "busy_s": 0.5, "begin_job_s": 1.0}}
    t = _throughput_projection(s, 3000.0, 100_000)
    assert t["cores_used"] == 1 and t["events_per_s_per_core"] == pytest.approx(3000.0)
    assert t["cores"] == pytest.approx(100_000 / 3000.0)
