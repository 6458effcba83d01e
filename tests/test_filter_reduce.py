"""The filter's per-event reduction on Python floats (max / min / leading of the few jets of an
event) decides exactly as numpy's reduction of the valid scores: NaN, infinities, ties, signed
zeros, invalid jets and the threshold's own value included (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hltrun.modules.anomaly_filter import REDUCERS
from tests.test_anomaly_filter import decide, make

SCORE = st.sampled_from([0.0, -0.0, 0.5, 0.50000006, 1.0, 3.0, -1.0, float("inf"), float("-inf"), float("nan")])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(SCORE, st.booleans()), max_size=8), st.sampled_from(["max", "min", "leading"]),
       st.booleans())
def test_python_reduction_decides_as_numpy(jets, reduce, with_mask):
    scores = np.array([s for s, _ in jets], np.float32)
    valid = np.array([v for _, v in jets], bool) if with_mask else None
    kept = scores if valid is None else scores[valid]
    if len(kept) == 0:
        want = False
    else:
        value = float(REDUCERS[reduce](kept))
        want = not math.isnan(value) and value > 0.5
    assert decide(make(threshold=0.5, reduce=reduce), scores, valid) is want
