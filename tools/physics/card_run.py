"""Run a model over a sample through hltrun's own path, in-process, and keep every event's scores.

Why through the path and not a copy of it: the cuts in a model's card are only right for the scores
the trigger will compute, i.e. for the jets the path's batcher selects (``max_jets``, ordering,
padding, relative coordinates), scored by the backend the scorer picks, and reduced per event the way
the filter reduces them. So the configuration the user triggers with (default the shipped
``configs/path.yaml``, plus ``--set key=value`` overrides) is read, and only what cannot serve a
threshold derivation is changed:

* the source reads one given file at a time (so that every event's weight can be looked up in its own
  file, below); the scorer reads the given model;
* the path that runs the scorer is kept up to and including the scorer (modules before it, an L1 seed
  or a prescaler, still decide which events are scored); modules that consume the scorer's scores
  (the anomaly filter, which has no cut for a new model yet, and anything after it), output modules,
  endpaths, the other paths and services other than the PrescaleService are dropped: a card run
  writes no output file and needs no threshold;
* the filter's ``reduce`` is read from the configuration and its own function
  (``hltrun.modules.anomaly_filter.REDUCERS``) makes the event score from the scored jets, over the
  jets the filter would use (``valid``); the leading-jet pT is the largest ``jet_pt`` among those
  jets, as the filter's pT-dependent working point takes it.

Weights: the path does not carry ``genWeight`` (the source reads jets, run/lumi/event only), so it is
read here with uproot from the same file and matched to each processed event by its
(run, luminosityBlock, event), with the branch names the source is configured with (the entry number
when the source has no event branch); an id the file holds twice weighs what its first entry does (the
entry the source processes). A file without the weight branch weighs every event 1. The match is a join
of sorted id keys (``WeightTable``), and the events' numbers are taken over all events at once
(``event_arrays``): a dict of every event and numpy per event cost ~18 us an event, most of what the card
run spent outside the path on a large sample (docs/performance.md, "Session 40: hltcard").

Every event the source hands out is accounted for: processed events whose path stopped before the
scorer, events with no scored jet (no jets, or only non-finite inputs) get the event score -inf (they
never pass, and they count in every denominator); duplicates and bad entries the source skipped are
counted from the job summary.
"""
from __future__ import annotations

import copy
import sys
import threading
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from hltrun.framework.errors import ConfigError, SourceError
from hltrun.framework.event import MAX32, EventID
from hltrun.framework.resources import unreadable_reason

SCORER_TYPE = "VAEAnomalyScorer"
FILTER_TYPE = "AnomalyScoreFilter"
KEPT_SERVICES = ("PrescaleService",)  # a prescaler on the kept path needs its table


@dataclass
class PathPlan:
    """What was kept of the configuration, for the card."""

    config: str
    path: str  # the path whose modules up to the scorer run
    modules: list[str]  # its entries up to and including the scorer
    scorer: str
    reduce: str
    dropped: list[str]
    # the scorer's validated precision: with int8 it reads the model's cuts as ``<stem>_int8`` (vae_scorer's
    # model_identity), so the card is written and checked under that name
    precision: str = "auto"
    # the jets scored and the event score's reduction the cuts are made on (vae_scorer.CARD_SELECTION), written
    # into the card's entry: a path run with others takes cuts that keep another fraction of QCD, and says so
    selection: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoredFile:
    """One file's events through the path (event arrays in the order the source read them)."""

    file: Path
    event_score: np.ndarray  # the filter's reduction of the scored jets; -inf without a scored jet
    leading_pt: np.ndarray  # largest jet_pt among the scored jets; 0 without one
    weight: np.ndarray
    has_gen_weight: bool
    jet_score: np.ndarray  # every scored jet, event after event
    event_of_jet: np.ndarray
    ids: np.ndarray  # (n, 3) run, lumi, event as uint64 (CMSSW's event number is unsigned 64-bit)
    not_scored: int = 0  # processed, but the path stopped before the scorer
    no_jet: int = 0  # scored, but no valid jet (no jets, or only non-finite inputs)
    nan_score: int = 0  # a NaN score among the jets: the filter's reduction is NaN, never passes
    accounting: dict[str, int] = field(default_factory=dict)
    backend: str = ""

    @property
    def n_events(self) -> int:
        return len(self.event_score)

    @property
    def jet_weight(self) -> np.ndarray:
        return self.weight[self.event_of_jet]

    @staticmethod
    def concat(parts: list["ScoredFile"]) -> "ScoredFile":
        """One sample from several files' events, in order."""
        offsets = np.cumsum([0] + [p.n_events for p in parts[:-1]])
        out = ScoredFile(parts[0].file, *(np.concatenate([getattr(p, k) for p in parts]) for k in
                                          ("event_score", "leading_pt", "weight")),
                         any(p.has_gen_weight for p in parts), np.concatenate([p.jet_score for p in parts]),
                         np.concatenate([p.event_of_jet + o for p, o in zip(parts, offsets)]),
                         np.concatenate([p.ids for p in parts]), sum(p.not_scored for p in parts),
                         sum(p.no_jet for p in parts), sum(p.nan_score for p in parts), {}, parts[0].backend)
        for p in parts:
            for k, v in p.accounting.items():
                out.accounting[k] = out.accounting.get(k, 0) + v
        return out


