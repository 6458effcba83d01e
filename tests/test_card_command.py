"""``hltcard`` (tools/physics/card.py): thresholds for any model by one command, through the path.

The model is built here with the onnx helper API: score per jet = the sum of its constituents' pT
over the (N, 100, 3) input, so every number the command writes is computed again here independently,
from the ROOT file with uproot and numpy (leading two jets by pT, their 100 hardest constituents, max
over the jets, a weighted quantile written out longhand), and must agree. The command is run as a
user would (``main([...])``, the console script's function), on data/qcd_dijet.root.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
pytest.importorskip("matplotlib", reason="matplotlib (extra 'cpu') not installed")
import uproot  # noqa: E402
from tests.helpers import stdout_full  # noqa: E402
from tests.independent import longhand_cut  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from hltrun.tools.physics.card import main as hltcard  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QCD = REPO / "data" / "qcd_dijet.root"
N_EVENTS = 1500  # 15 events above a 1% cut: above the 10 the command asks for by default
ORT = ["--set", "modules.vae.backend=onnxruntime"]  # the same engine everywhere (auto would time engines)


def pt_sum_model(path: Path, kind: str = "ok") -> Path:
    """score = sum of the constituents' pT (feature 2); ``nan``: sqrt(-1 - that), NaN for every jet;
    ``n50``: the same model on (N, 50, 3) input, which the path cannot feed."""
    n = 50 if kind == "n50" else 100
    inits = [helper.make_tensor("two", TensorProto.INT64, [], [2]),
             helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    nodes = [helper.make_node("Gather", ["jets", "two"], ["pt"], axis=2),
             helper.make_node("ReduceSum", ["pt", "axes"], ["s" if kind == "nan" else "score"], keepdims=0)]
    if kind == "nan":
        inits.append(helper.make_tensor("minus_one", TensorProto.FLOAT, [], [-1.0]))
        nodes += [helper.make_node("Sub", ["minus_one", "s"], ["neg"]), helper.make_node("Sqrt", ["neg"], ["score"])]
    graph = helper.make_graph(nodes, "pt_sum", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", n, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def numpy_features(file: Path, n_events: int) -> dict[str, np.ndarray]:
    """Independently of hltrun: per event the max over the two leading jets of the pT sum of their 100
    hardest constituents (-inf without jets), the leading jet's pT, per jet the scores, and genWeight."""
    with uproot.open(file) as f:
        t = f["Events"]
        a = t.arrays(["FatJet_pt", "FatJet_nConstituents", "FatJetPFCand_pt"]
                     + (["genWeight"] if "genWeight" in t.keys() else []), entry_stop=n_events, library="np")
    ev, lead, jets, w = [], [], [], []
    for i in range(len(a["FatJet_pt"])):
        pt, ncons, cand = a["FatJet_pt"][i], a["FatJet_nConstituents"][i], a["FatJetPFCand_pt"][i]
        starts = np.concatenate([[0], np.cumsum(ncons)[:-1]]).astype(int)
        order = np.argsort(-pt, kind="stable")[:2]
        scores = [float(np.sum(np.sort(cand[starts[j]:starts[j] + ncons[j]])[::-1][:100].astype(np.float64)))
                  for j in order]
        jets += scores
        ev.append(max(scores) if scores else -np.inf)
        lead.append(float(pt[order[0]]) if len(order) else 0.0)
        w.append(float(a["genWeight"][i]) if "genWeight" in a else 1.0)
    return {"event": np.array(ev), "lead": np.array(lead), "jets": np.array(jets), "weight": np.array(w),
            "jet_weight": np.repeat(np.array(w), [min(len(p), 2) for p in a["FatJet_pt"]])}


def weighted_copy(src: Path, dest: Path, n_events: int) -> Path:
    """The first ``n_events`` of ``src`` with a genWeight branch: physical-looking (falling with the
    leading pT) and uneven, so that a weighted cut differs from an unweighted one."""
    import awkward as ak

    from hltrun.modules.rootio import write_nanoaod

    with uproot.open(src) as f:
        a = f["Events"].arrays(entry_stop=n_events)
    lead = ak.to_numpy(ak.fill_none(ak.max(a["FatJet_pt"], axis=1), 300.0)).astype(np.float64)
    weight = (lead / 500.0) ** -4 * (1 + 0.5 * np.sin(np.arange(len(lead))))
    data = {k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event", "processId", "mjj")}
    data["genWeight"] = weight.astype(np.float32)
    data["FatJet"] = ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")})
    data["FatJetPFCand"] = ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})
    with uproot.recreate(dest) as f:
        write_nanoaod(f, "Events", data)
    return dest


def nlo_copy(src: Path, dest: Path, n_events: int, negative: float, seed: int) -> Path:
    """The first ``n_events`` of ``src`` with an NLO-like genWeight (aMC@NLO: one magnitude, a fraction
    ``negative`` of the events at -1)."""
    import awkward as ak

    from hltrun.modules.rootio import write_nanoaod

    with uproot.open(src) as f:
        a = f["Events"].arrays(entry_stop=n_events)
    data = {k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event")}
    data["genWeight"] = np.where(np.random.default_rng(seed).random(len(a)) < negative, -1.0, 1.0).astype(np.float32)
    data["FatJet"] = ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")})
    data["FatJetPFCand"] = ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})
    with uproot.recreate(dest) as f:
        write_nanoaod(f, "Events", data)
    return dest


def scaled_copy(src: Path, dest: Path, n_events: int, factor: float) -> Path:
    """The first ``n_events`` of ``src`` with every jet's and constituent's pT (and jet mass) times ``factor``,
    and other event numbers: a sample from another generation, softer or harder than the shipped one."""
    import awkward as ak

    from hltrun.modules.rootio import write_nanoaod

    with uproot.open(src) as f:
        a = f["Events"].arrays(entry_stop=n_events)
    data = {k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "processId", "mjj")}
    data["event"] = np.arange(7_000_001, 7_000_001 + len(a), dtype=np.uint64)
    data["FatJet"] = ak.zip({k: a[f"FatJet_{k}"] * factor if k in ("pt", "mass") else a[f"FatJet_{k}"]
                             for k in ("pt", "eta", "phi", "mass", "nConstituents")})
    data["FatJetPFCand"] = ak.zip({k: a[f"FatJetPFCand_{k}"] * factor if k == "pt" else a[f"FatJetPFCand_{k}"]
                                   for k in ("pt", "eta", "phi")})
    with uproot.recreate(dest) as f:
        write_nanoaod(f, "Events", data)
    return dest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("mymodels")
    pt_sum_model(d / "ptsum.onnx")
    return d


@pytest.fixture(scope="module")
def carded(model_dir) -> tuple[Path, str]:
    """hltcard on data/qcd_dijet.root into the model's folder, beside another model's entry."""
    (model_dir / "thresholds.json").write_text(json.dumps({"other": {"bkg_eff_1e-2": 0.5}}))
    rc = hltcard([str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--bkg-eff", "1e-2",
                  "--max-events", str(N_EVENTS), "--signal", str(REPO / "data/rsg_ww_3p5TeV.root"), *ORT])
    assert rc == 0
    return model_dir, "ptsum"


