"""Trigger filter on the per-event anomaly score (the per-jet scores reduced over jets)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from framework.errors import ConfigError
from framework.event import Event
from framework.module import Filter
from framework.registry import register_module
from framework.schema import InputTag

from .products import JetScores
from .shipped import find_file

REDUCERS = {
    "max": np.max,
    "min": np.min,
    "sum": np.sum,
    "leading": lambda s: s[0],
}


@dataclass
class AnomalyFilterParameters:
    src: InputTag = InputTag("vae")
    threshold: float | None = None  # None: taken from thresholds_file for the chosen rate
    reduce: Literal["max", "min", "sum", "leading"] = "max"
    thresholds_file: str = "data/models/thresholds.json"
    model: str = "conv_vae"  # key in thresholds_file
    background_efficiency: Literal["1e-2", "1e-3"] = "1e-2"


@register_module("AnomalyScoreFilter")
class AnomalyScoreFilter(Filter):
    """Accepts an event whose reduced score is above threshold. Events with no scored jet (no jets,
    or only non-finite inputs) are rejected and counted."""

    Parameters = AnomalyFilterParameters
    concurrency = "stream"  # one per stream: its counter needs no lock

    def __init__(self, label: str, params: AnomalyFilterParameters) -> None:
        super().__init__(label, params)
        self.threshold = params.threshold
        self._reduce = REDUCERS[params.reduce]
        self.no_score_events = 0

    def begin_job(self, job) -> None:  # noqa: ANN001
        if self.threshold is None:
            self.threshold = self._threshold_from_file()

    def _threshold_from_file(self) -> float:
        p: AnomalyFilterParameters = self.params
        where = f"modules.{self.label}"
        path = find_file(p.thresholds_file)
        try:
            table = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{where}: no threshold given and thresholds file {path} not found") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where}: cannot read thresholds file {path}: {exc}") from None
        key = f"bkg_eff_{p.background_efficiency}"
        try:
            return float(table[p.model][key])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{where}: {path} has no {p.model}.{key} threshold") from None

    def filter(self, event: Event) -> bool:
        scores: JetScores = event.get(self.params.src)
        s = scores.score
        if scores.valid is not None:
            s = s[scores.valid]
        if len(s) == 0:
            self.no_score_events += 1
            return False
        value = float(self._reduce(s))
        return not math.isnan(value) and value > self.threshold

    def summary(self) -> dict:
        return {"threshold": self.threshold, "reduce": self.params.reduce, "events_without_score": self.no_score_events}
