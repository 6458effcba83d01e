"""What a model reads, as data: the declared input contract (issue 19, docs/your-model.md).

A model's inputs are declared per input tensor: its name, what it holds (constituents of each jet,
features of the jet itself, or values of the jet's event), the constituent count, the features in order
(each a quantity derived from the jet and its constituents, or a branch of the input file: a jet-level
input's ``per_event`` features and every feature of ``kind: event`` are branches of one value per event,
repeated for each scored jet of the event), the padding value, the ordering and the memory layout. The
declaration comes from the scorer's configuration (``inputs:``), else from the model's own ONNX metadata
(``metadata_props['hltrun.inputs']``, written by ``tools/physics/export_onnx.py`` for the shipped models),
else it is the shipped one: one (N, n_constituents, 3) input of (Δη, Δφ, pT). It is checked against the
model's real input shapes at begin_job (``match_model``), and the source builds exactly what it declares,
per chunk (``modules/jets.py``).

Why a closed vocabulary of derived features plus branch names: every derived quantity is computed
in one place (``modules/features.py``) the same way for training and for the trigger path, and any
other per-constituent or per-jet quantity a file carries (PFNano's ``PFCands_charge``, ``_d0``,
``_puppiWeight``...) is read as it is, by name, with nothing to register.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.framework.schema import build, limited

from .source.parameters import RootJetSourceParameters

# the constituents per jet the source keeps by default (``source.max_constituents``): a wider input needs it raised
SOURCE_KEEPS: int = RootJetSourceParameters.__dataclass_fields__["max_constituents"].default

METADATA_KEY = "hltrun.inputs"  # ONNX metadata_props key holding the contract as JSON

# per-constituent quantities computed from (pT, η, φ) and the jet axis (modules/features.py)
CONSTITUENT_FEATURES: dict[str, str] = {
    "pt": "constituent pT [GeV]",
    "eta": "constituent η",
    "phi": "constituent φ",
    "deta": "η - η_jet",
    "dphi": "φ - φ_jet, wrapped into [-π, π)",
    "dr": "sqrt(Δη² + Δφ²)",
    "log_pt": "log(pT)",
    "px": "pT cos φ [GeV]",
    "py": "pT sin φ [GeV]",
    "pz": "pT sinh η [GeV]",
    "e": "energy, massless: pT cosh η [GeV]",
    "log_e": "log(E)",
    "pt_rel": "pT / pT_jet",
    "log_pt_rel": "log(pT / pT_jet)",
    "e_rel": "E / E_jet (E_jet from pT, η and mass)",
    "log_e_rel": "log(E / E_jet)",
    "mask": "1 for a constituent, 0 for padding",
}
# per-jet quantities (kind: jet)
JET_FEATURES: dict[str, str] = {
    "pt": "jet pT [GeV]",
    "eta": "jet η",
    "phi": "jet φ",
    "mass": "jet mass [GeV]",
    "log_pt": "log(pT)",
    "e": "jet energy from pT, η and mass [GeV]",
    "log_e": "log(E)",
    "n_constituents": "constituents of the jet (before truncation)",
}
# per-event quantities (kind: event, a jet-level input's per_event): no derived ones, a branch of one value per
# event read by name (NanoAOD's Rho_fixedGridRhoFastjetAll, PV_npvs, MET_pt)
# the derived features computed from the jet mass (features.py): a source reading none (jet_mass: null) would
# give them a mass of 0, silently
JET_MASS_FEATURES = {"jet": ("mass", "e", "log_e"), "constituents": ("e_rel", "log_e_rel")}
SHIPPED_FEATURES = ("deta", "dphi", "pt")  # what the shipped VAEs read
ABSOLUTE_FEATURES = ("eta", "phi", "pt")  # the batcher's ``relative: false``


@dataclass
class InputDeclaration:
    """One model input as the configuration (or the model's metadata) declares it."""

    name: str | None = None  # the model's input tensor name; null: the model's only input
    kind: Literal["constituents", "jet", "event"] = "constituents"
    features: list[str] = field(default_factory=lambda: list(SHIPPED_FEATURES))
    # kind jet: the features (of ``features``) that are branches of one value per event, each jet getting its
    # event's value (kind event: every feature is one; constituents: none). Said, never guessed from the file
    per_event: list[str] = field(default_factory=list)
    n_constituents: int = limited(100, 1, 10_000)  # constituents: rows per jet (truncated / padded)
    pad_value: float = 0.0  # every feature of a padded row (``mask`` is 0 there)
    order: Literal["pt", "file"] = "pt"  # constituents: decreasing pT, or as stored in the file
    layout: Literal["NCF", "NFC"] = "NCF"  # constituents: (N, C, F) or channels first (N, F, C)

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("features: give at least one")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"features: {self.features} lists one twice")
        if self.kind != "constituents" and "mask" in self.features:
            raise ValueError("features: mask is a constituent feature (kind: constituents)")
        if self.kind == "event":
            if self.per_event:
                raise ValueError("per_event: every feature of kind: event is per event; leave per_event out")
            derived = [f for f in self.features if f in JET_FEATURES]
            if derived:  # 'pt' of an event is no quantity hltrun derives: the user meant a jet's, or a branch
                raise ValueError(f"features: {derived[0]!r} is a jet feature (kind: jet); an input of kind: event "
                                 f"reads branches of one value per event by name (Rho_fixedGridRhoFastjetAll, PV_npvs)")
        if self.per_event and self.kind != "jet":
            raise ValueError("per_event: per-event values are features of a jet-level input (kind: jet) or of an "
                             "input of kind: event, not of constituents")
        unknown = [f for f in self.per_event if f not in self.features]
        if unknown:
            raise ValueError(f"per_event: {unknown[0]!r} is not one of the input's features {self.features}: list it "
                             f"in features, where the model reads it, and in per_event")
        derived = [f for f in self.per_event if f in JET_FEATURES]
        if derived:
            raise ValueError(f"per_event: {derived[0]!r} is a derived jet feature, one value per jet; per_event names "
                             f"branches of one value per event (Rho_fixedGridRhoFastjetAll, PV_npvs)")
        if len(set(self.per_event)) != len(self.per_event):
            raise ValueError(f"per_event: {self.per_event} lists one twice")


