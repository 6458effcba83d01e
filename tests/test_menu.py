"""The shipped menu end to end: rates against an independent count of the output's HLT_* bits,
prescale columns, the configuration errors a menu author can make, and rates that merge across
streams."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

REPO = Path(__file__).resolve().parents[1]
MENU = REPO / "configs" / "menu.yaml"
PATHS = ["HLT_AK8PFJet500", "HLT_PFHT1050", "HLT_AnomalyConvVAE", "HLT_AnomalyGCNVAE"]


def _run(tmp_path: Path, *args: str, config: Path = MENU) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hltrun.framework.cli", str(config), "-q", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)


def _menu_job(tmp_path: Path, *args: str) -> tuple[dict, dict[str, np.ndarray]]:
    out = tmp_path / "menu.root"
    res = _run(tmp_path, "-n", "600", "--report-dir", "rep", f"modules.out.file={out}", "modules.out.select_events=[]",
               "options.wantSummary=false", *args)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "rep" / "hltrun.json").read_text())
    with uproot.open(out) as f:
        bits = {p: f["Events"][p].array(library="np").astype(bool) for p in PATHS}
    return report["services"]["TriggerRates"], bits


@pytest.mark.slow
def test_rates_equal_an_independent_count_of_the_output_bits(tmp_path):
    rates, bits = _menu_job(tmp_path)
    n = len(bits[PATHS[0]])
    assert rates["events"] == n == 600
    matrix = np.stack([bits[p] for p in PATHS], axis=1)
    by_name = {p["name"]: p for p in rates["paths"]}
    for i, path in enumerate(PATHS):
        k = int(matrix[:, i].sum())
        assert by_name[path]["accepted"] == k
        assert by_name[path]["rate_hz"] == pytest.approx(1e5 * k / n)
        alone = matrix[:, i] & ~np.delete(matrix, i, axis=1).any(axis=1)
        assert by_name[path]["unique"]["accepted"] == int(alone.sum())
        for j in range(len(PATHS)):
            assert rates["overlap_events"][i][j] == int((matrix[:, i] & matrix[:, j]).sum())
    assert rates["total"]["accepted"] == int(matrix.any(axis=1).sum())
    assert sum(lumi["events"] for lumi in rates["per_lumi"]) == n


@pytest.mark.slow
def test_a_prescale_column_switches_paths_off_and_prescales_others(tmp_path):
    rates, bits = _menu_job(tmp_path, "--prescale", "emergency")
    by_name = {p["name"]: p for p in rates["paths"]}
    assert by_name["HLT_AnomalyConvVAE"]["accepted"] == by_name["HLT_AnomalyGCNVAE"]["accepted"] == 0
    assert not bits["HLT_AnomalyConvVAE"].any()
    reached = 600  # every event of these samples passes L1_HTT360; the prescaler keeps one in two
    assert abs(by_name["HLT_PFHT1050"]["accepted"] - 0.5 * by_name["HLT_AK8PFJet500"]["accepted"]) <= 0.05 * reached


@pytest.mark.slow
def test_an_unknown_column_is_one_line(tmp_path):
    res = _run(tmp_path, "--prescale", "5e34", "-n", "1")
    assert res.returncode == 2
    assert "lvl1DefaultLabel '5e34' is not one of lvl1Labels" in res.stderr and len(res.stderr.splitlines()) == 1


def _menu_text(**replace: str) -> str:
    text = MENU.read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("old, new, message", [
    ("- {pathName: HLT_PFHT1050,", "- {pathName: HLT_PFHT105,",
     "services.PrescaleService.prescaleTable[1].pathName: 'HLT_PFHT105' is not a path of this job; did you mean 'HLT_PFHT1050'?"),
    ("HLT_PFHT1050: [hltL1sHTT360, hltPrePFHT1050, hltPFHT1050]", "HLT_PFHT1050: [hltL1sHTT360, hltPFHT1050]",
     "services.PrescaleService: path 'HLT_PFHT1050' has prescale"),
    ("expression: L1_HTT360}", "expression: L1_HTT360 OR}", "modules.hltL1sHTT360: 'L1_HTT360 OR': ends where"),
    ("expression: L1_SingleJet180}", "expression: L1_SingleJetX}", "seed(s) ['L1_SingleJetX'] are neither defined"),
])
def test_menu_configuration_errors_are_one_line(tmp_path, old, new, message):
    config = tmp_path / "menu.yaml"
    text = _menu_text(**{old: new})
    if "has prescale" in message:  # the HT path without its prescaler, in a column where it is prescaled
        text = text.replace("lvl1DefaultLabel: 2p0E34", "lvl1DefaultLabel: emergency")
    config.write_text(text)
    res = _run(tmp_path, "-n", "1", config=config)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.slow
def test_a_prescaler_on_two_paths_is_refused(tmp_path):
    config = tmp_path / "menu.yaml"
    config.write_text(_menu_text(**{"HLT_PFHT1050: [hltL1sHTT360, hltPrePFHT1050, hltPFHT1050]":
                                    "HLT_PFHT1050: [hltL1sHTT360, hltPreAK8PFJet500, hltPFHT1050]",
                                    "      - {pathName: HLT_PFHT1050, prescales: [1, 1, 2]}\n": ""}))
    res = _run(tmp_path, "-n", "1", config=config)
    assert res.returncode != 0
    assert "hltPreAK8PFJet500: an HLTPrescaler sits on exactly one path" in res.stderr


@pytest.mark.slow
def test_rates_merge_exactly_across_streams(tmp_path):
    """Four streams take the events in another order; the L1 emulation is seeded per event and the
    prescales are 1, so every rate is the one-stream rate exactly."""
    (tmp_path / "one").mkdir()
    (tmp_path / "four").mkdir()
    one, _ = _menu_job(tmp_path / "one")
    four, _ = _menu_job(tmp_path / "four", "options.numberOfThreads=4")
    assert four["paths"] == one["paths"] and four["overlap_events"] == one["overlap_events"]


@pytest.mark.slow
def test_seed_counters_add_over_streams_and_the_report_draws_the_turn_on(tmp_path):
    res = _run(tmp_path, "-n", "300", "--report-dir", "rep", f"modules.out.file={tmp_path / 'o.root'}",
               "options.numberOfThreads=2", "options.wantSummary=false")
    assert res.returncode == 0, res.stderr
    summaries = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["job"]["module_summaries"]
    seed = summaries["hltL1sSingleJet180"]
    assert seed["events"] == 300 == sum(v for k, v in seed.items() if k.startswith("pt_all:"))
    fired = sum(v for k, v in seed.items() if k.startswith("pt_fired:L1_SingleJet180:"))
    assert fired == seed["fired:L1_SingleJet180"] <= 300
    assert summaries["hltPrePFHT1050"]["events"] == 300 and summaries["hltPrePFHT1050"]["prescale"] == "1"
    page = (tmp_path / "rep" / "report.html").read_text()
    assert 'alt="hltL1sSingleJet180 turn-on"' in page and 'alt="hltL1sHTT360 turn-on"' in page


def test_rates_are_weighted_by_genweight_when_the_sample_has_it(tmp_path):
    """A sample with a genWeight branch (NanoAOD's): every rate is input rate x accepted weight / total
    weight, against an independent sum over the output's HLT_* bits; the files without it count 1."""
    import awkward as ak

    from hltrun.modules.rootio import write_nanoaod

    with uproot.open(REPO / "data" / "qcd_dijet.root") as f:
        a = f["Events"].arrays(entry_stop=300)
    weights = np.random.default_rng(5).uniform(0.2, 3.0, len(a)).astype(np.float32)
    sample = tmp_path / "weighted.root"
    with uproot.recreate(sample) as f:
        write_nanoaod(f, "Events", {
            **{k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event")}, "genWeight": weights,
            "FatJet": ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")}),
            "FatJetPFCand": ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})})
    rates, bits = _menu_job(tmp_path, f"source.files=[{sample}]")
    with uproot.open(tmp_path / "menu.root") as f:
        order = f["Events"]["event"].array(library="np").astype(np.int64) - 1  # event numbers are 1..N
    w = weights[order].astype(np.float64)
    by_name = {p["name"]: p for p in rates["paths"]}
    for path in PATHS:
        assert by_name[path]["rate_hz"] == pytest.approx(1e5 * w[bits[path]].sum() / w.sum(), rel=1e-6)
    unweighted = 1e5 * bits[PATHS[0]].sum() / len(w)
    assert by_name[PATHS[0]]["rate_hz"] != pytest.approx(unweighted, rel=1e-3)  # the weights did matter


