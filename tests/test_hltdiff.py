"""hltdiff speaks hltDiff: its header and table, -o/-n with several files, -m, -d, -q, -v, and
accepted-only outputs. The files of -j, -c, -r and -F: tests/test_hltdiff_golden.py."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.tools.hltdiff import compare, main, render_table
from tests.helpers import stdout_full


def _write(path, run, event, trig, score=None, extra=None):
    """A small hltrun-like output: ids, HLT_ bits and an optional per-jet score."""
    data = {"run": np.asarray(run, np.uint32), "luminosityBlock": np.ones(len(event), np.uint32),
            "event": np.asarray(event, np.uint64)}
    for name, bits in trig.items():
        data[name] = np.asarray(bits, bool)
    if score is not None:
        data["vae_score"] = ak.Array(score)
    data.update(extra or {})
    with uproot.recreate(path) as f:
        f["Events"] = data
    return path


EV = list(range(1, 11))
OLD_A = [1, 1, 0, 0, 1, 0, 1, 0, 0, 0]  # 4 accepts
NEW_A = [1, 0, 0, 0, 0, 1, 1, 0, 0, 0]  # lost 2 and 5, gained 6
OLD_B = [0] * 10
NEW_B = [0] * 9 + [1]


def test_table_has_hltdiff_columns_and_counts(tmp_path, capsys):
    old = _write(tmp_path / "old.root", [1] * 10, EV, {"HLT_A": OLD_A, "HLT_B": OLD_B})
    new = _write(tmp_path / "new.root", [1] * 10, EV, {"HLT_A": NEW_A, "HLT_B": NEW_B})
    assert main([str(old), str(new), "-q"]) == 1  # -q: no table (hltDiff's quiet)
    quiet = capsys.readouterr().out.splitlines()
    assert "Found 10 matching events, out of which 4 have different HLT results" in quiet
    assert not any("Trigger" in line or "HLT_" in line for line in quiet)
    assert main([str(old), str(new)]) == 1
    out = capsys.readouterr().out.splitlines()
    # hltDiff.cc: the header, a blank line, setw(12) columns, two spaces and the trigger name
    i = out.index("Found 10 matching events, out of which 4 have different HLT results")
    assert out[i + 1:i + 5] == ["", "      Events    Accepted      Gained        Lost       Other  Trigger",
                                "          10           4          +1          -2           -  HLT_A",
                                "          10           0          +1           -           -  HLT_B"]


def test_only_triggers_with_differences_are_listed(tmp_path, capsys):
    old = _write(tmp_path / "old.root", [1] * 10, EV, {"HLT_A": OLD_A, "HLT_Same": OLD_A})
    new = _write(tmp_path / "new.root", [1] * 10, EV, {"HLT_A": NEW_A, "HLT_Same": OLD_A})
    main([str(old), str(new)])
    out = capsys.readouterr().out
    assert "  HLT_A" in out and "HLT_Same" not in out


def test_identical_outputs_agree(tmp_path, capsys):
    a = _write(tmp_path / "a.root", [1] * 10, EV, {"HLT_A": OLD_A}, score=[[0.1, 0.2]] * 10)
    b = _write(tmp_path / "b.root", [1] * 10, EV, {"HLT_A": OLD_A}, score=[[0.1, 0.2]] * 10)
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "Found 10 matching events, out of which 0 have different HLT results\n" in out and "outputs agree" in out
    assert "Trigger" not in out  # hltDiff prints the table's header only above a differing trigger


def test_other_counts_accepted_events_whose_scores_changed(tmp_path):
    scores = [[0.1, 0.2]] * 10
    changed = [[0.1, 0.2]] * 10
    changed[0] = [0.1, 0.25]  # event 1: accepted on both sides, score differs
    changed[2] = [0.5, 0.2]  # event 3: rejected on both sides -> a product difference, not 'Other'
    old = uproot.open(_write(tmp_path / "o.root", [1] * 10, EV, {"HLT_A": OLD_A}, scores))["Events"].arrays()
    new = uproot.open(_write(tmp_path / "n.root", [1] * 10, EV, {"HLT_A": OLD_A}, changed))["Events"].arrays()
    diff = compare(old, new)
    assert diff.triggers[0].other == 1 and diff.branches["vae_score"] == 2
    assert "~1  HLT_A" in render_table(diff) and not diff.identical


def test_accepted_only_outputs_turn_missing_events_into_gains_and_losses(tmp_path):
    # both outputs keep accepted events only: old accepted 1, 2, 5; new accepted 1, 6
    old = _write(tmp_path / "o.root", [1] * 3, [1, 2, 5], {"HLT_A": [1, 1, 1]})
    new = _write(tmp_path / "n.root", [1] * 2, [1, 6], {"HLT_A": [1, 1]})
    arr_o, arr_n = (uproot.open(p)["Events"].arrays() for p in (old, new))
    diff = compare(arr_o, arr_n)
    t = diff.triggers[0]
    assert (diff.selected_old, diff.selected_new) == (True, True)
    assert (diff.compared, t.accepted, t.gained, t.lost) == (4, 3, 1, 2)
    assert (diff.only_in_old, diff.only_in_new) == (0, 0)
    # told that the outputs keep every event, the same ids are skipped events instead
    plain = compare(arr_o, arr_n, selected_old=False, selected_new=False)
    assert (plain.compared, plain.only_in_old, plain.only_in_new) == (1, 2, 1)
    assert plain.triggers[0].gained == plain.triggers[0].lost == 0


def test_several_files_per_side_equal_one_concatenated_file(tmp_path, capsys):
    old = _write(tmp_path / "old.root", [1] * 10, EV, {"HLT_A": OLD_A, "HLT_B": OLD_B})
    new1 = _write(tmp_path / "n1.root", [1] * 4, EV[:4], {"HLT_A": NEW_A[:4], "HLT_B": NEW_B[:4]})
    new2 = _write(tmp_path / "n2.root", [1] * 6, EV[4:], {"HLT_A": NEW_A[4:], "HLT_B": NEW_B[4:]})
    new = _write(tmp_path / "new.root", [1] * 10, EV, {"HLT_A": NEW_A, "HLT_B": NEW_B})
    main([str(old), str(new)])
    single = capsys.readouterr().out.splitlines()
    assert main(["-o", str(old), "-n", str(new1), str(new2)]) == 1
    split = capsys.readouterr().out.splitlines()
    assert [line for line in single if "HLT_" in line] == [line for line in split if "HLT_" in line]


def test_verbose_debug_and_skipped_events(tmp_path, capsys):
    old = _write(tmp_path / "old.root", [1] * 10, EV, {"HLT_A": OLD_A})
    new = _write(tmp_path / "new.root", [1] * 9, EV[:9], {"HLT_A": NEW_A[:9]})  # event 10 missing
    assert main([str(old), str(new), "--selected", "no", "-v"]) == 1
    captured = capsys.readouterr()
    assert "not found" not in captured.err  # hltDiff: missing events only with -d
    assert "run 1, lumi 1, event 2: old result is 'accepted', new result is 'rejected'" in captured.out
    assert "        old state is 'accepted',\n        new state is 'rejected'" in captured.out
    assert "Found 9 matching events, out of which 3 have different HLT results, 1 events were skipped" in captured.out
    assert main([str(old), str(new), "--selected", "no", "-d"]) == 1
    assert "run 1, lumi 1, event 10: not found in the 'new' files, skipping.\n" in capsys.readouterr().err


def test_verbose_takes_no_value_as_in_hltdiff(tmp_path, capsys):
    """hltDiff's -v takes no value (given twice, -vv, it adds trigger candidates). Here it took an optional
    LEVEL that changed nothing and swallowed the next word: 'hltdiff -v OLD NEW' was an argparse error
    (invalid int value: 'OLD'), exit 2."""
    old = _write(tmp_path / "old.root", [1] * 10, EV, {"HLT_A": OLD_A})
    new = _write(tmp_path / "new.root", [1] * 10, EV, {"HLT_A": NEW_A})
    assert main([str(old), str(new), "--selected", "no", "-v"]) == 1
    after = capsys.readouterr().out
    assert "run 1, lumi 1, event 2: old result is 'accepted', new result is 'rejected'" in after
    for argv in (["-v", str(old), str(new)], ["-vv", str(old), str(new)], ["-v", "-o", str(old), "-n", str(new)]):
        assert main([*argv, "--selected", "no"]) == 1
        assert capsys.readouterr().out == after


def test_agreeing_outputs_with_skipped_events_exit_0(tmp_path, capsys):
    """hltDiff skips an old event the new files lack; agreeing compared events are agreement."""
    old = _write(tmp_path / "old.root", [1] * 10, EV, {"HLT_A": OLD_A})
    new = _write(tmp_path / "new.root", [1] * 9, EV[:9], {"HLT_A": OLD_A[:9]})
    assert main([str(old), str(new), "--selected", "no"]) == 0
    out = capsys.readouterr().out
    assert "Found 9 matching events, out of which 0 have different HLT results, 1 events were skipped" in out
    assert "outputs agree" in out


def test_max_events_stops_after_n_matched_events(tmp_path, capsys):
    """-m N counts matched events of the old side, in its order: skipped ones do not count."""
    old = _write(tmp_path / "old.root", [1] * 10, EV, {"HLT_A": OLD_A})
    # the new side lacks events 1 and 2; event 5 (4th matched) differs
    keep = [i for i in range(10) if EV[i] not in (1, 2)]
    new_a = list(OLD_A)
    new_a[4] = 0
    new = _write(tmp_path / "new.root", [1] * 8, [EV[i] for i in keep], {"HLT_A": [new_a[i] for i in keep]})
    assert main([str(old), str(new), "--selected", "no", "-m", "2"]) == 0  # events 3, 4 agree
    out = capsys.readouterr().out
    assert "Found 2 matching events, out of which 0 have different HLT results, 2 events were skipped" in out
    assert main([str(old), str(new), "--selected", "no", "-m", "3"]) == 1  # events 3, 4, 5
    assert "Found 3 matching events, out of which 1 have different HLT results, 2 events were skipped" in \
        capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "corrupt", "garbage", "truncated", "no_tree", "no_ids"])
def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys, case):
    good = _write(tmp_path / "good.root", [1] * 10, EV, {"HLT_A": OLD_A})
    bad = tmp_path / "bad.root"
    if case == "corrupt":
        bad.write_bytes(b"root" + b"\0" * 100)
    elif case == "garbage":  # uproot's message for these runs over three lines
        bad.write_bytes(b"garbage\n")
    elif case == "truncated":
        bad.write_bytes(good.read_bytes()[:2000])
    elif case == "no_tree":
        with uproot.recreate(bad) as f:
            f["Other"] = {"x": np.arange(3)}
    elif case == "no_ids":
        with uproot.recreate(bad) as f:
            f["Events"] = {"x": np.arange(3)}
    assert main([str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hltdiff: error:") and "bad.root" in err[0]


def _nanoaod(tmp_path):
    """NanoAOD as CMSSW writes it, in the names hltdiff sees: the CMS menu's HLT_* bits (every event passes one,
    so it read as an accepted-only output), MET filter flags, jets; no Process or Provenance string."""
    return _write(tmp_path / "nano.root", [1] * 10, EV, {"HLT_A": OLD_A, "HLT_IsoMu24": [1] * 10},
                  extra={"Flag_HBHENoiseFilter": np.ones(10, bool), "nJet": np.full(10, 2, np.uint32),
                         "Jet_pt": ak.Array([[50.0, 30.0]] * 10)})


def _nanoaod_trees(tmp_path):
    """NanoAOD without a flag branch, told by CMSSW's MetaData and ParameterSets trees beside Events."""
    from tests.test_source_formats import write_pfnano

    return write_pfnano(tmp_path / "pfnano.root", other_branches=3)