@pytest.mark.slow  # the shared run over 1500 shipped events (~5 s)
def test_cuts_agree_with_an_independent_numpy_computation(carded):
    d, name = carded
    table = json.loads((d / "thresholds.json").read_text())
    assert table["other"] == {"bkg_eff_1e-2": 0.5}  # other models' entries are kept
    entry = table[name]
    f = numpy_features(QCD, N_EVENTS)
    for key, scores, w in (("bkg_eff_1e-2", f["event"], f["weight"]), ("jet_bkg_eff_1e-2", f["jets"], f["jet_weight"])):
        want = longhand_cut(scores, w, 1e-2)
        assert entry[key] == pytest.approx(want, rel=1e-5), key  # float32 sums in the model, float64 here
        # the same events pass: the cut is not at a score
        assert np.array_equal(scores > entry[key], scores > want)
        assert (scores > want).sum() == int(1e-2 * len(scores))
    card = json.loads((d / f"{name}_card.json").read_text())
    with uproot.open(QCD) as fh:  # a regenerated sample carries genWeight (all 1): the card says it read it
        weighted = "genWeight" in fh["Events"].keys()
    assert card["background"]["events"] == N_EVENTS and card["background"]["gen_weight"] is weighted
    acc = card["background"]["accounting"]
    assert acc["events_processed"] == N_EVENTS
    assert acc["events_without_scored_jet"] == int(np.isinf(f["event"]).sum())
    c = card["cuts"]["bkg_eff_1e-2"]
    p = 15 / N_EVENTS
    assert c["n_pass"] == 15 and c["rate"] == pytest.approx(p)
    assert c["error"] == pytest.approx(np.sqrt(p * (1 - p) / N_EVENTS))  # binomial, unit weights
    assert c["rate_hz"] == pytest.approx(p * 100e3) and c["rate_hz_error"] == pytest.approx(c["error"] * 100e3)
    # pass rates per leading-jet pT bin add up to the whole sample
    rows = card["pt_pass_rates"]["bkg_eff_1e-2"]["inclusive"]
    assert sum(r["n_events"] for r in rows) == N_EVENTS and sum(r["n_pass"] for r in rows) == 15
    sig = numpy_features(REPO / "data/rsg_ww_3p5TeV.root", N_EVENTS)
    got = card["signals"][str(REPO / "data/rsg_ww_3p5TeV.root")]["bkg_eff_1e-2"]["rate"]
    assert got == pytest.approx(np.mean(sig["event"] > entry["bkg_eff_1e-2"]))
    text = (d / f"{name}_card.md").read_text()
    assert "| `bkg_eff_1e-2` | 1 % |" in text and "| 1 kHz ± 257 Hz |" in text and "## Signal efficiency" in text
    assert {p.name for p in d.iterdir()} >= {"ptsum_scores.png", "ptsum_pass_rate_vs_pt.png"}
    assert not any(p.name.endswith(".tmp") for p in d.iterdir())


@pytest.mark.slow  # the shared run over 1500 shipped events (~5 s)
def test_pt_dependent_cut_is_the_working_point_fit_on_the_same_events(carded):
    from hltrun.tools.physics.eval_working_point import derive

    d, name = carded
    got = json.loads((d / "thresholds.json").read_text())[name]["vs_leading_jet_pt"]
    f = numpy_features(QCD, N_EVENTS)
    fit = derive(f["event"], f["weight"], f["lead"], {"bkg_eff_1e-2": 1e-2})["bkg_eff_1e-2"]
    assert got["pt_range_gev"] == pytest.approx(list(fit.pt_range_gev))
    assert got["bkg_eff_1e-2"] == pytest.approx(fit.coefficients.tolist(), rel=1e-4)


@pytest.mark.slow  # the shared run over 1500 shipped events (~5 s)
def test_the_path_picks_up_the_new_cut_without_a_threshold(carded, tmp_path):
    from tests.helpers import run_config

    d, name = carded
    cut = json.loads((d / "thresholds.json").read_text())[name]["bkg_eff_1e-2"]
    summary, _ = run_config(REPO / "configs/path.yaml", f"modules.vae.model={d / 'ptsum.onnx'}",
                            "modules.vae.backend=onnxruntime", f"modules.out.file={tmp_path / 'out.root'}",
                            f"source.files=[{QCD}]", f"options.maxEvents={N_EVENTS}")  # the card's file, named
    assert summary.failure is None
    assert summary.module_summaries["anomalyFilter"]["threshold"] == cut
    assert summary.paths["HLT_AnomalyDetection"].passed == 15  # the same events as the card's


@pytest.mark.slow  # a card and a path run over 1500 shipped events (~10 s)
def test_the_path_selects_a_cut_at_any_efficiency_the_card_made(model_dir, tmp_path):
    """``--bkg-eff 5e-2`` wrote a bkg_eff_5e-2 cut the filter could not select: its background_efficiency
    took 1e-2 or 1e-3 only ('expected one of'), so the option's own cut was unusable by name."""
    from tests.helpers import run_config

    shutil.copy(model_dir / "ptsum.onnx", tmp_path / "ptsum.onnx")
    assert hltcard([str(tmp_path / "ptsum.onnx"), "--background", str(QCD), "--bkg-eff", "5e-2",
                    "--max-events", str(N_EVENTS), "--no-plots", *ORT]) == 0
    cut = json.loads((tmp_path / "thresholds.json").read_text())["ptsum"]["bkg_eff_5e-2"]
    summary, _ = run_config(REPO / "configs/path.yaml", f"modules.vae.model={tmp_path / 'ptsum.onnx'}",
                            "modules.vae.backend=onnxruntime", "modules.anomalyFilter.background_efficiency=5e-2",
                            f"modules.out.file={tmp_path / 'out.root'}", f"source.files=[{QCD}]",
                            f"options.maxEvents={N_EVENTS}")
    assert summary.failure is None
    assert summary.module_summaries["anomalyFilter"]["threshold"] == cut
    assert summary.paths["HLT_AnomalyDetection"].passed == N_EVENTS // 20  # 5 % of the card's own events


def _path_run(model: Path, out: Path, capfd, *overrides: str) -> tuple[int, int, str]:
    """hltrun (the console script's function) on the shipped path's QCD sample with ``model`` and its card's cut:
    (exit code, events passed, stderr)."""
    from hltrun.framework.cli import main as hltrun

    report = out / "rep"
    code = hltrun([str(REPO / "configs/path.yaml"), f"modules.vae.model={model}", "modules.vae.backend=onnxruntime",
                   f"source.files=[{QCD}]", f"options.maxEvents={N_EVENTS}", f"modules.out.file={out / 'o.root'}",
                   "--report-dir", str(report), *overrides])
    err = capfd.readouterr().err
    doc = json.loads((report / "hltrun.json").read_text()) if code == 0 else {}
    return code, doc.get("job", {}).get("events_passed", -1), err


@pytest.mark.slow  # a card and three path runs over 1500 shipped events (~15 s)
def test_a_card_made_on_other_jets_than_the_path_scores_is_said_so(model_dir, tmp_path, capfd):
    """A card made on the leading jet alone (``--set modules.batcher.max_jets=1``) keeps 1 % of QCD there; the
    shipped path scores the two leading jets, and the same cut kept 1.4 % of QCD, with no word of it. The card
    now records the selection its cuts were made on, and the path says where its own differs; and a card made
    with ``reduce: sum`` no longer draws "derived for reduce: max" from a path that also sums."""
    shutil.copy(model_dir / "ptsum.onnx", tmp_path / "ptsum.onnx")
    model = tmp_path / "ptsum.onnx"
    assert hltcard([str(model), "--background", str(QCD), "--bkg-eff", "1e-2", "--max-events", str(N_EVENTS),
                    "--no-plots", "--set", "modules.batcher.max_jets=1", *ORT]) == 0
    entry = json.loads((tmp_path / "thresholds.json").read_text())["ptsum"]
    assert entry["selection"] == {"max_jets": 1, "min_jet_pt": 0.0, "relative": True, "reduce": "max"}, entry
    code, passed, err = _path_run(model, tmp_path, capfd, "modules.batcher.max_jets=1")
    assert code == 0 and passed == N_EVENTS // 100 and "were made with" not in err, err  # the card's own setting
    code, _, err = _path_run(model, tmp_path, capfd)  # the shipped path: two jets (this pT sum's leading jet is
    # mostly its larger score, so its rate moves little; a network's did: 36 QCD events of 2500 for the card's 25)
    said = [line for line in err.splitlines() if "were made with max_jets 1" in line]
    assert code == 0 and len(said) == 1 and "modules.batcher has max_jets 2" in said[0], err
    assert "--set modules.batcher.max_jets=2" in said[0], said

    assert hltcard([str(model), "--background", str(QCD), "--bkg-eff", "1e-2", "--max-events", str(N_EVENTS),
                    "--no-plots", "--set", "modules.anomalyFilter.reduce=sum", *ORT]) == 0
    code, passed, err = _path_run(model, tmp_path, capfd, "modules.anomalyFilter.reduce=sum")
    assert code == 0 and passed == N_EVENTS // 100 and "derived for reduce" not in err, err
    code, _, err = _path_run(model, tmp_path, capfd)
    assert code == 0 and "reduce: max with the card's cuts, which were derived for reduce: sum" in err, err