def _type_class(type_name: Any) -> type | None:
    from hltrun.framework import registry

    try:
        return registry.module_class(str(type_name))
    except ConfigError:
        return None  # validation names it later


def _is(type_name: Any, base_name: str) -> bool:
    cls = _type_class(type_name)
    return cls is not None and any(b.__name__ == base_name for b in cls.__mro__)


def _consumed_labels(spec: Any) -> set[str]:
    """Module labels a raw module block names as inputs (``src: label``, ``label:instance``, lists)."""
    out: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.add(v.split(":", 1)[0])
        elif isinstance(v, dict):
            for k, x in v.items():
                if k != "type":
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(spec)
    return out


def plan_config(config: str | Path, sets: list[str], model: Path, file: Path, max_events: int | None,
                scorer: str | None = None) -> tuple[Any, PathPlan]:
    """The validated configuration of a card run over ``file`` (module docstring) and what was kept."""
    from hltrun.framework.config import apply_overrides, find_config, options_in_cmssw_words, read_yaml, validate

    path = find_config(config)
    data = read_yaml(path)
    if sets:
        try:
            data = apply_overrides(data, list(sets))
        except ConfigError as exc:
            raise ConfigError(f"--set: {exc}") from None
    if isinstance(data.get("options"), dict):
        data["options"] = options_in_cmssw_words(data["options"])
    modules = data.get("modules") or {}
    if not isinstance(modules, dict):
        raise ConfigError(f"{path}: modules: expected a mapping")
    def of_type(base: str) -> list[str]:
        return [label for label, spec in modules.items() if isinstance(spec, dict) and _is(spec.get("type"), base)]

    scorers = of_type(SCORER_TYPE)
    if scorer is None:
        if len(scorers) != 1:
            raise ConfigError(f"{path}: {len(scorers)} {SCORER_TYPE} modules ({', '.join(scorers) or 'none'}); "
                              "name the one to run with --scorer LABEL")
        scorer = scorers[0]
    elif scorer not in scorers:
        raise ConfigError(f"--scorer {scorer}: not a {SCORER_TYPE} module of {path} "
                          f"(those: {', '.join(scorers) or 'none'})")
    paths = data.get("paths") or {}
    on = [name for name, entries in paths.items() if isinstance(entries, list)
          and scorer in [str(e).lstrip("~-") for e in entries]]
    if not on:
        raise ConfigError(f"{path}: module '{scorer}' is on no path")
    name = on[0]
    entries = [str(e) for e in paths[name]]
    kept = entries[:[e.lstrip("~-") for e in entries].index(scorer) + 1]
    # the scorer's consumers (transitively) and output modules go: nothing after the scores is needed
    downstream, changed = {scorer}, True
    while changed:
        changed = False
        for label, spec in modules.items():
            if label not in downstream and _consumed_labels(spec) & downstream:
                downstream.add(label)
                changed = True
    downstream.discard(scorer)
    outputs = set(of_type("OutputModule"))
    reduce = "max"
    filters = [label for label in [e.lstrip("~-") for e in entries] + list(modules)
               if isinstance(modules.get(label), dict) and _is(modules[label].get("type"), FILTER_TYPE)
               and scorer in _consumed_labels(modules[label].get("src", "vae"))]
    if filters:
        # the filter is dropped below, so validation never sees its reduce: checked here by the schema's own
        # conversion of the filter's field (``reduce: 5`` was "got '5'", a string it never was)
        from typing import get_type_hints

        from hltrun.framework.schema import convert
        from hltrun.modules.anomaly_filter import AnomalyFilterParameters

        reduce = convert(modules[filters[0]].get("reduce", "max"), get_type_hints(AnomalyFilterParameters)["reduce"],
                         f"{path}: modules.{filters[0]}.reduce")
    dropped = sorted(downstream | outputs)
    new = copy.deepcopy(data)
    new["modules"] = {k: v for k, v in modules.items() if k not in dropped}
    new["modules"][scorer] = {**new["modules"][scorer], "model": str(model)}
    new["paths"] = {name: kept}
    new["endpaths"] = {}
    new["services"] = {k: v for k, v in (data.get("services") or {}).items() if k in KEPT_SERVICES}
    new["source"] = {**(data.get("source") or {}), "files": [str(file)]}
    opts = dict(new.get("options") or {})
    opts["maxEvents"] = -1 if max_events is None else int(max_events)
    opts.pop("reportDir", None)
    new["options"] = opts
    cfg = validate(new, f"{path} (card run)")
    return cfg, PathPlan(str(path), name, kept, scorer, reduce, dropped, str(cfg.modules[scorer].params.precision),
                         _selection(cfg, scorer, reduce))


