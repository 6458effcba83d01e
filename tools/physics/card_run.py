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
when the source has no event branch). A file without the weight branch weighs every event 1.

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
from pathlib import Path
from typing import Any

import numpy as np

from hltrun.framework.errors import ConfigError, SourceError
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
        reduce = str(modules[filters[0]].get("reduce", "max"))
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
    return cfg, PathPlan(str(path), name, kept, scorer, reduce, dropped, str(cfg.modules[scorer].params.precision))


def read_weights(file: Path, cfg: Any, weight_branch: str) -> tuple[dict[tuple[int, int, int], float] | None, bool]:
    """{(run, lumi, event): weight} of ``file`` (None: the branch is absent; every event weighs 1)."""
    import uproot

    src = cfg.source.params
    b = src.branches
    try:
        with uproot.open(file) as fh:
            tree = fh[src.tree]
            if weight_branch not in tree.keys():
                return None, False
            names = [weight_branch] + [n for n in (b.run, b.luminosityBlock, b.event) if n]
            arr = tree.arrays(names, library="np")
    except Exception as exc:  # the source read it; reading one more branch failed
        raise SourceError(f"{file}: cannot read '{weight_branch}' ({type(exc).__name__}: {exc})") from None
    n = len(arr[weight_branch])
    ones = np.ones(n, np.int64)
    run = arr[b.run] if b.run else ones
    lumi = arr[b.luminosityBlock] if b.luminosityBlock else ones
    evt = arr[b.event] if b.event else np.arange(1, n + 1)
    w = np.asarray(arr[weight_branch], dtype=np.float64)
    if w.ndim != 1:
        raise SourceError(f"{file}: '{weight_branch}' is not one number per event")
    if not np.all(np.isfinite(w)):
        bad = int(np.count_nonzero(~np.isfinite(w)))
        raise SourceError(f"{file}: '{weight_branch}' has {bad} non-finite value(s); a weight must be a finite number")
    table: dict[tuple[int, int, int], float] = {}
    for key, value in zip(zip(run.tolist(), lumi.tolist(), evt.tolist()), w.tolist()):
        table.setdefault(key, value)  # a duplicate id: the source processes the first one
    return table, True


def score_file(config: str | Path, sets: list[str], model: Path, file: Path, max_events: int | None,
               weight_branch: str = "genWeight", scorer: str | None = None,
               progress: bool = False) -> tuple[ScoredFile, PathPlan]:
    """Run the card's path over ``file`` and return every event's numbers (module docstring)."""
    from hltrun.framework.eventloop import EventProcessor
    from hltrun.framework.process import Process
    from hltrun.modules.anomaly_filter import REDUCERS

    why = unreadable_reason(file, "input file")
    if why is not None:
        raise SourceError(why)
    cfg, plan = plan_config(config, sets, model, file, max_events, scorer)
    reduce = REDUCERS[plan.reduce]
    process = Process(cfg)
    rows: list[tuple] = []
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
    n = len(rows)
    ev = np.full(n, -np.inf)
    lpt = np.zeros(n)
    w = np.ones(n)
    ids = np.zeros((n, 3), np.uint64)
    jet_scores, jet_event = [], []
    out = ScoredFile(file, ev, lpt, w, has_w, np.zeros(0), np.zeros(0, np.int64), ids)
    for i, (_, eid, sc) in enumerate(rows):
        ids[i] = (eid.run, eid.luminosityBlock, eid.event)
        if weights is not None:
            key = (eid.run, eid.luminosityBlock, eid.event)
            if key not in weights:
                raise SourceError(f"{file}: event {eid} has no '{weight_branch}' entry (the source's run/lumi/event "
                                  "branches and the file disagree)")
            w[i] = weights[key]
        if sc is None:
            out.not_scored += 1
            continue
        s = np.asarray(sc.score)
        keep = np.ones(len(s), bool) if sc.valid is None else np.asarray(sc.valid, bool)
        s = s[keep]
        if len(s) == 0:
            out.no_jet += 1
            continue
        jet_scores.append(s.astype(np.float64))
        jet_event.append(np.full(len(s), i))
        value = float(reduce(s))
        if value != value:
            out.nan_score += 1  # the filter rejects a NaN event score: it never passes
        else:
            ev[i] = value
        if sc.jet_pt is not None and len(sc.jet_pt) == len(keep):
            lpt[i] = float(np.max(np.asarray(sc.jet_pt)[keep]))
    if jet_scores:
        out.jet_score = np.concatenate(jet_scores)
        out.event_of_jet = np.concatenate(jet_event)
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
