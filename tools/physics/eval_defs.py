"""What the evaluation's modules share: working points, pT binning, the signals and the baselines.

Why its own module: ``evaluate_models`` computes with these and ``eval_card`` / ``eval_plots`` present
them; with the definitions here, the presenters import this module, not the evaluation (no circle).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

BKG_EFFS = {"bkg_eff_1e-2": 1e-2, "bkg_eff_1e-3": 1e-3}
PT_EDGES_GEV = [600.0, 700.0, 850.0, 1000.0, 1300.0, 1600.0]  # lower edges; the last bin is open
RATIO_RANGE_GEV = (600.0, 1600.0)  # the max/min pass-rate ratio is over the bins inside this range
MATCHED_PT_GEV = (1100.0, 1400.0)  # leading-jet window of the matched-pT AUCs
INPUT_RATE_HZ = 100e3


@dataclass(frozen=True)
class SignalSpec:
    label: str
    defaults: tuple[str, ...]  # first existing file under --signal-dir wins
    held_out: bool = False


SIGNALS = {
    "rsg_ww_1p5TeV": SignalSpec("RS G* (1.5 TeV) → WW", ("data/large/rsg_ww_1p5TeV_eval.root", "data/rsg_ww_1p5TeV.root")),
    "rsg_ww_3p5TeV": SignalSpec("RS G* (3.5 TeV) → WW", ("data/large/rsg_ww_3p5TeV_eval.root", "data/rsg_ww_3p5TeV.root")),
    "zprime_tt_2TeV": SignalSpec("Z′ (2 TeV) → tt̄", ("data/large/zprime_tt_2TeV_eval.root", "data/zprime_tt_2TeV.root")),
    "wprime_wz_3TeV": SignalSpec("W′ (3 TeV) → WZ", ("data/large/wprime_wz_3TeV.root",), held_out=True),
}

@dataclass(frozen=True)
class Baseline:
    """A simple observable scored like a model: per jet, larger = more signal-like; event = max."""

    label: str
    per_jet: Callable[[Any], np.ndarray]
    definition: str


BASELINES = {
    "tau21": Baseline("1 − τ21", lambda s: 1.0 - s.jet_tau21,
                      "1 − τ21 per jet (N-subjettiness, β = 1, exclusive-kT axes, R0 = 0.8, from all the jet's "
                      "constituents: `tools/physics/substructure.py`); event: the larger of the two leading jets"),
    "mass": Baseline("jet mass", lambda s: s.jet_mass,
                     "`FatJet_mass` per jet; event: the larger of the two leading jets' masses"),
}
