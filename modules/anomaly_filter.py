"""Trigger filter on the per-event anomaly score (the per-jet scores reduced over jets)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

import numpy as np

from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.framework.event import Event
from hltrun.framework.module import Filter
from hltrun.framework.schema import InputTag
from hltrun.framework.score_histogram import BINNINGS, QUANTITY_KEY, RATIO, ROOT_FILE, SCORE, ScoreHistogram
from hltrun.framework.weights import event_weight

from .products import JetScores, is_all_valid
from .working_point import PT_BINNED_KEY, PtBinnedCuts, PtCutFunction, PtCuts, efficiency_key

if TYPE_CHECKING:
    from hltrun.framework.context import ModuleContext, ProductInfo

log = logging.getLogger(__name__)

REDUCERS = {
    "max": np.max,
    "min": np.min,
    "sum": np.sum,
    "leading": lambda s: s[0],
}

# the same reductions over many events' jets at once: ``flat`` every event's scores one after the other,
# ``starts`` where each event's begin (every event at least one score). Each picks one of the event's own
# values (NaN if one is NaN, as numpy's max/min), so it is exactly the per-event reduction. No "sum": numpy
# adds an array's values in its own grouping (the first, then the rest pairwise), which ``np.add.reduceat``
# does not, so float32 sums would differ in the last bits; a sum is taken per event (REDUCERS).
SEGMENT_REDUCERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "max": np.maximum.reduceat,
    "min": np.minimum.reduceat,
    "leading": lambda flat, starts: flat[starts],
}


def _nan_or(pick):  # noqa: ANN001, ANN202
    """np.max/np.min on a list: NaN if any value is NaN (as numpy), else the exact extreme. A plain
    loop, not ``any()`` over a generator: half the cost on an event's few jets."""
    def reduce(values: list[float]) -> float:
        for x in values:
            if x != x:
                return math.nan
        return pick(values)
    return reduce


# the same reductions on the few jets of an event as Python floats: exact (the float32 values, no
# arithmetic), ~5 us less per event than numpy's reduction machinery; "sum" stays numpy (float32 sums)
PY_REDUCERS = {"max": _nan_or(max), "min": _nan_or(min), "leading": lambda v: v[0]}
_PY_MAX_JETS = 64


@dataclass
class AnomalyFilterParameters:
    src: InputTag = InputTag("vae")
    threshold: float | None = None  # None: the scorer's model's cut for background_efficiency
    reduce: Literal["max", "min", "sum", "leading"] = "max"
    # Thresholds belong to the model that made the scores: they come with the scores. ``model`` is
    # only an assertion (null: whatever the scorer runs); naming another model is a config error.
    model: str | None = None
    # the card's cut keeping this fraction of the background: any the model's thresholds.json holds
    # (hltcard --bkg-eff writes them; the shipped cards hold 1e-2 and 1e-3)
    background_efficiency: str | float = "1e-2"
    # inclusive: one cut for every event; vs_leading_jet_pt: the card's cut at the event's leading
    # scored jet's pT (modules/working_point.py), keeping the same QCD fraction at every pT
    working_point: Literal["inclusive", "vs_leading_jet_pt"] = "inclusive"
    # the report's fixed bins of the value cut on (framework/score_histogram.py): log, signed (a reconstruction
    # loss, a logit); probability, fine in p near 0 and in 1 - p near 1 (a classifier's sigmoid output)
    score_scale: Literal["log", "probability"] = "log"

    def __post_init__(self) -> None:
        # one spelling (0.05 -> "5e-2", the card's), so that --dump and the outputs' provenance say it one way
        self.background_efficiency = efficiency_key(self.background_efficiency).removeprefix("bkg_eff_")
        if self.threshold is not None and self.working_point != "inclusive":
            raise ValueError(f"threshold: a fixed threshold ({self.threshold}) and working_point "
                             f"{self.working_point} exclude each other (drop one)")
        if self.score_scale == "probability" and self.working_point != "inclusive":
            raise ValueError(f"score_scale: probability bins a score in [0, 1]; with working_point "
                             f"{self.working_point} the filter cuts on score / cut, which is no probability "
                             f"(drop score_scale)")
        if self.score_scale == "probability" and self.reduce == "sum":
            raise ValueError("score_scale: probability bins a score in [0, 1]; with reduce: sum the filter cuts on the "
                             "sum of the event's jets' scores, up to one per jet, which is no probability (every "
                             "event above 1 lands past the last bin: drop score_scale, or reduce: max)")
        if self.score_scale == "probability" and self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(f"score_scale: probability bins a score in [0, 1], and threshold {self.threshold} "
                             f"is outside it (a logit's cut? drop score_scale)")


