"""``source.lumiMask``: a CMS certification ("Golden") JSON selects the lumi sections it lists, as CMSSW's
``LumiList(filename=...).getVLuminosityBlockRange()`` does; with ``lumisToProcess``, those of both. A bad file
is one configuration line naming it and the culprit (exit 2); the mask is an input of the job (no output may
replace it) and is recorded (file, sha256) in the job's facts and the outputs' provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import uproot

from hltrun.framework.config import load
from hltrun.framework.errors import ConfigError
from hltrun.framework.provenance import differences
from tests.helpers import run_config

from .plugins import RECORDED

CFG = """
process: MASK
options: {{numberOfThreads: {streams}}}
source: {{type: RootJetSource, files: ["{lumi_file}"], lumiMask: "{mask}"{extra}}}
modules:
  rec: {{type: TestRecorder}}
{more}paths: {{p: [rec]}}
"""


def _ids(path: Path) -> list[tuple[int, int, int]]:
    """(run, lumi, event) of every entry, read with uproot: the expectation does not go through hltrun."""
    a = uproot.open(path)["Events"].arrays(["run", "luminosityBlock", "event"], library="np")
    return [(int(r), int(lu), int(e)) for r, lu, e in zip(a["run"], a["luminosityBlock"], a["event"])]


def _certified(golden: dict, run: int, lumi: int) -> bool:
    """LumiList.contains: the run's key as a string, inclusive ranges, a last of 0 to the end of the run."""
    return any(first <= lumi and (last == 0 or lumi <= last) for first, last in golden.get(str(run), []))


def _in_ranges(ranges: list[tuple[tuple[int, int], tuple[int, int]]], run: int, lumi: int) -> bool:
    return any(a <= (run, lumi) <= b for a, b in ranges)


MASKS = [
    '{"1": [[2, 3]], "2": [[8, 8]]}',  # compact, as LumiList.writeJSON writes it minus the newlines
    '{\n  "1": [\n    [1, 1],\n    [1, 2]\n  ],\n  "2": [[7, 100]]\n}\n',  # indented, overlapping ranges
    '{"5": [[1, 10]], "2": [[1, 7]]}',  # a run the file does not hold
    '{"1":[[2,0]]}',  # no spaces; a last of 0: to the end of the run (CMSSW's "max")
]


@pytest.mark.parametrize("text", MASKS)
@pytest.mark.parametrize("streams", [1, 2])
def test_the_mask_processes_exactly_its_lumi_sections(write_config, tmp_path, lumi_file, text, streams):
    RECORDED.clear()
    mask = tmp_path / "Cert_Collisions_Golden.json"
    mask.write_text(text)
    summary, _ = run_config(write_config(CFG.format(streams=streams, lumi_file=lumi_file, mask=mask, extra="",
                                                    more="")))
    ids = _ids(lumi_file)
    want = [e for r, lu, e in ids if _certified(json.loads(text), r, lu)]
    assert 0 < len(want) < len(ids)
    assert sorted(e for e, _ in RECORDED["rec"]) == sorted(want)
    assert summary.events_processed == len(want)
    assert summary.source["not_selected"] == len(ids) - len(want)  # every entry accounted for
    assert set(summary.source["lumis_per_file"][str(lumi_file)]) == \
        {f"{r}:{lu}" for r, lu, e in ids if e in want}  # the job report's <Runs>: certified lumis only


@pytest.mark.parametrize("lumis,ranges", [
    (["1:1-2:7"], [((1, 1), (2, 7))]),
    (["1:3", "2:8-2:max"], [((1, 3), (1, 3)), ((2, 8), (2, 2**32 - 1))]),
])
def test_with_lumis_to_process_the_intersection_is_processed(write_config, tmp_path, lumi_file, lumis, ranges):
    RECORDED.clear()
    golden = {"1": [[2, 3]], "2": [[7, 8]]}
    mask = tmp_path / "golden.json"
    mask.write_text(json.dumps(golden))
    summary, _ = run_config(write_config(CFG.format(streams=1, lumi_file=lumi_file, mask=mask,
                                                    extra=f", lumisToProcess: {json.dumps(lumis)}", more="")))
    ids = _ids(lumi_file)
    want = [e for r, lu, e in ids if _certified(golden, r, lu) and _in_ranges(ranges, r, lu)]
    assert 0 < len(want) < sum(_certified(golden, r, lu) for r, lu, _ in ids)  # narrower than the mask alone
    assert sorted(e for e, _ in RECORDED["rec"]) == sorted(want)
    assert summary.source["not_selected"] == len(ids) - len(want)