@pytest.mark.slow  # the shared run over 1500 shipped events (~5 s)
def test_weights_from_gen_weight(model_dir, tmp_path):
    """A weighted copy: the cuts are weighted quantiles (and differ from the unweighted ones)."""
    sample = weighted_copy(QCD, tmp_path / "qcd_weighted.root", 1200)
    out = tmp_path / "card"
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(sample), "--bkg-eff", "2e-2",
                    "--out-dir", str(out), *ORT]) == 0
    entry = json.loads((out / "thresholds.json").read_text())["ptsum"]
    f = numpy_features(sample, 1200)
    want = longhand_cut(f["event"], f["weight"], 2e-2)
    assert entry["bkg_eff_2e-2"] == pytest.approx(want, rel=1e-5)
    assert not np.isclose(want, longhand_cut(f["event"], np.ones_like(f["weight"]), 2e-2), rtol=1e-3)
    assert entry["jet_bkg_eff_2e-2"] == pytest.approx(longhand_cut(f["jets"], f["jet_weight"], 2e-2), rel=1e-5)
    card = json.loads((out / "ptsum_card.json").read_text())
    assert card["background"]["gen_weight"] is True
    w = f["weight"]
    above = w[f["event"] > want]
    assert card["cuts"]["bkg_eff_2e-2"]["n_effective_above"] == pytest.approx(above.sum() ** 2 / (above ** 2).sum())


@pytest.mark.slow  # 2500 events through the path (~6 s)
def test_negative_weights_the_cut_holds_its_efficiency_at_every_tighter_cut(model_dir, tmp_path, capsys):
    """15 % negative weights (NLO): the fraction of the background above a cut falls, rises again, falls. The
    card's cut (it was the first score where the fraction reached 1 %, 1271.45 on this sample, where a tighter
    cut 1274.4 passes 1.02 %; 8.8 effective events above it, hence --min-events-above 5) is the loosest from which every tighter cut stays at or below the target,
    checked with numpy on the file; the card names the looser cut it did not take, and why."""
    sample = nlo_copy(QCD, tmp_path / "nlo.root", 2500, 0.15, 1)
    f = numpy_features(sample, 2500)
    s, w = f["event"], f["weight"]
    assert 0.12 < np.mean(w < 0) < 0.18
    values = np.unique(s)
    frac = np.array([w[s > v].sum() / w.sum() for v in values])
    holds = frac <= 1e-2
    assert np.count_nonzero(holds[1:] != holds[:-1]) > 1  # the sample does give 1 % at several cuts
    out = tmp_path / "card"
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(sample), "--bkg-eff", "1e-2",
                    "--out-dir", str(out), "--no-plots", "--min-events-above", "5", *ORT]) == 0
    cut = json.loads((out / "thresholds.json").read_text())["ptsum"]["bkg_eff_1e-2"]
    assert cut == pytest.approx(longhand_cut(s, w, 1e-2), rel=1e-6)
    assert w[s > cut].sum() / w.sum() <= 1e-2  # applied: at most the target
    assert np.all(frac[values > cut] <= 1e-2)  # and at every tighter cut
    k = np.flatnonzero(values < cut)[-1]  # the highest failing score: frac[k] is the fraction above the cut
    assert frac[k - 1] > 1e-2  # the loosest such cut: the next looser one passes more than the target
    looser = values[np.argmax(holds)]  # the first score where the fraction reached 1 %
    assert looser < cut
    card = json.loads((out / "ptsum_card.json").read_text())["cuts"]["bkg_eff_1e-2"]
    assert card["looser_cut_at_target"] == pytest.approx((looser + values[np.argmax(holds) + 1]) / 2, rel=1e-6)
    assert card["rate"] == pytest.approx(w[s > cut].sum() / w.sum(), rel=1e-6)
    md = (out / "ptsum_card.md").read_text()
    assert f"at the looser cut {card['looser_cut_at_target']:.6g}, but rises above it again at tighter cuts" in md
    assert "looser cut" in capsys.readouterr().out


def heavy_copy(dest: Path, n_events: int = 600) -> np.ndarray:
    """The first ``n_events`` of data/qcd_dijet.root with a float64 genWeight of order 1 (falling with the leading
    pT), but +1e100 and -1e100 on the two softest events, far below any cut; the weights as stored."""
    import awkward as ak

    from hltrun.modules.rootio import write_nanoaod

    with uproot.open(QCD) as f:
        a = f["Events"].arrays(entry_stop=n_events)
    lead = ak.to_numpy(ak.fill_none(ak.max(a["FatJet_pt"], axis=1), 300.0)).astype(np.float64)
    w = (lead / 500.0) ** -4 * (1 + 0.5 * np.sin(np.arange(len(lead))))
    softest = np.argsort(lead)[:2]  # far below the cut: the cut and its rate are the sample's without them
    w[softest] = [1e100, -1e100]
    data = {k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event")}
    data["genWeight"] = w
    data["FatJet"] = ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")})
    data["FatJetPFCand"] = ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})
    with uproot.recreate(dest) as f:
        write_nanoaod(f, "Events", data)
    return uproot.open(dest)["Events"]["genWeight"].array(library="np").astype(np.float64)


@pytest.fixture(scope="module")
def heavy_card(model_dir, tmp_path_factory) -> tuple[Path, np.ndarray, dict]:
    """hltcard on ``heavy_copy`` (600 events through the path, ~4 s): (the file, its weights, the card's JSON)."""
    tmp = tmp_path_factory.mktemp("heavy")
    stored = heavy_copy(tmp / "heavy.root")
    out = tmp / "card"
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(tmp / "heavy.root"), "--bkg-eff", "1e-2",
                    "--out-dir", str(out), "--no-plots", "--min-events-above", "0", *ORT]) == 0
    return tmp / "heavy.root", stored, json.loads((out / "ptsum_card.json").read_text())


@pytest.mark.slow  # heavy_card
def test_sum_of_weights_that_cancel_is_exact(heavy_card):
    """A float64 genWeight with two events of +1e100 and -1e100 among weights of order 1: the card's sum of
    weights was a float sum, which lost the weights the heavy ones absorbed (288.7 for a true 381.5 on 1500
    events). It is the exact sum, checked against math.fsum (correctly rounded too) on the file's weights."""
    import math

    _, stored, card = heavy_card
    assert float(np.sum(stored)) != pytest.approx(math.fsum(stored), rel=1e-3)  # a float sum does lose them
    assert card["background"]["sum_weights"] == math.fsum(stored)


