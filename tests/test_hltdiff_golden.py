"""Golden tests: the files hltdiff's -j, -c, -r and -F write, as HLTrigger/Tools/bin/hltDiff.cc writes
them (JsonOutputProducer, SummaryOutputProducer). The expected text was written from hltDiff.cc's
serialise() and printf statements (no indentation, 'file_base' the prefix all files share — the whole
name for one file, as extractFileBase makes it — 's' alone for an
accepted state, '%+.f' counts, '%.2f%%' fractions), not from hltrun's output.
"""

from __future__ import annotations

import numpy as np
import uproot

from hltrun.tools.hltdiff import main

EV = list(range(1, 11))
OLD_A = [1, 1, 0, 0, 1, 0, 1, 0, 0, 0]  # 4 accepts
NEW_A = [1, 0, 0, 0, 0, 1, 1, 0, 0, 0]  # lost 2 and 5, gained 6: 3 accepts
SAME = [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]


def _write(path, run, trig):
    data = {"run": np.asarray(run, np.uint32), "luminosityBlock": np.ones(10, np.uint32),
            "event": np.asarray(EV, np.uint64), **{k: np.asarray(v, bool) for k, v in trig.items()}}
    with uproot.recreate(path) as f:
        f["Events"] = data
    return str(path)


EXPECTED_JSON = """{
"configuration":{
"o":{
"file_base":"DIR/old_1.root",
"files":[""],
"process":"",
"skipped_triggers":[]
},
"n":{
"file_base":"DIR/new_1.root",
"files":[""],
"process":"",
"skipped_triggers":[]
},
"prescales":true,
"events":10
},
"vars":{
"state":["not run","accepted","rejected","exception","prescaled"],
"trigger":["HLT_A","HLT_Same"],
"trigger_passed_count":[{"o":4,"n":3},{"o":2,"n":2}],
"label":[],
"type":[]
},
"events":[
{"r":1,"l":1,"e":2,"t":[{
"t":0,
"o":{"s":1},
"n":{"s":2,"m":-1,"l":-1,"t":-1}
}
]},
{"r":1,"l":1,"e":5,"t":[{
"t":0,
"o":{"s":1},
"n":{"s":2,"m":-1,"l":-1,"t":-1}
}
]},
{"r":1,"l":1,"e":6,"t":[{
"t":0,
"o":{"s":2,"m":-1,"l":-1,"t":-1},
"n":{"s":1}
}
]}
]
}"""

EXPECTED_TRIGGER_CSV = """\
Total,Accepted OLD,Accepted NEW,Gained,Lost,|G|/A_N + |L|/AO,sigma(AN)+sigma(AO),Changed,C/(T-AO),sigma(T-AO),trigger
10,4,3,+1,-2,83.33%,107.74%,~0,~0.00%,40.82%,HLT_A
10,2,2,+0,-0,0.00%,141.42%,~0,~0.00%,35.36%,HLT_Same
"""


def test_json_and_csv_with_output_file_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    old = _write(tmp_path / "old_1.root", [1] * 10, {"HLT_A": OLD_A, "HLT_Same": SAME})
    new = _write(tmp_path / "new_1.root", [1] * 10, {"HLT_A": NEW_A, "HLT_Same": SAME})
    assert main(["-o", old, "-n", new, "-j", "-c", "-F", "cmp"]) == 1
    out = capsys.readouterr().out
    assert "Created the following JSON files:\n cmp.json\n" in out
    assert "Created the following summary files:\n cmp_trigger.csv\n cmp_module.csv\n" in out
    assert (tmp_path / "cmp.json").read_text() == EXPECTED_JSON.replace("DIR/", f"{tmp_path}/")
    assert (tmp_path / "cmp_trigger.csv").read_text() == EXPECTED_TRIGGER_CSV
    assert (tmp_path / "cmp_module.csv").read_text() == "Total,Gained,Lost,Changed,module\n"


