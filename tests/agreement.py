"""One agreement criterion for every pair of backends (DESIGN.md): scores within AGREEMENT_RTOL
relative per jet, kl close, identical decisions at the model card's thresholds and at score
quantiles (there for jets further than the tolerance from the cut)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hltrun.modules.inference.base import AGREEMENT_RTOL

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"
SAMPLES = sorted((MODELS.parent).glob("*.root"))


def shipped_jets(max_events: int = 150) -> np.ndarray:
    """The leading jets of the first events of every shipped sample, as (N, 100, 3)."""
    from hltrun.modules.models.preprocess import load_jets

    return np.concatenate([load_jets(str(f), max_events=max_events)[0] for f in SAMPLES])


def card_thresholds(model: str) -> list[float]:
    card = MODELS / "thresholds.json"
    if not card.exists():
        return []
    return [float(v) for v in json.loads(card.read_text()).get(model, {}).values() if isinstance(v, (int, float))]


def assert_agree(model: str, ref: dict[str, np.ndarray], out: dict[str, np.ndarray], what: str) -> None:
    assert ref["valid"].all() and out["valid"].all()
    rel = np.abs(out["score"] - ref["score"]) / np.abs(ref["score"])
    assert rel.max() <= AGREEMENT_RTOL, f"{what}: max relative score difference {rel.max():.2e} on {len(rel)} jets"
    np.testing.assert_allclose(out["kl"], ref["kl"], rtol=1e-5, atol=1e-6)
    for thr in [float(np.quantile(ref["score"], q)) for q in (0.5, 0.9, 0.99)]:
        far = np.abs(ref["score"] - thr) > AGREEMENT_RTOL * thr
        assert np.array_equal(out["score"][far] > thr, ref["score"][far] > thr), f"{what}: decisions differ at {thr}"
    thresholds = card_thresholds(model)
    assert thresholds or not (MODELS / "thresholds.json").exists()
    for thr in thresholds:
        assert np.array_equal(out["score"] > thr, ref["score"] > thr), f"{what}: decisions differ at {thr}"