@pytest.mark.slow  # heavy_card
def test_rate_error_and_effective_events_of_weights_that_cancel_are_exact(heavy_card):
    """The same sample: the card's rate, its error and the effective events were float sums too, so a cut made
    for 1 % read "background above 1.92 %, rate 1.92 kHz" (the total lost half the sample's weight), its error
    and n_effective 4 times off. Each is now the exact value rounded once: fractions of the file's weights, the
    scores computed here without hltrun."""
    import math
    from fractions import Fraction

    file, stored, card = heavy_card
    scores = numpy_features(file, len(stored))["event"]
    w = [Fraction(x) for x in stored.tolist()]
    total, q = sum(w), sum(x * x for x in w)
    for key in ("bkg_eff_1e-2",):
        got = card["cuts"][key]
        up = [x for x, s in zip(w, scores.tolist()) if s > got["cut"]]
        down = [x for x, s in zip(w, scores.tolist()) if not s > got["cut"]]
        p = sum(up) / total
        err2 = (sum(x * x for x in up) * (1 - p) ** 2 + sum(x * x for x in down) * p ** 2) / total ** 2
        assert got["n_pass"] == len(up) and got["rate"] == float(p) <= got["target"]
        assert got["rate_hz"] == pytest.approx(float(p) * card["input_rate_hz"], rel=1e-15)
        assert got["error"] == pytest.approx(math.sqrt(float(err2)), rel=1e-15)
        assert got["n_effective"] == float(total * total / q) == card["background"]["n_effective"]


def test_weight_sum_refusal_sums_weights_that_cancel_exactly():
    """+1e100, 1, -1e100 sum to 1 (a float sum: 0, refused); +1e100, -1, -1e100 to -1 (refused, saying -1)."""
    from hltrun.tools.physics.card_entry import weight_sum_refusal

    heavy = np.array([1e100, 1.0, -1e100])
    assert weight_sum_refusal(heavy, heavy, "genWeight") is None
    assert weight_sum_refusal(None, heavy, "genWeight") is None
    why = weight_sum_refusal(np.array([1e100, -1.0, -1e100]), None, "genWeight")
    assert why.startswith("the genWeight weights of the background's 3 events sum to -1: ")
    why = weight_sum_refusal(np.ones(4), np.array([1e100, -1.0, -1e100]), "w")
    assert why.startswith("the w weights of the background's 3 scored jets sum to -1: ")


def test_a_background_whose_weights_sum_to_zero_or_less_is_one_line(model_dir, tmp_path, capsys):
    """60 % negative weights over 300 events: the weights sum to < 0. It wrote a card, exit 0, with a cut where
    98 % of the sample passes and a rate of NaN Hz."""
    sample = nlo_copy(QCD, tmp_path / "neg.root", 300, 0.6, 3)
    total = float(uproot.open(sample)["Events"]["genWeight"].array(library="np").astype(np.float64).sum())
    assert total < 0
    out = tmp_path / "card"
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(sample), "--bkg-eff", "1e-2",
                    "--out-dir", str(out), "--no-plots", "--min-events-above", "0", *ORT]) == 2
    assert _one_line(capsys) == (f"hltcard: error: the genWeight weights of the background's 300 events sum to "
                                 f"{total:.6g}: no background efficiency is defined for a sample whose weights sum "
                                 "to 0 or less (negative NLO weights cancel only over enough events: give more "
                                 "events, or the complete sample)")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow  # the shared run over 1500 shipped events (~5 s)
def test_evaluate_models_uses_the_same_function(carded):
    """evaluate_models' thresholds.json entry for the same scores is hltcard's entry."""
    from hltrun.tools.physics import evaluate_models

    d, name = carded
    f = numpy_features(QCD, N_EVENTS)
    n_jets = np.array([min(len(p), 2) for p in uproot.open(QCD)["Events"]["FatJet_pt"].array(
        entry_stop=N_EVENTS, library="np")])
    background = SimpleNamespace(key="qcd", event_of_jet=np.repeat(np.arange(N_EVENTS), n_jets), n_events=N_EVENTS,
                                 weight=f["weight"], leading_pt=f["lead"], jet_weight=f["jet_weight"])
    samples = SimpleNamespace(background=background, wp_extra=None)
    card = evaluate_models.model_card_entry({"qcd": f["jets"]}, samples)
    got = json.loads((d / "thresholds.json").read_text())[name]
    ours = card.to_json()
    assert {k: v for k, v in ours.items() if k.endswith("1e-2") and k != "vs_leading_jet_pt"} == pytest.approx(
        {k: got[k] for k in ("bkg_eff_1e-2", "jet_bkg_eff_1e-2")}, rel=1e-5)
    assert ours["vs_leading_jet_pt"]["bkg_eff_1e-2"] == pytest.approx(got["vs_leading_jet_pt"]["bkg_eff_1e-2"],
                                                                      rel=1e-4)


def _one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("hltcard: background")
           and not line.startswith("hltcard: signal")]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.slow  # a run over 1500 shipped events, softened (~5 s)
def test_pt_bins_are_the_background_samples_own(model_dir, tmp_path):
    """A background sample softer than the shipped one (every pT a quarter: leading jets 70-500 GeV, all
    below the shipped card's 600-1600 GeV bins). The pT-sum model is a jet-pT trigger on it as on any
    sample, and the card must say so: with the shipped bins every event fell into one bin, a chi-square
    of nothing that read "flat" (0.0/1, p = 1)."""
    soft = scaled_copy(QCD, tmp_path / "soft.root", N_EVENTS, 0.25)
    lead = numpy_features(soft, N_EVENTS)["lead"]
    assert lead.max() < 600.0  # the sample really lies below the shipped bins
    out = tmp_path / "card"
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(soft), "--bkg-eff", "1e-2",
                    "--out-dir", str(out), "--no-plots", *ORT]) == 0
    card = json.loads((out / "ptsum_card.json").read_text())
    edges = card["pt_edges_gev"]
    assert edges[0] <= np.quantile(lead, 0.05) and edges[-1] < lead.max()  # the sample's own pT range
    rows = card["pt_pass_rates"]["bkg_eff_1e-2"]["inclusive"]
    assert len(rows) == len(edges) >= 4 and sum(r["n_events"] for r in rows) == N_EVENTS
    assert min(r["n_events"] for r in rows) >= N_EVENTS / 12  # every bin holds a share of the events
    flat = card["pt_flatness"]["bkg_eff_1e-2"]["inclusive"]
    assert flat["ndf"] == len(rows) - 1 and flat["p"] < 0.05  # a pT sum is not flat in pT
    assert "not flat" in (out / "ptsum_card.md").read_text()
    # --pt-edges fixes them (the shipped card's, to compare with it); bad ones are one line before scoring
    shipped = ["600", "700", "850", "1000", "1300", "1600"]
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(soft), "--bkg-eff", "1e-2",
                    "--out-dir", str(out), "--no-plots", "--pt-edges", *shipped, *ORT]) == 0
    card = json.loads((out / "ptsum_card.json").read_text())
    assert card["pt_edges_gev"] == [float(e) for e in shipped]
    # every event in the first bin (it takes those below it): nothing to compare, no test. It read
    # "0.0/1, p = 1" in the card, flat, for a model that is a jet-pT trigger
    rows = card["pt_pass_rates"]["bkg_eff_1e-2"]["inclusive"]
    assert [r["n_events"] for r in rows] == [N_EVENTS] + [0] * (len(shipped) - 1)
    assert card["pt_flatness"]["bkg_eff_1e-2"]["inclusive"] == {"chi2": 0.0, "ndf": 0, "p": None}
    text = (out / "ptsum_card.md").read_text()
    assert "no test: events in one pT bin only" in text and "0.0/1, 1" not in text


