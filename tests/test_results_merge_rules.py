"""The merge rule of every ``JobSummary`` field, and of ``JobResult`` and ``Merger``, each pinned
against an independent computation (Python's own sum / max / min / first over the units' values),
in both groupings (associativity). A field added to JobSummary must be given its rule here."""

from __future__ import annotations

import copy
import dataclasses
import json
import weakref
from functools import reduce
from typing import Any, Callable

import pytest

from hltrun.framework.results import JobResult, Merger, merge_all, merge_counters, merge_summaries, merge_values
from hltrun.framework.summary import JobSummary, ModuleCounters, PathCounters, PathModuleCounters


def _first(values: list[Any]) -> Any:
    """The first unit's value that is set (not None, not empty)."""
    return next((v for v in values if v not in (None, {}, [])), values[-1])


def _union(values: list[list[str]]) -> list[str]:
    out: list[str] = []
    for v in values:
        out += [x for x in v if x not in out]
    return out


def _keywise(add: Callable[[list[Any]], Any]) -> Callable[[list[dict]], dict]:
    """Dicts merged key by key (nested), ``add`` over the values the units have for a leaf."""
    def merge(values: list[dict]) -> dict:
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: merge([v[k] for v in values if k in v]) if isinstance(next(v[k] for v in values if k in v), dict)
                else add([v[k] for v in values if k in v]) for k in keys}
    return merge


def _counters(values: list[Any]) -> Any:
    """ModuleCounters / PathCounters: every count summed, module by module; a module's label kept."""
    out = copy.deepcopy(values[0])
    for v in values[1:]:
        for f in dataclasses.fields(out):
            if f.name == "label":
                continue
            if f.name == "modules":
                out.modules = [_counters([m, n]) for m, n in zip(out.modules, v.modules)]
            else:
                setattr(out, f.name, getattr(out, f.name) + getattr(v, f.name))
    return out