class AnomalyScoreFilter(Filter):
    """Accepts an event whose reduced score is above threshold. Events with no scored jet (no jets,
    or only non-finite inputs) are rejected and counted.

    Without an explicit ``threshold`` the cut is the scorer's model's (``bkg_eff_<background_efficiency>``
    of its card): known at begin_job when the scorer can say which model it runs, else taken from the
    first scores. Every event's scores must come from that same model. With ``working_point:
    vs_leading_jet_pt`` the cut is the card's ``vs_leading_jet_pt`` one at the largest
    ``jet_pt`` among the scored jets (the leading jet: the batcher keeps the leading ones)."""

    Parameters = AnomalyFilterParameters
    concurrency = "stream"  # one per stream: its counter needs no lock
    consumes = {"src": JetScores}
    produces = {}  # a decision only
    report_folder_files = (ROOT_FILE,)  # its score histogram, as TH1Ds: claimed before the first event

    def __init__(self, label: str, params: AnomalyFilterParameters) -> None:
        super().__init__(label, params)
        self.threshold = params.threshold
        self._reduce = REDUCERS[params.reduce]
        self._py_reduce = PY_REDUCERS.get(params.reduce)
        self.no_score_events = 0
        self.model_id: str | None = None  # the model whose scores this filter cuts on
        self._key = efficiency_key(params.background_efficiency)
        self.binned: PtCuts | None = None  # the pT-dependent cuts (working_point: vs_leading_jet_pt)
        self._record_cut: Callable[[Mapping[str, Any]], None] | None = None  # ModuleContext.record_cut
        # the value cut on, per event, in fixed bins (the reports' score distribution with the cut)
        self.score_hist = ScoreHistogram(BINNINGS[params.score_scale])

    @classmethod
    def check_config(cls, label: str, params: AnomalyFilterParameters, inputs: Mapping[str, "ProductInfo"]) -> None:
        """The scorer's published model and thresholds against this filter's settings, at validation."""
        cls._from_scorer(label, params, inputs.get("src"), warn=True)

    def begin_job(self, ctx: "ModuleContext") -> None:
        """The cut of the model whose scores this filter reads, as its scorer publishes it (checked at
        validation); a scorer that publishes nothing: taken from the first scores."""
        chosen = self._from_scorer(self.label, self.params, ctx.inputs.get("src"), warn=False)
        self._record_cut = ctx.record_cut
        if chosen is not None:
            self.model_id, threshold, self.binned = chosen
            if self.threshold is None:
                self.threshold = threshold
        if chosen is not None or self.threshold is not None:  # else said when the first scores give the cut
            self._said_cut()  # a fixed threshold on scores of no named model is never 'adopted': said here

    def _said_cut(self) -> None:
        """Record the cut as resolved (the reports' facts, the output files' provenance)."""
        if self._record_cut is None:
            return
        p: AnomalyFilterParameters = self.params
        cut: dict[str, Any] = {"model": self.model_id, "reduce": p.reduce, "working_point": p.working_point}
        if self.binned is None:
            cut["threshold"] = self.threshold
        else:
            cut["background_efficiency"] = p.background_efficiency
            cut["vs_leading_jet_pt"] = self.binned.describe(self._key)
        self._record_cut(cut)

    @classmethod
    def _from_scorer(cls, label: str, p: AnomalyFilterParameters, src: "ProductInfo | None",
                     warn: bool) -> tuple[str, float | None, PtCuts | None] | None:
        """(model, the card's cut or None, the pT-dependent cuts or None) from what the scorer publishes
        of its scores (None: it publishes nothing); one configuration error if they cannot serve."""
        where = f"modules.{label}"
        try:
            published = src.metadata if src is not None else {}
        except ConfigError as exc:  # the scorer's card is unreadable: name the scorer
            raise ConfigError(f"modules.{src.label}: {exc}") from None
        if "model" not in published:
            return None
        model_id, thresholds, card = published["model"], published.get("thresholds") or {}, published.get("card")
        made_with = (published.get("card_selection") or {}).get("reduce", "max")  # hltcard records it; shipped: max
        if warn and p.reduce != made_with and (p.threshold is None or p.working_point == PT_BINNED_KEY):
            # the card's event-level cuts keep 1% (0.1%) of QCD for the LARGER score of the two leading
            # jets (or the reduction hltcard ran with); with another the background rate is not what the card says
            how = " (the larger score of the two leading jets)" if made_with == "max" else ""
            log.warning("%s: reduce: %s with the card's cuts, which were derived for reduce: %s%s; the QCD rate will "
                        "differ from %s", where, p.reduce, made_with, how, p.background_efficiency, extra={"once": True})
        if p.model is not None and p.model != model_id:
            raise ConfigError(f"{where}.model: '{p.model}' but '{p.src.label}' runs model '{model_id}'; "
                              f"thresholds belong to the model that made the scores (drop {where}.model "
                              f"or set modules.{p.src.label}.model)")
        key = efficiency_key(p.background_efficiency)
        if p.working_point == PT_BINNED_KEY:
            return model_id, None, cls._binned(label, key, thresholds.get(PT_BINNED_KEY), f"{card} has no {model_id}")
        if p.threshold is None and key not in thresholds:
            if published.get("missing_model"):  # the culprit, as the scorer's begin_job would name it
                raise ModuleError(f"modules.{p.src.label}: model file not found: {published['missing_model']}")
            if not thresholds:  # a model of the user's own, its cuts never made: "thresholds.json has no m.bkg_eff_1e-2
                # cut (... it holds: none; hltcard --bkg-eff makes others)", of a file that was not there
                lacking = f"there is no {card}" if published.get("card_found") is False else f"{card} has none for it"
                raise ConfigError(f"{where}: no threshold given and model '{model_id}' has no cuts yet: {lacking} (set "
                                  f"{where}.threshold, or make its cuts once with hltcard MODEL --background QCD.root "
                                  f"--bkg-eff {p.background_efficiency}: docs/your-model.md)")
            held = ", ".join(k.removeprefix("bkg_eff_") for k in thresholds if k.startswith("bkg_eff_")) or "none"
            raise ConfigError(f"{where}: no threshold given and {card} has no {model_id}.{key} "
                              f"cut (set {where}.threshold, or a background_efficiency it holds: {held}; "
                              f"hltcard --bkg-eff makes others)")
        return model_id, thresholds.get(key), None

    @staticmethod
    def _binned(label: str, key: str, cuts: PtCuts | None, lacking: str) -> PtCuts:
        """The card's pT-dependent cuts, or one configuration error saying what the card lacks."""
        where = f"modules.{label}.working_point"
        fix = "(regenerate the card with python -m hltrun.tools.physics.evaluate_models, or use working_point: inclusive)"
        if not isinstance(cuts, (PtBinnedCuts, PtCutFunction)):
            raise ConfigError(f"{where}: {PT_BINNED_KEY} but {lacking}.{PT_BINNED_KEY} cuts {fix}")
        if key not in cuts.cuts:
            raise ConfigError(f"{where}: {PT_BINNED_KEY} but {lacking}.{PT_BINNED_KEY}.{key} cuts {fix}")
        return cuts

    def _adopt(self, scores: JetScores) -> None:
        """First scores of a scorer that could not be asked at begin_job: take its model's cut."""
        p: AnomalyFilterParameters = self.params
        where = f"modules.{self.label}"
        if p.model is not None and scores.model is not None and scores.model != p.model:
            raise ConfigError(f"{where}.model: '{p.model}' but the scores in '{p.src}' come from "
                              f"model '{scores.model}'")
        self.model_id = scores.model
        if p.working_point == PT_BINNED_KEY:
            self.binned = self._binned(self.label, self._key, (scores.thresholds or {}).get(PT_BINNED_KEY),
                                       f"the scores in '{p.src}' carry no")
        elif self.threshold is None:
            cut = (scores.thresholds or {}).get(self._key)
            if cut is None:
                raise ConfigError(f"{where}: no threshold given and the scores in '{p.src}' carry no "
                                  f"{self._key} cut (set {where}.threshold)")
            self.threshold = float(cut)
        self._said_cut()

    def filter(self, event: Event) -> bool:
        scores: JetScores = event.get(self.params.src)
        if scores.model != self.model_id:
            if self.model_id is None or (self.threshold is None and self.binned is None):
                self._adopt(scores)
            elif scores.model is not None:
                cut = (f"the threshold {self.threshold} is" if self.binned is None
                       else f"the {PT_BINNED_KEY} cuts are")
                raise ModuleError(f"module '{self.label}': scores from model '{scores.model}', but "
                                  f"{cut} model '{self.model_id}''s")
        s = scores.score
        if self._py_reduce is not None and len(s) <= _PY_MAX_JETS:
            values = s.tolist()
            valid = scores.valid
            if valid is not None and not is_all_valid(valid):  # the shared all-True mask: nothing to drop
                ok = valid.tolist()
                if False in ok:
                    values = [v for v, keep in zip(values, ok) if keep]
            if not values:
                return self._no_score(event)
            return self._decide(self._py_reduce(values), scores, event)
        if scores.valid is not None:
            s = s[scores.valid]
        if len(s) == 0:
            return self._no_score(event)
        return self._decide(float(self._reduce(s)), scores, event)

    def _decide(self, value: float, scores: JetScores, event: Event) -> bool:
        """``value > cut`` (strict; NaN fails), counted in the score histogram (score / cut with a
        pT-dependent cut) with the event's weight, as the rates weigh it."""
        weight = event_weight(event, self.label)
        if self.binned is None:
            passed = value > self.threshold  # False for NaN
            self.score_hist.fill(value, passed, weight)
        else:
            cut = self._cut(scores)
            passed = value > cut
            self.score_hist.fill_ratio(value, cut, passed, weight)
        return passed

    def _no_score(self, event: Event) -> bool:
        self.no_score_events += 1
        self.score_hist.no_score(event_weight(event, self.label))
        return False

    def _cut(self, scores: JetScores) -> float:
        if self.binned is None:
            return self.threshold
        if scores.jet_pt is None or len(scores.jet_pt) != len(scores.score):
            raise ModuleError(f"module '{self.label}': working_point {PT_BINNED_KEY} needs the jet pT "
                              f"of the scored jets, and the scores in '{self.params.src}' carry none")
        pts = scores.jet_pt if scores.valid is None else scores.jet_pt[scores.valid]  # scored jets only
        return self.binned.cut(self._key, float(np.max(pts)))

    def data_quality(self) -> dict[str, int]:
        return {"events_without_score": self.no_score_events}

    def summary(self) -> dict:
        out = {"threshold": self.threshold, "model": self.model_id, "reduce": self.params.reduce,
               "events_without_score": self.no_score_events,
               # from the settings, not self.binned: a stream that saw no event has not adopted lazy cuts yet
               QUANTITY_KEY: RATIO if self.params.working_point == PT_BINNED_KEY else SCORE}
        if self.binned is not None:
            out.update(working_point=PT_BINNED_KEY, **self.binned.describe(self._key))
        out.update(self.score_hist.counters())
        return out