def test_bad_pt_edges_are_refused_before_scoring(model_dir, tmp_path, monkeypatch, capsys):
    from hltrun.tools.physics import card_run

    def no_scoring(*_a, **_k):
        raise AssertionError("scored before the options were checked")

    monkeypatch.setattr(card_run, "score_files", no_scoring)
    for edges in (["700", "600"], ["600", "600"], ["-1", "600"], ["nan"]):
        assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--out-dir", str(tmp_path / "o"),
                        "--pt-edges", *edges]) == 2
        line = _one_line(capsys)
        assert line.startswith(f"hltcard: error: --pt-edges {' '.join(edges)}: expected"), line
    assert not (tmp_path / "o").exists()


def test_too_few_events_above_the_cut_is_refused(model_dir, tmp_path, capsys):
    shutil.copy(model_dir / "ptsum.onnx", tmp_path / "ptsum.onnx")
    rc = hltcard([str(tmp_path / "ptsum.onnx"), "--background", str(QCD), "--max-events", str(N_EVENTS), *ORT])
    assert rc == 2  # default --bkg-eff 1e-2 1e-3: 1.5 events above the 0.1% cut
    line = _one_line(capsys)
    assert line.startswith("hltcard: error: bkg_eff_1e-3: the cut rests on 1.0 effective background events")
    assert "at least 10 needed" in line and "not written" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ptsum.onnx"]  # nothing written


def test_nan_scores_give_no_cut(tmp_path, capsys):
    model = pt_sum_model(tmp_path / "nanny.onnx", "nan")
    assert hltcard([str(model), "--background", str(QCD), "--bkg-eff", "1e-2", "--max-events", "300", *ORT]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("hltcard: background")]
    assert len(err) == 2, err  # the path's own warning says why, then the one error line
    assert err[0].startswith("hltrun: modules.vae: model nanny gives non-finite scores (nan)")
    assert err[1].startswith("hltcard: error: bkg_eff_1e-2: the cut is -inf (the background sample has no usable score)")
    assert not (tmp_path / "thresholds.json").exists()


def test_missing_background_file(model_dir, tmp_path, capsys):
    missing = tmp_path / "nope.root"
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(missing), "--out-dir", str(tmp_path)]) == 3
    assert _one_line(capsys) == f"hltcard: error: input file not found: {missing}"


def test_shipped_samples_by_their_relative_name_from_any_folder(model_dir, tmp_path, monkeypatch, capsys):
    """``--background data/qcd_dijet.root``, as docs/your-model.md writes it, from a folder of the user's own (not
    the checkout): found as hltrun finds its inputs, the name as given, else the shipped file of that name. It was
    "input file not found: data/qcd_dijet.root" (exit 3), though ``hltrun configs/path.yaml`` runs from there."""
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / "data").exists()
    rc = hltcard([str(model_dir / "ptsum.onnx"), "--background", "data/qcd_dijet.root", "--signal",
                  "data/rsg_ww_3p5TeV.root", "--bkg-eff", "1e-2", "--max-events", "200", "--min-events-above", "0",
                  "--no-plots", "--out-dir", str(tmp_path / "out"), *ORT])
    assert rc == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "out" / "ptsum_card.json").read_text())
    assert [Path(f).resolve() for f in card["background"]["files"]] == [QCD.resolve()]
    assert "bkg_eff_1e-2" in json.loads((tmp_path / "out" / "thresholds.json").read_text())["ptsum"]


@pytest.mark.parametrize("where", ["missing", "a folder", "/dev/null"])
def test_an_unreadable_signal_file_is_said_before_any_scoring(where, model_dir, tmp_path, monkeypatch, capsys):
    """A typo in the last --signal file was said after the whole background had been scored through the path
    (minutes on a large sample, for nothing): every sample file is checked first, with the same line and exit
    code as before (the source's, 3)."""
    import hltrun.tools.physics.card_run as card_run

    monkeypatch.setattr(card_run, "score_files", lambda *a, **k: pytest.fail("scored before the signal was checked"))
    bad = {"missing": tmp_path / "nope.root", "a folder": tmp_path, "/dev/null": Path("/dev/null")}[where]
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--signal", str(QCD), str(bad),
                    "--bkg-eff", "1e-2", "--out-dir", str(tmp_path / "out"), *ORT]) == 3
    why = {"missing": f"not found: {bad}", "a folder": f"{bad} is a folder, not a file",
           "/dev/null": f"{bad} is a character device, not a regular file"}[where]
    assert _one_line(capsys).startswith(f"hltcard: error: input file {why}")
    assert not (tmp_path / "out").exists()


def test_sample_without_the_jet_branches(model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.root"
    with uproot.recreate(bad) as f:
        f["Events"] = {"event": np.arange(1, 11, dtype=np.uint64)}
    rc = hltcard([str(model_dir / "ptsum.onnx"), "--background", str(bad), "--out-dir", str(tmp_path / "o"), *ORT])
    assert rc == 3
    line = _one_line(capsys)
    assert line.startswith("hltcard: error: ") and "FatJet" in line
    # the folder was checked (made, as hltrun makes a --report-dir) before the sample was scored, and removed
    # again with the card refused: a refused command leaves nothing behind
    assert not (tmp_path / "o").exists()


def test_model_that_cannot_run(tmp_path, capsys):
    model = pt_sum_model(tmp_path / "narrow.onnx", "n50")
    assert hltcard([str(model), "--background", str(QCD), "--max-events", "100", *ORT]) == 4
    assert "of shape (N, 50, 3); hltrun feeds its shipped input" in _one_line(capsys)
    assert hltcard([str(tmp_path / "absent.onnx"), "--background", str(QCD)]) == 2
    assert _one_line(capsys) == f"hltcard: error: model file not found: {tmp_path / 'absent.onnx'}"
    newline = tmp_path / "a\nb.onnx"  # a quoted name with a newline stays one line, the newline escaped
    assert hltcard([str(newline), "--background", str(QCD)]) == 2
    assert _one_line(capsys) == f"hltcard: error: model file not found: {tmp_path}/a\\nb.onnx"


def test_bad_options_are_one_line(model_dir, capsys):
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--bkg-eff", "nan"]) == 2
    assert "--bkg-eff nan" in _one_line(capsys)
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--set", "modules.vae.nosuch=1",
                    *ORT]) == 2
    assert "nosuch" in _one_line(capsys)


@pytest.mark.slow
def test_shipped_model_same_cuts_as_evaluate_models(tmp_path):
    """The shipped Conv-VAE: hltcard (through the path) and evaluate_models (its own reader, ONNX Runtime
    called directly, the same entry function) give the same thresholds.json entry, to the last bit."""
    from hltrun.tools.physics import evaluate_models
    from hltrun.tools.physics.eval_samples import load_sample

    shutil.copy(REPO / "data/models/conv_vae.onnx", tmp_path / "conv_vae.onnx")
    assert hltcard([str(tmp_path / "conv_vae.onnx"), "--background", str(QCD), "--max-events", "400",
                    "--bkg-eff", "1e-2", "1e-3", "--min-events-above", "0", "--no-plots", *ORT]) == 0
    ours = json.loads((tmp_path / "thresholds.json").read_text())["conv_vae"]
    sample = load_sample(QCD, "qcd", "QCD", max_events=400, substructure=False)
    scores = evaluate_models.scorer(REPO / "data/models", "conv_vae", "onnx")(sample.jets)["score"]
    theirs = evaluate_models.model_card_entry({"qcd": scores}, SimpleNamespace(background=sample, wp_extra=None))
    # hltcard also records the path's selection its cuts hold for (evaluate_models' are the shipped path's)
    assert ours.pop("selection") == {"max_jets": 2, "min_jet_pt": 0.0, "relative": True, "reduce": "max"}
    assert ours == theirs.to_json()


