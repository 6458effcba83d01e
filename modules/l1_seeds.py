"""L1 seeding emulated from the event content (an HLTL1TSeed-like filter for samples without L1 data).

A path of the menu begins with the L1 seed it is fed by. Real L1 seeds are decided by the Global
Trigger from L1 objects; here the objects are built from the event's offline jets:

* ``single_jet``: the leading jet within ``eta_max`` (L1 jet pT);
* ``htt``: the scalar sum of the pT of jets above ``jet_pt_min`` within ``eta_max`` (L1 HTT).

The L1 energy scale is worse than offline: with ``resolution`` set, each object's value is smeared
by a Gaussian of relative width ``sqrt((stochastic/sqrt(x))^2 + constant^2)`` before the threshold,
so the efficiency vs offline pT is a turn-on, not a step. The smearing is drawn from a generator
seeded by the event's (run, lumi, event) and the seed's name, so a decision never depends on how
events are split over streams or Dask workers, and a rerun gives the same decisions.

Seeds are named in the configuration; a name of CMS's form (``L1_SingleJet180``, ``L1_HTT360``)
defines itself, others are given explicitly. The filter accepts an event by an expression over seed
names with ``AND``, ``OR``, ``NOT`` and parentheses, as ``L1SeedsLogicalExpression`` does.

Cost: a seed is paid per event, so the decisions are made per *chunk* of the source, with numpy
(``L1SeedFilter._take``, when a chunk's first event comes): the L1 objects of every event of the chunk at once, the smearing hashes in one
tight loop (the one per-event Python left: BLAKE2b has no vectorised form), the expression over whole
arrays. The event then costs a look-up. The chunk's decisions are shared by every seed module and
stream of the process (``_SHARED``): a seed used by two modules (``L1_SingleJet180`` alone and in an
``OR``) is smeared once. Decisions are bit for bit those of the per-event functions ``l1_value`` /
``smear`` (kept as the reference, and used for events not from a source chunk): same float64
comparisons, the same summation order as ``sum``, and any smeared value within 1e-9 of its threshold
recomputed by ``smear`` itself (numpy's log/cos may differ from libm's in the last bits).
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np

from hltrun.framework.event import Event
from hltrun.framework.module import Filter
from hltrun.framework.schema import InputTag, limited
from hltrun.framework.weights import event_weight, excess

from .products import JetCollection

TURN_ON_BIN_GEV = 25  # bins of the efficiency vs offline leading-jet pT (the report's turn-on plot)
SEED_NAME = re.compile(r"^L1_(SingleJet|HTT)(\d+(?:p\d+)?)$")
TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Resolution:
    """Relative resolution of the L1 object's value: stochastic term (GeV^1/2) and constant term."""

    stochastic: float = limited(1.0, 0.0, 100.0)
    constant: float = limited(0.1, 0.0, 10.0)


@dataclass
class SeedDefinition:
    object: Literal["single_jet", "htt"] = "single_jet"
    threshold: float = limited(180.0, 0.0, 1e6)  # GeV
    eta_max: float = limited(2.5, 0.0, 10.0)
    jet_pt_min: float = limited(30.0, 0.0, 1e6)  # htt: jets counted in the sum


def seed_from_name(name: str) -> SeedDefinition | None:
    """``L1_SingleJet180`` -> leading jet >= 180 GeV; ``L1_HTT360`` -> HTT >= 360 GeV (``p`` for a point)."""
    match = SEED_NAME.match(name)
    if match is None:
        return None
    kind, value = match.groups()
    return SeedDefinition(object="single_jet" if kind == "SingleJet" else "htt",
                          threshold=float(value.replace("p", ".")))


def l1_value(seed: SeedDefinition, pt: Sequence[float], eta: Sequence[float]) -> float:
    """The seed's L1 object value for one event's jets (GeV); 0 when there is none. Plain Python on
    the event's few jets: numpy's per-call cost is larger than the work (a seed is paid per event)."""
    eta_max = seed.eta_max
    if seed.object == "single_jet":
        return max((p for p, e in zip(pt, eta) if -eta_max < e < eta_max), default=0.0)
    floor = seed.jet_pt_min
    return float(sum(p for p, e in zip(pt, eta) if p > floor and -eta_max < e < eta_max))


_TWO_64 = float(2**64)


