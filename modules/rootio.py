"""Writing TTrees with NanoAOD branch names (``nFatJet``, ``FatJet_pt``) through uproot.

uproot's default names record fields ``FatJet.pt``; NanoAOD readers (and our source's defaults)
expect ``FatJet_pt`` with an ``nFatJet`` counter, so every writer in the project goes through here.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Mapping, Sequence

import awkward as ak
import numpy as np

from hltrun.framework.extras import need

# uproot's (de)compressors: cramjam (LZMA, ZSTD, LZ4, ZLIB) and xxhash (LZ4's checksums). uproot >= 5.4
# requires both, 5.3 only cramjam, and it imports them when the first basket needs one; setup.cfg declares
# them. Imported before uproot, so that a missing one is one line naming its pip package (not uproot's
# import failing as an internal error, nor a "bad file" that skipBadFiles would skip, every file alike).
CODEC_LIBRARIES = ("cramjam", "xxhash")


def uproot_module(purpose: str) -> ModuleType:
    """uproot, its codec libraries checked first: ModuleError ``<purpose> needs cramjam, which is not
    installed: pip install cramjam`` where one is missing."""
    for name in CODEC_LIBRARIES:
        need(name, f"{purpose} (uproot's compression codecs)")
    return need("uproot", purpose)


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


def compression_codec(name: str) -> Any:
    """uproot's codec for an output's ``compression`` setting (zlib, lzma, lz4, zstd at level 4, or none):
    every algorithm uproot writes (NanoAOD's files are LZMA or ZSTD)."""
    import uproot

    return {"zlib": uproot.ZLIB(4), "lzma": uproot.LZMA(4), "lz4": uproot.LZ4(4), "zstd": uproot.ZSTD(4),
            "none": None}[name]


def concatenate_trees(parts: "list[Any]", target: Any, tree: str, compression: str = "zlib",
                      step: int = 100_000, extra_trees: "Sequence[str]" = (),
                      add_trees: "Mapping[str, Mapping[str, Any]]" = {},
                      add_strings: "Mapping[str, str]" = {}) -> int:
    """Write the entries of ``tree`` (then of each of ``extra_trees`` that a part has) from every part,
    in order, into a new file ``target``, then the trees of ``add_trees`` (name -> columns: the
    caller's merge of per-part summaries) and the TObjStrings of ``add_strings``; return the count of
    ``tree``'s entries.

    Branches keep their NanoAOD shape: ``X_a``/``X_b`` sharing the counter ``nX`` are re-zipped into
    collection ``X``, a lone jagged ``X`` with ``nX`` stays a jagged branch. Reads ``step`` entries at a
    time, so memory does not grow with the number or size of the parts.
    """
    import uproot

    codec = compression_codec(compression)
    with uproot.recreate(target, compression=codec) as out:
        total = _append_tree(parts, out, tree, step)
        for extra in extra_trees:
            _append_tree(parts, out, extra, step)
        for name, columns in add_trees.items():
            write_nanoaod(out, name, columns)
        for name, text in add_strings.items():
            out[name] = text  # a TObjString
    return total


def _append_tree(parts: "list[Any]", out: Any, tree: str, step: int) -> int:
    """Copy ``tree`` of every part that has it into the open file ``out``; return its entries."""
    import uproot

    total = 0
    empty: list[Any] = []  # parts without entries: a unit that selected no event cannot know every
    # product's branches, so its tree may have fewer; it must not fix the layout for the others
    for part in parts:
        with uproot.open(part) as f:
            if tree not in f:
                continue
            t = f[tree]
            if t.num_entries == 0:
                empty.append(part)
                continue
            layout = branch_groups(t)
            for arrays in t.iterate(step_size=step, library="ak"):
                write_nanoaod(out, tree, regroup(arrays, layout))
                total += len(arrays)
    if tree not in out and empty:  # every part empty: an empty tree, with the branches of the part that has most
        with uproot.open(_widest(empty, tree)) as f:
            t = f[tree]
            write_nanoaod(out, tree, regroup(t.arrays(library="ak"), branch_groups(t)))
    return total


def _widest(parts: "list[Any]", tree: str) -> Any:
    """The part whose ``tree`` has the most branches (the first of those): an empty unit whose output learnt
    the kept products' layout from a rejected event has them, one that saw none has the ids and bits only,
    and the job's empty output must have what a local run's has, whichever unit came first."""
    import uproot

    def width(part: Any) -> int:
        with uproot.open(part) as f:
            return len(f[tree].keys())

    return max(parts, key=width)


def branch_groups(t: Any) -> dict[str, list[str]]:
    """Counter-sharing branch groups in file order: {"X": ["X_a", "X_b"]} for ``nX``; others map to themselves."""
    counted = {name: t[name].count_branch for name in t.keys()}
    counters = {c.name for c in counted.values() if c is not None}
    groups: dict[str, list[str]] = {}
    for name, count in counted.items():
        if name in counters:
            continue
        key = count.name[1:] if count is not None and count.name.startswith("n") else name
        groups.setdefault(key, []).append(name)
    return groups


def regroup(arrays: ak.Array, layout: dict[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, members in layout.items():
        if members == [name]:
            value = arrays[name]
            out[name] = value if value.ndim > 1 else ak.to_numpy(value)
        else:
            out[name] = ak.zip({m[len(name) + 1:]: arrays[m] for m in members})
    return out