@pytest.mark.parametrize("where", ["missing parent that cannot be made", "a file", "thresholds.json a folder"])
def test_an_unusable_out_dir_is_exit_4_before_any_scoring(where, model_dir, tmp_path, monkeypatch, capsys):
    import hltrun.tools.physics.card_run as card_run

    monkeypatch.setattr(card_run, "score_files", lambda *a, **k: pytest.fail("scored before --out-dir was checked"))
    (tmp_path / "plain").write_text("x")
    if where == "a file":
        out, words = tmp_path / "plain", ["is a file, not a folder"]
    elif where == "thresholds.json a folder":
        out = tmp_path / "o"
        (out / "thresholds.json").mkdir(parents=True)
        words = [str(out / "thresholds.json"), "is a folder"]
    else:
        out, words = tmp_path / "plain" / "sub", [f"cannot write into {tmp_path / 'plain' / 'sub'}", "Not a directory"]
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--max-events", "100",
                    "--bkg-eff", "1e-2", "--out-dir", str(out), *ORT]) == 4
    line = _one_line(capsys)
    assert line.startswith("hltcard: error: --out-dir: "), line
    for w in words:
        assert w in line, (w, line)


def test_a_missing_out_dir_is_made(model_dir, tmp_path):
    out = tmp_path / "new" / "deeper"
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--max-events", "300",
                    "--bkg-eff", "1e-2", "--min-events-above", "1", "--no-plots", "--out-dir", str(out), *ORT]) == 0
    assert "ptsum" in json.loads((out / "thresholds.json").read_text())


@pytest.mark.parametrize("value", ["-5", "-0.5", "nan", "inf"])
def test_min_events_above_below_zero_is_refused_before_scoring(value, model_dir, monkeypatch, capsys):
    import hltrun.tools.physics.card_run as card_run

    monkeypatch.setattr(card_run, "score_files", lambda *a, **k: pytest.fail("scored with a bad option"))
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--min-events-above", value]) == 2
    assert _one_line(capsys).startswith(f"hltcard: error: --min-events-above {float(value):g}: expected a finite "
                                        "number, at least 0")


@pytest.mark.slow  # a run over 1200 shipped events (~4 s)
def test_event_numbers_past_2_63(model_dir, tmp_path):
    """CMSSW's event number is unsigned 64-bit: hltcard kept the ids as int64 and stopped with
    'internal error: OverflowError' on a sample whose event numbers reach 2^63 (weighted: the
    weights are matched to the events by those ids)."""
    import awkward as ak

    from hltrun.modules.rootio import write_nanoaod

    sample = weighted_copy(QCD, tmp_path / "weighted.root", 1200)
    with uproot.open(sample) as f:
        a = f["Events"].arrays()
    data = {k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "genWeight")}
    data["event"] = np.uint64(2**64 - 1) - np.arange(1200, dtype=np.uint64)
    data["FatJet"] = ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")})
    data["FatJetPFCand"] = ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})
    big = tmp_path / "big_ids.root"
    with uproot.recreate(big) as f:
        write_nanoaod(f, "Events", data)
    cards = [tmp_path / "small", tmp_path / "big"]
    for sample_file, out in zip((sample, big), cards):
        assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(sample_file), "--bkg-eff", "2e-2",
                        "--out-dir", str(out), "--no-plots", *ORT]) == 0
    entries = [json.loads((out / "thresholds.json").read_text())["ptsum"] for out in cards]
    assert entries[0] == entries[1]  # the ids change nothing else


