"""Shared fixtures: small ROOT files in the three layouts the source reads, and test-only modules."""

from __future__ import annotations

import logging
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.modules.rootio import write_nanoaod
from tests import plugins  # noqa: F401  (registers the test-only modules)


def pytest_configure(config: pytest.Config) -> None:
    """The tests send SIGINT, SIGTERM, SIGHUP, SIGUSR2 and SIGQUIT to jobs (this process, subprocesses) and expect
    them handled; hltrun leaves a signal its caller ignores ignored. A session started with some ignored
    (``nohup pytest``, ``pytest &`` in a script) would hand the ignore down: undo it, as in a terminal."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR2"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_IGN:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


def make_events(n_events: int, seed: int = 1) -> list[dict]:
    """Random jets: 0-4 per event, 1-150 constituents each, pT-unsorted on purpose."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n_events):
        n_jets = int(rng.integers(0, 5))
        jets = []
        for _ in range(n_jets):
            n_c = int(rng.integers(1, 151))
            jets.append({
                "pt": float(rng.uniform(200, 1500)), "eta": float(rng.uniform(-2.4, 2.4)),
                "phi": float(rng.uniform(-np.pi, np.pi)), "mass": float(rng.uniform(10, 200)),
                "c_pt": rng.exponential(20, n_c).astype(np.float32) + 0.5,
                "c_eta": rng.normal(0, 0.3, n_c).astype(np.float32),
                "c_phi": rng.normal(0, 0.3, n_c).astype(np.float32),
            })
        events.append({"run": 1, "lumi": 1 + i // 100, "event": 1000 + i, "jets": jets})
    return events


def _jet_branches(events: list[dict]) -> dict:
    return {
        "run": np.array([e["run"] for e in events], np.uint32),
        "luminosityBlock": np.array([e["lumi"] for e in events], np.uint32),
        "event": np.array([e["event"] for e in events], np.uint64),
        "FatJet": ak.zip({k: ak.Array([[j[k] for j in e["jets"]] for e in events]) for k in ("pt", "eta", "phi", "mass")}),
    }


def write_counts(path: Path, events: list[dict], count_offset: int = 0, per_basket: int | None = None) -> Path:
    """NanoAOD layout; ``count_offset`` corrupts every nConstituents, to test the consistency check;
    ``per_basket``: entries per basket (default: one basket per branch, which the file check keeps whole)."""
    step = per_basket or max(1, len(events))
    with uproot.recreate(path) as f:
        for at in range(0, max(1, len(events)), step):  # an empty list: the tree, no entries
            write_nanoaod(f, "Events", _counts_branches(events[at:at + step], count_offset))
    return path


def _counts_branches(events: list[dict], count_offset: int) -> dict:
    branches = _jet_branches(events)
    branches["FatJet"] = ak.zip({**{f: branches["FatJet"][f] for f in branches["FatJet"].fields},
                                 "nConstituents": ak.Array([[len(j["c_pt"]) + count_offset for j in e["jets"]]
                                                           for e in events])})
    branches["FatJetPFCand"] = ak.zip({k: ak.Array([np.concatenate([j[f"c_{k}"] for j in e["jets"]] or [np.zeros(0, np.float32)]).tolist()
                                                   for e in events]) for k in ("pt", "eta", "phi")})
    return branches


def write_jet_index(path: Path, events: list[dict], shuffle_seed: int = 3) -> Path:
    """PFNano style: constituents of all jets interleaved in random order, with a jet index."""
    rng = np.random.default_rng(shuffle_seed)
    branches = _jet_branches(events)
    cols = {"pt": [], "eta": [], "phi": [], "jetIdx": []}
    for e in events:
        rows = [(j_i, c) for j_i, j in enumerate(e["jets"]) for c in range(len(j["c_pt"]))]
        rows = [rows[i] for i in rng.permutation(len(rows))] if rows else []
        rows.append((-1, -1))  # a constituent belonging to no jet must be ignored
        for k in ("pt", "eta", "phi"):
            cols[k].append([float(e["jets"][j][f"c_{k}"][c]) if j >= 0 else 1.0 for j, c in rows])
        cols["jetIdx"].append([j for j, _ in rows])
    branches["FatJetPFCands"] = ak.zip({k: ak.Array(v) for k, v in cols.items()})
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", branches)
    return path


def write_nested(path: Path, events: list[dict]) -> Path:
    """Doubly-jagged constituents per jet. uproot cannot write a TTree branch of vector<vector<float>>
    (mktree refuses var * var * float32): its plain assignment writes an RNTuple (uproot >= 5.7), which
    the source reads into the same awkward type as a C++ ntuple's vector<vector<float>> TTree branch."""
    jets = _jet_branches(events).pop("FatJet")
    branches = {k: v for k, v in _jet_branches(events).items() if k != "FatJet"}
    for k in ("pt", "eta", "phi", "mass"):
        branches[f"FatJet_{k}"] = jets[k]
    for k in ("pt", "eta", "phi"):
        branches[f"Jet_c{k}"] = ak.Array([[j[f"c_{k}"].tolist() for j in e["jets"]] for e in events])
    with uproot.recreate(path) as f:
        f["Events"] = branches
    return path


_HLTRUN_LOG = logging.getLogger("hltrun")
_PRISTINE_LOG = (list(_HLTRUN_LOG.handlers), _HLTRUN_LOG.level, _HLTRUN_LOG.propagate)  # as the session began


@pytest.fixture(autouse=True)
def hltrun_logger_as_found() -> Iterator[None]:
    """hltrun's logger as the session found it, before and after each test: a CLI run (in a test, or in a
    module-scoped fixture, which runs before this one) sets its own handler on the stderr of that moment
    and stops propagation, so a later test's ``caplog`` saw none of hltrun's lines (and a handler left on
    a captured stream wrote to a closed file): which tests failed depended on the order they ran in."""
    def pristine() -> None:
        _HLTRUN_LOG.handlers[:] = _PRISTINE_LOG[0]
        _HLTRUN_LOG.setLevel(_PRISTINE_LOG[1])
        _HLTRUN_LOG.propagate = _PRISTINE_LOG[2]

    pristine()
    yield
    pristine()


@pytest.fixture(scope="session", autouse=True)
def own_cache_folder(tmp_path_factory) -> Iterator[Path]:
    """``XDG_CACHE_HOME`` for the whole session (and every job a test starts): hltrun's per-machine caches
    (``auto``'s decisions, compiled IREE/JAX modules) in a fresh folder, never the user's ``~/.cache``,
    so that a run here starts as cold as on CI's clean machine and leaves nothing in the home folder.
    Tests that need another value set it with ``monkeypatch``, which restores this one."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture(scope="session")
def sample_events() -> list[dict]:
    return make_events(120)


@pytest.fixture(scope="session")
def counts_file(tmp_path_factory, sample_events) -> Path:
    return write_counts(tmp_path_factory.mktemp("root") / "counts.root", sample_events)


# (run, lumi) of lumi_file's events in input order: two runs, a one-event lumi, events 1000...
LUMI_LAYOUT = [(1, 1)] * 7 + [(1, 2)] * 5 + [(1, 3)] * 1 + [(2, 7)] * 9 + [(2, 8)] * 3


@pytest.fixture(scope="session")
def lumi_file(tmp_path_factory) -> Path:
    """A NanoAOD-like file of several runs and lumi sections (LUMI_LAYOUT)."""
    events = make_events(len(LUMI_LAYOUT), seed=5)
    for e, (run, lumi) in zip(events, LUMI_LAYOUT):
        e["run"], e["lumi"] = run, lumi
    return write_counts(tmp_path_factory.mktemp("lumi") / "lumis.root", events)


@pytest.fixture()
def write_config(tmp_path):
    """Write a YAML config (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "cfg.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
from tests.tiny_models import tiny  # noqa: E402,F401  (session fixture: the tiny VAE-shaped models)