def smear(value: float, resolution: Resolution | None, key: bytes) -> float:
    """``value`` times a Gaussian factor of the resolution's width, drawn reproducibly from ``key``:
    two uniforms from a BLAKE2b hash of the key, one normal by Box-Muller (~1 us; a numpy Generator
    per draw cost ~20 us)."""
    if resolution is None or value <= 0.0:
        return value
    sigma = math.hypot(resolution.stochastic / math.sqrt(value), resolution.constant)
    digest = hashlib.blake2b(key, digest_size=16).digest()
    u1 = (int.from_bytes(digest[:8], "little") + 1.0) / (_TWO_64 + 1.0)  # in (0, 1]: log is finite
    u2 = int.from_bytes(digest[8:], "little") / _TWO_64
    normal = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
    return value * max(0.0, 1.0 + sigma * normal)


# --------------------------------------------------------------------------- per chunk, with numpy
_NORMAL_MAX = 9.5  # smear's Box-Muller normal: |n| <= sqrt(-2 ln(1 / 2**64)) = 9.42 (u1 >= 2**-64)
_CLOSE = 1e-9  # smeared values this close (relative) to the threshold are recomputed by ``smear``
_NEUMAIER_SUM = sys.version_info >= (3, 12)  # builtin sum() of floats is compensated from Python 3.12