def test_a_file_url_and_the_record_of_the_mask(write_config, tmp_path, lumi_file):
    """``file://`` names the local file, as elsewhere; the job's facts (hltrun.json, the outputs' provenance)
    keep the mask's absolute path and the sha256 of its bytes."""
    RECORDED.clear()
    mask = tmp_path / "golden.json"
    mask.write_text('{"2": [[7, 7]]}')
    summary, process = run_config(write_config(CFG.format(streams=1, lumi_file=lumi_file, mask=f"file://{mask}",
                                                          extra="", more="")))
    assert sorted(e for e, _ in RECORDED["rec"]) == sorted(e for r, lu, e in _ids(lumi_file) if (r, lu) == (2, 7))
    record = {"file": str(mask), "sha256": hashlib.sha256(mask.read_bytes()).hexdigest()}
    assert summary.facts["lumi_mask"] == record
    assert process.channels.provenance()["lumi_mask"] == record


def test_another_mask_is_named_by_hltdiff():
    """Two outputs selected by masks of other contents: hltdiff's likely cause names them (the path alone
    is no setting difference: the same file may sit elsewhere)."""
    old = {"configuration": {"source": {"lumiMask": "/a/golden.json"}},
           "lumi_mask": {"file": "/a/golden.json", "sha256": "1" * 64}}
    moved = {"configuration": {"source": {"lumiMask": "/b/golden.json"}},
             "lumi_mask": {"file": "/b/golden.json", "sha256": "1" * 64}}
    other = {**moved, "lumi_mask": {"file": "/b/golden.json", "sha256": "2" * 64}}
    assert differences(old, moved) == []
    assert differences(old, other) == ["lumi mask /a/golden.json (sha256 111111111111) (old) and "
                                       "/b/golden.json (sha256 222222222222) (new)"]


BAD = [
    ("notjson.json", '{"1": [[1, 5]]', "is not JSON (Expecting ',' delimiter at line 1 column 15)"),
    ("key.json", '{"Run2024": [[1, 5]]}', ": run 'Run2024' is not a run number"),
    ("order.json", '{"1": [[5, 3]]}', ": run '1': lumi range [5, 3] is out of order"),
    ("negative.json", '{"1": [[-1, 3]]}', ": run '1': lumi range [-1, 3]: lumi -1 is out of range (0 to 4294967295)"),
    ("bigrun.json", '{"4294967296": [[1, 3]]}', ": run '4294967296' is out of range (0 to 4294967295)"),
    ("biglumi.json", '{"1": [[1, 4294967296]]}', "lumi 4294967296 is out of range (0 to 4294967295)"),
    ("empty.json", "{}", ": no run in it (an empty object selects no lumi section)"),
    ("noranges.json", '{"1": []}', ": no lumi range in it"),
    ("twice.json", '{"1": [[1, 2]], "1": [[5, 6]]}', ": run '1' is listed twice"),
    ("flat.json", '{"1": [1, 5]}', ": run '1': expected lumi ranges as [first, last] lists, got 1"),
    ("float.json", '{"1": [[1.5, 3]]}', ": run '1': lumi range [1.5, 3]: 1.5 is not a whole lumi number"),
    ("pairs.json", "[[1, 2], [1, 3]]", ": expected an object of runs and their lumi ranges"),
]