@dataclass(frozen=True)
class ModelInput:
    """One declared input, frozen (hashable: the source caches what it prepared by contract). The
    tensor name takes no part in equality: two models reading the same features share one prepared array."""

    name: str | None = field(compare=False)
    kind: str
    features: tuple[str, ...]
    n_constituents: int
    pad_value: float
    order: str
    layout: str
    per_event: tuple[str, ...] = ()  # the features read from branches of one value per event (kind event: all)

    @property
    def width(self) -> int:
        return len(self.features)

    def shape(self, n: int) -> tuple[int, ...]:
        """The array shape for ``n`` jets."""
        if self.kind != "constituents":  # jet, event: one row per jet
            return (n, self.width)
        c, f = self.n_constituents, self.width
        return (n, c, f) if self.layout == "NCF" else (n, f, c)

    def branches(self) -> tuple[str, ...]:
        """The features that are branches of the input's own collection (jets, constituents), not derived
        quantities nor per-event branches."""
        known = JET_FEATURES if self.kind == "jet" else CONSTITUENT_FEATURES
        return tuple(f for f in self.features if f not in known and f not in self.per_event)

    def file_branches(self) -> tuple[str, ...]:
        """Every feature read from the file by name, in the features' order: the collection's branches and the
        per-event ones (whose values, a vertex count, are the user's as much as a constituent's charge)."""
        own = self.branches()
        return tuple(f for f in self.features if f in own or f in self.per_event)

    def shown_features(self) -> str:
        """The features as the user declared them, a jet-level input's per-event ones marked so."""
        mark = self.kind == "jet"
        return ", ".join(f"{f} (per event)" if mark and f in self.per_event else f for f in self.features)

    def describe(self) -> str:
        dims = "N, " + ", ".join(str(d) for d in self.shape(0)[1:])
        return f"{self.name or 'input'} ({dims}): {self.kind} [{self.shown_features()}]"


@dataclass(frozen=True)
class Contract:
    """Every input a model reads, in the model's input order once matched (``match_model``)."""

    inputs: tuple[ModelInput, ...]
    origin: str = field(default="default", compare=False)  # config | model metadata | default: logged, reported

    @property
    def n_constituents(self) -> int:
        """Constituent rows read per jet (the most any input holds; 0 if only jet-level inputs)."""
        return max((i.n_constituents for i in self.inputs if i.kind == "constituents"), default=0)

    def constituent_branches(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(b for i in self.inputs if i.kind == "constituents" for b in i.branches()))

    def jet_branches(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(b for i in self.inputs if i.kind == "jet" for b in i.branches()))

    def event_branches(self) -> tuple[str, ...]:
        """The branches of one value per event the inputs read (kind event, a jet-level input's per_event)."""
        return tuple(dict.fromkeys(b for i in self.inputs for b in i.per_event))

    def jet_mass_features(self) -> tuple[str, ...]:
        """The derived features the inputs compute from the jet mass (``JET_MASS_FEATURES``)."""
        return tuple(dict.fromkeys(f for i in self.inputs for f in i.features
                                   if f in JET_MASS_FEATURES.get(i.kind, ()) and f not in i.per_event))

    def is_shipped(self) -> bool:
        """One (N, C, 3) input of (Δη, Δφ, pT) or (η, φ, pT) with the defaults: the original fast layout."""
        if len(self.inputs) != 1:
            return False
        i = self.inputs[0]
        return (i.kind == "constituents" and i.features in (SHIPPED_FEATURES, ABSOLUTE_FEATURES)
                and i.pad_value == 0.0 and i.order == "pt" and i.layout == "NCF")

    def to_json(self) -> str:
        """The form stored in a model's ONNX metadata (``METADATA_KEY``)."""
        return json.dumps([{"name": i.name, "kind": i.kind, "features": list(i.features)}
                           | ({"per_event": list(i.per_event)} if i.kind == "jet" and i.per_event else {})
                           | ({"n_constituents": i.n_constituents, "pad_value": i.pad_value, "order": i.order,
                               "layout": i.layout} if i.kind == "constituents" else {}) for i in self.inputs])