def _selection(cfg: Any, scorer: str, reduce: str) -> dict[str, Any]:
    """The card run's selection (vae_scorer.CARD_SELECTION): its scorer's batcher's settings, the filter's reduce."""
    from hltrun.modules.vae_scorer import CARD_SELECTION

    src = cfg.modules[scorer].params.src.label
    batcher = cfg.modules[src].params if src in cfg.modules else None
    return {**{k: getattr(batcher, k) for k in CARD_SELECTION if hasattr(batcher, k)}, "reduce": reduce}


@dataclass(frozen=True)
class WeightTable:
    """A file's weights by event id, to join to the processed events: ``keys`` the sorted distinct ids (the
    16-byte keys of ``hltrun.modules.duplicates.keys``), ``weights`` the weight of each id's first entry."""

    keys: np.ndarray
    weights: np.ndarray

    @staticmethod
    def of(run: np.ndarray, lumi: np.ndarray, event: np.ndarray, weight: np.ndarray) -> "WeightTable":
        """The table of a file's entries, in entry order. An entry whose id no event can have (a negative,
        fractional or out-of-range number, which the source refuses or skips) is left out: it matches no
        processed event, as a dict keyed by its value never did."""
        from hltrun.modules.duplicates import keys

        cols, ok = zip(*(_whole_ids(x, limit) for x, limit in ((run, MAX32), (lumi, MAX32), (event, None))))
        use = ok[0] & ok[1] & ok[2]
        k = keys(*(c[use] for c in cols))
        distinct, first = np.unique(k, return_index=True)  # a stable sort: each id's first entry
        return WeightTable(distinct, np.asarray(weight, np.float64)[use][first])

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weight of each key, whether the file has it); the weight of a key it lacks is 0."""
        if len(self.keys) == 0:
            return np.zeros(len(keys)), np.zeros(len(keys), bool)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[at] == keys
        return np.where(found, self.weights[at], 0.0), found


def _whole_ids(values: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(values as uint64, which of them are whole numbers from 0 to ``limit`` (2^64-1 if None)): the only
    numbers an event id can hold, each exactly as a uint64 (the others are set to 0 and not used)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(values) & (values >= 0) & (values == np.floor(values)) & (values < 2.0**64)
    elif values.dtype.kind == "i":
        ok = values >= 0
    else:
        ok = np.ones(len(values), bool)
    if limit is not None:
        ok &= np.where(ok, values, 0) <= limit
    return np.where(ok, values, 0).astype(np.uint64), ok


def read_weights(file: Path, cfg: Any, weight_branch: str) -> tuple[WeightTable | None, bool]:
    """``file``'s weights by (run, lumi, event) (None: the branch is absent; every event weighs 1)."""
    import uproot

    from hltrun.modules.source.event_ids import weight_values

    src = cfg.source.params
    b = src.branches
    try:
        with uproot.open(file) as fh:
            tree = fh[src.tree]
            if weight_branch not in tree.keys():
                return None, False
            names = [weight_branch] + [n for n in (b.run, b.luminosityBlock, b.event) if n]
            arr = tree.arrays(names, library="ak")
    except Exception as exc:  # the source read it; reading one more branch failed
        raise SourceError(f"{file}: cannot read '{weight_branch}' ({type(exc).__name__}: {exc})") from None
    # the source's own check (one finite number per event, of a magnitude whose squares sum in a double): the
    # path's source has made it on these entries already, but this reading must not rest on that
    w = weight_values(arr[weight_branch], weight_branch, str(file), 0, setting="--weight-branch")
    n = len(w)
    ones = np.ones(n, np.int64)
    run = arr[b.run].to_numpy() if b.run else ones
    lumi = arr[b.luminosityBlock].to_numpy() if b.luminosityBlock else ones
    evt = arr[b.event].to_numpy() if b.event else np.arange(1, n + 1)
    return WeightTable.of(run, lumi, evt, w), True


