"""What a file that does not match the configuration really is, and what to set: one line each.

Apart from the checks: they decide *that* a branch is missing or a link table indexes other jets;
which NanoAOD flavour, CMSSW EDM file or hltrun output the file is, and the settings that would read
it, is knowledge of other producers' layouts that changes on its own.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from hltrun.framework.errors import ConfigError, SourceError

from .parameters import JetBranches, RootJetSourceParameters
from .tree import field, has, is_rntuple

MISSING_FEATURE = "neither a derived feature nor a branch"  # a declared feature's branch absent from a file


def refuse_missing(tree: Any, names: list[str], path: str, params: RootJetSourceParameters,
                   extra: tuple[str, ...], earlier: "Mapping[str, frozenset[str]] | None" = None) -> None:
    """One line naming the branches ``tree`` lacks (and the nearest names it has). ``extra``: the
    branches the consumers' input contracts read, whose absence is a model's feature, not a setting.
    ``earlier``: the branch names of the input files checked before this one, by path."""
    missing = [n for n in names if not has(tree, n)]
    if missing:
        known = value_branches(tree.keys())
        # a branch already set for another role is no suggestion ('jet_eta' for a missing 'pf_eta')
        others = [n for n in known if n not in names]
        b = params.branches
        cand_roles = {b.cand_pt, b.cand_eta, b.cand_phi, b.cand_jet_index, b.cand_index}
        linked = linked_layout(known, b.jet_pt) if set(missing) & cand_roles else ""
        if not linked and b.jet_pt in missing:  # AK4-only PFNano with the FatJet defaults: its Jet is linked
            linked = other_jets_linked(known)
        # standard NanoAOD keeps no constituents: the nearest name of a constituent branch is then the
        # jet's own (FatJet_pt for FatJetPFCand_pt), which sends the user the wrong way. Only for NanoAOD's
        # names: a user's own ntuple (pf_pt) lacking its constituents is no NanoAOD file to remake with PFNano
        nano_cands = any("PFCand" in n for n in set(missing) & cand_roles)
        no_cands = not linked and nano_cands and not any("PFCand" in n for n in known)
        hints = [f"{m!r}" + (_nearest(m, others, m in extra) if not linked and not (no_cands and m in cand_roles)
                             else "") for m in missing]
        if set(missing) <= set(extra):  # a bad file, or (in every file) a bad feature
            said = f"feature {hints[0]} of a model's declared inputs is" if len(hints) == 1 else \
                f"features {', '.join(hints)} of a model's declared inputs are"
            raise SourceError(f"source: inputs: {said} {MISSING_FEATURE} of tree '{params.tree}' in {path}")
        process = written_by_hltrun(path)
        if process is not None:  # a second job on the first's output: no name can fix it
            raise SourceError(f"source: {path} is an hltrun output (process '{process}': run, lumi and event "
                              f"numbers, HLT_* bits and kept products, not the jets' constituents); give hltrun "
                              f"the files that job read")
        edm = edm_product(tree.keys())
        if edm is not None:  # no branch name can fix this: say what the file is and what to do
            raise SourceError(f"source: {path} is a CMSSW EDM file (MiniAOD/AOD/RECO: tree "
                              f"'{params.tree}' holds C++ objects such as '{edm}'), which hltrun cannot read "
                              f"column by column; make NanoAOD from it first (PFNano, or NanoAOD with jet "
                              f"constituents, for a constituent-based model) and give hltrun that file")
        fields = object_fields(tree.keys())
        if fields and not any("." in name for name in names):  # Delphes: a name fixes it, not another file
            raise SourceError(f"source: branch {', '.join(repr(m) for m in missing)} not found in tree "
                              f"'{params.tree}' of {path}: its branches are fields of objects, as Delphes writes "
                              f"them ({', '.join(fields[:4])}, ...): set source.branches.* to those names, the "
                              f"constituents as a collection of their own with a per-jet count branch (layout "
                              f"counts); a Delphes Jet.Constituents holds references, which hltrun cannot follow")
        cartesian = cartesian_jets(known)
        if cartesian and set(missing) & {b.jet_pt, b.jet_eta, b.jet_phi}:  # no name can fix this: no pT to read
            raise SourceError(f"source: branch {', '.join(repr(m) for m in missing)} not found in tree "
                              f"'{params.tree}' of {path}: its jets are Cartesian momenta ({cartesian}), and hltrun "
                              f"reads pT, eta, phi and mass: write those as branches first (e.g. with the vector "
                              f"package) and set source.branches.jet_* to them"
                              + ("; the file holds no jet constituents either, which the path needs (README: "
                                 "Reading your own files)" if no_cands else ""))
        scouting = next((c for c in _SCOUTING_PARTICLES if {f"{c}_pt", f"{c}.pt"} & set(known)), None)
        if scouting and not linked and set(missing) & cand_roles:  # no name can fix this: no link to follow
            raise SourceError(f"source: branch {', '.join(repr(m) for m in missing)} not found in tree "
                              f"'{params.tree}' of {path}, a Run-3 scouting NanoAOD file: {scouting_line(scouting)}")
        nested = nested_layout(tree, known) if not linked and set(missing) & {*cand_roles, b.jet_n_constituents} \
            else ""
        if nested:  # a user's ntuple of per-jet lists: not "no jet constituents", and no count to name
            raise SourceError(f"source: branch {', '.join(hints)} not found in tree '{params.tree}' of {path}: "
                              f"{nested}")
        if no_cands:
            raise SourceError(f"source: branch {', '.join(hints)} not found in tree '{params.tree}' of {path}: "
                              f"the file holds no jet constituents (no '*PFCand*' branch); NanoAOD keeps them only "
                              f"with PFNano or a constituent table: give hltrun such a file, or set "
                              f"source.branches.* to your names")
        raise SourceError(f"source: branch {', '.join(hints)} not found in tree "
                          f"'{params.tree}' of {path} (" + (linked or "set source.branches.* to your names")
                          + ("" if linked else _optional(b, [m for m, h in zip(missing, hints) if h == repr(m)])) + ")"
                          + _read_before(missing, earlier or {}, params.skipBadFiles))


def _read_before(missing: "list[str]", earlier: "Mapping[str, frozenset[str]]", skipping: bool) -> str:
    """'; <file> has them, read before it: the input files differ ...' where an earlier input file has every
    missing branch: one file of a sample made otherwise (an older production, another skim) was told to set
    source.branches to names that the other files were read with."""
    had = next((path for path, names in earlier.items() if set(missing) <= names), None)
    if had is None:
        return ""
    them = "it" if len(missing) == 1 else "them"
    return (f"; {had}, read before it, has {them}: the input files differ in their branches"
            + ("" if skipping else f" (drop this file from source.files, or set source.skipBadFiles: true to skip the "
                                   f"files that lack {them})"))


def _optional(b: JetBranches, unmatched: "list[str]") -> str:
    """'; or, where the file has none, ...: null' for the optional branches (event ids, jet mass) missing without a
    near name: an analyzer's ntuple often keeps none, and "set source.branches.* to your names" named nothing it
    could set. A null jet mass is refused where a model reads it (``checks``): a hint that cannot mislead."""
    roles = [role for role in ("run", "luminosityBlock", "event", "jet_mass") if getattr(b, role) in unmatched]
    if not roles:
        return ""
    ids = [r for r in roles if r != "jet_mass"]
    return (f"; or, where the file has none, source.branches: {{{', '.join(f'{r}: null' for r in roles)}}} "
            + ("(a null id reads as run 1, lumi 1, event entry + 1)" if ids else "(no jet mass read)"))


def _nearest(name: str, branches: list[str], declared: bool) -> str:
    """``" (did you mean 'x'?)"`` for the known name nearest a missing one, or nothing. A model's declared feature
    may also be a derived one misspelt ('erel' for e_rel): the line suggested no name for it, as no branch is near."""
    import difflib

    from hltrun.modules.contract import CONSTITUENT_FEATURES, JET_FEATURES

    pool = dict.fromkeys(branches, "")
    if declared:
        pool.update({f: "the derived feature " for f in [*CONSTITUENT_FEATURES, *JET_FEATURES] if f not in pool})
    close = difflib.get_close_matches(name, list(pool), n=1)
    if close:
        return f" (did you mean {pool[close[0]]}{close[0]!r}?)"
    # a record's sub-field by its bare name ('mass' for an RNTuple's 'FatJet.mass'): too short to be near its path
    by_path = [b for b in branches if "." in b and b.rsplit(".", 1)[1] == name]
    return f" (did you mean {' or '.join(repr(b) for b in by_path[:3])}?)" if by_path else ""


def nested_layout(tree: Any, names: "list[str]") -> str:
    """The settings that read a tree keeping each jet's constituents as a list per jet (an analyzer's or an
    uproot user's ``std::vector<std::vector<float>>`` ``jet_const_pt``), as a hint; '' for other trees. Such a
    file was told it "holds no jet constituents" and to make PFNano, or, with its names set but layout counts,
    to name a per-jet count branch it has no need of. Only pt/eta/phi-like names are looked up (an RNTuple
    NanoAOD's lookups cost: ``tree.field``), by their type name, without reading them."""
    lists: dict[str, str] = {}
    for name in names:
        if name.lower().endswith(("pt", "eta", "phi")):
            node = field(tree, name) if is_rntuple(tree) else tree[name]
            typename = str(getattr(node, "typename", ""))
            if len(re.findall(r"(?:vector|RVec)<", typename)) >= 2:
                lists[name] = typename
    lower = {name.lower(): name for name in lists}  # jet_const_pt, jet_const_eta; Const_PT, Const_Eta
    for pt in lists:
        stem = pt[:-2].lower()
        eta, phi = lower.get(stem + "eta"), lower.get(stem + "phi")
        if pt.lower().endswith("pt") and eta and phi:
            return (f"the file keeps each jet's constituents as a list per jet ('{pt}' is {lists[pt]}): set "
                    f"source.layout: nested and source.branches: {{cand_pt: {pt}, cand_eta: {eta}, cand_phi: {phi}}} "
                    f"(layout nested reads no per-jet count)")
    return ""


def object_fields(names: "list[str]") -> list[str]:
    """The fields of split object branches (``Jet.PT`` of ``Jet``, as Delphes' TClonesArrays store them),
    momenta first; [] for a flat tree. uproot lists them as ``Jet/Jet.PT`` and reads them as ``Jet.PT``."""
    fields = [name.rsplit("/", 1)[1] for name in names
              if "/" in name and name.rsplit("/", 1)[1].startswith(name.split("/", 1)[0] + ".")]
    fields = [f for f in fields if not f.endswith((".fUniqueID", ".fBits"))]  # TObject's own members
    return sorted(fields, key=lambda f: not f.lower().endswith(".pt"))


def cartesian_jets(names: "list[str]") -> str:
    """``'Jet_Px', 'Jet_Py', 'Jet_Pz', 'Jet_E'``: the branches of a jet collection stored as Cartesian momenta
    (the CMS HEP tutorial's open-data trees), which no ``source.branches`` name can read as pT, eta, phi; ''
    for a file without one, or whose collection has a pT branch too."""
    known = set(names)
    found = [(stem, c[0]) for stem, _, c in (name.rpartition("_") for name in names)
             if c in ("Px", "px") and "jet" in stem.lower()  # muons as Px/Py/Pz are not the jets'
             and {f"{stem}_{c[0]}y", f"{stem}_{c[0]}z"} <= known
             and not any(f"{stem}_{pt}" in known for pt in ("pt", "Pt", "PT"))]  # with a pT: a name is misspelt
    if not found:
        return ""
    stem, p = found[0]
    energy = next((f"{stem}_{e}" for e in ("E", "e") if f"{stem}_{e}" in known), None)
    return ", ".join(repr(n) for n in (f"{stem}_{p}x", f"{stem}_{p}y", f"{stem}_{p}z", energy) if n)


def value_branches(names: "list[str]") -> list[str]:
    """The branches that may be meant for a kinematic one: NanoAOD counters (``nFatJet`` beside
    ``FatJet_pt``) never are, and "did you mean 'nFatJetPFCand'?" sends the user the wrong way."""
    counters = {"n" + name.split("_", 1)[0] for name in names if "_" in name}
    return [name for name in names if name not in counters]


# CMSSW's own addPFCands_cff (JMENano before jetConstituents_cff) names its link tables by jet size, not
# by the jets' collection: JetPFCandsAK8_jetIdx / _candIdx link FatJet, JetPFCandsAK4_* link Jet
_SIZED_TABLES = {"FatJet": "JetPFCandsAK8", "Jet": "JetPFCandsAK4"}


def link_settings(names: "list[str]", jet_pt: str) -> str:
    """``source.branches`` settings, ``{cand_jet_index: ..., cand_pt: ...}``, for a (PFNano-like) file whose
    constituents are linked to the jets of ``jet_pt`` by a ``<Jet>PFCand(s)_jetIdx`` table, directly or
    through an index into ``PFCand(s)_*``; '' for other files. Each producer spells them its own way
    (PFNano ``FatJetPFCands_pFCandsIdx``, NanoAOD's jetConstituents_cff ``FatJetPFCand_pfCandIdx``, CMSSW's
    addPFCands_cff ``JetPFCandsAK8_candIdx``), so they are read from the file, not assumed."""
    jet = jet_pt.rsplit("_", 1)[0]
    link = next((n for n in names if n.endswith("_jetIdx")
                 and (n.startswith(jet + "PFCand") or n[:-len("_jetIdx")] == _SIZED_TABLES.get(jet))), None)
    if link is None:
        return ""
    table = link.rsplit("_", 1)[0]
    index = next((n for n in names if n.startswith(table + "_") and n.lower().endswith("idx") and n != link), None)
    cands = next((c for c in ("PFCands", "PFCand") if f"{c}_pt" in names), None) if index else table
    if cands is None or f"{cands}_pt" not in names:
        return ""
    settings = f"cand_jet_index: {link}" + (f", cand_index: {index}" if index else "")
    return f"{{{settings}, cand_pt: {cands}_pt, cand_eta: {cands}_eta, cand_phi: {cands}_phi}}"


def linked_layout(names: "list[str]", jet_pt: str) -> str:
    """The settings (``link_settings``) of a file whose constituents are linked to the jets by index, as a hint."""
    settings = link_settings(names, jet_pt)
    return (f"the file links constituents to jets by index: set source.layout: jet_index and source.branches: "
            f"{settings}") if settings else ""


def other_jets_linked(names: "list[str]") -> str:
    """The settings of a file whose jets of another collection than the configured one have their constituents
    linked by index (PFNano made for AK4 jets only: ``Jet_*``, ``JetPFCands_*``, no ``FatJet``), as a hint; ''
    where none has. The line said "did you mean 'PFCands_pt'?", whose layout counts the source then refused."""
    for jets in dict.fromkeys(link_owner(n) for n in names if re.search(r"[._]jetIdx$", n)):
        settings = link_settings(names, f"{jets}_pt") if jets and f"{jets}_pt" in names else ""
        if settings:
            mass = f", jet_mass: {jets}_mass" if f"{jets}_mass" in names else ", jet_mass: null"
            return (f"the file's jets with constituents are '{jets}', linked to them by index: set source.layout: "
                    f"jet_index and source.branches: {{jet_pt: {jets}_pt, jet_eta: {jets}_eta, jet_phi: {jets}_phi"
                    f"{mass}, {settings[1:]}")
    return ""


# a NanoAOD link table's jet index: <jets>PFCands_jetIdx (PFNano), <jets>PFCand_jetIdx (JME/BTV NanoAOD)
_LINK_TABLE = re.compile(r"^(?P<jets>.+?)PFCands?[._]jetIdx$")


def link_owner(jet_index: str) -> str | None:
    """The jet collection a NanoAOD link table's jet index belongs to, by its name (``FatJet`` for
    ``FatJetPFCands_jetIdx`` and for CMSSW's ``JetPFCandsAK8_jetIdx``); None for a name of another kind."""
    found = _LINK_TABLE.match(jet_index)
    if found:
        return found.group("jets")
    table = re.split(r"[._]jetIdx$", jet_index)[0]
    return next((jets for jets, sized in _SIZED_TABLES.items() if sized == table and table != jet_index), None)


def refuse_foreign_links(listed: "Callable[[], list[str]]", b: JetBranches, path: str) -> None:
    """``jet_index``: a NanoAOD link table whose name says it indexes another jet collection of the file
    (AK4 ``Jet_pt`` with AK8 ``FatJetPFCands_jetIdx``, the user having changed the jet names only) is a
    configuration error. Its indices are the other collection's, mostly valid ones in this collection
    too, so every constituent would go to the wrong jet without an invalid link to show it. ``listed``
    gives the file's branch names, asked only where the link table's name is another collection's: an
    RNTuple NanoAOD's listing costs seconds (``tree.field``)."""
    jets = re.split(r"[._]", b.jet_pt)[0] if re.search(r"[._]", b.jet_pt) else b.jet_pt
    owner = link_owner(b.cand_jet_index)
    if owner is None or owner == jets:
        return
    names = listed()
    if not {f"{owner}_pt", f"{owner}.pt"} & set(names):
        return
    settings = link_settings(names, b.jet_pt)
    raise ConfigError(f"source.branches.cand_jet_index: '{b.cand_jet_index}' links constituents to the '{owner}' jets "
                      f"of {path}, not to '{jets}' (source.branches.jet_pt: {b.jet_pt}); "
                      + (f"set source.branches: {settings}" if settings else
                         f"set the link table of the '{jets}' jets, or jet_pt/eta/phi/mass to '{owner}_*'"))


# an EDM product branch: <friendly class>_<module label>_<instance>_<process>. (e.g. patJets_slimmedJetsAK8__PAT.)
_EDM_PRODUCT = re.compile(r"^[A-Za-z0-9]+_[A-Za-z0-9]+_[A-Za-z0-9]*_[A-Za-z0-9]+\.$")


def edm_product(branches: "list[str]") -> str | None:
    """A branch that marks a CMSSW EDM (MiniAOD/AOD) tree, a jet collection's if there is one; None for a
    flat ntuple. Such a tree stores C++ objects per event that uproot cannot read as columns, so a
    user asking it for ``FatJet_pt`` must be told to make NanoAOD first, not to rename branches."""
    products = [name for name in branches if _EDM_PRODUCT.match(name)]
    if not products:
        return "EventAuxiliary" if "EventAuxiliary" in branches else None
    return next((name for name in products if "Jets_" in name), products[0])


# branches that only CMSSW's NanoAOD writes: its MET filter flags and the trigger table's first/last path
_NANOAOD_MARKS = ("Flag_", "HLTriggerFirstPath", "HLTriggerFinalPath")


def cmssw_file(branches: "list[str]", trees: "list[str]") -> str | None:
    """What CMSSW file a tree with ``branches`` (in a file holding ``trees``) is, as 'a CMSSW ... file (...)',
    or None. For the tools that read hltrun outputs (hltdiff): a NanoAOD file has HLT_* bits too (the CMS
    menu's hundreds), which read as an output that differs in every product; an EDM file as one that
    lacks its run, lumi and event branches, without saying why."""
    edm = edm_product(branches)
    if edm is not None:
        return f"a CMSSW EDM file (MiniAOD/AOD/RECO: its events hold C++ objects such as '{edm}')"
    mark = next((name for name in branches if name.startswith(_NANOAOD_MARKS)), None)
    if mark is None and {"MetaData", "ParameterSets"} <= {t.split(";")[0] for t in trees}:
        mark = "ParameterSets"
    if mark is None:
        return None
    bits = sum(name.startswith("HLT_") for name in branches)
    return f"a CMSSW NanoAOD file ({bits} HLT_* bits of the CMS trigger menu, NanoAOD's '{mark}')"


def written_by_hltrun(path: str) -> str | None:
    """The process of an hltrun output (its ``Process`` TObjString), None for any other file."""
    from ..root_output import read_process

    try:
        return read_process(path)
    except Exception:  # pragma: no cover - the file opened a moment ago: then not an output we can name
        return None


def _collection(name: str) -> str:
    """The NanoAOD collection of a branch: ``PFCand`` of ``PFCand_pt`` (``PFCand.pt`` in an RNTuple)."""
    return re.split(r"[._]", name, maxsplit=1)[0]


def _pool_index(names: "list[str]", cands: str, jets: str) -> tuple[str, str] | None:
    """A link table's jet index and index into the collection ``cands`` (``FatJetPFCand_pfCandIdx`` into
    ``PFCand``, ``FatJetPFCands_pFCandsIdx`` into ``PFCands``, CMSSW's ``JetPFCandsAK8_candIdx`` into
    ``PFCands``, ``GenJetAK8GenPartCand_genPartCandIdx`` into ``GenPartCand``), the index field naming the
    collection it points into, the table of the ``jets`` first; None where no link table of the file does."""
    def bare(name: str) -> str:
        return name.lower().rstrip("s")

    found_any = []
    for link in sorted(names, key=lambda n: not n.startswith(jets)):
        found = re.match(r"^(?P<table>.+)[._]jetIdx$", link)
        if not found or found.group("table") == cands:
            continue
        table = found.group("table")
        for index in names:
            field = re.match(rf"^{re.escape(table)}[._](?P<into>\w+)Idx$", index)
            into = bare(field.group("into")) if field and index != link else None
            # CMSSW's addPFCands_cff's ``candIdx`` points into its ``PFCands`` only: a collection of another
            # name (the user's own jet-ordered ``AK8PFCand`` or ``Cand``) that merely shares the file is no pool
            if into and ("pfcand" if into == "cand" else into) == bare(cands):
                found_any.append((link, index))
    return found_any[0] if found_any else None


# Run-3 scouting NanoAOD (PhysicsTools/NanoAOD/python/run3scouting_cff.py): the event's particles, in the
# HLT's order, which no table links to ScoutingPFJet or to the reclustered ScoutingFatPFJetRecluster jets
_SCOUTING_PARTICLES = ("ScoutingParticle", "ScoutingPFCandidate")


def refuse_pooled_candidates(names: "list[str]", b: JetBranches, path: str) -> None:
    """``counts``: the constituents must be stored jet after jet, each jet's ``jet_n_constituents`` of them.
    A collection that a link table indexes (NanoAOD's ``PFCand``, PFNano's ``PFCands``) is a pool shared
    by the AK4 and AK8 jets in the order of the packed candidates, and Run-3 scouting's particles are the
    whole event's: where the counts happen to add up to the pool (every jet's constituents kept, one jet
    collection), every constituent went to the wrong jet without a word. A configuration error."""
    cands = _collection(b.cand_pt)
    pool = _pool_index(names, cands, _collection(b.jet_pt))
    if pool is not None:
        link, index = pool
        settings = link_settings(names, b.jet_pt) or (
            f"{{cand_jet_index: {link}, cand_index: {index}, cand_pt: {b.cand_pt}, cand_eta: {b.cand_eta}, "
            f"cand_phi: {b.cand_phi}}}")
        raise ConfigError(f"source.layout: counts reads '{b.cand_pt}' of {path} as the jets' constituents stored jet "
                          f"after jet, but '{cands}' is a pool of candidates indexed by the link table '{index}' (not "
                          f"in jet order: '{b.jet_n_constituents}' would give its candidates to the wrong jets); set "
                          f"source.layout: jet_index and source.branches: {settings}")
    if cands in _SCOUTING_PARTICLES:
        raise ConfigError(f"source.layout: counts reads '{b.cand_pt}' of {path} as the jets' constituents stored jet "
                          f"after jet, but {scouting_line(cands)}")


def scouting_line(cands: str = "ScoutingPFCandidate") -> str:
    """Why a Run-3 scouting NanoAOD file gives no jet its constituents, and what would."""
    return (f"'{cands}' holds the whole event's scouting particles, which Run-3 scouting NanoAOD links to no jet "
            f"(ScoutingPFJet, ScoutingFatPFJetRecluster: their nConstituents count them, not say which): hltrun "
            f"cannot build the jets' constituents from it; recluster the particles and write the jets' constituents "
            f"as a link table (jetIdx and an index into '{cands}', then layout jet_index) or as per-jet lists "
            f"(layout nested)")