def _miniaod(tmp_path):
    from tests.test_bad_inputs import _edm_file

    return Path(_edm_file(tmp_path)["files"][-1])


def _hltrun_input(tmp_path):
    """A sample as hltrun reads it (the shipped samples' layout, NanoAOD-like without CMSSW's marks): ids and
    jets, no trigger bit. It matched the output's events: the output's accepts were "Gained", its jet branches
    "in one file only", exit 1."""
    from tests.conftest import make_events, write_counts

    return write_counts(tmp_path / "sample.root", make_events(10, seed=3))


@pytest.mark.parametrize("side", ["old", "new"])
@pytest.mark.parametrize("make, what", [(_hltrun_input, "a job's input (it names no process and holds no HLT_* "
                                                        "trigger bit)"),
                                        (_nanoaod, "a CMSSW NanoAOD file (2 HLT_* bits of the CMS trigger menu, "
                                                  "NanoAOD's 'Flag_HBHENoiseFilter')"),
                                        (_nanoaod_trees, "a CMSSW NanoAOD file (3 HLT_* bits of the CMS trigger menu, "
                                                         "NanoAOD's 'ParameterSets')"),
                                        (_miniaod, "a CMSSW EDM file (MiniAOD/AOD/RECO: its events hold C++ objects "
                                                   "such as 'patJets_slimmedJetsAK8__PAT.')")])