def test_a_refused_card_leaves_no_out_dir_made_behind(model_dir, tmp_path, capsys):
    """--out-dir is made by its check before the samples are read; a card then refused removes it again
    (only what the check made: a folder that was there stays)."""
    missing = tmp_path / "nope.root"
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(missing),
                    "--out-dir", str(tmp_path / "new" / "deeper")]) == 3
    assert _one_line(capsys) == f"hltcard: error: input file not found: {missing}"
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("how", ["KeyboardInterrupt", "a job stopped by it"])
def test_ctrl_c_is_one_line_exit_130(how, model_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C while the path scores the sample (the job's failure, eventloop.JobFailed, or the interrupt
    itself): exit 130 and one line, not an internal error; the --out-dir the check made is removed."""
    import hltrun.tools.physics.card_run as card_run
    from hltrun.framework.eventloop import JobFailed

    def stopped(*_a, **_k):
        if how == "KeyboardInterrupt":
            raise KeyboardInterrupt
        raise JobFailed(SimpleNamespace(failure="interrupted by the user (Ctrl-C)"), KeyboardInterrupt())

    monkeypatch.setattr(card_run, "score_files", stopped)
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--out-dir", str(tmp_path / "o"),
                    *ORT]) == 130
    assert _one_line(capsys).startswith("hltcard: error: interrupted by the user")
    assert not (tmp_path / "o").exists()


def test_a_rate_with_nothing_above_the_cut_is_not_a_measured_zero(carded):
    """A pT bin (or a signal) with no event above the cut: the card printed '0 ± 0 (105)', a pass rate known
    exactly from 105 events. It says how many events it rests on instead, as the model card does
    (eval_card: '0 (0 of 105)'); so does a bin where every event passes ('100 (23 of 23)')."""
    model_dir, identity = carded
    card = (model_dir / f"{identity}_card.md").read_text()
    assert "0 ± 0 " not in card and "0 ± 0 %" not in card
    assert "(0 of " in card  # the pT-sum cut passes nothing in the lowest pT bins

    from hltrun.tools.physics.eval_stats import PassRate, percent_text
    assert percent_text(PassRate(0.0, 0.0, 105, 0, 105.0).to_json()) == "0 (0 of 105)"
    assert percent_text(PassRate(1.0, 0.0, 23, 23, 23.0).to_json()) == "100 (23 of 23)"
    assert percent_text(PassRate(0.01, 0.002, 2500, 25, 2500.0).to_json()) == "1 ± 0.2"
    assert percent_text(PassRate(0.01, 0.002, 2500, 25, 2500.0).to_json(), ".2f") == "1.00 ± 0.20"


def test_a_pt_cut_on_too_few_events_quotes_no_error(model_dir, tmp_path):
    """--min-events-above 0 on 10 events: the pT-dependent cut has no event above it, and the card quoted the fit's
    large-sample error ('3.13 ± 0.05'). Below the 10 effective events the statistical error needs, it gives the
    coefficients without an error and says why (the card's JSON keeps the effective count above the fitted cut)."""
    shutil.copy(model_dir / "ptsum.onnx", tmp_path / "ptsum.onnx")
    assert hltcard([str(tmp_path / "ptsum.onnx"), "--background", str(QCD), "--bkg-eff", "1e-2", "--max-events", "10",
                    "--min-events-above", "0", *ORT]) == 0
    card = (tmp_path / "ptsum_card.md").read_text()
    line = next(x for x in card.splitlines() if x.startswith("**pT-dependent cut**"))
    assert " ± " not in line
    assert "no error quoted: 0.0 effective background events above the cut (at least 10 needed for one)" in line
    data = json.loads((tmp_path / "ptsum_card.json").read_text())
    assert data["vs_leading_jet_pt_fits"]["bkg_eff_1e-2"]["n_effective_above"] == 0.0


def test_stdout_full_or_gone_is_one_line_exit_4_and_the_card_is_written(model_dir, tmp_path, monkeypatch, capfd):
    """``hltcard m.onnx ... > /dev/full`` (or ``| head -1``) ended in a traceback, exit 1, after writing the card:
    stdout is a destination like the others (framework/destinations.py ``printing``). ``>&-`` says nothing: the
    card is written, the summary on stdout only repeats it."""
    argv = [str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--max-events", "300", "--bkg-eff", "1e-2",
            "--min-events-above", "1", "--no-plots", *ORT]
    with stdout_full(monkeypatch):
        assert hltcard([*argv, "--out-dir", str(tmp_path / "full")]) == 4
    errors = [line for line in capfd.readouterr().err.splitlines() if "error" in line]
    assert errors == ["hltcard: error: stdout: cannot print the card's summary (No space left on device)"]
    assert "ptsum" in json.loads((tmp_path / "full" / "thresholds.json").read_text())
    monkeypatch.setattr("sys.stdout", None)
    assert hltcard([*argv, "--out-dir", str(tmp_path / "closed")]) == 0
    assert "ptsum" in json.loads((tmp_path / "closed" / "thresholds.json").read_text())


def test_a_card_that_cannot_be_written_names_the_folder_once(model_dir, tmp_path, capfd):
    """A card over the file-size limit (``ulimit -f``: EFBIG) said ``hltcard: error: hltcard: cannot write
    …/ptsum_card.md (File too large)``: the command twice, the folder's option not at all."""
    import resource
    import subprocess
    import sys

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # thresholds.json fits, the card does not

    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", "import sys; from hltrun.tools.physics.card import main; sys.exit(main())",
                           str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--max-events", "300", "--bkg-eff",
                           "1e-2", "--min-events-above", "1", "--no-plots", "--out-dir", str(out), *ORT],
                          cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert done.returncode == 4 and errors == [f"hltcard: error: --out-dir: cannot write {out}/ptsum_card.md "
                                               f"(File too large)"], done.stderr
    assert not out.exists()  # the set is written whole or not at all, and the folder the check made removed


def test_a_model_through_a_symbolic_link_gets_its_cut_where_the_scorer_reads_it(model_dir, tmp_path, capsys):
    """``hltcard link/m.onnx`` (link -> real/m.onnx) wrote the entry into real/thresholds.json, the scorer (given
    link/m.onnx) read link/thresholds.json, the read-back check then failed: exit 1, "internal error", and the
    refused entry stayed in real/thresholds.json. The card now goes where the scorer reads it; real/ is untouched."""
    from hltrun.modules.vae_scorer import VAEAnomalyScorerParameters, model_thresholds

    (tmp_path / "real").mkdir()
    (tmp_path / "link").mkdir()
    shutil.copy(model_dir / "ptsum.onnx", tmp_path / "real" / "ptsum.onnx")
    (tmp_path / "link" / "ptsum.onnx").symlink_to(tmp_path / "real" / "ptsum.onnx")
    before = json.dumps({"other": {"bkg_eff_1e-2": 0.5}})
    (tmp_path / "real" / "thresholds.json").write_text(before)
    assert hltcard([str(tmp_path / "link" / "ptsum.onnx"), "--background", str(QCD), "--max-events", "300",
                    "--bkg-eff", "1e-2", "--min-events-above", "1", "--no-plots", *ORT]) == 0
    assert (tmp_path / "real" / "thresholds.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["ptsum.onnx", "thresholds.json"]
    written = json.loads((tmp_path / "link" / "thresholds.json").read_text())["ptsum"]
    _, got, card = model_thresholds(VAEAnomalyScorerParameters(model=str(tmp_path / "link" / "ptsum.onnx")))
    assert card == tmp_path / "link" / "thresholds.json"
    assert got["bkg_eff_1e-2"] == written["bkg_eff_1e-2"]


def test_an_entry_the_scorer_would_not_read_back_is_never_written(model_dir, tmp_path, monkeypatch, capsys):
    """The read-back check ran after thresholds.json was written: its failure left the refused entry there, and the
    next hltrun cut on it. The check now reads the new text before any write: exit 2, one line, every file of the
    folder as it was. (The scorer's reader is made to disagree here: no shipped case is known to.)"""
    import hltrun.modules.vae_scorer as vae_scorer

    shutil.copy(model_dir / "ptsum.onnx", tmp_path / "ptsum.onnx")
    before = json.dumps({"other": {"bkg_eff_1e-2": 0.5}})
    (tmp_path / "thresholds.json").write_text(before)
    monkeypatch.setattr(vae_scorer, "card_thresholds", lambda *a: {}, raising=False)
    monkeypatch.setattr(vae_scorer, "model_thresholds", lambda p: ("ptsum", {}, tmp_path / "thresholds.json"))
    assert hltcard([str(tmp_path / "ptsum.onnx"), "--background", str(QCD), "--max-events", "300",
                    "--bkg-eff", "1e-2", "--min-events-above", "1", "--no-plots", *ORT]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"hltcard: error: {tmp_path / 'thresholds.json'}: the scorer would read ptsum {{}} back")
    assert (tmp_path / "thresholds.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ptsum.onnx", "thresholds.json"]


def test_an_int8_run_writes_its_entry_under_the_name_the_int8_scorer_reads(tmp_path, capsys, caplog):
    """``hltcard mynet.onnx --set modules.vae.precision=int8`` (a quantised model whose name does not end in _int8)
    wrote its cuts under 'mynet' and checked them back as 'mynet'; the scorer run with precision int8 reads
    'mynet_int8', found nothing, and took the entry with a warning as "the fp32 model's cuts" (an fp32 model's
    entry beside it would have been taken the same way). The entry, the card's files and the read-back check are
    now the int8 scorer's name: it reads the cuts just computed, without the warning."""
    import logging

    from hltrun.modules.vae_scorer import VAEAnomalyScorerParameters, model_thresholds

    shutil.copy(REPO / "data" / "models" / "conv_vae_int8.onnx", tmp_path / "mynet.onnx")  # quantised, named freely
    assert hltcard([str(tmp_path / "mynet.onnx"), "--background", str(QCD), "--max-events", "300", "--bkg-eff",
                    "1e-2", "--min-events-above", "1", "--no-plots", *ORT, "modules.vae.precision=int8"]) == 0
    assert capsys.readouterr().out.startswith("mynet_int8: background 300 events")
    table = json.loads((tmp_path / "thresholds.json").read_text())
    assert list(table) == ["mynet_int8"]
    assert sorted(p.name for p in tmp_path.glob("*_card.*")) == ["mynet_int8_card.json", "mynet_int8_card.md"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        identity, got, _ = model_thresholds(VAEAnomalyScorerParameters(model=str(tmp_path / "mynet.onnx"),
                                                                       precision="int8"))
    assert identity == "mynet_int8" and got["bkg_eff_1e-2"] == table["mynet_int8"]["bkg_eff_1e-2"]
    assert not [r for r in caplog.records if "fp32" in r.getMessage()]


def test_an_int8_model_on_its_parents_cuts_is_checked_against_their_selection(tmp_path):
    """An INT8 model without its own entry takes its fp32 parent's cuts (``mynet_int8`` on ``mynet``'s); the
    selection those cuts were made on (hltcard's ``selection``) was looked up under ``mynet_int8`` only, found
    nothing: the scorer said nothing of a path scoring other jets, and the filter said the cuts were made for
    ``reduce: max`` when the card says ``leading``. The selection now comes from the entry the cuts come from."""
    from hltrun.modules.vae_scorer import VAEAnomalyScorer, VAEAnomalyScorerParameters

    shutil.copy(REPO / "data" / "models" / "conv_vae_int8.onnx", tmp_path / "mynet_int8.onnx")
    made = {"max_jets": 1, "min_jet_pt": 0.0, "relative": True, "reduce": "leading"}
    (tmp_path / "thresholds.json").write_text(json.dumps({"mynet": {"bkg_eff_1e-2": 1.5, "selection": made}}))
    meta = VAEAnomalyScorer.product_metadata(VAEAnomalyScorerParameters(model=str(tmp_path / "mynet_int8.onnx"),
                                                                        precision="int8"))
    assert meta["model"] == "mynet_int8" and meta["thresholds"] == {"bkg_eff_1e-2": 1.5}  # the parent's cuts
    assert meta["card_selection"] == made  # and what they were made on


@pytest.mark.slow  # 1500 shipped events through the path (~5 s)
def test_events_without_a_jet_passing_the_selection_are_left_out_of_the_pt_fit(model_dir, tmp_path, capsys):
    """A jet-pT selection in the batcher (``min_jet_pt``, 500 GeV): the events whose jets all lie below it have no
    scored jet (score -inf, leading pT 0). More than 0.5 % of them made the fit's pT range start at 0 (ln 0) and
    the fit failed in LAPACK (the card omitted vs_leading_jet_pt, 'SVD did not converge'); fewer made its loss
    +inf everywhere. They are left out of the fit, and the card says how many."""
    with uproot.open(QCD) as fh:
        lead = np.array([p.max() for p in fh["Events"]["FatJet_pt"].array(entry_stop=N_EVENTS, library="np")])
    none = int(np.count_nonzero(lead < 500.0))
    assert none > 0.005 * N_EVENTS  # enough to have put the range's lower end at 0
    out = tmp_path / "card"
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(QCD), "--bkg-eff", "1e-2",
                    "--max-events", str(N_EVENTS), "--out-dir", str(out), "--no-plots",
                    *ORT, "modules.batcher.min_jet_pt=500"]) == 0
    card = json.loads((out / "ptsum_card.json").read_text())
    assert card["background"]["accounting"]["events_without_scored_jet"] == none
    assert card["vs_leading_jet_pt_omitted"] == {} and card["vs_leading_jet_pt_left_out_events"] == none
    assert card["vs_leading_jet_pt_fits"]["bkg_eff_1e-2"]["pt_range_gev"][0] >= 500.0
    said = f"fitted without the {none} events with no scored jet or a NaN score"
    assert said in (out / "ptsum_card.md").read_text() and said in capsys.readouterr().out


def jetless_copy(src: Path, dest: Path, n_events: int, share: float, seed: int) -> Path:
    """The first ``n_events`` of ``src`` with every jet (and constituent) of a random fraction ``share`` of the
    events taken away: a sample with events without a jet, as a jet selection upstream would leave them."""
    import awkward as ak

    from hltrun.modules.rootio import write_nanoaod

    with uproot.open(src) as f:
        a = f["Events"].arrays(entry_stop=n_events)
    drop = np.random.default_rng(seed).random(len(a)) < share
    data = {k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event")}
    jets = ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")})
    cands = ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})
    data["FatJet"] = ak.where(drop, jets[:, :0], jets)
    data["FatJetPFCand"] = ak.where(drop, cands[:, :0], cands)
    with uproot.recreate(dest) as f:
        write_nanoaod(f, "Events", data)
    return dest