def test_file_base_is_the_shared_prefix_of_several_files(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    old = [_write(tmp_path / f"old_{i}.root", [i] * 10, {"HLT_A": OLD_A}) for i in (1, 2)]
    new = [_write(tmp_path / f"new_{i}.root", [i] * 10, {"HLT_A": OLD_A}) for i in (1, 2)]
    assert main(["-o", *old, "-n", *new, "-j", "-F", "two"]) == 0
    doc = json.loads((tmp_path / "two.json").read_text())
    assert doc["configuration"]["o"]["file_base"] == f"{tmp_path}/old_"
    assert doc["configuration"]["o"]["files"] == ["1.root", "2.root"] and doc["events"] == []
    assert doc["configuration"]["events"] == 20


def test_one_dqm_file_per_run_without_output_file_name(tmp_path, monkeypatch):
    """Without -F, hltDiff writes DQM_V0001_R<run, 9 digits>__OLD_<process>__NEW_<process>_DQM.* per run."""
    monkeypatch.chdir(tmp_path)
    runs = [1] * 5 + [7] * 5
    old = _write(tmp_path / "o.root", runs, {"HLT_A": OLD_A})
    new = _write(tmp_path / "n.root", runs, {"HLT_A": NEW_A})
    assert main([old, new, "-j", "-r"]) == 1
    names = sorted(p.name for p in tmp_path.glob("DQM_*"))
    assert names == ["DQM_V0001_R000000001__OLD___NEW__DQM.json", "DQM_V0001_R000000001__OLD___NEW__DQM.root",
                     "DQM_V0001_R000000007__OLD___NEW__DQM.json", "DQM_V0001_R000000007__OLD___NEW__DQM.root"]
    doc = (tmp_path / "DQM_V0001_R000000007__OLD___NEW__DQM.json").read_text()
    assert '{"r":7,"l":1,"e":6,' in doc and '"e":2,' not in doc  # run 7's events only
    with uproot.open(tmp_path / "DQM_V0001_R000000001__OLD___NEW__DQM.root") as f:
        folder = f["DQMData/Run 1/HLT/Run summary/EventByEvent"]
        assert {k.split(";")[0] for k in folder.keys()} >= {"trigger_accepted", "trigger_gained", "trigger_lost",
                                                             "trigger_changed", "trigger_gained_frac",
                                                             "trigger_lost_frac", "trigger_changed_frac",
                                                             "module_changed", "module_gained", "module_lost"}
        lost = folder["trigger_lost"]
        assert lost.values().tolist() == [-2.0]  # run 1: events 2 and 5 lost (drawn negative, as hltDiff)
        assert list(lost.axis().labels()) == ["HLT_A"]
        assert folder["trigger_accepted"].values().tolist() == [4.0]


def test_output_file_name_alone_is_a_usage_error(tmp_path):
    import pytest

    old = _write(tmp_path / "o.root", [1] * 10, {"HLT_A": OLD_A})
    with pytest.raises(SystemExit):
        main([old, old, "-F", "x"])


# ----------------------------------------------------------------------------- -O/-N (process names)
def _write_by(path, process, trig):
    _write(path, [1] * 10, trig)
    if process is not None:
        with uproot.update(path) as f:
            f["Process"] = process  # what RootOutputModule writes: the job's process name
    return str(path)


def test_process_names_go_into_the_json_and_the_dqm_file_names(tmp_path, monkeypatch):
    """hltDiff -O/-N: DQM_V0001_R<run>__OLD_<old process>__NEW_<new process>_DQM, "process" in the JSON."""
    monkeypatch.chdir(tmp_path)
    old = _write_by(tmp_path / "o.root", "HLTOLD", {"HLT_A": OLD_A})
    new = _write_by(tmp_path / "n.root", "HLTNEW", {"HLT_A": NEW_A})
    assert main(["-o", old, "-O", "HLTOLD", "-n", new, "-N", "HLTNEW", "-j"]) == 1
    assert sorted(p.name for p in tmp_path.glob("DQM_*")) == ["DQM_V0001_R000000001__OLD_HLTOLD__NEW_HLTNEW_DQM.json"]
    doc = (tmp_path / "DQM_V0001_R000000001__OLD_HLTOLD__NEW_HLTNEW_DQM.json").read_text()
    assert '"files":[""],\n"process":"HLTOLD",\n"skipped_triggers":[]' in doc
    assert '"files":[""],\n"process":"HLTNEW",\n"skipped_triggers":[]' in doc


def test_a_file_of_another_process_is_an_error(tmp_path, capsys):
    old = _write_by(tmp_path / "o.root", "HLTOLD", {"HLT_A": OLD_A})
    other = _write_by(tmp_path / "o2.root", "HLTX", {"HLT_A": OLD_A})
    new = _write_by(tmp_path / "n.root", "HLTNEW", {"HLT_A": NEW_A})
    assert main(["-o", old, other, "-O", "HLTOLD", "-n", new]) == 2
    err = capsys.readouterr().err
    assert f"hltdiff: error: -O HLTOLD: {other} holds the trigger results of process 'HLTX', not 'HLTOLD'" in err
    assert main(["-o", old, "-n", new, "-N", "HLTOLD"]) == 2  # -N checks the new side
    assert main(["-o", old, "-n", new]) == 1  # no -O/-N: nothing checked


def test_an_output_that_names_no_process_is_compared_with_a_note(tmp_path, capsys):
    old = _write_by(tmp_path / "o.root", None, {"HLT_A": OLD_A})
    new = _write_by(tmp_path / "n.root", "HLTNEW", {"HLT_A": OLD_A})
    assert main(["-o", old, "-O", "HLTOLD", "-n", new, "-N", "HLTNEW"]) == 0
    assert f"hltdiff: note: {old} does not name the process that wrote it" in capsys.readouterr().err


def test_new_results_from_the_old_files_is_a_usage_error(tmp_path, capsys):
    import pytest

    old = _write_by(tmp_path / "o.root", "HLTOLD", {"HLT_A": OLD_A})
    with pytest.raises(SystemExit) as stop:
        main(["-o", old, "-n", "-", "-N", "HLTX"])
    assert stop.value.code == 2 and "holds one process's trigger bits" in capsys.readouterr().err


def test_the_output_module_names_its_process(tmp_path):
    from pathlib import Path

    from hltrun.modules.root_output import read_process

    from .helpers import run_config

    data = Path(__file__).resolve().parents[1] / "data" / "qcd_dijet.root"
    config = tmp_path / "c.yaml"
    config.write_text(f"""
process: MYMENU
options: {{maxEvents: 20, wantSummary: false}}
source: {{type: RootJetSource, files: [{data}], tree: Events, layout: counts}}
modules:
  l1: {{type: L1SeedFilter, expression: L1_SingleJet180}}
  out: {{type: RootOutputModule, file: {tmp_path / 'out.root'}}}
paths: {{HLT_L1: [l1]}}
endpaths: {{o: [out]}}
""")
    run_config(config)
    assert read_process(tmp_path / "out.root") == "MYMENU"
    assert main(["-o", str(tmp_path / "out.root"), "-O", "MYMENU", "-n", str(tmp_path / "out.root"), "-N", "MYMENU"]) == 0
