"""The card's pT-dependent cuts (modules/working_point.py): the smooth form written by
tools/physics/evaluate_models.py is evaluated exactly as documented, with the pT held inside the fit's range,
and a malformed entry is refused with a message saying what is wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hltrun.modules.working_point import PtBinnedCuts, PtCutFunction, parse_pt_cuts

SMOOTH = {"pt_ref_gev": 1000.0, "pt_range_gev": [600.0, 2000.0],
          "bkg_eff_1e-2": [1.5, 0.2, -0.1], "bkg_eff_1e-3": [2.5, 0.4]}


def poly(c: list[float], pt: float) -> float:
    x = math.log(pt / 1000.0)
    return sum(ck * x ** k for k, ck in enumerate(c))


def test_smooth_cut_is_the_polynomial_in_ln_pt_held_inside_the_range():
    cuts = parse_pt_cuts(SMOOTH)
    assert isinstance(cuts, PtCutFunction)
    for pt in (600.0, 750.0, 1000.0, 1234.5, 1999.0):
        assert cuts.cut("bkg_eff_1e-2", pt) == pytest.approx(poly(SMOOTH["bkg_eff_1e-2"], pt), rel=1e-12)
        assert cuts.cut("bkg_eff_1e-3", pt) == pytest.approx(poly(SMOOTH["bkg_eff_1e-3"], pt), rel=1e-12)
    # outside the range the cut at the nearer end applies, however soft or hard the jet
    assert cuts.cut("bkg_eff_1e-2", 250.0) == pytest.approx(poly(SMOOTH["bkg_eff_1e-2"], 600.0), rel=1e-12)
    assert cuts.cut("bkg_eff_1e-2", 5000.0) == pytest.approx(poly(SMOOTH["bkg_eff_1e-2"], 2000.0), rel=1e-12)
    many = cuts.cuts_at("bkg_eff_1e-2", np.array([250.0, 1000.0, 5000.0]))
    assert many.tolist() == [cuts.cut("bkg_eff_1e-2", p) for p in (250.0, 1000.0, 5000.0)]
    assert parse_pt_cuts(cuts.to_json()) == cuts  # the card round-trips
    assert cuts.describe("bkg_eff_1e-3") == {"pt_ref_gev": 1000.0, "pt_range_gev": [600.0, 2000.0],
                                             "coefficients": [2.5, 0.4]}


def test_the_binned_form_still_reads():
    cuts = parse_pt_cuts({"edges_gev": [600.0, 1000.0], "bkg_eff_1e-2": [1.0, 2.0]})
    assert isinstance(cuts, PtBinnedCuts) and cuts.cut("bkg_eff_1e-2", 1500.0) == 2.0


@pytest.mark.parametrize("entry, message", [
    ({"bkg_eff_1e-2": [1.0]}, r"expected pt_ref_gev \(smooth form\) or edges_gev \(binned form\)"),
    ({**SMOOTH, "pt_ref_gev": 0}, "pt_ref_gev: expected a positive number, got 0"),
    ({**SMOOTH, "pt_ref_gev": True}, "pt_ref_gev: expected a positive number, got True"),
    ({**SMOOTH, "pt_range_gev": [2000.0, 600.0]}, r"pt_range_gev: expected \[lo, hi\] with 0 < lo < hi"),
    ({**SMOOTH, "pt_range_gev": [0.0, 600.0]}, r"pt_range_gev: expected \[lo, hi\] with 0 < lo < hi"),
    ({**SMOOTH, "pt_range_gev": [600.0]}, r"pt_range_gev: expected \[lo, hi\]"),
    ({**SMOOTH, "bkg_eff_1e-2": []}, "bkg_eff_1e-2: expected a list of finite polynomial coefficients"),
    ({**SMOOTH, "bkg_eff_1e-2": [1.0, float("nan")]}, "bkg_eff_1e-2: expected a list of finite"),
    ({"pt_ref_gev": 1000.0, "pt_range_gev": [600.0, 2000.0]}, "no bkg_eff_\\* cuts"),
])
def test_a_malformed_smooth_entry_says_what_is_wrong(entry, message):
    with pytest.raises(ValueError, match=message):
        parse_pt_cuts(entry)
