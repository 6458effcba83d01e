"""Values a file may hold that the source must refuse in one line (branch, entry, file), not crash on
or read silently wrong: negative constituent counts, event ids that are no 32/64-bit integers, a
jagged weight."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.errors import SourceError
from hltrun.framework.schema import build
from hltrun.modules.root_source import RootJetSource, RootJetSourceParameters
from hltrun.modules.rootio import write_nanoaod
from tests.conftest import make_events

N = 30


def write(path, n=N, **change):
    """A small counts-layout file (``n`` events); ``change`` replaces whole branches or collection fields
    (``FatJet_nConstituents``...), a callable gets the jet fields."""
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
        write_nanoaod(f, "Events", data)
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
