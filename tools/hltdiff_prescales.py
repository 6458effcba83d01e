"""What an accepted-only hltrun output says of an event it lacks, trigger by trigger, for ``hltdiff``.

Why its own module: an output written with ``select_events`` keeps the accepted events only, and hltdiff
counts an event such a side lacks as rejected. For a path behind an HLTPrescaler that holds only where the
prescaler let every event through (factor 1). Where the path was off (prescale 0) the event was prescaled, and
where it kept one in N it may have been prescaled or rejected: the file cannot say. hltdiff without -p ignores
prescaler stops (as hltDiff does), yet counted those events as lost: ``configs/menu.yaml`` against its own
``--prescale emergency`` output read ``Lost -65`` for HLT_AnomalyGCNVAE, a path that column switches off, and
-16 for HLT_PFHT1050 (prescaled by 2), exactly the events no other path kept.

Each side's factors come from its files' ``Provenance`` (the job's validated configuration: the
PrescaleService's table, default column, ``lumiColumns`` and ``forceDefault``, a prescaler's own
``prescale``), per path and lumi section, as the prescalers looked them up. A file without one (an older
output) keeps the old reading: an event it lacks was rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from hltrun.framework.errors import HltError
from hltrun.framework.schema import build
from hltrun.framework.services.prescale import PrescaleTable
from hltrun.modules.root_output import decision_branches

WAS_REJECTED, WAS_PRESCALED, WAS_EITHER = 0, 1, 2  # what a lacking event was, for one trigger


@dataclass
class SideFactors:
    """Per trigger branch (HLT_X), the factors of the path's prescalers in each column of ``table``
    (``None`` entries: the prescaler takes the table's factor)."""

    table: PrescaleTable | None
    own: dict[str, list[int | None]]  # branch -> each prescaler's own ``prescale`` (None: from the table)
    path_of: dict[str, str]  # branch -> path name (the table's row name)

    def states(self, branch: str, runs: np.ndarray, lumis: np.ndarray) -> np.ndarray:
        """For events this side lacks: WAS_REJECTED, WAS_PRESCALED or WAS_EITHER per event, from the factors in force in
        each event's lumi section (a path without a prescaler: WAS_REJECTED)."""
        prescalers = self.own.get(branch, [])
        if not prescalers:
            return np.full(len(runs), WAS_REJECTED, np.int8)
        # one lookup per lumi section, not per event
        keys, inverse = np.unique(np.stack([np.asarray(runs, np.int64), np.asarray(lumis, np.int64)], axis=1),
                                  axis=0, return_inverse=True)
        per_key = np.empty(len(keys), np.int8)
        for k, (run, lumi) in enumerate(keys.tolist()):
            index = self.table.column_at(run, lumi) if self.table is not None else None
            factors = [p if p is not None else (self.table.prescale_in(self.path_of[branch], index)
                                                if self.table is not None else 1) for p in prescalers]
            per_key[k] = (WAS_PRESCALED if 0 in factors else WAS_REJECTED if all(f == 1 for f in factors)
                          else WAS_EITHER)
        return per_key[inverse.reshape(-1)]


def side_factors(provenances: Sequence[dict[str, Any] | None]) -> SideFactors | None:
    """The prescale factors of one side from its files' provenance; None where a file has none (an older output)
    or the files disagree on them (outputs of different jobs: no one answer)."""
    found = {_prescale_part(p) for p in provenances}
    if len(found) != 1 or None in found:
        return None
    config = next(p for p in provenances if p is not None).get("configuration") or {}
    modules, table_data = config.get("modules") or {}, (config.get("services") or {}).get("PrescaleService")
    try:
        table = build(PrescaleTable, table_data, "PrescaleService") if table_data is not None else None
    except (HltError, ValueError):  # a configuration its own job validated: only a file edited by hand fails here
        return None
    paths = config.get("paths") or {}
    own: dict[str, list[int | None]] = {}
    path_of: dict[str, str] = {}
    for path, branch in decision_branches(list(paths), "out"):
        path_of[branch] = path
        # an inverted (~) or ignored (-) prescaler decides nothing by its factor
        own[branch] = [(modules.get(entry) or {}).get("prescale") for entry in paths[path]
                       if isinstance(entry, str) and (modules.get(entry) or {}).get("type") == "HLTPrescaler"]
    return SideFactors(table, own, path_of)


def _prescale_part(provenance: dict[str, Any] | None) -> str | None:
    """What decides a file's prescale factors, as one comparable string; None without a provenance."""
    if not provenance or not isinstance(provenance.get("configuration"), dict):
        return None
    config = provenance["configuration"]
    modules = config.get("modules") or {}
    prescalers = {k: v for k, v in modules.items() if isinstance(v, dict) and v.get("type") == "HLTPrescaler"}
    return repr(((config.get("services") or {}).get("PrescaleService"), sorted(prescalers.items()),
                 sorted((config.get("paths") or {}).items())))