def _settings_or_sum(values: list[Any]) -> Any:
    """A module's summary(): integers are counters (summed), anything else a setting (the first)."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return sum(values)
    return values[0]


def _concat(values: list[list]) -> list:
    return [x for v in values for x in v]


def _variants(values: list[list[dict]]) -> list[dict]:
    """Units' ways of running: those with the same engines, cuts and producer are one, their units and
    workers joined (first seen kept), ordered by their first unit."""
    groups: dict[str, dict] = {}
    for v in (x for units in values for x in units):
        key = json.dumps({k: v.get(k) for k in ("producer", "accelerators", "cuts")}, sort_keys=True)
        if key not in groups:
            groups[key] = {**v, "units": [], "workers": []}
        g = groups[key]
        g["units"] = sorted(set(g["units"]) | set(v["units"]))
        g["workers"] += [w for w in v["workers"] if w not in g["workers"]]
    return sorted(groups.values(), key=lambda g: min(g["units"]))


def _way(backend: str, unit: int, worker: str) -> dict:
    return {"producer": "hltrun 0", "accelerators": {"vae": {"backend": backend, "device": "cpu", "model_id": "m",
                                                             "model_sha256": "ab"}},
            "cuts": {"f": {"threshold": 1.5}}, "units": [unit], "workers": [worker]}


# field -> (the three units' values, the rule as an independent computation)
UNITS: dict[str, tuple[list[Any], Callable[[list[Any]], Any]]] = {
    "process": (["HLTA", "HLTB", "HLTC"], _first),
    "streams": ([2, 3, 4], _first),
    "budget_ms": ([50.0, 60.0, 70.0], _first),
    "input_rate_hz": ([1e5, 2e5, 3e5], _first),
    "path_entries": ([{"p": ["a"]}, {"p": ["a"], "q": ["~b"]}, {"r": ["c"]}], _first),
    "module_types": ([{}, {"a": "TestSquare"}, {"b": "TestModuloFilter"}], _first),
    "executor": ([{}, {"type": "dask", "units": 3}, {"type": "dask", "units": 5}], _first),
    "failure": ([None, "unit 1: bad", "unit 2: worse"], _first),
    "stopped_by_signal": ([None, "SIGTERM", "SIGINT"], _first),
    "wall_s": ([0.0, 0.25, 0.125], max),
    "loop_s": ([0.5, 0.0, 0.75], max),
    "begin_job_s": ([0.2, 0.1, 0.0], max),
    "time_to_first_event_s": ([None, 0.3, 0.2], lambda v: min(x for x in v if x is not None)),
    "bad_files": ([["x.root: bad"], ["y.root: bad", "x.root: bad"], ["z.root: bad"]], _union),
    "events_read": ([10, 20, 30], sum),
    "events_skipped": ([1, 0, 2], sum),
    "events_processed": ([9, 20, 28], sum),
    "events_passed": ([3, 5, 7], sum),
    "events_failed": ([5, 15, 20], sum),
    "events_error": ([1, 0, 1], sum),
    "events_not_processed": ([1, 0, 2], sum),
    "events_duplicate": ([0, 2, 1], sum),
    "begin_run_calls": ([1, 2, 0], sum),  # calls made: each unit begins its own runs and lumis
    "begin_lumi_calls": ([3, 1, 2], sum),
    "errors": ([{"m": {"StdException": 1}}, {"m": {"StdException": 2, "ProductNotFound": 1}}, {}],
               _keywise(sum)),
    "data_quality": ([{"source": {"nonfinite": 1}}, {"source": {"nonfinite": 2}, "vae": {"empty": 1}},
                      {"vae": {"empty": 4}}], _keywise(sum)),
    "paths": ([{"p": PathCounters(3, 1, 2, 0, [PathModuleCounters("m", 3, 1, 2, 0)])},
               {"p": PathCounters(5, 2, 2, 1, [PathModuleCounters("m", 5, 2, 2, 1)])},
               {"p": PathCounters(7, 4, 3, 0, [PathModuleCounters("m", 7, 4, 3, 0)])}], _keywise(_counters)),
    "endpaths": ([{"e": PathCounters(3, 3, 0, 0, [])}, {"e": PathCounters(5, 5, 0, 0, [])},
                  {"e": PathCounters(7, 6, 0, 1, [])}], _keywise(_counters)),
    "modules": ([{"a": ModuleCounters(3, 3, 1, 2, 0)}, {"a": ModuleCounters(5, 4, 2, 2, 1)},
                 {"b": ModuleCounters(1, 1, 1, 0, 0)}], _keywise(_counters)),
    "module_summaries": ([{"out": {"file": "o.root", "events_written": 2}},
                          {"out": {"file": "o.root", "events_written": 3}, "vae": {"backend": "onnxruntime"}},
                          {"vae": {"backend": "tensorflow", "calls": 4}}], _keywise(_settings_or_sum)),
    "source": ([{"read": 10, "files_read": {"a.root": 10}}, {"read": 20, "files_read": {"a.root": 5, "b.root": 15}},
                {"read": 30, "chunks": 2}], _keywise(sum)),
    "facts": ([{}, {"cuts": {"f": {"threshold": 1.5}}}, {"cuts": {"f": {"threshold": 1.5}}, "accelerators": {}}],
              _first),
    "workers": ([{"w1": {"units": 1, "busy_s": 0.5}}, {"w2": {"units": 1, "busy_s": 0.25}},
                 {"w1": {"units": 1, "busy_s": 0.125}}], _keywise(sum)),
    "retried_units": ([[], [{"unit": 3}], [{"unit": 5}, {"unit": 6}]], _concat),
    "fact_variants": ([[_way("onnxruntime", 0, "w1")], [_way("tflite", 1, "w2")], [_way("onnxruntime", 2, "w2")]],
                      _variants),
}


def _units() -> list[JobSummary]:
    out = []
    for i in range(3):
        s = JobSummary("X", 1)
        for name, (values, _) in UNITS.items():
            setattr(s, name, copy.deepcopy(values[i]))
        out.append(s)
    return out


def test_every_field_has_its_rule_here():
    assert set(UNITS) == {f.name for f in dataclasses.fields(JobSummary)}


@pytest.mark.parametrize("name", list(UNITS))
def test_each_field_merges_by_its_rule_in_both_groupings(name):
    a, b, c = _units()
    values, rule = UNITS[name]
    expected = rule(copy.deepcopy(values))
    left = merge_summaries(merge_summaries(a, b), c)
    right = merge_summaries(a, merge_summaries(b, c))
    assert getattr(left, name) == expected, name
    assert getattr(right, name) == expected, name
    assert getattr(merge_summaries(a, b), name) == rule(copy.deepcopy(values[:2])), name  # two units alone


def test_merging_leaves_the_inputs_as_they_were():
    units = _units()
    before = copy.deepcopy(units)
    merged = reduce(merge_summaries, units)
    merged.source["read"] += 1000
    merged.paths["p"].modules[0].passed += 1000
    merged.errors["m"]["StdException"] += 1000
    merged.executor["units"] += 1000  # taken whole from one unit ("first"), yet a copy
    merged.path_entries["p"].append("x")
    assert units == before


def test_merge_values_by_kind():
    class Adds:
        def __init__(self, n: int) -> None:
            self.n = n

        def add(self, other: "Adds") -> None:
            self.n += other.n

    class Merges:
        def __init__(self, n: int) -> None:
            self.n = n

        def merge(self, other: "Merges") -> "Merges":
            return Merges(max(self.n, other.n))

    assert merge_values(None, 3) == 3 and merge_values(3, None) == 3
    assert merge_values(True, False) is True and merge_values(False, False) is False
    assert merge_values(False, True) is True
    assert merge_values(2, 3.5) == 5.5 and merge_values([1], [2, 3]) == [1, 2, 3]
    assert merge_values({"a": {"b": 1}}, {"a": {"b": 2, "c": 1}, "d": 4}) == {"a": {"b": 3, "c": 1}, "d": 4}
    assert merge_values("first", "second") == "first"
    added = Adds(2)
    assert merge_values(added, Adds(3)).n == 5 and added.n == 2  # on a copy
    assert merge_values(Merges(2), Merges(7)).n == 7
    given = {"x": [1]}
    out = merge_values(None, given)
    out["x"].append(2)
    assert given == {"x": [1]}  # a value taken from the other side is a copy
    # two kinds that do not combine: the first stays (never a sum, a key-by-key merge or an error)
    assert merge_values(True, 2) is True and merge_values(2, "x") == 2
    assert merge_values({"a": 1}, 5) == {"a": 1} and merge_values([1], "x") == [1]


def test_merge_counters_by_kind():
    """A module's summary(): integers add, a flag or any other value is a setting (the first)."""
    assert merge_counters(2, 3) == 5 and merge_counters(True, 1) is True and merge_counters(1, True) == 1
    assert merge_counters(2, "x") == 2 and merge_counters({"a": 1}, 5) == {"a": 1}
    assert merge_counters(1.5, 2.5) == 1.5  # a float is a setting (a threshold), not a counter
    assert merge_counters({"n": 1, "s": {"k": 2}}, {"n": 2, "s": {"k": 3, "j": 1}, "t": 4}) == \
        {"n": 3, "s": {"k": 5, "j": 1}, "t": 4}
    given = {"s": {"k": [1]}}
    out = merge_counters(None, given)
    out["s"]["k"].append(2)
    assert given == {"s": {"k": [1]}}


