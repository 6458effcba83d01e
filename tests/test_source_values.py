"""Values a file may hold that the source must refuse in one line (branch, entry, file), not crash on
or read silently wrong: negative constituent counts, event ids that are no 32/64-bit integers, a
jagged or non-finite weight."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.errors import SourceError
from hltrun.framework.schema import build
from hltrun.modules.duplicates import keys
from hltrun.modules.root_source import RootJetSource, RootJetSourceParameters
from hltrun.modules.rootio import write_nanoaod
from tests.conftest import make_events

N = 30


def write(path, n=N, baskets=1, **change):
    """A small counts-layout file (``n`` events); ``change`` replaces whole branches or collection fields
    (``FatJet_nConstituents``...), a callable gets the jet fields; written in ``baskets`` parts (a
    file of several baskets is not read whole by the check at begin_job)."""
    events = make_events(n, seed=11)
    counts = [[len(j["c_pt"]) for j in e["jets"]] for e in events]
    jets = {k: ak.Array([[j[k] for j in e["jets"]] for e in events]) for k in ("pt", "eta", "phi", "mass")}
    jets["nConstituents"] = ak.values_astype(ak.Array(counts), np.int32)
    cands = {k: ak.Array([np.concatenate([j[f"c_{k}"] for j in e["jets"]] or [np.zeros(0, np.float32)]).tolist()
                          for e in events]) for k in ("pt", "eta", "phi")}
    data = {"run": np.ones(n, np.uint32), "luminosityBlock": np.ones(n, np.uint32),
            "event": np.arange(1, n + 1, dtype=np.uint64)}
    for name, value in change.items():
        if name.startswith("FatJet_"):
            jets[name.split("_", 1)[1]] = value(jets) if callable(value) else value
        else:
            data[name] = value
    data["FatJet"] = ak.zip(jets)
    data["FatJetPFCand"] = ak.zip(cands)
    with uproot.recreate(path) as f:
        for part in np.array_split(np.arange(n), baskets):
            write_nanoaod(f, "Events", {k: v[part[0]:part[-1] + 1] for k, v in data.items()})
    return path


def source(*files, **params):
    p = build(RootJetSourceParameters, {"files": [str(f) for f in files], **params}, "source")
    return RootJetSource("source", p)


def read(*files, **params):
    src = source(*files, **params)
    src.begin_job(None)
    return [e for e, _ in src.events(0, None)], src


def _negative_count(jets, first=5):
    """The first jet of an event from ``first`` on declares -5 constituents, its second 5 more: the
    event still adds up."""
    counts = ak.to_list(jets["nConstituents"])
    at = next(i for i in range(first, len(counts)) if len(counts[i]) >= 2)
    counts[at][1] += counts[at][0] + 5
    counts[at][0] = -5
    return ak.values_astype(ak.Array(counts), np.int32)


def test_negative_constituent_count_is_named(tmp_path):
    path = write(tmp_path / "neg.root", FatJet_nConstituents=_negative_count)
    with pytest.raises(SourceError, match=r"^source: 'FatJet_nConstituents' holds a negative constituent count "
                                          r"\(-5, jet 0\) at entry \d+ of .*neg.root: a jet's number of "
                                          r"constituents is 0 or more$"):
        read(path)


def test_negative_constituent_count_in_a_later_chunk_is_named(tmp_path):
    """Past the entries begin_job checks: found by the chunk's conversion, with the chunk's entry."""
    path = write(tmp_path / "neg.root", n=120, FatJet_nConstituents=lambda jets: _negative_count(jets, first=60))
    src = source(path, chunk_size=20)
    src.begin_job(None)
    with pytest.raises(SourceError, match=r"negative constituent count \(-5, jet 0\) at entry (6\d|[7-9]\d|1\d\d) of"):
        list(src.events(0, None))


def test_negative_constituent_count_file_is_skipped_with_skip_bad_files(tmp_path):
    bad = write(tmp_path / "neg.root", FatJet_nConstituents=_negative_count)
    good = write(tmp_path / "good.root")
    ids, src = read(bad, good, skipBadFiles=True)
    assert len(ids) == N
    assert len(src.bad_files) == 1 and "negative constituent count" in src.bad_files[0]


ONE = np.ones(N, np.int64)
ENTRIES = np.arange(1, N + 1)


@pytest.mark.parametrize("branch, values, line", [
    ("event", ak.Array([[i, i] for i in range(N)]),
     r"event-id branch 'event' \(source.branches.event\) must hold one number per event, got a list per event in "),
    ("event", np.where(ENTRIES == 4, np.nan, ENTRIES.astype(np.float64)),
     r"event-id branch 'event' \(source.branches.event\) holds nan at entry 3 of .*: event numbers are whole "
     r"numbers from 0 to 18446744073709551615 \(a float branch is read where every value is a whole number "),
    ("event", ENTRIES * 0.1, r"event-id branch 'event' \(source.branches.event\) holds 0.1 at entry 0 of "),
    ("event", ENTRIES * 2.0**53, r"'event' \(source.branches.event\) holds 9007199254740992.0 at entry 0 of"),  # a double is not exact there
    ("run", -ONE.astype(np.int32), r"event-id branch 'run' \(source.branches.run\) holds -1 at entry 0 of .*: run "
                                   r"numbers are whole numbers from 0 to 4294967295$"),
    ("run", ONE * 2**40, r"'run' \(source.branches.run\) holds 1099511627776 at entry 0 of"),
    ("luminosityBlock", np.where(ENTRIES % 2 == 0, 2**32 + 1, 1),
     r"'luminosityBlock' \(source.branches.luminosityBlock\) holds 4294967297 at entry 1 of .*: lumi numbers are "
     r"whole numbers from 0 to 4294967295$"),
    ("event", ENTRIES % 2 == 0, r"'event' \(source.branches.event\) is bool in .*, not an integer$"),
])
def test_bad_event_ids_are_refused_at_begin_job(tmp_path, branch, values, line):
    """Event ids are checked before the first event: a jagged one was a TypeError, a NaN a ValueError,
    a negative or 2^40 run failed the output module at end_job, float events were truncated and then
    (0.1, 0.2, ... -> 0) skipped as duplicates, a lumi 2^32+1 aliased lumi 1 in the duplicate check."""
    path = write(tmp_path / "ids.root", **{branch: values})
    with pytest.raises(SourceError, match=r"^source: (event-id branch )?" + line):
        source(path).begin_job(None)


def test_whole_float_event_numbers_are_read(tmp_path):
    path = write(tmp_path / "ids.root", event=ENTRIES * 1.0, run=(ONE * 7).astype(np.float32))
    ids, src = read(path)
    assert [(e.run, e.luminosityBlock, e.event) for e in ids] == [(7, 1, i) for i in range(1, N + 1)]
    assert src.accounting()["duplicates"] == 0


def test_full_range_event_numbers_are_read(tmp_path):
    big = np.uint64(2**64 - 1) - np.arange(N, dtype=np.uint64)
    ids, _ = read(write(tmp_path / "ids.root", event=big, run=np.full(N, 2**32 - 1, np.uint32)))
    assert [e.event for e in ids] == [2**64 - 1 - i for i in range(N)] and ids[0].run == 2**32 - 1


def test_bad_event_id_past_the_checked_entries_is_named_with_its_entry(tmp_path):
    """Values are checked per chunk too (vectorised): a negative run at entry 100, past the entries the
    file check reads, stops the job at that chunk; with skipBadFiles the rest of the file is skipped."""
    run = np.ones(120, np.int64)
    run[100] = -3
    path = write(tmp_path / "late.root", n=120, baskets=3, run=run)
    src = source(path, chunk_size=20)
    src.begin_job(None)
    with pytest.raises(SourceError, match=r"^source: event-id branch 'run' .* holds -3 at entry 100 of "):
        list(src.events(0, None))
    src = source(path, chunk_size=20, skipBadFiles=True)
    src.begin_job(None)
    assert len(list(src.events(0, None))) == 100
    assert "entries 100-120 skipped" in src.bad_files[0]


def test_jagged_weight_branch_is_refused_at_begin_job(tmp_path):
    path = write(tmp_path / "w.root")
    with pytest.raises(SourceError, match=r"^source: weight branch 'FatJet_pt' \(source.branches.weight\) must hold "
                                          r"one number per event, got a list per event in .*w.root$"):
        source(path, branches={"weight": "FatJet_pt"}).begin_job(None)


def _weights(n: int, **bad: float) -> np.ndarray:
    """A float32 genWeight, NLO-like (some negative), with ``bad`` values at entries ``e<i>``."""
    w = np.where(np.arange(n) % 7 == 3, -0.8, 1.3).astype(np.float32)
    for at, value in bad.items():
        w[int(at[1:])] = value
    return w


@pytest.mark.parametrize("weights, line", [
    (_weights(N, e4=np.nan), r"holds nan at entry 4 of .*w.root: an event weight must be a finite number \(a NaN "
                             r"or infinite one makes every rate it enters NaN\) of magnitude at most 1e\+100 \(sums "
                             r"of squared weights must fit a double\)$"),
    (_weights(N, e2=np.inf, e9=-np.inf, e20=np.nan), r"holds inf at entry 2 of .*w.root \(and 2 more of entries "
                                                     r"0-30\): an event weight must be a finite number"),
    (np.arange(N) % 2 == 0, r"is bool in .*w.root, not a number$"),
    # a finite weight whose square overflows a double: the rates' Sumw2 ended the job in an internal error
    (np.where(np.arange(N) == 6, 2e154, 1.0), r"holds 2e\+154 at entry 6 of .*w.root: an event weight must be a "
                                              r"finite number .* of magnitude at most 1e\+100 \(sums of squared"),
])
def test_nonfinite_weight_is_refused_at_begin_job(tmp_path, weights, line):
    """A NaN or infinite genWeight made every weighted rate NaN (hltrun.json: null, report.html: nan) in a job
    that ended with exit 0 and no word; it is bad data, named as a bad event id is."""
    path = write(tmp_path / "w.root", genWeight=weights)
    with pytest.raises(SourceError, match=r"^source: weight branch 'genWeight' \(source.branches.weight\) " + line):
        source(path).begin_job(None)


def test_nonfinite_weight_past_the_checked_entries_is_named_and_skipped_with_skip_bad_files(tmp_path):
    """Past the entries the file check reads, the chunk's conversion names it; skipBadFiles skips the rest of the
    file from that chunk, every event accounted for, and no NaN reaches an event."""
    path = write(tmp_path / "late.root", n=120, baskets=3, genWeight=_weights(120, e105=np.nan))
    src = source(path, chunk_size=20)
    src.begin_job(None)
    with pytest.raises(SourceError, match=r"^source: weight branch 'genWeight' .* holds nan at entry 105 of "
                                          r".*late.root: an event weight must be a finite number"):
        list(src.events(0, None))
    src = source(path, chunk_size=20, skipBadFiles=True)
    src.begin_job(None)
    weights = [products["weight"] for _, products in src.events(0, None)]
    assert len(weights) == 100 and all(np.isfinite(weights))
    assert "entries 100-120 skipped" in src.bad_files[0]


@pytest.mark.parametrize("run, lumi, event", [([1], [2**32 + 1], [1]), ([2**32], [1], [1]), ([-1], [1], [1]),
                                              ([1], [1], [-1])])
def test_duplicate_keys_refuse_ids_that_would_alias(run, lumi, event):
    """keys() packs run and lumi into 8 bytes: lumi 2^32+1 was packed as lumi 1 (100 events of a file
    with lumis 1 and 2^32+1 skipped as duplicates). The source refuses such ids first; keys() itself
    refuses rather than alias."""
    with pytest.raises(ValueError, match=r"^duplicate check: (run|lumi|event) numbers must be 0 to"):
        keys(np.array(run, np.int64), np.array(lumi, np.int64), np.array(event, np.int64))


def test_duplicate_keys_keep_the_full_range_apart():
    k = keys(np.array([2**32 - 1, 2**32 - 1, 0], np.uint64), np.array([2**32 - 1, 0, 2**32 - 1], np.uint64),
             np.array([2**64 - 1] * 3, np.uint64))
    assert len(np.unique(k)) == 3