@pytest.mark.slow
def test_prescaled_paths_per_lumi_and_per_column_rates_are_weighted(tmp_path):
    """A weighted sample (12 % negative genWeights) in two prescale columns, HLT_AK8PFJet500 prescaled by 3 and
    HLT_PFHT1050 by 2 in the second: every path's rate per lumi section and per column is input rate x the
    accepted events' weight / the events' weight, summed independently over the output's HLT_* bits and its
    genWeight (the prescalers count events; the rates weigh those they keep)."""
    from tests.test_weighted_scores import weighted_copy

    sample = weighted_copy(REPO / "data" / "qcd_dijet.root", tmp_path / "weighted.root", 600, 31)
    table = ", ".join(f"{{pathName: {p}, prescales: {f}}}" for p, f in (
        ("HLT_AK8PFJet500", "[3, 3, 3]"), ("HLT_PFHT1050", "[1, 1, 2]"), ("HLT_AnomalyConvVAE", "[1, 1, 0]"),
        ("HLT_AnomalyGCNVAE", "[1, 1, 0]")))
    rates, bits = _menu_job(tmp_path, f"source.files=[{sample}]", "modules.out.keep=[source:weight]",
                            f"services.PrescaleService.prescaleTable=[{table}]",
                            "services.PrescaleService.lumiColumns=[{run: 1, lumi: 2, column: emergency}]")
    with uproot.open(tmp_path / "menu.root") as f:
        a = f["Events"].arrays(["luminosityBlock", "genWeight", "HLTPrescaled_AK8PFJet500", "HLTPrescaled_PFHT1050"],
                               library="np")
    w, lumi = a["genWeight"].astype(np.float64), a["luminosityBlock"]
    assert np.any(w < 0) and set(lumi.tolist()) == {1, 2, 3}
    assert a["HLTPrescaled_AK8PFJet500"].any() and bits["HLT_AK8PFJet500"].any()  # the prescaler stopped some
    assert not a["HLTPrescaled_PFHT1050"][lumi == 1].any() and a["HLTPrescaled_PFHT1050"][lumi >= 2].any()

    def rate(path: str, sel: np.ndarray) -> float:
        return 1e5 * w[sel & bits[path]].sum() / w[sel].sum()

    assert len(rates["per_lumi"]) == 3
    for row in rates["per_lumi"]:
        for path in PATHS:
            assert row["rate_hz"][path] == pytest.approx(rate(path, lumi == row["lumi"]), rel=1e-9, abs=1e-6)
    columns = {c["column"]: c for c in rates["per_column"]}
    assert sorted(columns) == ["2p0E34", "emergency"]
    for name, sel in (("2p0E34", lumi == 1), ("emergency", lumi >= 2)):
        assert columns[name]["events"] == int(sel.sum())
        for p in columns[name]["paths"]:
            assert p["rate_hz"] == pytest.approx(rate(p["name"], sel), rel=1e-9, abs=1e-6)