def test_a_cmssw_file_is_no_output_and_says_so(tmp_path, capsys, side, make, what):
    """The job's input given for its output (``hltdiff input.root output.root``): a NanoAOD file's CMS trigger
    bits were compared with the job's (Gained +3 on HLT_AnomalyDetection, hundreds of its branches "in one file
    only", exit 1), an EDM file said only that it has no run, luminosityBlock, event branch. One line naming
    the file and what it is, exit 2."""
    output = _write(tmp_path / "out.root", [1] * 10, EV, {"HLT_A": OLD_A}, score=[[0.5]] * 10)
    cmssw = make(tmp_path)
    files = [cmssw, output] if side == "old" else [output, cmssw]
    assert main([str(f) for f in files]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hltdiff: error: {cmssw} is {what}, not an hltrun output: hltdiff compares the outputs of two "
                   f"hltrun jobs; run hltrun on it (modules.out.file) and give hltdiff that job's output"]


def test_an_older_output_naming_no_process_is_still_compared(tmp_path, capsys):
    """An hltrun output from before the Process string has no CMSSW branch: compared, not refused."""
    old = _write(tmp_path / "old.root", [1] * 10, EV, {"HLT_A": OLD_A}, extra={"HLTPrescaled_A": np.zeros(10, bool)})
    new = _write(tmp_path / "new.root", [1] * 10, EV, {"HLT_A": OLD_A})
    assert main([str(old), str(new)]) == 0


