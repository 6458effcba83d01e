"""Per-event weights (a weighted sample's genWeight) summed exactly, for the distributions shown beside the rates.

Why integers: a float sum depends on the order of the events, and streams, Dask units and workers add their
parts in no fixed order. A weight is kept in fixed point, w in units of 2^-W_BITS and w^2 as that integer
squared (units of 2^-2 W_BITS), so sums add up exactly, in any order, through the framework's integer-counter
merging (``framework/results.py``: streams, units, a worker's cumulative counters differenced per unit). A
float32 genWeight is exact from 4.5e-13 up; a float64 weight rounds by at most 2^-65.

Counters hold the EXCESS over the event count (sum of w - 1, sum of w^2 - 1): an event of weight 1, or without
a weight, adds nothing, so a sample without weights keeps exactly the counters it had.
"""

from __future__ import annotations

import math
from typing import Any

from .config import WEIGHT_TAG
from .errors import ModuleError

W_BITS = 64
ONE = 1 << W_BITS  # a weight of 1
ONE2 = 1 << (2 * W_BITS)  # a squared weight of 1


def fixed_point(weight: float) -> int:
    """``weight`` in units of 2^-W_BITS, rounded to the nearest; a non-finite one is a ValueError."""
    if not math.isfinite(weight):
        raise ValueError(f"event weight {weight}: not a finite number")
    return round(math.ldexp(weight, W_BITS))


def excess(weight: float) -> tuple[int, int]:
    """(w - 1, w^2 - 1) in fixed point: what an event of ``weight`` adds beyond its count."""
    q = fixed_point(weight)
    return q - ONE, q * q - ONE2


def total(count: int, excess_w: int, excess_w2: int) -> tuple[float, float]:
    """(sum w, sum w^2) of ``count`` events from their recorded excesses, each correctly rounded."""
    return (count * ONE + excess_w) / ONE, (count * ONE2 + excess_w2) / ONE2


def is_fixed_point(key: str) -> bool:
    """Whether a module's summary counter ``key`` is a fixed-point weight sum: by the naming every module
    uses for them, ``<name>_w:<bin>`` (sum of w - 1) and ``<name>_w2:<bin>`` (sum of w^2 - 1)."""
    return key.split(":", 1)[0].endswith(("_w", "_w2"))


def readable(counters: dict[str, Any]) -> dict[str, Any]:
    """``counters`` as hltrun.json shows them: each fixed-point weight sum as a float in units of weight
    (``_w``) or squared weight (``_w2``), rounded once. The integers are for merging only: they reach 10^40
    (w^2 in units of 2^-128), which JSON readers that hold numbers as doubles (JavaScript, jq 1.6, pandas)
    read wrong or refuse."""
    return {key: (value / (ONE2 if key.split(":", 1)[0].endswith("_w2") else ONE))
            if isinstance(value, int) and not isinstance(value, bool) and is_fixed_point(key) else value
            for key, value in counters.items()}


def event_weight(event: Any, label: str) -> float:
    """The event's generator weight (the source's, from files that carry one), else 1: what the TriggerRates
    service counts it with. Read, not consumed (consuming it makes every input file need the branch); a
    non-finite one fails the event with one line naming module ``label`` and the event."""
    if not event.has(WEIGHT_TAG):
        return 1.0
    weight = event.get(WEIGHT_TAG)
    if not math.isfinite(weight):
        raise ModuleError(f"module '{label}': event weight '{WEIGHT_TAG}' is {weight} ({event.id}): no weighted "
                          "distribution can hold it")
    return weight