Row = tuple[int, EventID, Any]  # (event index, id, the scorer's JetScores or None: the path stopped before it)
_RUN, _LUMI, _EVENT = attrgetter("run"), attrgetter("luminosityBlock"), attrgetter("event")


def event_arrays(file: Path, rows: list[Row], weights: WeightTable | None, has_gen_weight: bool, reduce: str,
                 weight_branch: str) -> ScoredFile:
    """Every event's numbers from ``rows`` (in the source's order): ids, weight, the ``reduce`` of its
    valid scored jets (-inf without one, NaN counted apart), the leading valid jet's pT. Over all events
    at once; numpy per event only for ``reduce: sum`` (SEGMENT_REDUCERS says why)."""
    from hltrun.modules.anomaly_filter import REDUCERS, SEGMENT_REDUCERS
    from hltrun.modules.duplicates import keys

    n = len(rows)
    eids = [r[1] for r in rows]
    ids = np.empty((n, 3), np.uint64)
    for j, get in enumerate((_RUN, _LUMI, _EVENT)):
        ids[:, j] = np.fromiter(map(get, eids), np.uint64, n)
    w = np.ones(n)
    if weights is not None:
        w, found = weights.lookup(keys(ids[:, 0], ids[:, 1], ids[:, 2]))
        if not found.all():
            raise SourceError(f"{file}: event {eids[int(np.argmin(found))]} has no '{weight_branch}' entry (the "
                              "source's run/lumi/event branches and the file disagree)")
    ev = np.full(n, -np.inf)
    lpt = np.zeros(n)
    out = ScoredFile(file, ev, lpt, w, has_gen_weight, np.zeros(0), np.zeros(0, np.int64), ids)
    scored = np.fromiter((r[2] is not None for r in rows), bool, n)
    out.not_scored = int(n - np.count_nonzero(scored))
    products = [r[2] for r in rows if r[2] is not None]
    if not products:
        return out
    scores = [np.asarray(p.score) for p in products]
    counts = np.fromiter(map(len, scores), np.int64, len(scores))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    valids = [p.valid for p in products]
    keep = None if all(v is None for v in valids) else np.concatenate(
        [np.ones(c, bool) if v is None else np.asarray(v, bool) for v, c in zip(valids, counts)])
    if keep is not None and len(keep) != bounds[-1]:
        raise ScoringFailed(f"{file}: the scorer's 'valid' flags and its scores differ in length")
    kept_bounds = bounds if keep is None else np.concatenate([[0], np.cumsum(keep)])[bounds]
    kept = np.diff(kept_bounds)  # valid jets per scored event
    has = kept > 0
    out.no_jet = int(len(kept) - np.count_nonzero(has))
    if not has.any():
        return out
    event = np.flatnonzero(scored)[has]  # the events with a valid jet
    flat = np.concatenate(scores)
    flat = flat if keep is None else flat[keep]
    starts = kept_bounds[:-1][has]  # where each of them begins among the valid jets
    if reduce in SEGMENT_REDUCERS:
        value = np.asarray(SEGMENT_REDUCERS[reduce](flat, starts), np.float64)
    else:  # per event on the event's own array (its dtype, numpy's grouping of a sum)
        each = REDUCERS[reduce]
        value = np.array([float(each(s if keep is None else s[keep[a:b]]))
                          for s, a, b, h in zip(scores, bounds[:-1], bounds[1:], has) if h])
    nan = value != value  # the filter rejects a NaN event score: it never passes
    out.nan_score = int(np.count_nonzero(nan))
    ev[event[~nan]] = value[~nan]
    out.jet_score = flat.astype(np.float64)
    out.event_of_jet = np.repeat(event, kept[has])
    # the leading pT where the scorer gave one pT per scored jet (a stand-in of zeros elsewhere, not used)
    pts = [p.jet_pt for p in products]
    with_pt = np.fromiter((pt is not None and len(pt) == c for pt, c in zip(pts, counts)), bool, len(pts))
    flat_pt = np.concatenate([np.asarray(pt) if ok else np.zeros(c) for pt, ok, c in zip(pts, with_pt, counts)])
    lead = np.maximum.reduceat(flat_pt if keep is None else flat_pt[keep], starts)
    lpt[event[with_pt[has]]] = lead[with_pt[has]]
    return out


