"""How much a product moved between two hltrun outputs, for ``hltdiff``'s product lines.

Why its own module: hltdiff says *which* events' products differ beyond the tolerance; a physicist
comparing two engines or two trainings also needs *by how much* (a 1e-3 drift and a sign flip are not
the same finding). This gives each differing row's relative change and one line per row: the entry that
moved most, old -> new, and the relative change, the quantity ``--rtol`` is compared with.
"""
from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np


def relative(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """|new - old| / |old| element by element: 0 where equal (NaN with NaN too), inf where ``old`` is 0 or
    one side alone is NaN (no finite ratio says how far apart they are)."""
    a, b = np.asarray(old, np.float64), np.asarray(new, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(b - a) / np.abs(a)
    rel[np.isnan(rel)] = np.inf
    rel[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0
    return rel


def row_changes(old: ak.Array, new: ak.Array) -> np.ndarray:
    """Per row, the largest relative change of its entries (inf where the rows' lengths differ)."""
    if old.ndim == 1 and new.ndim == 1:
        return relative(np.asarray(old), np.asarray(new))
    out = np.full(len(old), np.inf)
    same = np.asarray(ak.num(old, axis=1) == ak.num(new, axis=1))
    counts = np.asarray(ak.num(old[same], axis=1))
    rel = relative(ak.to_numpy(ak.flatten(old[same])), ak.to_numpy(ak.flatten(new[same])))
    out[same] = ak.to_numpy(ak.fill_none(ak.max(ak.unflatten(rel, counts), axis=1), 0.0))
    return out


def _value(x: Any) -> str:
    return str(x) if isinstance(x, (bool, np.bool_)) or isinstance(x, (int, np.integer)) else f"{x:.7g}"


def describe(old: Any, new: Any) -> str:
    """One row's change (python values of one row: a number or a list): 'entry j of n: old -> new (relative r)'
    for the entry that moved most, with how many moved; 'n -> m entries' when the lengths differ."""
    if isinstance(old, list) or isinstance(new, list):
        old, new = list(old or []), list(new or [])
        if len(old) != len(new):
            return f"{len(old)} -> {len(new)} entries"
        rel = relative(np.asarray(old, np.float64), np.asarray(new, np.float64))
        j = int(np.argmax(rel))
        moved = int((rel > 0).sum())
        others = f"; {moved} of {len(old)} entries changed" if moved > 1 else ""
        return f"entry {j} of {len(old)}: {describe(old[j], new[j])}{others}"
    if isinstance(old, (bool, np.bool_)):
        return f"{old} -> {new}"
    rel = float(relative(np.asarray([old]), np.asarray([new]))[0])
    return f"{_value(old)} -> {_value(new)} (relative {rel:.2g})"
