"""The shipped HLT path (configs/path.yaml) pinned on the shipped QCD sample with the shipped model.

Each check compares the job with something computed here without the framework's source or batcher:

* leading jets: for every event with >= 3 jets, the batch holds the two highest-pT jets, found here
  by sorting FatJet_pt read with uproot, with those jets' own constituents (pT column);
* scores: the scores written to the output file equal ONNX Runtime's scores on those same jets
  (rebuilt here from the raw branches);
* decisions: an event is kept iff its reduced (max) score is above the configured threshold, read from
  data/models/thresholds.json for the model and efficiency the configuration names;
* rate: the QCD acceptance equals the card's background efficiency within 3 combined binomial sigma
  (this sample, and the effective number of weighted QCD events the threshold was set on, read from
  data/models/metrics.json). A statistical check: it holds as well on QCD of other seeds (data/README.md).

Tolerances, not bit patterns: the ONNX files may be re-exported (scores move at 1e-5 relative).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]
pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]
QCD = REPO / "data" / "qcd_dijet.root"

def card_effective_events() -> float:
    """The effective number of QCD events the card's cuts were set on (weighted: the card's n_effective)."""
    import json

    return float(json.loads((REPO / "data/models/metrics.json").read_text())["background"]["n_effective"])
RTOL = 2e-5


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict:
    from tests.helpers import run_config
    from tests.plugins import RECORDED

    cfg = yaml.safe_load((REPO / "configs" / "path.yaml").read_text())
    d = tmp_path_factory.mktemp("shipped")
    cfg["source"]["files"] = [str(QCD)]
    cfg["options"]["numberOfThreads"] = 2
    cfg["modules"]["vae"]["backend"] = "onnxruntime"
    cfg["modules"]["out"]["file"] = str(d / "out.root")
    cfg["modules"]["rec"] = {"type": "TestRecorder", "src": ["source", "batcher", "vae"]}
    cfg["endpaths"]["recordPath"] = ["rec"]
    cfg["services"] = {}
    (d / "path.yaml").write_text(yaml.safe_dump(cfg))
    RECORDED.pop("rec", None)
    summary, _ = run_config(d / "path.yaml")
    recorded = {ev: products for ev, products in RECORDED.pop("rec")}
    filt = cfg["modules"]["anomalyFilter"]
    card = json.loads((REPO / "data" / "models" / "thresholds.json").read_text())
    key = f"bkg_eff_{filt['background_efficiency']}"
    model = cfg["modules"][filt["src"]]["model"]  # thresholds are the scorer's model's (they travel with the scores)
    return {"summary": summary, "recorded": recorded, "model": model, "reduce": filt["reduce"],
            "threshold": float(card[model][key]), "efficiency": float(filt["background_efficiency"]),
            "out": uproot.open(d / "out.root")["Events"].arrays(library="ak"), "file": d / "out.root"}


@pytest.fixture(scope="module")
def raw() -> dict:
    """The leading two jets of every event, chosen here by sorting FatJet_pt, and their model input."""
    from hltrun.modules.models.preprocess import jets_to_array

    arr = uproot.open(QCD)["Events"].arrays(["event", "FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_nConstituents",
                                             "FatJetPFCand_pt", "FatJetPFCand_eta", "FatJetPFCand_phi"])
    events, inputs, pts, n_jets = [], [], [], []
    for ev in arr:
        pt = np.asarray(ev["FatJet_pt"])
        order = np.argsort(-pt, kind="stable")[:2]
        counts = np.asarray(ev["FatJet_nConstituents"])
        starts = np.concatenate([[0], np.cumsum(counts)])
        cand = {k: np.asarray(ev[f"FatJetPFCand_{k}"]) for k in ("pt", "eta", "phi")}
        sel = np.concatenate([np.arange(starts[j], starts[j + 1]) for j in order]) if len(order) else np.zeros(0, int)
        x = jets_to_array(cand["pt"][sel], cand["eta"][sel], cand["phi"][sel], counts[order],
                          np.asarray(ev["FatJet_eta"])[order], np.asarray(ev["FatJet_phi"])[order])
        events.append(int(ev["event"]))
        inputs.append(x)
        pts.append(pt[order])
        n_jets.append(len(pt))
    return {"event": events, "inputs": inputs, "pt": pts, "n_jets": np.array(n_jets)}


@pytest.fixture(scope="module")
def reference_scores(shipped, raw) -> list[np.ndarray]:
    """ONNX Runtime on the jets chosen here, one batch for the whole file."""
    from hltrun.modules.inference import BackendOptions, create_backend

    backend = create_backend("onnxruntime", REPO / "data" / "models" / f"{shipped['model']}.onnx",
                             BackendOptions()).load()
    flat = backend.run(np.concatenate(raw["inputs"]))["score"]
    return np.split(flat, np.cumsum([len(x) for x in raw["inputs"]])[:-1])


def test_batch_holds_the_two_leading_jets(shipped, raw):
    many = np.flatnonzero(raw["n_jets"] >= 3)
    assert len(many) >= 50  # the sample has enough 3- and 4-jet events for this to mean something
    rec = shipped["recorded"]
    for i in many:
        source, batch, _ = rec[raw["event"][i]]
        assert len(batch.inputs) == 2
        np.testing.assert_allclose(batch.jet_pt, raw["pt"][i], rtol=1e-6, err_msg=f"event {raw['event'][i]}")
        assert batch.jet_pt[0] >= batch.jet_pt[1] >= np.sort(source.pt)[-3]
        # the leading jets' own constituents: pT column and (deta, dphi) as rebuilt from the raw branches
        np.testing.assert_allclose(batch.inputs, raw["inputs"][i], rtol=1e-5, atol=1e-5,
                                   err_msg=f"event {raw['event'][i]}")


def test_output_scores_equal_the_backend_on_the_same_jets(shipped, raw, reference_scores):
    out = shipped["out"]
    index = {e: i for i, e in enumerate(raw["event"])}
    assert len(out) > 0
    for ev, score in zip(out["event"].to_list(), out["vae_score"].to_list()):
        np.testing.assert_allclose(score, reference_scores[index[ev]], rtol=RTOL, err_msg=f"event {ev}")


def test_kept_iff_reduced_score_above_threshold(shipped, raw, reference_scores):
    assert shipped["reduce"] == "max"
    thr = shipped["threshold"]
    kept = set(shipped["out"]["event"].to_list())
    above = {e for e, s in zip(raw["event"], reference_scores) if len(s) and float(np.max(s)) > thr}
    assert kept == above
    for ev, (_, _, scores) in shipped["recorded"].items():  # the job's own scores, kept or not
        best = float(np.max(scores.score)) if len(scores.score) else -math.inf
        assert (ev in kept) == (best > thr), f"event {ev}: max score {best} vs threshold {thr}"
    # a shifted threshold would not give the same set: the scores near the cut are not all far from it
    margin = min(abs(float(np.max(s)) - thr) for s in reference_scores if len(s))
    assert margin < 0.05 * thr


def test_qcd_acceptance_matches_the_card(shipped, raw):
    s = shipped["summary"]
    n, passed = s.events_processed, s.events_passed
    assert n == len(raw["event"])
    p = shipped["efficiency"]
    sigma = math.sqrt(p * (1 - p) / n + p * (1 - p) / card_effective_events())
    acc = passed / n
    print(f"QCD acceptance {acc:.4f} ({passed}/{n}), card {p}, combined sigma {sigma:.4f}")
    assert abs(acc - p) < 3 * sigma, f"QCD acceptance {acc:.4f} ({passed}/{n}) vs card {p} +- {sigma:.4f}"


def test_the_output_says_which_network_and_cut_made_its_bits(shipped):
    """Months later the file alone names the network (its file's sha256, computed here) and the cut as
    resolved from the card (not only the card's name), as CMSSW files keep their ParameterSets."""
    import hashlib

    from hltrun.modules.root_output import read_provenance

    record = read_provenance(shipped["file"])
    vae = record["accelerators"]["vae"]
    assert (vae["backend"], vae["model_id"]) == ("onnxruntime", shipped["model"])
    model_file = REPO / "data" / "models" / f"{shipped['model']}.onnx"
    assert vae["model_sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    cut = record["cuts"]["anomalyFilter"]
    assert (cut["model"], cut["reduce"], cut["threshold"]) == (shipped["model"], "max", shipped["threshold"])
    assert record["configuration"]["modules"]["vae"]["backend"] == "onnxruntime"
    assert record["producer"].startswith("hltrun ")
    assert shipped["summary"].facts["cuts"] == record["cuts"]  # the report's facts say the same