@pytest.mark.parametrize("name,text,words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_mask_is_one_config_line_naming_the_file(write_config, tmp_path, lumi_file, name, text, words):
    mask = tmp_path / name
    mask.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(write_config(CFG.format(streams=1, lumi_file=lumi_file, mask=mask, extra="", more="")), [])
    message = str(err.value)
    assert f"source: lumiMask: {mask}" in message and words in message and "\n" not in message, message


@pytest.mark.parametrize("given,words", [
    ("missing.json", "source: lumiMask file not found: missing.json"),
    ("https://cms-service-dqmdc.web.cern.ch/Golden.json", "source: lumiMask https://cms-service-dqmdc.web.cern.ch/"
     "Golden.json is a remote URL; hltrun reads local files only"),
])
def test_a_missing_or_remote_mask_exits_2_in_one_line(write_config, tmp_path, lumi_file, capfd, given, words,
                                                      monkeypatch):
    from hltrun.framework.cli import main

    monkeypatch.chdir(tmp_path)
    code = main([str(write_config(CFG.format(streams=1, lumi_file=lumi_file, mask=given, extra="", more="")))])
    err = capfd.readouterr().err
    assert code == 2, err
    assert [line for line in err.splitlines() if line.startswith("hltrun: error: ")] == \
        [line for line in err.splitlines() if "lumiMask" in line] and words in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("how", ["output", "job report"])
def test_no_output_of_the_job_replaces_the_mask(write_config, tmp_path, lumi_file, capfd, how):
    from hltrun.framework.cli import main

    mask = tmp_path / "golden.json"
    mask.write_text('{"1": [[1, 3]]}')
    before = mask.read_bytes()
    out = mask if how == "output" else tmp_path / "o.root"
    more = f'  out: {{type: RootOutputModule, file: "{out}"}}\n'
    cfg = write_config(CFG.format(streams=1, lumi_file=lumi_file, mask=mask, extra="", more=more)
                       + "endpaths: {e: [out]}\n")
    argv = [str(cfg)] + (["-j", str(mask)] if how == "job report" else [])
    code = main(argv)
    err = capfd.readouterr().err
    assert code == 4, err
    assert f"is an input file of this job ({mask})" in err and mask.read_bytes() == before


def test_many_overlapping_ranges_select_as_each_range_alone():
    """The selection of thousands of ranges (a year's mask), overlapping, nested and spanning runs, against the
    plain definition: an id is selected when some range holds it."""
    from hltrun.framework.ranges import LumiRange, Selection

    rng = np.random.default_rng(7)
    ranges = []
    for _ in range(3000):
        run, first = int(rng.integers(1, 40)), int(rng.integers(1, 200))
        end_run = run + int(rng.integers(0, 2) if rng.random() < 0.05 else 0)
        last = int(rng.integers(0, 60)) + (first if end_run == run else 0)
        ranges.append(LumiRange((run, first), (end_run, last)))
    ranges.append(LumiRange((2**32 - 1, 5), (2**32 - 1, 0)))  # to the end of the largest run
    run = rng.integers(0, 42, 20_000).astype(np.uint64)
    lumi = rng.integers(0, 260, 20_000).astype(np.uint64)
    run[:3], lumi[:3] = 2**32 - 1, [4, 5, 2**32 - 1]

    def held(r: int, lu: int) -> bool:
        return any(a.start <= (r, lu) <= (a.end[0], a.end[1] or 2**32 - 1) for a in ranges)

    want = [held(int(r), int(lu)) for r, lu in zip(run, lumi)]
    assert 0 < sum(want) < len(want)
    for selection in (Selection((), (), tuple(ranges)), Selection(tuple(ranges))):
        assert selection.mask(run, lumi, np.ones(len(run), np.uint64)).tolist() == want


def test_units_whose_workers_read_another_mask_are_another_variant():
    """A Dask worker that read other bytes at the mask's path selected other events: its units are a variant of
    their own (facts.variants, the warning and the JobReport line name the masks), not folded into the first."""
    from hltrun.framework.provenance import merge_variants, variant, variants_line

    a = variant({"producer": "hltrun 0", "lumi_mask": {"file": "/m/golden.json", "sha256": "a" * 64}}, [0], ["w1"])
    b = variant({"producer": "hltrun 0", "lumi_mask": {"file": "/m/golden.json", "sha256": "b" * 64}}, [1], ["w2"])
    same = variant({"producer": "hltrun 0", "lumi_mask": {"file": "/m/golden.json", "sha256": "a" * 64}}, [2], ["w2"])
    merged = merge_variants(merge_variants([a], [b]), [same])
    assert [v["units"] for v in merged] == [[0, 2], [1]]
    assert variants_line(merged) == ("lumi mask /m/golden.json (sha256 aaaaaaaaaaaa) in 2 unit(s) on w1, w2, "
                                     "/m/golden.json (sha256 bbbbbbbbbbbb) in 1 unit(s) on w2")
