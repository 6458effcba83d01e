"""One physical QCD sample from samples generated in pTHat slices (pTHat > t_0 < t_1 < ...).

Why: a sample generated with pTHat > 600 GeV holds few events with a 1.5 TeV leading jet; slices
with higher pTHat thresholds fill the high-pT bins with many unweighted events, which is what a
closure test of a pT-dependent working point needs there. But a bin near a slice's threshold also
gets events from below it (a leading jet harder than pTHat), so slices cannot simply be assigned to
bins: they are stitched by each event's pTHat (``Generator_binvar``, tools/physics/generate_events.py).

Stitching: region r is t_r <= pTHat < t_(r+1); slices 0..r all sample it. With S_s the cross
section above t_s, slice s puts N_s sigma_r / S_s events into region r, so every event of region r
gets the weight 1 / sum_(s<=r) N_s / S_s (times its generator weight), and the pooled sample is
physical in every region. S_s / S_(s-1) is measured on slice s-1 itself: the (weighted) fraction of
its events above t_s — no cross section is typed in or taken from the generator.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

PTHAT_SETTING = re.compile(r"^\s*PhaseSpace:pTHatMin\s*=\s*([0-9.eE+-]+)\s*$")


def pthat_min_by_process(config: dict[str, Any]) -> dict[int, float]:
    """processId -> the PhaseSpace:pTHatMin of that process in the generation config (0 if unset)."""
    out = {}
    for proc in config["processes"].values():
        mins = [float(m.group(1)) for line in proc.get("settings", []) if (m := PTHAT_SETTING.match(line))]
        out[int(proc["id"])] = mins[-1] if mins else 0.0
    return out


def stitch_weights(pthat: list[np.ndarray], gen_weight: list[np.ndarray],
                   thresholds: list[float]) -> tuple[list[np.ndarray], list[float]]:
    """Event weights per slice (in the units of slice 0's cross section per event) and the measured
    ratios S_s / S_0. ``thresholds`` strictly increasing, one per slice."""
    if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
        raise ValueError(f"slice thresholds must be distinct and increasing, got {thresholds}")
    for p, t in zip(pthat, thresholds):
        if len(p) == 0 or float(np.min(p)) < t * (1 - 1e-6):
            raise ValueError(f"a slice with pTHat > {t:g} GeV is empty or holds events below its threshold")
    sigma = [1.0]  # S_s / S_0
    for s in range(1, len(thresholds)):
        prev_w = gen_weight[s - 1]
        above = prev_w[pthat[s - 1] >= thresholds[s]].sum()
        if above <= 0:
            raise ValueError(f"no event of the pTHat > {thresholds[s - 1]:g} GeV slice lies above "
                             f"{thresholds[s]:g} GeV: the slices cannot be stitched")
        sigma.append(sigma[-1] * above / prev_w.sum())
    per_slice = np.array([w.sum() for w in gen_weight]) / np.array(sigma)  # N_s / S_s
    density = np.cumsum(per_slice)  # sum over s <= r, per region r
    weights = []
    for p, w in zip(pthat, gen_weight):
        region = np.searchsorted(np.asarray(thresholds), p, side="right") - 1
        weights.append(w / density[region])
    return weights, sigma


def thresholds_of(process_ids: list[int], config_path: Path) -> list[float]:
    """The pTHat threshold of each slice, from its processId and the generation config."""
    from hltrun.tools.physics.generate_events import load_config

    table = pthat_min_by_process(load_config(config_path))
    missing = [p for p in process_ids if p not in table]
    if missing:
        raise ValueError(f"processId {missing} not in {config_path}")
    return [table[p] for p in process_ids]
