"""hltrun.modules.rootio.concatenate_trees: output parts of work units joined into one NanoAOD-like file."""
from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from hltrun.modules.rootio import concatenate_trees, write_nanoaod


def _part(path: Path, n: int, with_scores: bool) -> Path:
    data = {"run": np.ones(n, np.uint32), "luminosityBlock": np.ones(n, np.uint32),
            "event": np.arange(n, dtype=np.uint64)}
    if with_scores:
        data["vae"] = ak.zip({"score": ak.Array([[0.5, 1.5]] * n)})
        data["HLT_AnomalyDetection"] = np.ones(n, bool)
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", data)
    return path


def test_an_empty_first_part_does_not_fix_the_layout(tmp_path: Path) -> None:
    """A work unit that selected no event writes only the id branches; coming first, it used to
    create the tree, and the next part's product branches were refused (a Dask job then failed)."""
    parts = [_part(tmp_path / "a.root", 0, False), _part(tmp_path / "b.root", 3, True),
             _part(tmp_path / "c.root", 0, False), _part(tmp_path / "d.root", 2, True)]
    out = tmp_path / "out.root"
    assert concatenate_trees([str(p) for p in parts], str(out), "Events") == 5
    with uproot.open(out) as f:
        t = f["Events"]
        assert t.num_entries == 5
        assert {"run", "event", "nvae", "vae_score", "HLT_AnomalyDetection"} <= set(t.keys())
        assert t["event"].array(library="np").tolist() == [0, 1, 2, 0, 1]


def test_all_parts_empty_gives_an_empty_tree(tmp_path: Path) -> None:
    parts = [_part(tmp_path / "a.root", 0, False), _part(tmp_path / "b.root", 0, False)]
    out = tmp_path / "out.root"
    assert concatenate_trees([str(p) for p in parts], str(out), "Events") == 0
    with uproot.open(out) as f:
        assert f["Events"].num_entries == 0 and "event" in f["Events"].keys()


def test_all_parts_empty_keep_the_branches_a_unit_learnt(tmp_path: Path) -> None:
    """Every unit selected no event, but only the second saw an event with the kept products (its output
    learnt their branches from it): the joined output took the first part's ids-only layout, so a Dask job
    lost the kept products' branches that the same job run locally writes. The widest part's layout now."""
    learnt = tmp_path / "b.root"  # as RootOutputModule._write_empty writes it: typed, without entries
    with uproot.recreate(learnt) as f:
        write_nanoaod(f, "Events", {"run": np.zeros(0, np.uint32), "luminosityBlock": np.zeros(0, np.uint32),
                                    "event": np.zeros(0, np.uint64), "HLT_AnomalyDetection": np.zeros(0, bool),
                                    "vae": ak.zip({"score": ak.unflatten(np.zeros(0, np.float32), np.zeros(0, int))})})
    parts = [_part(tmp_path / "a.root", 0, False), learnt, _part(tmp_path / "c.root", 0, False)]
    out = tmp_path / "out.root"
    assert concatenate_trees([str(p) for p in parts], str(out), "Events") == 0
    with uproot.open(out) as f:
        t = f["Events"]
        assert t.num_entries == 0
        assert {"run", "event", "nvae", "vae_score", "HLT_AnomalyDetection"} <= set(t.keys())
        assert t["vae_score"].typename == "float[]"
