"""Regression against data/reference/: the shipped path, both models, ONNX Runtime and TensorFlow.

Every event of every shipped sample is rerun with the command the reference was made with
(tools/physics/make_reference.py) and compared through the hltdiff library: decisions exactly, per-jet scores
within the stated tolerance, no event missing. Regenerate the references on purpose only
(``python -m hltrun.tools.physics.make_reference``, see its docstring).
"""

from __future__ import annotations

import numpy as np
import pytest
import uproot

from hltrun.tools.physics import make_reference as ref

pytestmark = pytest.mark.slow

CASES = [(m, b) for m in ref.MODELS for b in ref.BACKENDS]


def _require(backend: str) -> None:
    pytest.importorskip("onnxruntime")
    if backend == "tensorflow":
        pytest.importorskip("tensorflow")


@pytest.mark.parametrize("model,backend", CASES)
def test_rerun_matches_reference(tmp_path, model, backend):
    _require(backend)
    reference = ref.reference_path(model, backend)
    assert reference.exists(), f"{reference} missing: run python -m hltrun.tools.physics.make_reference"
    out = tmp_path / "out.root"
    ref.run(model, backend, out)
    diff = ref.compare_files(reference, out)
    assert diff.only_in_old == diff.only_in_new == 0 and diff.compared == diff.common
    assert all(t.gained == t.lost == 0 for t in diff.triggers), [t.__dict__ for t in diff.triggers]
    assert not any(diff.branches.values()), diff.examples


def test_references_cover_every_event_and_agree_across_backends():
    pytest.importorskip("onnxruntime")
    n_events = sum(uproot.open(ref.ROOT / "data" / f"{s}.root")["Events"].num_entries for s in ref.SAMPLES)
    for model in ref.MODELS:
        files = [ref.reference_path(model, b) for b in ref.BACKENDS]
        arrays = [uproot.open(f)["Events"].arrays(library="np") for f in files]
        assert all(len(a["event"]) == n_events for a in arrays)
        assert 0 < arrays[0]["HLT_AnomalyDetection"].sum() < n_events  # the filter does select
        diff = ref.compare_files(*files)  # TF vs ORT: same decisions, scores within the criterion
        assert all(t.gained == t.lost == 0 for t in diff.triggers)
        assert not any(diff.branches.values()), diff.examples


def test_compare_catches_a_changed_decision_and_score(tmp_path):
    """The comparison the regression relies on must see a flipped decision and a 1e-3 score change."""
    import awkward as ak

    reference = ref.reference_path("conv_vae", "onnxruntime")
    arr = uproot.open(reference)["Events"].arrays()
    flipped = np.asarray(arr["HLT_AnomalyDetection"]).copy()
    flipped[3] = ~flipped[3]
    score = ak.where(ak.local_index(arr["vae_score"]) == 0, arr["vae_score"] * (1 + 1e-3), arr["vae_score"])
    changed = {f: arr[f] for f in ("run", "luminosityBlock", "event")}
    changed["HLT_AnomalyDetection"] = flipped
    changed["vae"] = ak.zip({"score": score, "kl": arr["vae_kl"], "valid": arr["vae_valid"]})
    out = tmp_path / "changed.root"
    with uproot.recreate(out) as f:
        f.mktree("Events", {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in changed.items()},
                 field_name=lambda outer, inner: f"{outer}_{inner}", counter_name=lambda c: f"n{c}")
        f["Events"].extend(changed)
    diff = ref.compare_files(reference, out)
    trig = diff.triggers[0]
    assert trig.gained + trig.lost == 1
    has_jets = int(np.sum(np.asarray(ak.num(arr["vae_score"])) > 0))
    assert diff.branches["vae_score"] == has_jets