def arranged(arrays: Any, source: Contract, target: Contract) -> Any:
    """One array per input of ``source`` (in its order), handed in ``target``'s order, by input name: two engines
    of one model order its inputs their own ways (ONNX as exported, a TFLite signature by name), and the same jets
    are fed to both by name, never by position. One array (one input) is returned as it is."""
    if not isinstance(arrays, tuple) or [i.name for i in source.inputs] == [i.name for i in target.inputs]:
        return arrays
    by_name = dict(zip((i.name for i in source.inputs), arrays))
    return tuple(by_name[i.name] for i in target.inputs)


def freeze(declarations: Sequence[InputDeclaration], origin: str) -> Contract:
    """The frozen contract of validated declarations."""
    inputs = tuple(ModelInput(d.name, d.kind, tuple(d.features), d.n_constituents if d.kind == "constituents" else 0,
                              float(d.pad_value), d.order, d.layout,
                              tuple(d.features) if d.kind == "event" else tuple(d.per_event)) for d in declarations)
    names = [i.name for i in inputs]
    orders = {i.order for i in inputs if i.kind == "constituents"}
    if len(orders) > 1:  # one sorting of a jet's constituents serves every input of a model
        raise ConfigError(f"inputs ({origin}): the constituent inputs of one model share one order, got {sorted(orders)}")
    if len(inputs) > 1 and (None in names or len(set(names)) != len(names)):
        raise ConfigError(f"inputs ({origin}): with several inputs each needs its own name (the model's input "
                          f"tensor names), got {names}")
    return Contract(inputs, origin)


def default_contract(n_constituents: int = 100, relative: bool = True) -> Contract:
    """The shipped models' input: (N, n_constituents, 3) of (Δη, Δφ, pT), or (η, φ, pT)."""
    features = SHIPPED_FEATURES if relative else ABSOLUTE_FEATURES
    return Contract((ModelInput(None, "constituents", features, n_constituents, 0.0, "pt", "NCF"),), "default")


def parse(data: Any, where: str, origin: str) -> Contract:
    """A contract from plain data (a list of input mappings, or one mapping): one line naming the key."""
    items = [data] if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: expected a list of inputs, got {type(data).__name__}")
    return freeze([build(InputDeclaration, item, f"{where}[{k}]") for k, item in enumerate(items)], origin)


