"""Opening an input file's tree (TTree or RNTuple) and reading columns from it, with one line per failure.

Apart from the source: what can go wrong when a file is opened (unreadable, not ROOT, no such tree, the
tree in a folder, an RNTuple's records) is uproot's business, not the event loop's. The source gets a
tree or one line naming the file and what to set.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import awkward as ak

from hltrun.framework.errors import FileOpenError, SourceError, one_line
from hltrun.framework.resources import unreadable_reason

from ..rootio import uproot_module


def open_tree(path: str, name: str) -> Any:
    """The tree ``name`` of ``path``: FileOpenError if the file cannot be read as ROOT, SourceError if
    it holds no readable tree of that name (naming the objects it has and where a tree of that name is);
    ModuleError if uproot or a codec library of it is not installed (no file is to blame)."""
    uproot = uproot_module("source: reading ROOT files")
    why = unreadable_reason(path, "input file")
    if why is not None:
        raise FileOpenError(f"source: {why}{lfn_hint(path)}")
    try:
        handle = uproot.open(path)
    except Exception as exc:
        if not _signed(path):  # not a damaged ROOT file but another kind (uproot's line is about chunk lengths)
            raise FileOpenError(f"source: cannot read {path} as a ROOT file (it does not start with ROOT's "
                                f"signature 'root'; a text list of input files is read as one when its name "
                                f"ends in .txt or .list)") from exc
        raise FileOpenError(f"source: cannot read {path} as a ROOT file ({type(exc).__name__}: "
                            f"{one_line(exc, 'corrupt header')})") from exc
    try:
        tree = handle[name]
    except Exception as exc:
        why = cut_short(path, handle.file)
        if why is not None:  # the tree's metadata past the file's end: that is the reason, not uproot's short read
            raise FileOpenError(f"source: {why}") from exc
        if has_key(handle, name):  # there, but unreadable (damaged): say why
            kind = classname(handle, name)
            raise SourceError(f"source: cannot read {kind} '{name}' of {path}: "
                              f"{type(exc).__name__}: {one_line(exc, 'corrupt data')}") from exc
        names = ", ".join(k.split(";")[0] for k in handle.keys(recursive=False)) or "none"
        raise SourceError(f"source: no tree '{name}' in {path} (objects: {names})"
                          f"{tree_elsewhere(handle, name)}") from None
    if not hasattr(tree, "num_entries"):
        kind = classname(handle, name, type(tree).__name__)
        raise SourceError(f"source: '{name}' in {path} is a {kind}, not a TTree"
                          f"{tree_elsewhere(handle, name)}")
    return tree


def cut_short(path: str, file: Any) -> str | None:
    """Why ``path`` (``file``: uproot's open file) is a ROOT file cut short, or None: its header says where the
    file ends (``fEND``, written when it is closed) and the file is shorter. Its last bytes are the free-segments
    record (72 bytes), not the tree's: a copy cut in them read every event, exit 0, with nothing said, where ROOT
    says the file is truncated. Only a shorter file is one: a file its writer never closed keeps an older,
    smaller ``fEND``. Checked with the file (``refuse_cut_short``), not at every open: a file past maxEvents is
    opened, not checked, until the loop reaches it."""
    try:
        end, size = int(file.fEND), os.path.getsize(path)
    except (AttributeError, OSError, TypeError, ValueError):  # pragma: no cover - no header to compare: opened, read
        return None
    if size >= end:
        return None
    return (f"input file {path} is cut short: {size} bytes, where its ROOT header says it ends at {end} (a copy or "
            f"a write that did not finish: a full disk, an interrupted transfer); copy it again")


def refuse_cut_short(tree: Any, path: str) -> None:
    """FileOpenError (exit 3; skipped whole with ``skipBadFiles``) when ``path``, whose ``tree`` is open, is cut
    short (``cut_short``)."""
    why = cut_short(path, tree.file)
    if why is not None:
        raise FileOpenError(f"source: {why}")


def lfn_hint(path: str) -> str:
    """For a CMS logical file name (``/store/mc/...``, as DAS and CMSSW file lists give them, no such
    folder here): how to get the file; '' for any other path."""
    if not path.startswith("/store/") or os.path.exists("/store"):
        return ""
    return (f" (a CMS logical file name, read through a site: copy it to a local disk first, e.g. "
            f"xrdcp root://cms-xrd-global.cern.ch/{path} ., and give that path)")


def _signed(path: str) -> bool:
    """Whether ``path`` starts as every ROOT file does (b"root"); True where it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"root"
    except OSError:  # pragma: no cover - it was readable a moment ago: let uproot's line stand
        return True


FileState = tuple[int, int, int]  # (inode, size, modification time in ns)


def file_state(path: str) -> FileState | None:
    """What tells that another process changed ``path`` since: its inode, size and modification time;
    None when it cannot be looked at (gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def changed_since(path: str, seen: FileState | None) -> str | None:
    """How ``path`` changed since the job first opened it (``seen``), as the start of a failed read's line,
    or None. A file being copied in, rewritten or truncated by another process fails as a corrupt basket
    or a short read: the user must read that the file moved under the job, not that it is damaged."""
    now = file_state(path)
    if seen is None or now == seen:
        return None
    if now is None:
        how = "was removed"
    elif now[0] != seen[0]:
        how = f"was replaced by another file ({seen[1]} bytes when first opened, {now[1]} now)"
    elif now[1] != seen[1]:
        how = f"{'shrank' if now[1] < seen[1] else 'grew'} from {seen[1]} to {now[1]} bytes"
    else:
        how = f"was rewritten ({now[1]} bytes as before, modified since)"
    return (f"it {how} while the job read it: another process truncated, rewrote or replaced it (a copy still "
            f"in progress?); run on it once it is complete")


def read_failure(path: str, at: int, stop: int, exc: BaseException, changed: str | None = None) -> SourceError:
    """The one line for entries ``at``..``stop`` of ``path`` that could not be read (a corrupt basket):
    the event loop's read and the Dask client's id read say it alike, and ``skipBadFiles`` skips from ``at``."""
    why = f"{type(exc).__name__}: {one_line(exc, 'corrupt data')}"
    return SourceError(f"source: failed to read {path} entries {at}-{stop}: "
                       + (f"{changed} ({why})" if changed else why), first_entry=at)


def first_basket_end(branch: Any) -> int:
    """The entry where a branch's first basket ends (0 if the file does not say: then read the tail)."""
    try:
        offsets = branch.entry_offsets
        return int(offsets[1]) if len(offsets) > 1 else 0
    except Exception:  # pragma: no cover - a damaged basket table: let the tail read report it
        return 0


def is_rntuple(tree: Any) -> bool:
    """Whether ``tree`` is an RNTuple (uproot's ``RNTuple``), not a TTree."""
    import uproot.behaviors.RNTuple

    return isinstance(tree, uproot.behaviors.RNTuple.RNTuple)


def field(tree: Any, name: str) -> Any:
    """An RNTuple's field by its full path (``Jet_pt``, ``FatJet.pt``), walked from the top, part by
    part; None if it has none. uproot's own lookup (``name in tree``, ``tree[name]``, ``arrays``) lists
    every field of the RNTuple first, in time that grows with the square of their number (uproot 5.7:
    each field scans every field record for its children; #1637), seconds for a NanoAOD's 1,679 fields.
    Walking the path only lists the fields of the records on it."""
    node = tree
    for part in name.split("."):
        if not part or part not in node.keys(recursive=False):
            return None
        node = node[part]
    return node


def has(tree: Any, name: str) -> bool:
    """Whether ``tree`` has the branch (an RNTuple: the field, by its full path: ``field``) ``name``."""
    return field(tree, name) is not None if is_rntuple(tree) else name in tree


def read_columns(tree: Any, names: "list[str]", start: int | None = None, stop: int | None = None,
                 pool: Any = None) -> ak.Array:
    """Entries ``start``..``stop`` of the branches ``names`` of ``tree``, one field per name. A TTree's
    are read together (``pool``: its decompression executor). An RNTuple's field by field, each by its
    path (``field``): its ``arrays`` lists every field first (seconds on NanoAOD, at each open of the
    file), and reads a NanoAOD name twice where ROOT's importer also keeps it in a record
    (``_collection10.Jet_pt`` beside ``Jet_pt``). A record's sub-field (``FatJet.pt``) becomes the
    column ``FatJet.pt``, so it is read like a branch; fields of one record share its lists."""
    if not is_rntuple(tree):
        return tree.arrays(names, entry_start=start, entry_stop=stop, library="ak", decompression_executor=pool)
    return _read_fields(_fields(tree, names), start, stop)


def iterate_columns(tree: Any, names: "list[str]", start: int, stop: int, step: int, pool: Any = None
                    ) -> Iterator[tuple[ak.Array, int, int]]:
    """(arrays, first entry, stop) of ``names`` (``read_columns``), ``step`` entries at a time from ``start``
    to ``stop``: a TTree through uproot's ``iterate``; an RNTuple chunk by chunk, as uproot's own
    ``iterate`` does, its fields looked up once (its ``iterate`` lists every field first)."""
    if not is_rntuple(tree):
        for arrays, report in tree.iterate(names, step_size=step, entry_start=start, entry_stop=stop, library="ak",
                                           report=True, decompression_executor=pool):
            yield arrays, report.tree_entry_start, report.tree_entry_stop
        return
    fields = _fields(tree, names)
    for at in range(start, stop, step):
        end = min(stop, at + step)
        yield _read_fields(fields, at, end), at, end


def _fields(tree: Any, names: "list[str]") -> dict[str, Any]:
    """An RNTuple's fields ``names`` (``field``), each once; uproot's KeyInFileError for one it lacks (the
    checks looked for them: a file changed since, as uproot's ``arrays`` would say it)."""
    found = {name: field(tree, name) for name in dict.fromkeys(names)}
    missing = next((name for name, f in found.items() if f is None), None)
    if missing is not None:
        import uproot

        raise uproot.KeyInFileError(missing, file_path=tree.file.file_path, object_path=tree.object_path)
    return found


def _read_fields(fields: dict[str, Any], start: int | None, stop: int | None) -> ak.Array:
    return ak.zip({name: f.array(entry_start=start, entry_stop=stop, library="ak") for name, f in fields.items()},
                  depth_limit=1)


def branch_names(tree: Any) -> frozenset[str]:
    """Names ``has`` finds in ``tree``, recorded when a file is checked, so the declared inputs' branches,
    known only later, are looked for without opening it again; a name not among them is looked for in the
    tree itself. A TTree's: its branches' full paths and own names. An RNTuple's: its top-level fields
    only (a record's sub-field, ``FatJet.pt``, is looked for in the tree): listing them all costs seconds
    on NanoAOD (``field``)."""
    try:
        if is_rntuple(tree):
            return frozenset(tree.keys(recursive=False))
        return frozenset(tree.keys()) | frozenset(tree.keys(full_paths=False))
    except Exception:  # pragma: no cover - a damaged branch list: the tree itself is asked
        return frozenset()


def link_names(tree: Any) -> list[str]:
    """Names among which a NanoAOD link table and the collections it links are looked for (``hints``), without
    listing every field of an RNTuple (``field``: seconds per NanoAOD file, paid at each file's check). A TTree's:
    its branches. An RNTuple's: its top-level fields, and the sub-fields of those that are a collection's record
    (``FatJetPFCand.jetIdx``); ROOT's importer keeps every flat name at the top as well, repeated inside its
    ``_collectionN`` records, which are not walked."""
    if not is_rntuple(tree):
        return list(tree.keys())
    top = list(tree.keys(recursive=False))
    records = [name for name in top if "_" not in name]
    return top + [f"{name}.{child}" for name in records for child in tree[name].keys(recursive=False)]


def has_key(handle: Any, name: str) -> bool:
    """Whether the file's directory lists ``name`` (read from the key table, not the object itself)."""
    try:
        handle.key(name)
    except Exception:
        return False
    return True


def classname(handle: Any, name: str, default: str = "object") -> str:
    """The class of the object ``name`` as its key records it (TTree, TH1D, ROOT::RNTuple...)."""
    try:
        return str(handle.classname_of(name))
    except Exception:  # pragma: no cover - the key was read, so it names its class; just in case
        return default


# the trees CMSSW's NanoAOD writes beside Events: never the one holding the jets
_NANOAOD_METADATA = frozenset({"Runs", "LuminosityBlocks", "MetaData", "ParameterSets"})


def tree_elsewhere(handle: Any, name: str) -> str:
    """'; set source.tree: dir/Events' when the file has a tree of that name in a folder (a user's
    ntuple made with TFileService puts it under the analyzer's folder), or in another case ('events');
    else the trees it has under other names (an EDAnalyzer's 'demo/tree': the line listed the folder
    'demo' only, which is no tree to set); '' for a file without another tree."""
    base = name.strip("/").rsplit("/", 1)[-1].lower()
    try:
        found = [k.split(";")[0] for k in handle.keys(recursive=True, filter_classname=["TTree", "ROOT::RNTuple"])]
    except Exception:  # pragma: no cover - a damaged directory: the message without the hint
        return ""
    found = [k for k in dict.fromkeys(found) if k != name.strip("/")]
    same = [k for k in found if k.rsplit("/", 1)[-1].lower() == base]
    if same:
        return f"; it has {', '.join(same)}: set source.tree: {same[0]}"
    others = [k for k in found if k not in _NANOAOD_METADATA]
    if len(others) == 1:
        return f"; its tree is {others[0]}: set source.tree: {others[0]}"
    return f"; its trees: {', '.join(others)}: set source.tree to the one holding the jets" if others else ""