@pytest.mark.parametrize("side", ["old", "new"])
@pytest.mark.parametrize("lost", [1, 72, 400])
def test_an_output_cut_short_is_exit_2_with_one_line(tmp_path, capsys, side, lost):
    """An output whose last bytes are missing (a full disk, an interrupted copy) read as whole: the same events,
    "0 have different HLT results", exit 0. It is the source's check (modules/source/tree.py ``cut_short``: the ROOT
    header's end against the file's size) here too: exit 2, one line naming the file."""
    good = _write(tmp_path / "good.root", [1] * 10, EV, {"HLT_A": OLD_A}, score=[[0.5, 0.25]] * 10)
    short = tmp_path / "short.root"
    short.write_bytes(good.read_bytes()[:-lost])
    files = [good, short] if side == "new" else [short, good]
    assert main([str(f) for f in files]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"hltdiff: error: input file {short} is cut short: {good.stat().st_size - lost} bytes")


def test_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "only_one.root")])
    assert exc.value.code == 2


def test_product_lines_say_which_event_and_by_how_much(tmp_path, capsys):
    """Two outputs that differ in a few events' products: each differing product names the events and
    how far each moved (old -> new, the relative change --rtol is compared with), the largest first.
    The lines gave the event ids only: "e.g. run 1, lumi 1, event 7", not whether 0.5 became 0.5001 or 50."""
    scores = [[0.25, 0.5]] * 10
    changed = [list(s) for s in scores]
    changed[2] = [0.25, 0.5005]     # event 3: 1e-3
    changed[6] = [0.25, 0.51]       # event 7: 2e-2, the largest
    changed[8] = [0.25, 0.5, 0.75]  # event 9: a jet more
    nvae = np.full(10, 2, np.int32)
    nvae_new = nvae.copy()
    nvae_new[8] = 3
    old = _write(tmp_path / "old.root", [1] * 10, EV, {"HLT_A": OLD_A}, scores, {"nvae": nvae})
    new = _write(tmp_path / "new.root", [1] * 10, EV, {"HLT_A": OLD_A}, changed, {"nvae": nvae_new})
    assert main([str(old), str(new), "-q"]) == 1
    out = capsys.readouterr().out.splitlines()
    i = next(k for k, line in enumerate(out) if line.lstrip().startswith("vae_score"))
    assert out[i].split() == ["vae_score", "differs", "3", "events"]
    assert out[i + 1:i + 4] == [
        "      largest run 1, lumi 1, event 9: 2 -> 3 entries",  # a length change is the largest (inf)
        "      e.g. run 1, lumi 1, event 3: entry 1 of 2: 0.5 -> 0.5005 (relative 0.001)",
        "      e.g. run 1, lumi 1, event 7: entry 1 of 2: 0.5 -> 0.51 (relative 0.02)"]
    j = next(k for k, line in enumerate(out) if line.lstrip().startswith("nvae"))
    assert out[j + 1] == "      largest run 1, lumi 1, event 9: 2 -> 3 (relative 0.5)"
    # without the length change, the largest relative change leads; --examples 1 keeps it alone
    changed[8] = [0.25, 0.5]
    new = _write(tmp_path / "new.root", [1] * 10, EV, {"HLT_A": OLD_A}, changed, {"nvae": nvae})
    assert main([str(old), str(new), "-q", "--examples", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    i = next(k for k, line in enumerate(out) if line.lstrip().startswith("vae_score"))
    assert out[i].split() == ["vae_score", "differs", "2", "events"]
    assert out[i + 1] == "      largest run 1, lumi 1, event 7: entry 1 of 2: 0.5 -> 0.51 (relative 0.02)"
    assert not out[i + 2].startswith("      e.g.")


def test_verbose_lists_the_products_of_an_event_whose_decision_changed(tmp_path, capsys):
    """-v: an event that lost its accept shows, under its path, the products that moved and by how much (it
    showed the states only: why the event flipped, 0.6 -> 0.4 against the cut, was not there)."""
    scores = [[0.25, 0.6]] * 10
    changed = [list(x) for x in scores]
    changed[1] = [0.25, 0.4]  # event 2: accepted by the old side only (OLD_A[1] = 1, NEW_A[1] = 0)
    old = _write(tmp_path / "old.root", [1] * 10, EV, {"HLT_A": OLD_A}, scores)
    new = _write(tmp_path / "new.root", [1] * 10, EV, {"HLT_A": NEW_A}, changed)
    assert main([str(old), str(new), "-v", "-q"]) == 1
    out = capsys.readouterr().out
    event2 = out[out.index("run 1, lumi 1, event 2:"):].split("\n\n")[0].splitlines()
    assert event2[-1] == "    vae_score: entry 1 of 2: 0.6 -> 0.4 (relative 0.33)", event2
    event5 = out[out.index("run 1, lumi 1, event 5:"):].split("\n\n")[0]
    assert "vae_score" not in event5  # its decision changed, its score did not


@pytest.mark.parametrize("flipped", [10, 400])
def test_products_of_changed_events_are_sliced_per_branch_not_per_event(flipped, monkeypatch):
    """The products under each event whose decision changed (-v) are read one slice per branch: read per event
    and branch, 10 000 changed decisions took 35 s where the rest of the comparison took 1.4 s. Counted, not
    timed: the awkward-to-Python conversions do not grow with the number of changed events."""
    n = 1000
    ids = {"run": np.ones(n, np.int64), "luminosityBlock": np.ones(n, np.int64), "event": np.arange(1, n + 1)}
    scores = np.linspace(0.1, 0.9, 2 * n, dtype=np.float32).reshape(n, 2)
    accept = np.zeros(n, bool)
    accept[::2] = True
    moved = accept.copy()
    moved[:2 * flipped:2] = False  # the first ``flipped`` accepted events are lost, their second score up by 2 %
    old = ak.Array({**ids, "HLT_A": accept, "vae_score": scores.tolist(), "n": np.full(n, 2, np.int32)})
    factor = np.stack([np.ones(n), np.where(accept != moved, 1.02, 1.0)], axis=1)
    new = ak.Array({**ids, "HLT_A": moved, "vae_score": (factor * scores).astype(np.float32),
                    "n": np.full(n, 2, np.int32)})
    calls = []
    to_list = ak.to_list
    monkeypatch.setattr(ak, "to_list", lambda *a, **k: calls.append(1) or to_list(*a, **k))
    diff = compare(old, new)
    assert len(diff.events) == flipped and diff.branches == {"vae_score": flipped, "n": 0}
    assert len(calls) <= 2 + 2 * 5, len(calls)  # per branch: its changed events, its --examples rows (5)
    first = diff.events[0]
    assert (first.event, first.products[0][0]) == (1, "vae_score")
    was, now = float(old["vae_score"][0][1]), float(new["vae_score"][0][1])
    assert first.products == [("vae_score", f"entry 1 of 2: {was:.7g} -> {now:.7g} (relative 0.02)")]


@pytest.mark.parametrize("option", [["--rtol", "nan"], ["--rtol=-1e-4"], ["--atol", "inf"], ["--examples", "-1"]])
def test_tolerances_and_examples_are_checked(tmp_path, capsys, option):
    """--rtol nan made every product differ (numpy's RuntimeWarning on stderr), a negative one too: refused."""
    a = _write(tmp_path / "a.root", [1] * 10, EV, {"HLT_A": OLD_A}, score=[[0.1, 0.2]] * 10)
    with pytest.raises(SystemExit) as exc:
        main([str(a), str(a), *option])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hltdiff: error: " + option[0].split("=")[0])


def _with_lumis(path, lumis):
    """Add the LuminosityBlocks tree an hltrun output carries: {(run, lumi): events processed}."""
    keys = sorted(lumis)
    with uproot.update(path) as f:
        f["LuminosityBlocks"] = {"run": np.array([r for r, _ in keys], np.uint32),
                                 "luminosityBlock": np.array([lumi for _, lumi in keys], np.uint32),
                                 "eventsProcessed": np.array([lumis[k] for k in keys], np.uint64)}
    return path


def test_events_the_other_job_never_read_are_not_differences(tmp_path, capsys):
    """A reference over runs 1 and 2 (every event kept) against a job that read run 1 only and kept
    its accepts: run 2's events were never read by the job, so they are neither lost nor gained."""
    run = [1] * 10 + [2] * 10
    ref = _write(tmp_path / "ref.root", run, EV + EV, {"HLT_A": OLD_A + [1] * 10})
    accepted = [i for i, a in enumerate(OLD_A) if a]
    job = _write(tmp_path / "job.root", [1] * len(accepted), [EV[i] for i in accepted], {"HLT_A": [1] * len(accepted)})
    assert main([str(ref), str(job)]) == 1  # an older output that does not say what it read: run 2 looks lost
    assert "-10" in capsys.readouterr().out
    _with_lumis(job, {(1, 1): 10})
    assert main([str(ref), str(job)]) == 0
    out = capsys.readouterr().out
    assert "note: 10 event(s) of the old side lie in lumi sections the new job did not read" in out
    assert "Found 10 matching events, out of which 0 have different HLT results" in out
    assert main([str(job), str(ref)]) == 0  # the other way round: nothing gained either
    assert "10 event(s) of the new side lie in lumi sections the old job did not read" in capsys.readouterr().out


def test_a_lumi_section_read_in_part_is_not_compared(tmp_path):
    """The job stopped after 6 of run 1's 10 events (maxEvents): the 4 it never reached are not rejects."""
    ref = _write(tmp_path / "ref.root", [1] * 10, EV, {"HLT_A": [1] * 10})
    job = _with_lumis(_write(tmp_path / "job.root", [1] * 6, EV[:6], {"HLT_A": [1] * 6}), {(1, 1): 6})
    from hltrun.tools.hltdiff import read_coverage, read_side

    diff = compare(read_side([ref], "Events"), read_side([job], "Events"), coverage_new=read_coverage([job]))
    assert diff.identical and diff.not_read_by_new == 4 and diff.compared == 6
    # which 6 it read cannot be told (file order is no event order): the lumi's other events are left out
    rejected_one = _with_lumis(_write(tmp_path / "rej.root", [1] * 9, EV[:9], {"HLT_A": [1] * 9}), {(1, 1): 10})
    diff = compare(read_side([ref], "Events"), read_side([rejected_one], "Events"), coverage_new=read_coverage([rejected_one]))
    assert not diff.identical and diff.triggers[0].lost == 1  # read all 10, kept 9: event 10 was rejected


def test_default_tolerance_is_the_projects_agreement_criterion(tmp_path):
    from hltrun.modules.inference.base import AGREEMENT_RTOL

    base = np.float32(0.5)
    old = _write(tmp_path / "old.root", [1] * 2, [1, 2], {"HLT_A": [1, 1]}, score=[[base], [base]])
    near = _write(tmp_path / "near.root", [1] * 2, [1, 2], {"HLT_A": [1, 1]},
                  score=[[base * (1 + 0.5 * AGREEMENT_RTOL)], [base]])
    far = _write(tmp_path / "far.root", [1] * 2, [1, 2], {"HLT_A": [1, 1]},
                 score=[[base * (1 + 3 * AGREEMENT_RTOL)], [base]])
    assert AGREEMENT_RTOL == 1e-4
    assert main([str(old), str(near)]) == 0 and main([str(old), str(far)]) == 1


PRESCALED_JOB = """
source: {{type: TestCountingSource, n: 20}}
modules:
  pre: {{type: HLTPrescaler, offset: {offset}}}
  even: {{type: TestModuloFilter, divisor: 2}}
  out: {{type: RootOutputModule, file: {file}}}
paths:
  HLT_P: [pre, even]
  HLT_E: [even]
endpaths:
  e: [out]
services:
  PrescaleService:
    lvl1Labels: [one, two]
    lvl1DefaultLabel: {column}
    prescaleTable:
      - {{pathName: HLT_P, prescales: [1, 2]}}
"""


def test_prescales_option_counts_what_the_prescaler_changed(write_config, tmp_path, capsys):
    """hltDiff -p: without it a trigger an HLTPrescaler stopped on either side is no difference; the
    output records the stops (HLTPrescaled_P) for the paths that have a prescaler."""
    from tests.helpers import run_config

    files = {}
    for column, offset in (("one", 0), ("two", 1), ("two0", 0)):
        files[column] = tmp_path / f"{column}.root"
        text = PRESCALED_JOB.format(file=files[column], column=column[:3], offset=offset)
        run_config(write_config(text, f"{column}.yaml"))
    with uproot.open(files["two"]) as f:
        fields = set(f["Events"].keys())
        prescaled = f["Events"]["HLTPrescaled_P"].array(library="np")
    assert "HLTPrescaled_P" in fields and "HLTPrescaled_E" not in fields  # HLT_E has no prescaler
    assert prescaled.sum() == 10  # prescale 2: every other event stopped by the prescaler
    old, new = str(files["one"]), str(files["two"])
    assert main([old, new]) == 0  # hltDiff's default: prescaler stops are ignored
    assert "out of which 0 have different HLT results" in capsys.readouterr().out
    # offset 1: the prescaler keeps the odd events, which 'even' rejects: the 10 even accepts are lost
    assert main([old, new, "-p", "-v"]) == 1
    out = capsys.readouterr().out
    assert "          20          10           -         -10           -  HLT_P" in out
    assert "        new state is 'prescaled'" in out and "HLT_E" not in out.split("Trigger")[-1]
    # offset 0: it keeps the even events; the odd ones, rejected by 'even' before, now stop at the
    # prescaler: same decision, another module (hltDiff's 'Other')
    assert main([old, str(files["two0"]), "-p"]) == 1
    assert "          20          10           -           -         ~10  HLT_P" in capsys.readouterr().out
    assert main([old, str(files["two0"])]) == 0


SELECTED_MENU = """
source: {{type: TestCountingSource, n: 20}}
modules:
  pre: {{type: HLTPrescaler, offset: 1}}
  even: {{type: TestModuloFilter, divisor: 2}}
  three: {{type: TestModuloFilter, divisor: 3}}
  out: {{type: RootOutputModule, file: {file}, select_events: [HLT_P, HLT_K]}}
paths:
  HLT_P: [pre, even]
  HLT_K: [three]
endpaths:
  e: [out]
services:
  PrescaleService:
    lvl1Labels: [one, two, dark]
    lvl1DefaultLabel: {column}
    prescaleTable:
      - {{pathName: HLT_P, prescales: [1, 2, 0]}}
"""


def test_an_event_an_accepted_only_output_lacks_is_not_lost_where_its_prescaler_stopped_it(write_config, tmp_path,
                                                                                           capsys):
    """Outputs that keep accepted events only (select_events), one menu in two prescale columns: HLT_P takes the
    even events (10 of 20) in column 'one', is off in 'dark' and kept 1 in 2 in 'two'. hltdiff's default ignores
    prescaler stops (hltDiff's), but an event the new file lacks read as rejected: 'Lost -7' and exit 1, the 7 even
    events no other path kept, which the column's prescaler stopped (configs/menu.yaml against --prescale emergency:
    -65 for HLT_AnomalyGCNVAE, off there). The file's provenance says the factor in force: 0, the event was
    prescaled; N > 1, prescaled or rejected, not counted either way and said so; 1, rejected, as before."""
    from tests.helpers import run_config

    files = {}
    for column in ("one", "two", "dark"):
        files[column] = tmp_path / f"{column}.root"
        run_config(write_config(SELECTED_MENU.format(file=files[column], column=column), f"{column}.yaml"))
    with uproot.open(files["dark"]) as f:
        kept = f["Events"]["event"].array(library="np")
    assert sorted(kept.tolist()) == [3, 6, 9, 12, 15, 18]  # HLT_K's only: the other even events are not in it
    old = str(files["one"])
    assert main([old, str(files["dark"])]) == 0
    out = capsys.readouterr().out
    assert "out of which 0 have different HLT results" in out and "HLT_P" not in out, out
    # -p counts the stops: all 10 accepts lost, and the 3 odd events K kept, rejected by 'even' before, stopped at the
    # prescaler now (Other), as outputs keeping every event would say
    assert main([old, str(files["dark"]), "-p"]) == 1
    assert "          13          10           -         -10          ~3  HLT_P" in capsys.readouterr().out
    assert main([old, str(files["two"])]) == 0
    out = capsys.readouterr().out
    assert "note: 7 event(s) accepted by HLT_P on one side and lacking on the other" in out, out
    assert "out of which 0 have different HLT results" in out
    assert main([old, old]) == 0  # factor 1: a lacking event is rejected, as ever
    # the new side's own cut lost them (factor 1 in column 'one'): still lost
    worse = tmp_path / "worse.root"
    run_config(write_config(SELECTED_MENU.format(file=worse, column="one").replace("divisor: 2", "divisor: 4"),
                            "worse.yaml"))
    assert main([old, str(worse)]) == 1
    assert "          13          10           -          -5           -  HLT_P" in capsys.readouterr().out


def test_stdout_full_is_exit_2_with_one_line_and_closed_keeps_the_answer(tmp_path, monkeypatch, capfd):
    """``hltdiff a b > /dev/full`` used to end in a traceback with exit 1 ("outputs differ"); ``>&-`` (print()
    writes nothing) keeps the answer in the exit code."""
    a = _write(tmp_path / "a.root", [1] * 10, EV, {"HLT_A": OLD_A})
    b = _write(tmp_path / "b.root", [1] * 10, EV, {"HLT_A": NEW_A})
    with stdout_full(monkeypatch):
        assert main([str(a), str(b)]) == 2
    err = capfd.readouterr().err
    assert err.splitlines() == ["hltdiff: error: stdout: cannot print the comparison (No space left on device)"]
    monkeypatch.setattr("sys.stdout", None)
    assert main([str(a), str(b)]) == 1 and capfd.readouterr().err == ""


def test_event_numbers_past_2_63_are_listed_as_written(tmp_path, capsys):
    """CMSSW's event number is unsigned 64-bit: ids at and past 2^63 were matched as int64 and listed
    as negative numbers ('event -1' for 2^64-1), before the smaller ones."""
    events = [2**64 - 1, 2**63, 2**53 + 1, 2**53]
    old = _write(tmp_path / "old.root", [0] * 4, events, {"HLT_A": [0, 0, 0, 0]})
    new = _write(tmp_path / "new.root", [0] * 4, events, {"HLT_A": [1, 1, 1, 1]})
    assert main([str(old), str(new), "--selected", "no", "-v"]) == 1
    out = capsys.readouterr().out
    listed = [int(line.split("event ")[1].split(":")[0]) for line in out.splitlines() if line.startswith("run 0,")]
    assert listed == sorted(events)


def test_ctrl_c_is_one_line_exit_130(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the outputs are compared: hltDiff's 128 + SIGINT, one line, no traceback."""
    import hltrun.tools.hltdiff as hltdiff

    old, new = tmp_path / "old.root", tmp_path / "new.root"
    _write(old, [1, 1], [1, 2], {"HLT_A": [True, False]})
    _write(new, [1, 1], [1, 2], {"HLT_A": [True, True]})

    def stopped(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(hltdiff, "compare", stopped)
    assert main([str(old), str(new)]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("hltdiff: interrupted") and "\n" not in err


def test_root_output_is_written_whole_or_not_at_all(tmp_path, monkeypatch, capsys):
    """-r on a full disk: exit 2 with one line, no half-written ROOT file under its name, no temporary."""
    from tests.test_destinations import FullDisk, _inject

    old, new = tmp_path / "old.root", tmp_path / "new.root"
    _write(old, [1, 1], [1, 2], {"HLT_A": [True, False]})
    _write(new, [1, 1], [1, 2], {"HLT_A": [True, True]})
    out = tmp_path / "out"
    out.mkdir()
    _inject(monkeypatch, FullDisk(free=500))
    assert main([str(old), str(new), "-q", "-r", "-F", str(out / "diff")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"cannot write {out / 'diff.root'} (No space left on device)" in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("flags, name", [(["-r", "-F", "{stem}"], "old.root"), (["-c", "-F", "{stem}.csv"], None)])
def test_an_output_named_as_a_compared_file_is_refused_and_the_file_kept(flags, name, tmp_path, capsys):
    """``hltdiff old.root new.root -r -F old`` wrote its histograms to old.root (hltDiff adds the .root):
    the old output replaced, exit 0. Refused in one line, exit 2, the compared file untouched."""
    old, new = tmp_path / "old.root", tmp_path / "new.root"
    _write(old, [1, 1], [1, 2], {"HLT_A": [True, False]})
    _write(new, [1, 1], [1, 2], {"HLT_A": [True, True]})
    before = old.read_bytes()
    if name is None:  # the CSV files' names: <name>_trigger.csv; a compared file named so is one of them
        old = old.rename(tmp_path / "x_trigger.csv")
        flags = ["-c", "-F", str(tmp_path / "x")]
    else:
        flags = [f.format(stem=tmp_path / "old") for f in flags]
    assert main([str(old), str(new), "-q", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{old} is an input file of this job ({old})" in err, err
    assert old.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_an_empty_accepted_only_output_loses_the_old_accepts(tmp_path, capsys):
    """A tighter cut that passed none of the events its job read wrote an output with no row: it read as
    an output keeping every event, so the old side's accepts were 'skipped' and hltdiff said 'outputs agree'
    (exit 0). Its LuminosityBlocks say the job read them: every old accept is lost."""
    accepted = [i for i, a in enumerate(OLD_A) if a]
    old = _with_lumis(_write(tmp_path / "old.root", [1] * len(accepted), [EV[i] for i in accepted],
                             {"HLT_A": [1] * len(accepted)}), {(1, 1): 10})
    none = _with_lumis(_write(tmp_path / "none.root", [], [], {"HLT_A": []}), {(1, 1): 10})
    assert main([str(old), str(none)]) == 1
    out = capsys.readouterr().out
    assert f"Found {len(accepted)} matching events, out of which {len(accepted)} have different HLT results" in out
    n = len(accepted)
    assert [line.split() for line in out.splitlines() if line.endswith("HLT_A")] == [[str(n), str(n), "-", f"-{n}", "-", "HLT_A"]]
    assert "outputs DIFFER" in out
    assert main([str(none), str(old)]) == 1  # the other way round: gained
    out = capsys.readouterr().out
    assert [line.split() for line in out.splitlines() if line.endswith("HLT_A")] == [[str(n), "0", f"+{n}", "-", "-", "HLT_A"]]
    # an empty output that does not say what its job read (an older output) is still taken as keeping every event
    bare = _write(tmp_path / "bare.root", [], [], {"HLT_A": []})
    assert main([str(old), str(bare)]) == 0
    assert "There are no common events between the old and new files" in capsys.readouterr().out
