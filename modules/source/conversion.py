"""Conversion: one chunk of uproot's arrays, in any of the three layouts, into a ``Chunk``.

Apart from the reading: the layouts (counts, jet_index, nested) differ only here, in how each
constituent finds its jet; everything after this works on flat numpy arrays. Done with numpy, once per
chunk, never per event.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from .chunk import Chunk, make_chunk
from .event_ids import event_ids, weight_values
from .layout import check_collections, check_event_values, collections_of, constituents_per_jet, list_counts
from .parameters import RootJetSourceParameters

# NanoAOD's "no link": a jet index of -1 (a candidate in no jet). Skipped and counted as ``links_to_no_jet``
# in the source's accounting, not as an invalid link: it is a legitimate value, and a data-quality
# counter every PFNano file raised would hide the links that really point nowhere
NO_JET = -1


def convert(arrays: ak.Array, params: RootJetSourceParameters, path: str, first_entry: int, counts: dict[str, int],
            extra_jet: tuple[str, ...], extra_cand: tuple[str, ...], specs: Any,
            extra_event: tuple[str, ...] = ()) -> Chunk:
    """One chunk from uproot's arrays, its data-quality counts added to ``counts``: ``extra_jet``,
    ``extra_cand`` and ``extra_event`` are the consumers' extra branches (per jet, per constituent, per
    event), ``specs`` the model inputs prepared with it."""
    b, layout = params.branches, params.layout
    where = f"{path} entries {first_entry}-{first_entry + len(arrays)}"
    # every length below follows from this check
    check_collections(arrays, collections_of(b, layout, extra_jet, extra_cand), path, first_entry)
    check_event_values(arrays, extra_event, path, first_entry)
    jet_counts = list_counts(arrays[b.jet_pt], b.jet_pt, where)
    n_jets = int(jet_counts.sum())
    jet_offsets = np.zeros(len(jet_counts) + 1, dtype=np.int64)
    np.cumsum(jet_counts, out=jet_offsets[1:])

    def flat(name: str) -> np.ndarray:
        return np.asarray(ak.flatten(arrays[name], axis=None), dtype=np.float32)

    jet_pt, jet_eta, jet_phi = flat(b.jet_pt), flat(b.jet_eta), flat(b.jet_phi)
    jet_mass = flat(b.jet_mass) if b.jet_mass else np.zeros(n_jets, np.float32)

    take: np.ndarray | None = None  # jet_index: the constituents linked to a jet, in link order
    if layout == "counts":
        per_jet = constituents_per_jet(arrays, b, path, first_entry)
        jet_of_cand = np.repeat(np.arange(n_jets), per_jet)
        cpt, ceta, cphi = flat(b.cand_pt), flat(b.cand_eta), flat(b.cand_phi)
    elif layout == "jet_index":
        link_counts = list_counts(arrays[b.cand_jet_index], b.cand_jet_index, where)
        jet_idx = np.asarray(ak.flatten(arrays[b.cand_jet_index], axis=None), dtype=np.int64)
        event_of_link = np.repeat(np.arange(len(link_counts)), link_counts)
        valid = (jet_idx >= 0) & (jet_idx < jet_counts[event_of_link])
        no_jet = int(np.count_nonzero(jet_idx == NO_JET))
        counts["links_to_no_jet"] += no_jet
        counts["invalid_links"] += int(len(valid) - np.count_nonzero(valid)) - no_jet
        jet_of_cand = (jet_idx + jet_offsets[:-1][event_of_link])[valid]
        cpt, ceta, cphi = flat(b.cand_pt), flat(b.cand_eta), flat(b.cand_phi)
        if b.cand_index:
            cand_counts = list_counts(arrays[b.cand_pt], b.cand_pt, where)
            cand_offsets = np.concatenate([[0], np.cumsum(cand_counts)])
            cidx = np.asarray(ak.flatten(arrays[b.cand_index], axis=None), dtype=np.int64)
            ok = (cidx >= 0) & (cidx < cand_counts[event_of_link])
            counts["invalid_links"] += int(np.count_nonzero(valid & ~ok))
            valid &= ok
            jet_of_cand = (jet_idx + jet_offsets[:-1][event_of_link])[valid]
            take = (cidx + cand_offsets[:-1][event_of_link])[valid]
        else:
            take = np.flatnonzero(valid)
        cpt, ceta, cphi = cpt[take], ceta[take], cphi[take]
    else:  # nested
        per_jet = np.asarray(ak.flatten(ak.num(arrays[b.cand_pt], axis=2)), dtype=np.int64)
        jet_of_cand = np.repeat(np.arange(n_jets), per_jet)
        cpt, ceta, cphi = flat(b.cand_pt), flat(b.cand_eta), flat(b.cand_phi)

    cand_extra = {name: flat(name) if take is None else flat(name)[take] for name in extra_cand}
    jet_extra = {name: flat(name) for name in extra_jet}
    event_extra = {name: np.asarray(arrays[name], dtype=np.float32) for name in extra_event}  # one per event
    ids, id_keys, id_arrays = event_ids(arrays, b, path, first_entry)
    chunk = make_chunk(jet_offsets, jet_pt, jet_eta, jet_phi, jet_mass, (jet_of_cand, ceta, cphi, cpt), ids,
                       id_keys, params.max_constituents, specs, jet_extra,
                       cand_extra, event_extra)
    chunk.id_arrays = id_arrays  # lumis counted and selections made per chunk with numpy
    if b.weight and b.weight in arrays.fields:
        chunk.weights = weight_values(arrays[b.weight], b.weight, path, first_entry).tolist()
    counts["zero_constituent_jets"] += int(n_jets - np.count_nonzero(chunk.ncons))
    counts["nonfinite_pt_jets"] += int(n_jets - np.count_nonzero(np.isfinite(jet_pt)))
    return chunk
