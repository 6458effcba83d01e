"""The rate figures a trigger physicist quotes, end to end and against independent numpy computations
from the output's HLT_* bits and weights: a sample with negative generator weights (NLO), and the
interval of a rate from a handful of events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.modules.rootio import write_nanoaod

REPO = Path(__file__).resolve().parents[1]
QCD = REPO / "data" / "qcd_dijet.root"
CUT_GEV = 1100.0


def _sample(tmp_path: Path, n: int = 500) -> Path:
    """The shipped QCD sample's first ``n`` events (lumis 1 and 2) with a genWeight: +1, and -1 for the
    events with a jet above the cut, as an NLO sample's negative weights can make a small subset."""
    with uproot.open(QCD) as f:
        a = f["Events"].arrays(entry_stop=n)
    lead = ak.to_numpy(ak.fill_none(ak.max(a["FatJet_pt"], axis=1), 0.0))
    weights = np.where(lead > CUT_GEV, -1.0, 1.0).astype(np.float32)
    path = tmp_path / "nlo.root"
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", {
            **{k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event")}, "genWeight": weights,
            "FatJet": ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")}),
            "FatJetPFCand": ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})})
    return path


def _job(tmp_path: Path, sample: Path) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out.root"
    config = tmp_path / "menu.yaml"
    config.write_text(f"""
options: {{inputRateHz: 100000}}
source: {{type: RootJetSource, files: [{sample}]}}
modules:
  hard: {{type: JetPtFilter, min_pt: {CUT_GEV}, eta_max: 5.0}}
  soft: {{type: JetPtFilter, min_pt: 300.0, eta_max: 5.0}}
  out: {{type: RootOutputModule, file: {out}, keep: ["source:weight"]}}
paths:
  HLT_Hard: [hard]
  HLT_Soft: [soft]
endpaths:
  e: [out]
services:
  TriggerRates: {{}}
""")
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", str(config), "-q", "--report-dir", "rep",
                          "options.wantSummary=false"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    return res, out


def _weighted_rate(w: np.ndarray, accepted: np.ndarray) -> tuple[float, float]:
    """Input rate x accepted weight / total weight and its Sumw2 error, written out independently."""
    total = w.sum()
    p = w[accepted].sum() / total
    var = ((1 - p) ** 2 * (w[accepted] ** 2).sum() + p ** 2 * (w[~accepted] ** 2).sum()) / total ** 2
    return 1e5 * p, 1e5 * np.sqrt(var)


def test_negative_generator_weights_give_the_signed_weighted_rate(tmp_path):
    """An NLO sample (negative genWeights) whose accepted events weigh less than zero: the rate is the signed
    weighted estimate, -xx ± yy Hz. hltrun.json failed its own schema (rate_hz below 0) and the job exited 1
    with 'a bug in hltrun'; the figures must be the independent weighted sums, in hltrun.json and per lumi."""
    res, out = _job(tmp_path, _sample(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "schema" not in res.stderr
    with uproot.open(out) as f:
        a = f["Events"].arrays(library="np")
    w = a["genWeight"].astype(np.float64)
    rates = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["services"]["TriggerRates"]
    hard = next(p for p in rates["paths"] if p["name"] == "HLT_Hard")
    accepted = a["HLT_Hard"].astype(bool)
    hz, err = _weighted_rate(w, accepted)
    assert hz < 0  # the sample is built so that it is
    assert hard["accepted"] == int(accepted.sum())
    assert hard["rate_hz"] == pytest.approx(hz, rel=1e-9)
    assert hard["error_hz"] == pytest.approx(err, rel=1e-9)
    assert hard["fraction"] == pytest.approx(hz / 1e5, rel=1e-9)
    for lumi in rates["per_lumi"]:
        mask = a["luminosityBlock"] == lumi["lumi"]
        assert lumi["rate_hz"]["HLT_Hard"] == pytest.approx(_weighted_rate(w[mask], accepted[mask])[0], rel=1e-9)