def score_file(config: str | Path, sets: list[str], model: Path, file: Path, max_events: int | None,
               weight_branch: str = "genWeight", scorer: str | None = None,
               progress: bool = False) -> tuple[ScoredFile, PathPlan]:
    """Run the card's path over ``file`` and return every event's numbers (module docstring)."""
    from hltrun.framework.eventloop import EventProcessor
    from hltrun.framework.process import Process

    why = unreadable_reason(file, "input file")
    if why is not None:
        raise SourceError(why)
    cfg, plan = plan_config(config, sets, model, file, max_events, scorer)
    process = Process(cfg)
    rows: list[Row] = []
    lock = threading.Lock()
    label = plan.scorer

    def post_event(event, status) -> None:  # noqa: ANN001 - the signal's signature
        sc = event.get(label) if event.has(label) else None  # has(): never run the scorer on demand
        with lock:
            rows.append((event.index, event.id, sc))

    process.signals.post_event.connect(post_event)
    if progress:
        from hltrun.framework.progress import attach_progress

        attach_progress(process)
    summary = EventProcessor(process).run()
    if summary.failure:
        raise ScoringFailed(f"{file}: the path failed: {summary.failure}")
    rows.sort(key=lambda r: r[0])
    weights, has_w = read_weights(file, cfg, weight_branch)
    out = event_arrays(file, rows, weights, has_w, plan.reduce, weight_branch)
    n = out.n_events
    out.accounting = {"events_read": summary.events_read, "events_processed": summary.events_processed,
                      "events_duplicate": summary.events_duplicate, "events_skipped": summary.events_skipped,
                      "events_error": summary.events_error, "events_not_scored": out.not_scored,
                      "events_without_scored_jet": out.no_jet, "events_with_nan_score": out.nan_score}
    facts = summary.facts.get("accelerators") if isinstance(summary.facts, dict) else None
    out.backend = str(facts) if facts else ""
    if summary.events_processed != n:
        raise ScoringFailed(f"{file}: {summary.events_processed} events processed but {n} seen by the card")
    return out, plan


class ScoringFailed(Exception):
    """The path could not score a sample (exit 4)."""


def score_files(config: str | Path, sets: list[str], model: Path, files: list[Path], max_events: int | None,
                weight_branch: str, scorer: str | None, what: str) -> tuple[ScoredFile, PathPlan]:
    """Several files as one sample (``max_events`` per file), with a progress line per file."""
    parts, plan = [], None
    for f in files:
        print(f"hltcard: {what}: scoring {f} ...", file=sys.stderr, flush=True)
        part, plan = score_file(config, sets, model, Path(f), max_events, weight_branch, scorer,
                                progress=sys.stderr.isatty())
        print(f"hltcard: {what}: {f}: {part.n_events} events, {len(part.jet_score)} scored jets"
              + ("" if part.has_gen_weight else f" (no {weight_branch}: weight 1)"), file=sys.stderr, flush=True)
        parts.append(part)
    return ScoredFile.concat(parts), plan
