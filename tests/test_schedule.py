"""Path semantics as in CMSSW: filters stop paths, ~ inverts, - ignores, modules run once per event,
endpaths see every event, products come on demand, errors follow the error policy, and streams do not
change any result."""

from __future__ import annotations

import pytest

from hltrun.framework.errors import ProductNotFound
from hltrun.framework.eventloop import JobFailed
from tests.helpers import run_config
from tests.plugins import RECORDED

CFG = """
process: TEST
options: {{numberOfThreads: {streams}}}
source: {{type: TestCountingSource, n: 30}}
modules:
  even: {{type: TestModuloFilter, divisor: 2}}
  three: {{type: TestModuloFilter, divisor: 3}}
  sq: {{type: TestSquare}}
  rec_a: {{type: TestRecorder, src: [source]}}
  rec_b: {{type: TestRecorder, src: [source]}}
  rec_c: {{type: TestRecorder, src: [source]}}
  rec_d: {{type: TestRecorder, src: [source, sq]}}
paths:
  p_even: [even, sq, rec_a]
  p_not_even: [~even, rec_b]
  p_ignore: [-three, rec_c]
  p_both: [even, three, sq]
endpaths:
  e: [rec_d]
"""


@pytest.fixture(autouse=True)
def clear_recorded():
    RECORDED.clear()


def recorded(label):
    return sorted(n for n, _ in RECORDED.get(label, []))


def test_filter_invert_and_ignore(write_config):
    summary, _ = run_config(write_config(CFG.format(streams=1)))
    assert recorded("rec_a") == list(range(2, 31, 2))
    assert recorded("rec_b") == list(range(1, 31, 2))
    assert recorded("rec_c") == list(range(1, 31))  # '-three' never stops the path
    p = summary.paths
    assert (p["p_even"].executed, p["p_even"].passed, p["p_even"].failed) == (30, 15, 15)
    assert (p["p_not_even"].passed, p["p_not_even"].failed) == (15, 15)
    assert p["p_ignore"].passed == 30
    assert p["p_both"].passed == 5  # divisible by 6
    # per-path module counters stop at the failing filter
    even, three, sq = p["p_both"].modules
    assert (even.visited, even.passed, even.failed) == (30, 15, 15)
    assert (three.visited, three.passed, three.failed) == (15, 5, 10)
    assert sq.visited == 5
    assert (summary.events_processed, summary.events_passed, summary.events_failed) == (30, 30, 0)


def test_module_on_several_paths_runs_once_per_event(write_config):
    summary, process = run_config(write_config(CFG.format(streams=1)))
    (sq,) = process.instances["sq"]
    # sq is on p_even and p_both and consumed by rec_d on the endpath; it runs at most once per event
    assert sq.calls == 30  # 15 from the paths, the odd 15 on demand from the endpath's rec_d
    # even sits on three paths: visited on each (Schedule.cc's Visited), executed once (its Executed)
    assert (summary.modules["even"].visited, summary.modules["even"].executed) == (90, 30)
    # sq: 15 visits on p_even, 5 on p_both (behind three), 15 on demand for rec_d (odd events)
    assert summary.modules["sq"].executed == 30 and summary.modules["sq"].visited == 15 + 5 + 15


def test_endpath_sees_every_event_and_products_on_demand(write_config):
    run_config(write_config(CFG.format(streams=1)))
    got = sorted(RECORDED["rec_d"])
    assert [n for n, _ in got] == list(range(1, 31))
    assert all(products == (n, n * n) for n, products in got)


def test_missing_product_names_consumer_and_label(write_config):
    text = CFG.format(streams=1).replace("rec_a: {type: TestRecorder, src: [source]}",
                                         "rec_a: {type: TestRecorder, src: ['source:nothing']}")
    with pytest.raises(JobFailed) as info:
        run_config(write_config(text))
    assert isinstance(info.value.cause, ProductNotFound)
    assert "module 'rec_a' asked for product 'source:nothing'" in str(info.value)


def test_error_policy_stop(write_config):
    text = CFG.format(streams=1).replace("sq: {type: TestSquare}", "sq: {type: TestSquare, fail_on: 10}")
    with pytest.raises(JobFailed) as info:
        run_config(write_config(text))
    s = info.value.summary
    assert "module 'sq' (TestSquare) failed on run 1, lumi 1, event 10: ValueError: boom on 10" in s.failure
    assert s.events_processed == 10 and s.events_error == 1
    assert s.events_read == s.events_processed + s.events_not_processed


def test_error_policy_try_to_continue(write_config):
    text = CFG.format(streams=1).replace("sq: {type: TestSquare}", "sq: {type: TestSquare, fail_on: 10}")
    summary, _ = run_config(write_config(text), "options.TryToContinue=[StdException]")
    assert summary.events_processed == 30 and summary.events_error == 1
    assert summary.events_passed + summary.events_failed + summary.events_error == 30
    assert summary.modules["sq"].error == 1
    assert 10 not in recorded("rec_d")


def test_max_and_skip_events(write_config):
    summary, _ = run_config(write_config(CFG.format(streams=1)), "options.maxEvents=7", "options.skipEvents=5")
    assert recorded("rec_c") == list(range(6, 13))
    assert summary.events_read == 7


def _result(write_config, streams):
    RECORDED.clear()
    text = CFG.format(streams=streams).replace("divisor: 3}", "divisor: 3, sleep_ms: 1}")
    summary, _ = run_config(write_config(text, f"s{streams}.yaml"))
    table = {k: sorted(v) for k, v in RECORDED.items()}
    counts = {name: (c.executed, c.passed, c.failed, c.error, [vars(m) for m in c.modules])
              for name, c in {**summary.paths, **summary.endpaths}.items()}
    return table, counts, {k: vars(v) for k, v in summary.modules.items()}


def test_streams_give_identical_results(write_config):
    one = _result(write_config, 1)
    four = _result(write_config, 4)
    assert one == four
    assert one[0]["rec_a"]  # the comparison is not between two empty results
