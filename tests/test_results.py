"""Results are data: work units split the input exactly; results merge associatively and in bounded memory."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hltrun.framework.results import JobResult, merge_all, merge_summaries
from hltrun.framework.services.memory import MemoryData
from hltrun.framework.services.timing import TimingParameters
from hltrun.framework.services.timing_data import TimingData
from hltrun.framework.services.timing_results import build_result
from hltrun.framework.services import bounded
from hltrun.framework.summary import JobSummary, ModuleCounters, PathCounters, PathModuleCounters
from hltrun.framework.units import plan_units


def test_units_cover_the_selected_entries_once():
    # kills: skipEvents applied per file, maxEvents overshooting into the next file, units > events_per_task
    inputs = [("a", 10), ("b", 7), ("c", 5)]
    for skip in range(0, 24, 3):
        for limit in (None, 0, 1, 6, 11, 30):
            units = plan_units(inputs, skip, limit, 4)
            flat = [(u.file, e) for u in units for e in range(u.start, u.stop)]
            every = [(f, e) for f, n in inputs for e in range(n)]
            expect = every[skip:] if limit is None else every[skip:skip + limit]
            assert flat == expect
            assert all(0 < u.events <= 4 for u in units)
            assert [u.first_index for u in units] == list(np.cumsum([0] + [u.events for u in units])[:-1])
    with pytest.raises(ValueError):
        plan_units(inputs, 0, None, 0)


def test_units_with_duplicates_cover_the_events_a_local_run_processes():
    """Duplicate entries (``Source.plan_duplicates``) travel with the units that hold them and do not count
    towards maxEvents: the units read on to ``limit`` events, as the local source does."""
    inputs = [("a", 10), ("b", 7), ("c", 5)]
    dups = [((2, 4), (9, 10)), ((0, 7),), ((1, 2),)]
    dup = {(f, e) for (f, _), runs in zip(inputs, dups) for x, y in runs for e in range(x, y)}
    every = [(f, e) for f, n in inputs for e in range(n)]
    for skip in range(0, 24, 3):
        for limit in (None, 0, 1, 6, 9, 30):
            units = plan_units(inputs, skip, limit, 4, dups)
            flat = [(u.file, e) for u in units for e in range(u.start, u.stop)]
            kept = [fe for fe in every[skip:] if fe not in dup]
            expect = kept if limit is None else kept[:limit]
            assert [fe for fe in flat if fe not in dup] == expect
            assert {(u.file, e) for u in units for x, y in u.duplicates for e in range(x, y)} == dup & set(flat)
            assert all(u.start <= x < y <= u.stop for u in units for x, y in u.duplicates)
            events = [u.events - sum(y - x for x, y in u.duplicates) for u in units]
            assert [u.first_index for u in units] == list(np.cumsum([0] + events)[:-1])


def test_planned_duplicates_are_those_the_event_loop_finds():
    """The client's scan (``duplicate_runs``) and a unit's ``PlannedDuplicates`` skip exactly the entries a
    local run's checker skips, chunk boundaries and modes alike."""
    from hltrun.modules.duplicates import DuplicateChecker, PlannedDuplicates, duplicate_runs, keys

    rng = np.random.default_rng(3)
    files = [keys(np.ones(n, int), np.ones(n, int), rng.integers(0, 40, n)) for n in (30, 25, 18)]
    for mode in ("checkAllFilesOpened", "checkEachFile", "noDuplicateCheck"):
        checker = DuplicateChecker(mode)
        local = []
        for k in files:
            checker.new_file()
            local.append(np.concatenate([checker.first_seen(k[i:i + 7]) for i in range(0, len(k), 7)]))
        runs = duplicate_runs([(0, iter([(len(k[i:i + 5]), k[i:i + 5]) for i in range(0, len(k), 5)]))
                               for k in files], mode, None)
        for k, want, r in zip(files, local, runs):
            planned = PlannedDuplicates(r, 0)
            assert np.array_equal(np.concatenate([planned.first_seen(k[i:i + 4]) for i in range(0, len(k), 4)]), want)


