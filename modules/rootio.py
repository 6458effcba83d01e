"""Writing TTrees with NanoAOD branch names (``nFatJet``, ``FatJet_pt``) through uproot.

uproot's default names record fields ``FatJet.pt``; NanoAOD readers (and our source's defaults)
expect ``FatJet_pt`` with an ``nFatJet`` counter, so every writer in the project goes through here.
"""

from __future__ import annotations

from typing import Any, Mapping

import awkward as ak
import numpy as np


def _branch_type(value: Any) -> Any:
    return value.type if isinstance(value, ak.Array) else np.asarray(value).dtype


def write_nanoaod(file: Any, tree: str, data: Mapping[str, Any]) -> None:
    """Create ``tree`` in an open ``uproot.recreate`` file from ``data`` or extend it if it exists.

    ``data`` maps branch names to numpy arrays (one value per event) or awkward arrays (jagged, or
    ``ak.zip`` records for a collection whose fields share one counter).
    """
    if tree not in file:
        file.mktree(tree, {k: _branch_type(v) for k, v in data.items()},
                    field_name=lambda outer, inner: f"{outer}_{inner}",
                    counter_name=lambda counted: f"n{counted}")
    file[tree].extend(dict(data))