def test_lumis_written_merge_in_lumi_order_whatever_order_units_come_in():
    """An output's ``lumis_written`` ("run:lumi" -> events) in (run, lumi) order as numbers, whichever unit
    merges first and however a worker's differenced dict listed them: it followed the order units finished."""
    units = [{"out": {"lumis_written": {"2:1": 3}}}, {"out": {"lumis_written": {"1:10": 1, "1:9": 2}}},
             {"out": {"lumis_written": {"1:9": 1, "1:2": 4}}}]
    want = [("1:2", 4), ("1:9", 3), ("1:10", 1), ("2:1", 3)]
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        merged = reduce(merge_counters, [units[i] for i in order], None)
        assert list(merged["out"]["lumis_written"].items()) == want
    assert list(merge_counters(None, units[1])["out"]["lumis_written"]) == ["1:9", "1:10"]  # the first unit too
    assert list(merge_counters({"out": {}}, units[1])["out"]["lumis_written"]) == ["1:9", "1:10"]


class _Data:
    """A service's mergeable data: the merge keeps both sides, in order."""

    def __init__(self, *parts: int) -> None:
        self.parts = parts

    def merge(self, other: "_Data") -> "_Data":
        return _Data(*self.parts, *other.parts)


def _result(i: int, first: float | None, last: float | None, services: dict[str, Any]) -> JobResult:
    s = JobSummary("X", 1, events_read=i)
    parts = [{"module": m, "unit": u, "part": f"{m}.{u}"} for m, u in (("out", 7 - i), ("aux", i))]
    return JobResult(s, services, parts, first, last)


