"""Bin edges shared by what measures (the Timing service's histograms) and what draws (report.html): one
module both may import, so a report never reaches into a service for them (DESIGN.md: reports import
result types only)."""

from __future__ import annotations

import numpy as np


def log_edges(values: np.ndarray, bins: int, at_least: float = 0.0) -> np.ndarray:
    """Logarithmic bin edges (ms) covering ``values`` and ``at_least`` (e.g. the budget)."""
    positive = values[values > 0]
    lo = max(float(positive.min()) * 0.9, 1e-4) if len(positive) else 1e-4
    hi = max(float(values.max()) if len(values) else 0.0, at_least, lo * 10) * 1.1
    return np.geomspace(lo, hi, bins + 1)