@pytest.mark.slow  # 2000 events through the path (~5 s)
def test_the_pt_cut_states_its_rate_of_all_events_where_events_were_left_out(model_dir, tmp_path, capsys):
    """30 % of the events without a jet: the pT fit, on the others, keeps its 1 % of those, 0.7 % of all events,
    while the inclusive cut of the same key keeps 1 % of all, and the signal table sets the two side by side. The
    card said only the target: it states the pT cut's fraction of all events (counted here longhand from the
    fitted coefficients on the file's own jets), beside its target and the events that target is of."""
    sample = jetless_copy(QCD, tmp_path / "jetless.root", 2000, 0.3, seed=3)
    f = numpy_features(sample, 2000)
    fitted = int(np.count_nonzero(np.isfinite(f["event"])))
    out = tmp_path / "card"
    assert hltcard([str(model_dir / "ptsum.onnx"), "--background", str(sample), "--bkg-eff", "1e-2",
                    "--out-dir", str(out), "--no-plots", *ORT]) == 0
    card = json.loads((out / "ptsum_card.json").read_text())
    fit = card["vs_leading_jet_pt_fits"]["bkg_eff_1e-2"]
    x = np.log(np.clip(f["lead"], *fit["pt_range_gev"]) / fit["pt_ref_gev"])
    cut = sum(c * x ** i for i, c in enumerate(fit["coefficients"]))
    passed = int(np.count_nonzero(f["event"] > cut))
    got = card["vs_leading_jet_pt_all_events"]["bkg_eff_1e-2"]
    assert card["vs_leading_jet_pt_left_out_events"] == 2000 - fitted > 500
    assert (got["n_pass"], got["n_events"], got["target"], got["target_of_events"]) == (passed, 2000, 1e-2, fitted)
    assert got["rate"] == passed / 2000 < 0.8e-2 and got["rate_hz"] == pytest.approx(1e5 * passed / 2000)
    assert card["cuts"]["bkg_eff_1e-2"]["rate"] == pytest.approx(1e-2)  # the inclusive cut's: of all events
    said = f"background above {100 * passed / 2000:.3g} ± "
    md = (out / "ptsum_card.md").read_text()
    assert "**`vs_leading_jet_pt.bkg_eff_1e-2` on all events**" in md
    assert f"{said}{100 * got['error']:.3g} % of all 2000 events" in md
    assert f"(target 1 % of the {fitted} events fitted)" in md
    printed = capsys.readouterr().out
    assert f"  vs_leading_jet_pt.bkg_eff_1e-2: {said}" in printed and "of all 2000 events" in printed


@pytest.mark.parametrize("bad, said", [
    ("nan", "holds nan at entry 7 of {f}: an event weight must be a finite number"),
    ("huge", "holds 1e+200 at entry 7 of {f}: an event weight must be a finite number (a NaN or infinite one makes "
             "every rate it enters NaN) of magnitude at most 1e+100"),
    ("list", "must hold one number per event, got a list per event in {f}")])
def test_a_bad_weight_branch_is_the_sources_one_line(model_dir, tmp_path, capsys, bad, said):
    """A NaN, a 1e200 (whose squares overflow a double) or a list per event in the weight branch: the source's
    one line, as in hltrun (the path's source reads the branch first). hltcard's own weight reading had a
    second, weaker check of its own (finite only), never reached: it calls the source's check now."""
    import awkward as ak

    from hltrun.modules.rootio import write_nanoaod

    sample = weighted_copy(QCD, tmp_path / "w.root", 40)
    with uproot.open(sample) as fh:
        a = fh["Events"].arrays()
    w = ak.to_numpy(a["genWeight"]).astype(np.float64)
    w[7] = {"nan": np.nan, "huge": 1e200}.get(bad, w[7])
    data = {k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event")}
    data["genWeight"] = ak.unflatten(w, np.ones(len(w), np.int64)) if bad == "list" else w
    data["FatJet"] = ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")})
    data["FatJetPFCand"] = ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})
    bad_file = tmp_path / f"{bad}.root"
    with uproot.recreate(bad_file) as f:
        write_nanoaod(f, "Events", data)
    code = hltcard([str(model_dir / "ptsum.onnx"), "--background", str(bad_file), "--bkg-eff", "1e-1",
                    "--out-dir", str(tmp_path / "card"), "--no-plots", "--min-events-above", "0", *ORT])
    line = _one_line(capsys)
    assert code not in (0, 1), line
    assert "weight branch 'genWeight' (" in line and said.format(f=bad_file) in line, line