def test_job_results_merge_services_parts_and_the_event_times():
    """The first and last event times behind the Dask throughput are the earliest and the latest of
    the units' (a unit that read no event has none); services merge in order; parts sort."""
    a = _result(1, None, None, {"Timing": _Data(1), "Memory": None})
    b = _result(2, 100.0, 105.0, {"Timing": _Data(2), "Memory": _Data(20)})
    c = _result(3, 99.5, 104.0, {"Timing": None, "Extra": _Data(30)})
    for m in (a.merge(b).merge(c), a.merge(b.merge(c))):
        assert (m.first_event_epoch, m.last_event_epoch) == (99.5, 105.0)
        assert m.summary.events_read == 6
        assert m.services["Timing"].parts == (1, 2) and m.services["Memory"].parts == (20,)
        assert m.services["Extra"].parts == (30,)
        assert [(p["module"], p["unit"]) for p in m.parts] == sorted(
            (p["module"], p["unit"]) for r in (a, b, c) for p in r.parts)
    assert (a.merge(a).first_event_epoch, a.merge(a).last_event_epoch) == (None, None)
    only = b.merge(a)
    assert (only.first_event_epoch, only.last_event_epoch) == (100.0, 105.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_merger_counts_every_unit_and_equals_the_plain_fold(n):
    """``units_done`` in the job report is ``Merger.count``; the binary-counter tree gives the result
    a left-to-right fold gives, for any number of units."""
    results = [_result(i, float(i), float(i) + 1, {"Timing": _Data(i)}) for i in range(n)]
    merger = Merger()
    for r in results:
        merger.add(r)
    assert merger.count == n
    tree, fold = merger.result(), reduce(JobResult.merge, results)
    assert tree.summary == fold.summary and tree.services["Timing"].parts == tuple(range(n))
    assert (tree.first_event_epoch, tree.last_event_epoch) == (0.0, float(n))
    assert merge_all(results).summary.events_read == sum(range(n))


def test_merger_holds_a_logarithmic_number_of_partial_results():
    """The client holds O(log units) results (a binary counter), never every unit's: of the units
    added, at most one is still held as it came (the lowest level); the others are merged away."""
    merger, added = Merger(), []
    for i in range(16):
        r = _result(i, None, None, {"Timing": _Data(i)})
        added.append(weakref.ref(r))
        merger.add(r)
        del r
        assert sum(ref() is not None for ref in added) <= 1, i
    assert merger.result().services["Timing"].parts == tuple(range(16))


def test_merger_of_nothing_says_so():
    with pytest.raises(ValueError, match="^nothing to merge$"):
        Merger().result()


def test_the_jobs_facts_are_one_units_not_their_sum():
    """``facts`` (what the modules recorded: a filter's cut, a scorer's engine and auto's table) are the job's,
    the same in every unit of a worker: merged key by key, a Dask run of 3 units wrote facts.cuts with 3 times
    the filter's threshold (4.81 for 1.60) in hltrun.json and auto's table three times over."""
    facts = {"cuts": {"anomalyFilter": {"model": "conv_vae", "threshold": 1.6}},
             "accelerators": {"vae": {"backend": "tflite", "timings": [{"backend": "tflite", "us_per_jet": 97.0}]}}}
    units = [JobSummary("P", 1, facts=copy.deepcopy(facts)) for _ in range(3)]
    assert merge_all(JobResult(s) for s in units).summary.facts == facts


def test_a_backends_description_is_a_setting_not_a_counter_over_units_and_workers():
    """``hltrun --dask 2 modules.vae.threads=1`` wrote ``backend: {threads: 2}`` in hltrun.json: the numbers of a
    backend's ``describe()`` (threads, TensorRT's profile, a CUDA stream's id) were added over the workers like
    counters (and a worker's second unit gave ``threads: 0``, differenced as a cumulative count). They are what
    the engine runs with, as in a local job; the counters beside them still add and the device's gauges merge
    by max."""
    from hltrun.framework.executors.worker import _delta

    def scorer(jets: int, peak: int) -> dict[str, Any]:  # one process's cumulative summary() of the scorer
        return {"jets": jets, "backend": {"backend": "tensorrt", "threads": 1, "profile": {"min": 1, "max": 4096},
                                          "device_memory": {"peak_bytes_in_use": peak}}}

    first_seen: dict[str, Any] = {}
    units = [_delta(scorer(10, 5), first_seen), _delta(scorer(25, 7), first_seen),  # one worker, two units
             _delta(scorer(4, 6), {})]  # another worker's one unit
    for merged in (reduce(merge_counters, units), merge_counters(units[0], merge_counters(units[1], units[2]))):
        assert merged["jets"] == 29
        assert merged["backend"] == {"backend": "tensorrt", "threads": 1, "profile": {"min": 1, "max": 4096},
                                     "device_memory": {"peak_bytes_in_use": 7}}
