"""Trigger filter on the per-event anomaly score (the per-jet scores reduced over jets)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from framework.errors import ConfigError, ModuleError
from framework.event import Event
from framework.module import Filter
from framework.registry import register_module
from framework.schema import InputTag

from .products import JetScores

REDUCERS = {
    "max": np.max,
    "min": np.min,
    "sum": np.sum,
    "leading": lambda s: s[0],
}


def _nan_or(pick):  # noqa: ANN001, ANN202
    """np.max/np.min on a list: NaN if any value is NaN (as numpy), else the exact extreme."""
    return lambda v: math.nan if any(x != x for x in v) else pick(v)


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
    background_efficiency: Literal["1e-2", "1e-3"] = "1e-2"


@register_module("AnomalyScoreFilter")
class AnomalyScoreFilter(Filter):
    """Accepts an event whose reduced score is above threshold. Events with no scored jet (no jets,
    or only non-finite inputs) are rejected and counted.

    Without an explicit ``threshold`` the cut is the scorer's model's (``bkg_eff_<background_efficiency>``
    of its card): known at begin_job when the scorer can say which model it runs, else taken from the
    first scores. Every event's scores must come from that same model."""

    Parameters = AnomalyFilterParameters
    concurrency = "stream"  # one per stream: its counter needs no lock

    def __init__(self, label: str, params: AnomalyFilterParameters) -> None:
        super().__init__(label, params)
        self.threshold = params.threshold
        self._reduce = REDUCERS[params.reduce]
        self._py_reduce = PY_REDUCERS.get(params.reduce)
        self.no_score_events = 0
        self.model_id: str | None = None  # the model whose scores this filter cuts on
        self._key = f"bkg_eff_{params.background_efficiency}"

    def begin_job(self, job) -> None:  # noqa: ANN001
        p: AnomalyFilterParameters = self.params
        where = f"modules.{self.label}"
        scorer = (getattr(job.config, "modules", None) or {}).get(p.src.label)
        publish = getattr(getattr(scorer, "cls", None), "published_thresholds", None)
        if publish is None:  # a scorer that cannot tell: checked on the first scores instead
            return
        model_id, thresholds, card = publish(scorer.params)
        self.model_id = model_id
        if p.model is not None and p.model != model_id:
            raise ConfigError(f"{where}.model: '{p.model}' but '{p.src.label}' runs model '{model_id}'; "
                              f"thresholds belong to the model that made the scores (drop {where}.model "
                              f"or set modules.{p.src.label}.model)")
        if self.threshold is None:
            if self._key not in thresholds:
                raise ConfigError(f"{where}: no threshold given and {card} has no {model_id}.{self._key} "
                                  f"cut (set {where}.threshold)")
            self.threshold = thresholds[self._key]

    def _adopt(self, scores: JetScores) -> None:
        """First scores of a scorer that could not be asked at begin_job: take its model's cut."""
        p: AnomalyFilterParameters = self.params
        where = f"modules.{self.label}"
        if p.model is not None and scores.model is not None and scores.model != p.model:
            raise ConfigError(f"{where}.model: '{p.model}' but the scores in '{p.src}' come from "
                              f"model '{scores.model}'")
        self.model_id = scores.model
        if self.threshold is None:
            cut = (scores.thresholds or {}).get(self._key)
            if cut is None:
                raise ConfigError(f"{where}: no threshold given and the scores in '{p.src}' carry no "
                                  f"{self._key} cut (set {where}.threshold)")
            self.threshold = float(cut)

    def filter(self, event: Event) -> bool:
        scores: JetScores = event.get(self.params.src)
        if scores.model != self.model_id:
            if self.model_id is None or self.threshold is None:
                self._adopt(scores)
            elif scores.model is not None:
                raise ModuleError(f"module '{self.label}': scores from model '{scores.model}', but the "
                                  f"threshold {self.threshold} is model '{self.model_id}''s")
        s = scores.score
        if self._py_reduce is not None and len(s) <= _PY_MAX_JETS:
            values = s.tolist()
            if scores.valid is not None:
                ok = scores.valid.tolist()
                if False in ok:
                    values = [v for v, keep in zip(values, ok) if keep]
            if not values:
                self.no_score_events += 1
                return False
            value = self._py_reduce(values)
            return not math.isnan(value) and value > self.threshold
        if scores.valid is not None:
            s = s[scores.valid]
        if len(s) == 0:
            self.no_score_events += 1
            return False
        value = float(self._reduce(s))
        return not math.isnan(value) and value > self.threshold

    def data_quality(self) -> dict[str, int]:
        return {"events_without_score": self.no_score_events}

    def summary(self) -> dict:
        return {"threshold": self.threshold, "model": self.model_id, "reduce": self.params.reduce,
                "events_without_score": self.no_score_events}