def from_metadata(metadata: Mapping[str, str], model: Path) -> Contract | None:
    """The contract a model carries in its ONNX metadata, or None."""
    text = metadata.get(METADATA_KEY)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ModuleError(f"model {model}: metadata '{METADATA_KEY}' is not JSON ({exc})") from None
    try:
        return parse(data, f"model {model} metadata '{METADATA_KEY}'", "model metadata")
    except ConfigError as exc:
        raise ModuleError(str(exc)) from None


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` (without reading its weights into a session); {} for other files."""
    if path.suffix != ".onnx" or not path.is_file():
        return {}
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # the backend's load reports an unreadable model in its own words
        return {}
    return {p.key: p.value for p in model.metadata_props}


def _dims(shape: Sequence[Any]) -> tuple[int | None, ...]:
    return tuple(None if (d is None or isinstance(d, str) or (isinstance(d, int) and d < 0)) else int(d)
                 for d in shape)


def _shown(dims: Sequence[int | None]) -> str:
    """A shape as the user reads it: the batch axis N when dynamic, another dynamic axis ``?``; a shape
    without dimensions (an input of unknown rank, or a scalar) reads "()"."""
    if not dims:
        return "()"
    return "(" + ", ".join(["N" if dims[0] is None else str(dims[0])]
                           + ["?" if d is None else str(d) for d in dims[1:]]) + ")"


WRITTEN = "hltinputs --write"  # the origin of a declaration being checked before it is stored in a model

DECLARE = ("declare the model's inputs in the scorer's inputs: or in its ONNX metadata "
           f"'{METADATA_KEY}' (docs/your-model.md)")


def _declared(contract: Contract, decl: ModelInput) -> str:
    what = f"{decl.kind} {_shown((None, *decl.shape(0)[1:]))} [{decl.shown_features()}]"
    return {"default": f"hltrun feeds its shipped input, {what}",
            "config": f"the configuration's inputs declare {what}",
            "model metadata": f"its metadata '{METADATA_KEY}' declares {what}",
            WRITTEN: f"{WRITTEN} declares {what}"}.get(contract.origin, what)


def match_model(contract: Contract, model_inputs: Sequence[tuple[str, Sequence[Any]]], model: Path) -> Contract:
    """The contract reordered as the model's inputs, each checked against the model's real shape.

    ``model_inputs`` are (name, shape) in the model's order, dynamic dimensions as None or a string.
    A declaration without a name matches a model with one input. Every mismatch is one line naming the
    input, the shape the model takes and the one declared, and how to declare it."""
    names = [n for n, _ in model_inputs]
    by_name = {i.name: i for i in contract.inputs}
    if len(contract.inputs) == 1 and contract.inputs[0].name is None:
        if len(model_inputs) != 1:
            raise ModuleError(f"model {model} has {len(names)} inputs {names}; {_declared(contract, contract.inputs[0])}"
                              f" only: {DECLARE}")
        by_name = {names[0]: contract.inputs[0]}
    unknown = sorted(set(by_name) - set(names))
    if unknown:
        raise ModuleError(f"model {model} has no input {unknown[0]!r} (declared in {contract.origin}); its inputs "
                          f"are {names}")
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ModuleError(f"model {model}: input {missing[0]!r} is not declared ({contract.origin} declares "
                          f"{sorted(by_name)}): {DECLARE}")
    ordered = []
    for name, shape in model_inputs:
        decl = by_name[name]
        dims = _dims(shape)
        want = decl.shape(0)[1:]
        if not dims:  # ONNX Runtime shows an input of unknown rank as [], as it shows a scalar
            raise ModuleError(f"model {model} input {name!r} has no shape (unknown rank, or a scalar); "
                              f"{_declared(contract, decl)}: export the model with its input's shape, "
                              f"{_shown((None, *want))} with a dynamic first axis")
        flat = decl.kind == "constituents" and len(dims) == 2  # (N, F): per-jet values, or constituents flattened
        if (len(dims) == len(want) + 1 or flat) and dims[0] is not None:
            raise ModuleError(f"model {model} takes a fixed batch of {dims[0]} jet(s), input shape "
                              f"{_shown(dims)} ({name!r}); hltrun sends a variable number of jets per call: export it with a "
                              f"dynamic first axis (torch.onnx.export(..., dynamic_axes={{input: {{0: 'N'}}}}), or "
                              f"tf2onnx or the TFLite converter with a None batch dimension)")
        if flat:
            values = "values" if dims[1] is None else f"{dims[1]} values"
            raise ModuleError(f"model {model} takes input {name!r} of shape {_shown(dims)}, a flat input; "
                              f"{_declared(contract, decl)}: if it holds {values} per jet (pt, mass, a jet branch "
                              f"such as FatJet_tau21), declare it with kind: jet and those features (hltinputs "
                              f"--write, or the scorer's inputs:; docs/your-model.md); if it holds constituents "
                              f"(fed as (N, C, F), layout NCF, or (N, F, C), layout NFC), give the model an "
                              f"(N, C, F) input and flatten it inside, its first op a reshape to {_shown(dims)} "
                              f"(keras.layers.Flatten(), torch's x.flatten(1)), then export it again")
        if len(dims) != len(want) + 1 or any(d is not None and d != w for d, w in zip(dims[1:], want)):
            hint = ""
            if contract.origin == "default" and len(dims) == 3 and dims[2] == decl.width and dims[1] is not None:
                kept = SOURCE_KEEPS  # past it the source's own setting too: it said so only on the next run
                wider = f", and source.max_constituents: {dims[1]} (the source keeps {kept} per jet unless told)"
                hint = (f" (if it reads [{', '.join(decl.features)}] per constituent, set the batcher's "
                        f"n_constituents: {dims[1]}{wider if dims[1] > kept else ''})")
            raise ModuleError(f"model {model} takes input {name!r} of shape {_shown(dims)}; "
                              f"{_declared(contract, decl)}{hint}: {DECLARE}")
        ordered.append(replace(decl, name=name))
    return Contract(tuple(ordered), contract.origin)