def _summary(seed: int) -> JobSummary:
    rng = np.random.default_rng(seed)
    s = JobSummary("P", 1)
    s.events_processed = int(rng.integers(0, 100))
    s.events_passed = int(rng.integers(0, 50))
    s.paths["p"] = PathCounters(int(rng.integers(0, 9)), 1, 2, 0, [PathModuleCounters("m", int(rng.integers(0, 9)), 1, 0, 0)])
    s.modules["m"] = ModuleCounters(int(rng.integers(0, 9)), 2, 1, 0)
    s.module_summaries["out"] = {"file": "x.root", "events_written": int(rng.integers(0, 9))}
    s.source = {"read": int(rng.integers(0, 9)), "chunks": 1}
    s.workers = {f"w{seed % 2}": {"units": 1, "events": s.events_processed, "busy_s": 0.5, "begin_job_s": 0.0}}
    s.loop_s = float(seed)
    return s


def _timing(seed: int, events: int, max_rows: int) -> TimingData:
    rng = np.random.default_rng(seed)
    n = 3
    mods = rng.lognormal(13, 1, (events, n)).astype(np.int64)
    ev = mods.sum(1) + rng.integers(1000, 5000, events)
    rows = np.column_stack([np.arange(events) + 1000 * seed, np.zeros(events, int), ev, ev // 2, mods, mods // 2])
    return TimingData(descs=[("source", "S", "source", 0), ("a", "A", "producer", 1), ("b", "B", "filter", 2)],
                      path_names=["p"], endpath_names=[], path_labels={"p": ["a", "b"]}, deps={}, highlight=[],
                      calls=np.array([0, events, events]), path_w=np.array([events]), path_runs=np.array([events]),
                      path_mod_w=np.ones((1, n), np.int64), first_ns=seed, last_ns=10**9 + seed,
                      max_rows=max_rows, rows=rows.astype(np.int64))


def _same(x: JobResult, y: JobResult) -> None:
    assert x.summary == y.summary
    tx, ty = x.services["Timing"], y.services["Timing"]
    assert (tx.rows is None) == (ty.rows is None)
    if tx.rows is not None:
        assert np.array_equal(tx.sorted_rows(), ty.sorted_rows())
    else:
        assert np.array_equal(tx.hist.counts, ty.hist.counts) and np.allclose(tx.hist.total, ty.hist.total)
    assert np.array_equal(tx.calls, ty.calls) and (tx.first_ns, tx.last_ns) == (ty.first_ns, ty.last_ns)


@pytest.mark.parametrize("max_rows", [10_000, 150])
def test_merge_is_associative(max_rows):
    # kills: a merge that keeps one side's counters, a hist/rows mix that drops rows, order-dependent min/max
    a, b, c = (JobResult(_summary(i), {"Timing": _timing(i, 100, max_rows)}) for i in range(3))
    _same(a.merge(b).merge(c), a.merge(b.merge(c)))
    m = merge_all([a, b, c])
    _same(m, a.merge(b).merge(c))
    assert m.summary.events_processed == sum(_summary(i).events_processed for i in range(3))
    assert m.summary.modules["m"].visited == sum(_summary(i).modules["m"].visited for i in range(3))
    assert m.summary.module_summaries["out"]["file"] == "x.root"
    assert m.summary.workers["w0"]["units"] == 2 and m.summary.loop_s == 2.0
    assert m.services["Timing"].events == 300


def test_new_counter_fields_merge_by_summation():
    # kills: a merge that lists fields by hand (a new counter would silently keep one unit's value)
    a, b = _summary(1), _summary(2)
    a.source["duplicates"], b.source["duplicates"] = 2, 3
    assert merge_summaries(a, b).source["duplicates"] == 5


def test_merge_memory_is_bounded_and_stats_stay_exact():
    # kills: rows concatenated past max_rows; histogram means/totals drifting from the exact values
    parts = [_timing(i, 400, 1000) for i in range(10)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    assert merged.rows is None and merged.hist.count == 4000
    exact = parts[0].merge(parts[1])
    for p in parts[2:]:
        exact = TimingData(**{**exact.__dict__, "max_rows": 10**9}).merge(p)
    summary = JobSummary("P", 1)
    r_hist, _ = build_result(summary=summary, data=merged, params=TimingParameters())
    r_rows, _ = build_result(summary=summary, data=exact, params=TimingParameters())
    assert r_hist["event"]["real"]["mean"] == pytest.approx(r_rows["event"]["real"]["mean"], rel=1e-12)
    assert r_hist["event"]["real"]["max"] == r_rows["event"]["real"]["max"]
    for q in ("median", "p90", "p99"):
        assert r_hist["event"]["real"][q] == pytest.approx(r_rows["event"]["real"][q], rel=0.03)
    assert r_hist["per_event"] is None and r_hist["per_event_kept"] is False
    assert sum(r_hist["histograms"]["event_real"]["counts"]) == 4000


def test_timing_histograms_are_boost_histograms_that_pickle_and_add():
    # kills: a hand-made histogram back in place of boost-histogram; values out of range dropped;
    # bins moved off today's geomspace edges; merge not the bin-wise sum of both parts
    import pickle

    import boost_histogram as bh

    from hltrun.framework.services.timing_data import EDGES_NS, TimingHistograms

    np.testing.assert_allclose(EDGES_NS, np.geomspace(1e2, 1e12, 1001), rtol=1e-13)
    rng = np.random.default_rng(7)
    v = np.concatenate([(10.0 ** rng.uniform(1, 13, 20_000)).astype(np.int64), [0, 1, 99, 10**12, 10**13]])
    rows = np.zeros((len(v), 6), np.int64)
    rows[:, 2] = rows[:, 4] = v
    a, b = TimingHistograms.from_rows(rows[:9000], 1), TimingHistograms.from_rows(rows[9000:], 1)
    assert isinstance(a.hist, bh.Histogram)
    both = pickle.loads(pickle.dumps(a)).merge(pickle.loads(pickle.dumps(b)))
    whole = TimingHistograms.from_rows(rows, 1)
    np.testing.assert_array_equal(both.counts, whole.counts)
    assert both.hist == a.hist + b.hist and whole.counts.sum(axis=1).tolist() == [len(v)] * 6  # nothing lost
    # the bin of each value as np.searchsorted finds it on the old edges (below 100 ns: first, above: last)
    want = np.bincount(np.clip(np.searchsorted(np.geomspace(1e2, 1e12, 1001), v, side="right") - 1, 0, 999),
                       minlength=1000)
    on_decade_edges = int(np.isin(v, 10 ** np.arange(2, 13)).sum())  # the log transform may put these 1 bin lower
    assert np.abs(whole.counts[0] - want).sum() <= 2 * on_decade_edges


def test_over_budget_count_stays_exact_in_histograms():
    # kills: over-budget events counted from histogram bins (off by the events in the budget's bin)
    parts = [_timing(i, 400, 1000) for i in range(10)]
    every = np.concatenate([p.rows for p in parts])
    budget_ns = int(np.median(every[:, 2]))
    exact = int((every[:, 2] > budget_ns).sum())
    parts = [dataclasses.replace(p, over_budget=int((p.rows[:, 2] > budget_ns).sum())) for p in parts]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    assert merged.rows is None and merged.over_budget == exact
    r, _ = build_result(summary=JobSummary("P", 1, budget_ms=budget_ns * 1e-6), data=merged,
                        params=TimingParameters())
    assert r["budget"]["over_budget_events"] == exact
    assert r["rows"] == {"kept": 0, "histogram": True, "per_stream": min(bounded.ROWS_KEPT, merged.max_rows)}


def _memory(worker: str, peak: int, n: int, start: int, stride: int = 1, max_rows: int = 100,
            ordinal: int = 0) -> MemoryData:
    """A unit's MemoryData: ``n`` events of the job from ``start``, every ``stride``-th kept (as
    bounded.Thinned keeps them), RSS ``peak``; ``ordinal``: where the worker's own event count stood."""
    index = np.arange(start, start + n)[::stride]
    rows = np.column_stack([index, np.full(len(index), peak), ordinal + index - start])
    return MemoryData([("source", "S", 0)], [5], [n], [n * 10], [7], {worker: {
        "rss_start": 1, "rss_after_begin": 2, "rss_end": 3, "peak_rss": peak, "peak_vsize": peak,
        "kernel_max": peak, "end_epoch": float(start)}}, {worker: rows}, [(peak, [1, 1, start], peak)],
        key_count=2, max_rows=max_rows, events=n, stride=stride)


def test_memory_data_merges_peaks_per_worker_and_thins_samples():
    m = _memory("w1", 10, 80, 0).merge(_memory("w2", 30, 80, 80)).merge(_memory("w1", 20, 80, 160))
    assert m.workers["w1"]["peak_rss"] == 20 and m.workers["w2"]["peak_rss"] == 30
    assert sum(len(r) for r in m.series.values()) <= 100 and m.calls == [240] and m.begin_delta == [5]
    assert [k[0] for k in m.key_events] == [30, 20]
    assert set(m.series) == {"w1", "w2"} and set(m.series["w2"][:, 1]) == {30}  # each worker's own samples


def test_a_merged_rss_series_is_even_along_the_job_and_merges_associatively():
    """Units thinned at different strides (1000 events: all kept; 8000: every 4th), from two workers: halving
    the merged rows one by one kept the dense units dense and the sparse ones sparse. Kept per bucket of
    ``stride`` events of the job, the series is even, the same in any merge order, within the bound."""
    units = [_memory("w1", 10, 1000, 0, 1, 2000), _memory("w2", 20, 8000, 1000, 4, 2000, ordinal=50),
             _memory("w1", 10, 1000, 9000, 1, 2000, ordinal=1000), _memory("w2", 20, 2000, 10000, 2, 2000,
                                                                           ordinal=8050)]
    a, b, c, d = units
    orders = [a.merge(b).merge(c).merge(d), a.merge(b.merge(c.merge(d))), (a.merge(b)).merge(c.merge(d)),
              d.merge(b).merge(a).merge(c)]
    for m in orders:
        assert m.stride == orders[0].stride and m.events == 12000
        for w in ("w1", "w2"):
            assert np.array_equal(m.series[w], orders[0].series[w])
    m = orders[0]
    assert 500 < sum(len(r) for r in m.series.values()) <= 2000
    index = np.sort(np.concatenate([r[:, 0] for r in m.series.values()]))
    assert index[0] == 0 and index[-1] >= 12000 - m.stride and np.diff(index).max() < 2 * m.stride
    # the worker's own event count travels with each sample (the leak check's axis)
    assert np.array_equal(m.series["w1"][:, 2], np.where(m.series["w1"][:, 0] < 9000, m.series["w1"][:, 0],
                                                          m.series["w1"][:, 0] - 8000))


def test_module_summaries_add_counters_and_keep_settings():
    """Work units on Dask: a filter's counters add up, its threshold and bin edges stay as they are
    (summing them gave 4 x the cut and 24 bin edges for 4 units)."""
    from hltrun.framework.results import merge_summaries
    from hltrun.framework.summary import JobSummary

    def unit(n: int) -> JobSummary:
        s = JobSummary("P", 1)
        s.module_summaries = {"anomalyFilter": {"threshold": 1.603, "edges_gev": [600.0, 700.0],
                                                "events_without_score": n, "reduce": "max",
                                                "batching": {"sent": {"full": n}, "queue_ns": 10 * n}}}
        return s

    merged = merge_summaries(merge_summaries(unit(1), unit(2)), unit(3))
    f = merged.module_summaries["anomalyFilter"]
    assert f["threshold"] == 1.603 and f["edges_gev"] == [600.0, 700.0] and f["reduce"] == "max"
    assert f["events_without_score"] == 6
    assert f["batching"] == {"sent": {"full": 6}, "queue_ns": 60}


def _measured(rows: np.ndarray, budget_ns: int) -> TimingData:
    """What a Timing service of one stream (as a Process of one stream builds it) gives after measuring
    ``rows``: a local job's snapshot, or one Dask unit's (each unit starts from a reset service)."""
    from hltrun.framework.services.timing import Timing
    from hltrun.framework.signals import ModuleDescription

    timing = Timing("Timing", TimingParameters(calibrate=False))
    timing._descs = [ModuleDescription("source", "S", "source", 0), ModuleDescription("a", "A", "producer", 1),
                     ModuleDescription("b", "B", "filter", 2)]
    timing._budget_ns = budget_ns
    timing.reset()
    for row in rows:
        timing._streams[0].rows.append(row)
    return timing.snapshot()


@pytest.mark.parametrize("events", [2 * bounded.ROWS_KEPT + 2000, bounded.ROWS_KEPT - 1000])
def test_a_dask_jobs_timing_is_as_bounded_as_a_local_jobs_with_the_same_figures(events):
    """Units of 2000 events each keep their rows (below the stream's 10,000), and the merge kept rows up to
    maxTimingRows (200,000): a 22,000-event Dask job's hltrun.json held every per-event row (2.97 MB against
    23 kB for the same job run locally, whose one stream folds past 10,000). A unit's rows now merge up to
    what the Process keeps in all (``bounded.ROWS_KEPT`` per stream): the same events measured as one local
    stream or as 2000-event units give the same histograms, hence the same figures; totals, means, extremes
    and the over-budget count exact, percentiles within one bin of the events' own."""
    from hltrun.framework.results import Merger

    rng = np.random.default_rng(5)
    mods = rng.lognormal(13, 1, (events, 3)).astype(np.int64)
    real = mods.sum(1) + rng.integers(1000, 5000, events)
    rows = np.column_stack([np.arange(events), np.zeros(events, int), real, real // 2, mods, mods // 2])
    budget_ns = int(np.percentile(real, 80))
    local = _measured(rows, budget_ns)
    merger = Merger()
    for start in range(0, events, 2000):
        merger.add(JobResult(JobSummary("P", 1), {"Timing": _measured(rows[start:start + 2000], budget_ns)}))
    dask = merger.result().services["Timing"]
    assert (dask.rows is None) == (local.rows is None) == (events > bounded.ROWS_KEPT)  # was: rows, 22,000 kept
    summary = JobSummary("P", 1, budget_ms=budget_ns * 1e-6)
    params = TimingParameters(per_event_json=False)
    (lr, _), (dr, _) = (build_result(summary=summary, data=d, params=params) for d in (local, dask))
    assert dr["rows"] == lr["rows"] and dr["per_event"] is lr["per_event"] is None
    assert dr["histograms"] == lr["histograms"] and dr["budget"]["over_budget_events"] == int((real > budget_ns).sum())
    exact = real * 1e-6
    for key in ("real", "cpu"):
        for stat in ("mean", "median", "p90", "p99", "max", "min", "std"):
            assert dr["event"][key][stat] == pytest.approx(lr["event"][key][stat], rel=1e-9), (key, stat)
    ev = dr["event"]["real"]
    assert (ev["mean"], ev["max"], ev["min"]) == pytest.approx((exact.mean(), exact.max(), exact.min()), rel=1e-12)
    for stat, q in (("median", 50), ("p90", 90), ("p99", 99)):
        assert ev[stat] == pytest.approx(np.percentile(exact, q), rel=0.024)  # one ~2.3 % bin
    for lm, dm in zip(lr["modules"], dr["modules"]):
        assert dm["real_ms"] == pytest.approx(lm["real_ms"], rel=1e-12) and dm["real_p99_ms"] == lm["real_p99_ms"]