def _columns(offsets: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each jet rank k: (events with more than k jets, their k-th jet's position)."""
    starts, counts = offsets[:-1], np.diff(offsets)
    out = []
    for k in range(int(counts.max()) if len(counts) else 0):
        rows = np.flatnonzero(counts > k)
        out.append((rows, starts[rows] + k))
    return out


def l1_values(seed: SeedDefinition, offsets: np.ndarray, pt: np.ndarray, eta: np.ndarray,
              columns: list[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """``l1_value`` of every event of a chunk (jets of event i at ``offsets[i]:offsets[i+1]``), bit
    for bit: float64 comparisons, and the HTT summed jet by jet in the events' order as ``sum`` does
    (compensated as ``sum`` is from Python 3.12). Events with a non-finite jet pT are left to the
    caller (``ChunkSeeds.per_event``)."""
    pt = np.asarray(pt, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    n = len(offsets) - 1
    inside = (-seed.eta_max < eta) & (eta < seed.eta_max)
    if columns is None:
        columns = _columns(offsets)
    if seed.object == "single_jet":
        best = np.full(n, -np.inf)
        for rows, at in columns:
            best[rows] = np.maximum(best[rows], np.where(inside[at], pt[at], -np.inf))
        best[best == -np.inf] = 0.0  # no jet inside: max(..., default=0.0)
        return best
    terms = np.where(inside & (pt > seed.jet_pt_min), pt, 0.0)  # a zero term changes no sum
    total = np.zeros(n)
    comp = np.zeros(n)
    for rows, at in columns:
        f, x = total[rows], terms[at]
        t = f + x
        if _NEUMAIER_SUM:
            comp[rows] += np.where(np.abs(f) >= np.abs(x), (f - t) + x, (x - t) + f)
        total[rows] = t
    if _NEUMAIER_SUM:
        add = (comp != 0.0) & np.isfinite(comp)
        total[add] += comp[add]
    return total


def _normals(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """``smear``'s Box-Muller normal with numpy (whose log and cos may differ from libm's in the last bit)."""
    return np.sqrt(-2.0 * np.log(u1)) * np.cos((2.0 * math.pi) * u2)


def smeared_fired(seed: SeedDefinition, resolution: Resolution | None, values: np.ndarray,
                  prefixes: Sequence[bytes], name: bytes) -> np.ndarray:
    """``smear(values[i], resolution, prefixes[i] + name) >= seed.threshold`` for every i, bit for bit. Events whose
    decision no draw can change (the normal is bounded) are not hashed; the rest are hashed in one
    loop and their normals computed with numpy, those that land within ``_CLOSE`` of the threshold by
    ``smear`` itself."""
    threshold = seed.threshold
    fired = values >= threshold  # resolution None, or a value <= 0: smear returns it unchanged
    if resolution is None:
        return fired
    pos = np.flatnonzero(values > 0.0)
    v = values[pos]
    sigma = np.hypot(resolution.stochastic / np.sqrt(v), resolution.constant)
    sure_no = v * (1.0 + sigma * _NORMAL_MAX) < threshold * (1.0 - _CLOSE)
    sure_yes = v * np.maximum(0.0, 1.0 - sigma * _NORMAL_MAX) > threshold * (1.0 + _CLOSE)
    fired[pos[sure_no]] = False
    fired[pos[sure_yes]] = True
    draw = ~(sure_no | sure_yes)
    need, v, sigma = pos[draw], v[draw], sigma[draw]
    if not len(need):
        return fired
    blank = hashlib.blake2b(digest_size=16).copy
    digests = []
    append = digests.append
    for i in need.tolist():  # the per-event part: ~0.3 us a hash
        h = blank()
        h.update(prefixes[i])
        h.update(name)
        append(h.digest())
    words = np.frombuffer(b"".join(digests), dtype="<u8").reshape(-1, 2)
    u1 = (words[:, 0].astype(np.float64) + 1.0) / (_TWO_64 + 1.0)
    u2 = words[:, 1].astype(np.float64) / _TWO_64
    normal = _normals(u1, u2)
    smeared = v * np.maximum(0.0, 1.0 + sigma * normal)
    got = smeared >= threshold
    for j in np.flatnonzero(np.abs(smeared - threshold) <= _CLOSE * threshold).tolist():
        got[j] = smear(float(values[need[j]]), resolution, prefixes[need[j]] + name) >= threshold
    fired[need] = got
    return fired


# --------------------------------------------------------------------------- the logical expression
Evaluator = Callable[[Callable[[str], bool]], bool]


class ExpressionError(ValueError):
    pass


Node = tuple  # ("name", seed) | ("not", node) | ("and", [nodes]) | ("or", [nodes])


def parse_tree(text: str) -> tuple[Node, list[str]]:
    """Parse ``A OR (B AND NOT C)`` into a tree and the names used. Precedence as in CMSSW's logical
    expressions: NOT binds tightest, then AND, then OR."""
    tokens = _tokenize(text)
    names: list[str] = []
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def primary() -> Node:
        token = peek()
        if token is None:
            raise ExpressionError(f"{text!r}: ends where a seed name or '(' was expected")
        if token == "(":
            take()
            inner = disjunction()
            if peek() != ")":
                raise ExpressionError(f"{text!r}: missing ')'")
            take()
            return inner
        if token.upper() == "NOT":
            take()
            return ("not", primary())
        if token == ")" or token.upper() in ("AND", "OR"):
            raise ExpressionError(f"{text!r}: unexpected {token!r}")
        take()
        names.append(token)
        return ("name", token)

    def conjunction() -> Node:
        terms = [primary()]
        while (peek() or "").upper() == "AND":
            take()
            terms.append(primary())
        return terms[0] if len(terms) == 1 else ("and", terms)

    def disjunction() -> Node:
        terms = [conjunction()]
        while (peek() or "").upper() == "OR":
            take()
            terms.append(conjunction())
        return terms[0] if len(terms) == 1 else ("or", terms)

    tree = disjunction()
    if peek() is not None:
        raise ExpressionError(f"{text!r}: unexpected {peek()!r}")
    return tree, names


def parse_expression(text: str) -> tuple[Evaluator, list[str]]:
    """Parse ``A OR (B AND NOT C)`` into an evaluator over a name -> bool lookup, and the names used."""
    tree, names = parse_tree(text)
    return _scalar(tree), names


def _scalar(node: Node) -> Evaluator:
    kind, arg = node
    if kind == "name":
        return lambda fired, name=arg: fired(name)
    if kind == "not":
        operand = _scalar(arg)
        return lambda fired: not operand(fired)
    terms = [_scalar(t) for t in arg]
    if kind == "and":
        return lambda fired: all(t(fired) for t in terms)
    return lambda fired: any(t(fired) for t in terms)


def evaluate_arrays(node: Node, fired: dict[str, np.ndarray]) -> np.ndarray:
    """The expression over whole arrays of seed decisions (one bool per event)."""
    kind, arg = node
    if kind == "name":
        return fired[arg]
    if kind == "not":
        return ~evaluate_arrays(arg, fired)
    values = [evaluate_arrays(t, fired) for t in arg]
    return (np.logical_and if kind == "and" else np.logical_or).reduce(values)


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if match is None:
            raise ExpressionError(f"{text!r}: cannot read {text[pos:].strip()[:20]!r}")
        tokens.append(match.group(1))
        pos = match.end()
    if not tokens:
        raise ExpressionError("empty seed expression")
    return tokens


@dataclass
class L1SeedParameters:
    src: InputTag = InputTag("source")  # the jets (a JetCollection)
    expression: str = "L1_SingleJet180 OR L1_HTT360"  # L1SeedsLogicalExpression
    seeds: dict[str, SeedDefinition] = field(default_factory=dict)  # beyond the self-defining names
    resolution: Resolution | None = field(default_factory=Resolution)  # null: no smearing (a step)

    def __post_init__(self) -> None:
        _, names = parse_expression(self.expression)  # ExpressionError is a ValueError: one config line
        unknown = sorted({n for n in names if n not in self.seeds and seed_from_name(n) is None})
        if unknown:
            raise ValueError(f"expression: seed(s) {unknown} are neither defined under seeds: nor named "
                             f"L1_SingleJet<GeV> / L1_HTT<GeV>")


class ChunkSeeds:
    """What every seed module shares about one source chunk: its events' hash prefixes, jet-rank
    columns, turn-on bins, the events left to the per-event code (a non-finite jet pT), and each
    seed's decisions, computed once (``_SharedChunks.fired``)."""

    __slots__ = ("pt", "offsets", "eta", "ids", "prefixes", "columns", "edges", "per_event", "fired")

    def __init__(self, chunk: Any) -> None:
        self.pt = chunk.pt  # held: no later chunk can have this array, so it identifies the chunk
        self.offsets = np.asarray(chunk.jet_offsets)
        self.eta = chunk.eta
        self.ids = chunk.ids
        self.prefixes = _prefixes(getattr(chunk, "id_arrays", None), self.ids)  # decide()'s keys, less the seed name
        self.columns = _columns(self.offsets)
        pt = np.asarray(self.pt, dtype=np.float64)
        finite = np.isfinite(pt)
        self.per_event = np.zeros(len(self.offsets) - 1, dtype=bool)
        lead = np.full(len(self.per_event), -np.inf)
        for rows, at in self.columns:
            self.per_event[rows] |= ~finite[at]
            lead[rows] = np.maximum(lead[rows], np.where(finite[at], pt[at], -np.inf))
        lead[lead == -np.inf] = 0.0  # no jet: bin "0", as filter() does
        self.edges = (np.floor_divide(lead, float(TURN_ON_BIN_GEV)) * TURN_ON_BIN_GEV).astype(np.int64)
        self.fired: dict[tuple, np.ndarray] = {}


def _prefixes(id_arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None, ids: Sequence[Any]) -> list[bytes]:
    """``b"run:lumi:event:"`` of every event: formatted once per (run, lumi) stretch, then per event
    number only."""
    if id_arrays is None:
        return [b"%d:%d:%d:" % (e.run, e.luminosityBlock, e.event) for e in ids]
    run, lumi, evt = (np.asarray(a) for a in id_arrays)
    bounds = [0, *(np.flatnonzero((np.diff(run) != 0) | (np.diff(lumi) != 0)) + 1).tolist(), len(run)]
    numbers = evt.tolist()
    out: list[bytes] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        form = b"%d:%d:" % (int(run[a]), int(lumi[a])) + b"%d:"
        out.extend(map(form.__mod__, numbers[a:b]))
    return out


class _SharedChunks:
    """The last few chunks' ``ChunkSeeds``, keyed by the chunk's identity, for every seed module and
    stream of the process (one lock: a chunk's seeds are computed once, by whoever comes first)."""

    KEEP = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks: OrderedDict[int, ChunkSeeds] = OrderedDict()

    def fired(self, chunk: Any, seeds: dict[str, SeedDefinition], resolution: Resolution | None
              ) -> tuple[ChunkSeeds, dict[str, np.ndarray]]:
        with self._lock:
            entry = self._chunks.get(id(chunk))
            if entry is None or entry.pt is not chunk.pt:  # a freed chunk's id, reused
                entry = self._chunks[id(chunk)] = ChunkSeeds(chunk)
                while len(self._chunks) > self.KEEP:
                    self._chunks.popitem(last=False)
            res = None if resolution is None else (resolution.stochastic, resolution.constant)
            out = {}
            for name, seed in seeds.items():
                key = (name, seed.object, seed.threshold, seed.eta_max, seed.jet_pt_min, res)
                got = entry.fired.get(key)
                if got is None:
                    values = l1_values(seed, entry.offsets, entry.pt, entry.eta, entry.columns)
                    got = entry.fired[key] = smeared_fired(seed, resolution, values, entry.prefixes, name.encode())
                out[name] = got
            return entry, out

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()


_SHARED = _SharedChunks()
_NO_CHUNK = object()


class L1SeedFilter(Filter):
    """Accepts an event when its seed expression is true for the L1 objects emulated from its jets.
    Every seed's decision is kept per event for the report's efficiency plot (``seed_counts``)."""

    end_job_releases_only = True  # end_job folds the last chunk's counts (summary() does too) and frees its cache

    Parameters = L1SeedParameters
    consumes = {"src": JetCollection}
    produces = {}  # a decision only

    def __init__(self, label: str, params: L1SeedParameters) -> None:
        super().__init__(label, params)
        self._evaluate, names = parse_expression(params.expression)
        self.seeds = {n: params.seeds.get(n) or seed_from_name(n) for n in dict.fromkeys(names)}
        self.seed_counts = {n: 0 for n in self.seeds}
        self.events = 0
        self.accepted = 0
        # offline leading-jet pT of every event and of those each seed fired on, in TURN_ON_BIN_GEV bins
        # keyed by the bin's lower edge: counters that add across streams and work units
        self.pt_all: dict[str, int] = {}
        self.pt_fired: dict[str, dict[str, int]] = {n: {} for n in self.seeds}
        # a weighted sample's: per bin the fixed-point sums of (w - 1) and (w^2 - 1) (framework/weights.py)
        # and the events of weight < 0 (they decide whether the bin's interval may be clipped to [0, 1], as a
        # rate's), of every event ("" key) and of those each seed fired on; None until an event of weight != 1
        self.pt_weights: dict[str, dict[str, list[int]]] | None = None
        # the chunk being read and its decisions (see the module docstring): events seen are counted
        # per chunk, with numpy, when the next chunk comes or the summary is asked for
        self._tree, _ = parse_tree(params.expression)
        self._src = params.src
        self._chunk: Any = _NO_CHUNK  # never a collection's chunk (a hand-built one has None)
        self._ids: list = []
        self._accept: list[bool | None] = []  # None: decided per event (a non-finite jet pT)
        self._seen: list[int] = []
        self._chunk_arrays: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]] | None = None

    def decide(self, event_key: tuple[int, int, int], pt: Sequence[float],
               eta: Sequence[float]) -> tuple[bool, dict[str, bool]]:
        """The expression's value and every seed's, for one event's jets."""
        key = b"%d:%d:%d:" % event_key
        fired = {name: smear(l1_value(seed, pt, eta), self.params.resolution, key + name.encode()) >= seed.threshold
                 for name, seed in self.seeds.items()}
        return self._evaluate(fired.__getitem__), fired

    def filter(self, event: Event) -> bool:
        """A look-up in the chunk's decisions (computed when its first event comes)."""
        jets = event.get(self._src)
        try:  # the source's view: its chunk and position (JetCollection.view)
            chunk, i = jets._chunk, jets._index
        except AttributeError:  # another kind of collection
            chunk = None
        if chunk is not self._chunk:
            if chunk is None or not self._take(chunk):
                return self._filter_one(event, jets)
        if event.id is not self._ids[i]:  # not the source's event of that view: decide it on its own
            return self._filter_one(event, jets)
        accept = self._accept[i]
        if accept is None:
            return self._filter_one(event, jets)
        self._seen.append(i)
        return accept

    def _take(self, chunk: Any) -> bool:
        """Make ``chunk`` the current one (its decisions for every event); False: not a source chunk."""
        self._fold()
        try:
            entry, fired = _SHARED.fired(chunk, self.seeds, self.params.resolution)
        except AttributeError:  # a chunk without the arrays read here: per event
            self._chunk, self._chunk_arrays = _NO_CHUNK, None
            return False
        accept = evaluate_arrays(self._tree, fired)
        decisions: list[bool | None] = accept.tolist()
        for i in np.flatnonzero(entry.per_event).tolist():
            decisions[i] = None
        self._chunk, self._ids, self._accept = chunk, entry.ids, decisions
        self._chunk_arrays = (accept, entry.edges, fired)
        return True

    def _fold(self) -> None:
        """Count the events seen in the current chunk (accepted, per seed, turn-on bins)."""
        seen, self._seen = self._seen, []
        if not seen or self._chunk_arrays is None:
            return
        accept, edges, fired = self._chunk_arrays
        idx = np.asarray(seen, dtype=np.intp)
        self.events += len(idx)
        self.accepted += int(np.count_nonzero(accept[idx]))
        _add_bins(self.pt_all, edges[idx])
        for name, decided in fired.items():
            hit = decided[idx]
            self.seed_counts[name] += int(np.count_nonzero(hit))
            _add_bins(self.pt_fired[name], edges[idx][hit])
        weights = getattr(self._chunk, "weights", None)  # the source's per event, where its file has them
        if weights is not None:
            for i in seen:
                if weights[i] != 1.0:
                    self._weigh(str(edges[i]), weights[i], [n for n, decided in fired.items() if decided[i]])

    def end_job(self) -> None:
        self._fold()
        self._chunk, self._chunk_arrays, self._ids, self._accept = _NO_CHUNK, None, [], []
        _SHARED.clear()

    def _filter_one(self, event: Event, jets: JetCollection) -> bool:
        """One event on its own, with the reference per-event functions."""
        eid = event.id
        pt, eta = jets.pt.tolist(), jets.eta.tolist()
        accept, fired = self.decide((eid.run, eid.luminosityBlock, eid.event), pt, eta)
        self.events += 1
        self.accepted += accept
        edge = str(int(max(pt) // TURN_ON_BIN_GEV * TURN_ON_BIN_GEV)) if pt else "0"
        self.pt_all[edge] = self.pt_all.get(edge, 0) + 1
        for name, value in fired.items():
            if value:
                self.seed_counts[name] += 1
                hist = self.pt_fired[name]
                hist[edge] = hist.get(edge, 0) + 1
        weight = event_weight(event, self.label)
        if weight != 1.0:
            self._weigh(edge, weight, [n for n, value in fired.items() if value])
        return accept

    def _weigh(self, edge: str, weight: float, fired: list[str]) -> None:
        """An event's weight beyond its count in its pT bin (and whether it is < 0), for every event and for
        each seed that fired."""
        if self.pt_weights is None:
            self.pt_weights = {"": {}, **{n: {} for n in self.seeds}}
        dw, dw2 = excess(weight)
        negative = int(weight < 0)
        for name in ("", *fired):
            sums = self.pt_weights[name].setdefault(edge, [0, 0, 0])
            sums[0] += dw
            sums[1] += dw2
            sums[2] += negative

    def summary(self) -> dict[str, object]:
        self._fold()
        # flat integer counters: the framework adds them over streams and work units (nested values and
        # non-integers are settings, kept from one instance)
        out: dict[str, object] = {"expression": self.params.expression, "events": self.events,
                                  "accepted": self.accepted}
        out.update({f"fired:{n}": c for n, c in self.seed_counts.items()})
        out.update({f"pt_all:{edge}": c for edge, c in self.pt_all.items()})
        out.update({f"pt_fired:{n}:{edge}": c for n, h in self.pt_fired.items() for edge, c in h.items()})
        if self.pt_weights is not None:  # every counted bin's, 0 included (a Dask worker's are differenced)
            out.update(weight_counters("pt_all", self.pt_all, self.pt_weights[""]))
            for n, h in self.pt_fired.items():
                out.update(weight_counters(f"pt_fired:{n}", h, self.pt_weights[n], "pt_fired"))
        return out


def weight_counters(prefix: str, counts: dict[str, int], sums: dict[str, list[int]],
                    name: str | None = None) -> dict[str, int]:
    """``<name>_w:<rest>:<edge>``, ``<name>_w2:...`` and ``<name>_negative:...`` for every bin of ``counts``
    (``prefix`` = ``<name>:<rest>``): the fixed-point excess sums the report turns into sums of weights, and the
    events of weight < 0 that say whether the bin's interval may be clipped (integers: they add as counters)."""
    name = name or prefix
    rest = prefix[len(name):]
    out = {}
    for edge in counts:
        w, w2, negative = sums.get(edge, (0, 0, 0))
        out[f"{name}_w{rest}:{edge}"] = w
        out[f"{name}_w2{rest}:{edge}"] = w2
        out[f"{name}_negative{rest}:{edge}"] = negative
    return out


def _add_bins(hist: dict[str, int], edges: np.ndarray) -> None:
    values, counts = np.unique(edges, return_counts=True)
    for edge, count in zip(values.tolist(), counts.tolist()):
        key = str(edge)
        hist[key] = hist.get(key, 0) + count
