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
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence


from hltrun.framework.event import Event
from hltrun.framework.module import Filter
from hltrun.framework.schema import InputTag, limited

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


# --------------------------------------------------------------------------- the logical expression
Evaluator = Callable[[Callable[[str], bool]], bool]


class ExpressionError(ValueError):
    pass


def parse_expression(text: str) -> tuple[Evaluator, list[str]]:
    """Parse ``A OR (B AND NOT C)`` into an evaluator over a name -> bool lookup, and the names used.
    Precedence as in CMSSW's logical expressions: NOT binds tightest, then AND, then OR."""
    tokens = _tokenize(text)
    names: list[str] = []
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def primary() -> Evaluator:
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
            operand = primary()
            return lambda fired: not operand(fired)
        if token == ")" or token.upper() in ("AND", "OR"):
            raise ExpressionError(f"{text!r}: unexpected {token!r}")
        take()
        names.append(token)
        return lambda fired, name=token: fired(name)

    def conjunction() -> Evaluator:
        terms = [primary()]
        while (peek() or "").upper() == "AND":
            take()
            terms.append(primary())
        return terms[0] if len(terms) == 1 else (lambda fired: all(t(fired) for t in terms))

    def disjunction() -> Evaluator:
        terms = [conjunction()]
        while (peek() or "").upper() == "OR":
            take()
            terms.append(conjunction())
        return terms[0] if len(terms) == 1 else (lambda fired: any(t(fired) for t in terms))

    evaluator = disjunction()
    if peek() is not None:
        raise ExpressionError(f"{text!r}: unexpected {peek()!r}")
    return evaluator, names


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


class L1SeedFilter(Filter):
    """Accepts an event when its seed expression is true for the L1 objects emulated from its jets.
    Every seed's decision is kept per event for the report's efficiency plot (``seed_counts``)."""

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

    def decide(self, event_key: tuple[int, int, int], pt: Sequence[float],
               eta: Sequence[float]) -> tuple[bool, dict[str, bool]]:
        """The expression's value and every seed's, for one event's jets."""
        key = b"%d:%d:%d:" % event_key
        fired = {name: smear(l1_value(seed, pt, eta), self.params.resolution, key + name.encode()) >= seed.threshold
                 for name, seed in self.seeds.items()}
        return self._evaluate(fired.__getitem__), fired

    def filter(self, event: Event) -> bool:
        jets = event.get(self.params.src)
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
        return accept

    def summary(self) -> dict[str, object]:
        # flat integer counters: the framework adds them over streams and work units (nested values and
        # non-integers are settings, kept from one instance)
        out: dict[str, object] = {"expression": self.params.expression, "events": self.events,
                                  "accepted": self.accepted}
        out.update({f"fired:{n}": c for n, c in self.seed_counts.items()})
        out.update({f"pt_all:{edge}": c for edge, c in self.pt_all.items()})
        out.update({f"pt_fired:{n}:{edge}": c for n, h in self.pt_fired.items() for edge, c in h.items()})
        return out
