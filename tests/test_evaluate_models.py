"""tools/physics/evaluate_models.py end to end on the shipped samples and models (issues 12, 23): it writes into
--out-dir only, keeps thresholds.json's scalar keys, adds the smooth pT-dependent cut, marks held-out
signals, says plainly when no independent sample tested that cut, and the trigger path with
``working_point: vs_leading_jet_pt`` takes exactly the decisions the evaluation's cut gives."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import uproot

from tests.helpers import run_config

pytest.importorskip("onnxruntime")
pytest.importorskip("fastjet", reason="FastJet (extras 'test' and 'generate') not installed")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

REPO = Path(__file__).resolve().parents[1]
N_EVENTS = 400


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from hltrun.tools.physics import evaluate_models

    out = tmp_path_factory.mktemp("eval")
    before = _digest(REPO / "data/models")
    # the closure sample must be another file than the background: a copy stands in for an independent
    # sample here (the mechanics, not the physics, are under test)
    closure = out.parent / "closure_copy.root"
    shutil.copy(REPO / "data/qcd_dijet.root", closure)
    rc = evaluate_models.main(["--out-dir", str(out), "--max-events", str(N_EVENTS),
                               "--background", str(REPO / "data/qcd_dijet.root"),
                               "--physical-background", str(REPO / "data/qcd_dijet.root"),
                               "--signal", f"extra={REPO / 'data/rsg_ww_3p5TeV.root'}", "--held-out", "extra",
                               "--wp-background", "none", "--closure", str(closure), "--min-events-above", "0"])
    assert rc == 0  # 400 events: 0.4 above a 0.1% cut, accepted here (the mechanics are under test)
    assert _digest(REPO / "data/models") == before  # --out-dir: the models folder is not written
    return out


def test_outputs_thresholds_and_card(evaluated):
    from hltrun.modules.working_point import PtCutFunction, parse_pt_cuts

    names = {p.name for p in evaluated.iterdir()}
    assert {"thresholds.json", "metrics.json", "README.md", "roc.png", "score_distributions.png",
            "loss_curves.png", "pass_rate_vs_pt.png"} <= names and not any(n.endswith(".tmp") for n in names)
    card = json.loads((evaluated / "thresholds.json").read_text())
    shipped = json.loads((REPO / "data/models/thresholds.json").read_text())
    for model in ("conv_vae", "gcn_vae"):
        scalar = {k for k in shipped[model] if k != "vs_leading_jet_pt"}
        assert scalar <= set(card[model]) and all(isinstance(card[model][k], float) for k in scalar)
        smooth = parse_pt_cuts(card[model]["vs_leading_jet_pt"])
        assert isinstance(smooth, PtCutFunction) and set(smooth.cuts) == {"bkg_eff_1e-2", "bkg_eff_1e-3"}
    text = (evaluated / "README.md").read_text()
    assert "**Closure on an independent sample**" in text and "**conv_vae, 1%**" in text
    assert "### The inclusive cuts on the independent sample" in text
    assert "extra (**held out**)" in text and "1 − τ21" in text and "jet mass" in text
    assert "Goal" not in text and "issue" not in text.lower()
    m = json.loads((evaluated / "metrics.json").read_text())
    assert m["signals"]["extra"]["held_out"] is True and m["signals"]["rsg_ww_3p5TeV"]["held_out"] is False
    assert m["closure_sample"]["n_events"] == N_EVENTS
    for model in ("conv_vae", "gcn_vae"):
        c = m["models"][model]["closure"]["bkg_eff_1e-2"]
        assert len(c["bins"]) == 6 and sum(b["n_events"] for b in c["bins"]) == N_EVENTS
        assert 0.0 <= c["chi2"]["p"] <= 1.0
    for model in ("conv_vae", "gcn_vae"):
        r = m["models"][model]
        # the inclusive cut keeps at most 1% of the QCD events, and no fewer than one event less
        rate = r["hlt"]["bkg_eff_1e-2"]["inclusive"]["background"]
        assert 0.01 - 1.0 / N_EVENTS <= rate["rate"] <= 0.01
        # per-bin rates at the inclusive cut add up to the inclusive rate (every event in one bin)
        bins = r["pt_pass_rates"]["bkg_eff_1e-2"]
        assert sum(b["n_pass"] for b in bins) == rate["n_pass"] and sum(b["n_events"] for b in bins) == N_EVENTS
        assert r["latent"]["val_kl_best_epoch"] is not None
        for sig in ("rsg_ww_1p5TeV", "rsg_ww_3p5TeV", "zprime_tt_2TeV", "extra"):
            assert 0.0 <= r["signals"][sig]["auc_event"] <= 1.0
    assert m["baselines"]["tau21"]["signals"]["rsg_ww_3p5TeV"]["auc_event"] > 0.7  # two-prong W jets


def test_trigger_path_applies_the_cards_pt_dependent_cut(evaluated, write_config, tmp_path):
    """Scores from the path's output, leading-jet pT from the input: every decision must be
    event max > the card's cut at the leading jet's pT."""
    from hltrun.modules.working_point import parse_pt_cuts

    shutil.copy(REPO / "data/models/conv_vae.onnx", evaluated / "conv_vae.onnx")
    card = json.loads((evaluated / "thresholds.json").read_text())["conv_vae"]["vs_leading_jet_pt"]
    out = tmp_path / "out.root"
    cfg = write_config(f"""
        process: T
        options: {{maxEvents: {N_EVENTS}}}
        source: {{type: RootJetSource, files: [{REPO / 'data/qcd_dijet.root'}]}}
        modules:
          batcher: {{type: JetBatcher, src: source, max_jets: 2}}
          vae: {{type: VAEAnomalyScorer, src: batcher, model: {evaluated / 'conv_vae.onnx'}, backend: onnxruntime}}
          anomalyFilter: {{type: AnomalyScoreFilter, src: vae, working_point: vs_leading_jet_pt}}
          out: {{type: RootOutputModule, file: {out}, keep: [vae]}}
        paths:
          p: [batcher, vae, anomalyFilter]
        endpaths:
          e: [out]
        """)
    summary, _ = run_config(cfg)
    assert summary.module_summaries["anomalyFilter"]["coefficients"] == card["bkg_eff_1e-2"]
    got = uproot.open(out)["Events"].arrays(["vae_score", "HLT_p"], library="ak")
    lead = uproot.open(REPO / "data/qcd_dijet.root")["Events"]["FatJet_pt"].array(entry_stop=N_EVENTS)
    best = np.array([max(s) for s in got["vae_score"].tolist()])
    lead_pt = np.array([row[0] for row in lead.tolist()])
    cuts = parse_pt_cuts(card).cuts_at("bkg_eff_1e-2", lead_pt)
    want = best > cuts
    assert np.array_equal(np.asarray(got["HLT_p"]), want)
    assert 0 < want.sum() < N_EVENTS


def test_the_card_says_when_no_independent_sample_tested_the_cut():
    from hltrun.tools.physics.eval_card_wp import working_point_section

    fit = {"coefficients": [0.5], "covariance": [[1e-4]], "pt_ref_gev": 1000.0, "pt_range_gev": [500.0, 2500.0]}
    m = {"models": {"m": {"wp_fit": {"bkg_eff_1e-2": fit}}}, "background": {"file": "b.root", "n_events": 10},
         "wp_background": None, "closure_sample": None}
    text = "\n".join(working_point_section(m, ("m",), {"bkg_eff_1e-2": 1e-2}, {"bkg_eff_1e-2": "1%"}, ["all"]))
    assert "**Closure: not tested.** No independent QCD sample was given" in text
    assert "| m | 1% | 0.5 ± 0.01 | — | — |" in text


def test_missing_sample_is_one_line_and_exit_3(tmp_path, capsys):
    from hltrun.tools.physics import evaluate_models

    assert evaluate_models.main(["--out-dir", str(tmp_path), "--background", str(tmp_path / "nope.root")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"evaluate_models: --background: {tmp_path / 'nope.root'} does not exist"]
    assert not any(tmp_path.iterdir())


def test_an_out_dir_that_is_a_file_is_one_line_before_the_evaluation(tmp_path, monkeypatch, capsys):
    """--out-dir was made (mkdir) only after every model had been evaluated: a file there was a
    FileExistsError traceback at the end. Now it is checked first (exit 4, one line)."""
    from hltrun.tools.physics import evaluate_models

    monkeypatch.setattr(evaluate_models, "evaluate", lambda args: pytest.fail("evaluated before --out-dir was checked"))
    (tmp_path / "plain").write_text("x")
    assert evaluate_models.main(["--out-dir", str(tmp_path / "plain")]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"evaluate_models --out-dir: {tmp_path / 'plain'} is a file, not a folder"]


def test_a_refused_evaluation_leaves_no_out_dir_made_behind(tmp_path, capsys):
    from hltrun.tools.physics import evaluate_models

    out = tmp_path / "new" / "card"
    assert evaluate_models.main(["--out-dir", str(out), "--background", str(tmp_path / "nope.root")]) == 3
    assert not (tmp_path / "new").exists()


SHIPPED = {"--background": str(REPO / "data/qcd_dijet.root"), "--physical-background": "none",
           "--signal": f"rsg_ww_3p5TeV={REPO / 'data/rsg_ww_3p5TeV.root'}", "--wp-background": "none",
           "--closure": "none"}


def _shipped_and(argv: list[str]) -> list[str]:
    """The shipped samples' options (no default under data/large looked for), with ``argv``'s own options
    in place of theirs."""
    return [*(x for k, v in SHIPPED.items() if k not in argv for x in (k, v)), *argv]


def _no_reading(monkeypatch):
    """Fail the test if any sample is read: every refusal below comes before the first file is opened."""
    from hltrun.tools.physics import evaluate_models

    monkeypatch.setattr(evaluate_models, "_read", lambda *a, **k: pytest.fail("a sample was read before the refusal"))
    return evaluate_models


@pytest.mark.parametrize("argv, line", [
    (["--models-dir", "{t}/none"], "evaluate_models: --models-dir: model file not found: {t}/none/conv_vae.onnx"),
    (["--models-dir", "{t}/none", "--backend", "keras"],
     "evaluate_models: --models-dir: model file not found: {t}/none/conv_vae.keras"),
    (["--models-dir", "{t}/folder"], "evaluate_models: --models-dir: model file {t}/folder/conv_vae.onnx is a folder, not a file"),
    (["--closure", "{t}/nope.root"], "evaluate_models: --closure: {t}/nope.root does not exist"),
    (["--wp-background", "{t}/nope.root"], "evaluate_models: --wp-background: {t}/nope.root does not exist"),
    (["--signal", "x={t}"], "evaluate_models: --signal x: {t} is a folder, not a file"),
    (["--closure", str(REPO / "data/qcd_dijet.root")],
     f"evaluate_models: {REPO / 'data/qcd_dijet.root'}: already a sample of the evaluation; the working point's "
     "samples must be others"),
])
def test_a_missing_model_or_sample_is_refused_before_any_sample_is_read(argv, line, tmp_path, monkeypatch, capsys):
    """--models-dir /nonexistent read every sample (seconds; minutes on the large ones) before saying the
    model was missing; so did a missing --closure or --wp-background file. Exit 3 (input data), one line."""
    evaluate_models = _no_reading(monkeypatch)
    (tmp_path / "folder" / "conv_vae.onnx").mkdir(parents=True)
    out = tmp_path / "out"
    assert evaluate_models.main(["--out-dir", str(out), *_shipped_and([a.format(t=tmp_path) for a in argv])]) == 3
    assert capsys.readouterr().err.strip().splitlines() == [line.format(t=tmp_path)]
    assert not out.exists()


@pytest.mark.parametrize("argv, line", [
    (["--max-events", "0"], "evaluate_models: --max-events must be at least 1, got 0"),
    (["--threads", "0"], "evaluate_models: --threads must be at least 1, got 0"),
    (["--input-rate-hz", "0"], "evaluate_models: --input-rate-hz must be positive, got 0.0"),
    (["--input-rate-hz", "nan"], "evaluate_models: --input-rate-hz must be positive, got nan"),
    (["--signal", "x"], "evaluate_models: --signal 'x': expected KEY=FILE"),
    (["--signal", "x=a.root", "--signal", "x=b.root"], "evaluate_models: --signal x: given twice (a.root, b.root)"),
    (["--held-out", "nope"], "evaluate_models: --held-out nope: not a signal of the evaluation (signals: "),
    (["--min-events-above", "-1"], "evaluate_models: --min-events-above -1: expected a finite number, at least 0"),
    (["--min-events-above", "nan"], "evaluate_models: --min-events-above nan: expected a finite number, at least 0"),
])
def test_an_argument_error_is_one_line_exit_2_before_anything_is_read(argv, line, tmp_path, monkeypatch, capsys):
    """A malformed --signal was exit 3 (as if a file were bad), --max-events 0 or --input-rate-hz 0 ran the
    whole evaluation into a traceback or a card of zeros, an unknown --held-out key was ignored."""
    evaluate_models = _no_reading(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        evaluate_models.main(["--out-dir", str(out), *_shipped_and(argv)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err
    assert not out.exists()


def _ten_events(out: Path, *extra: str) -> list[str]:
    qcd = str(REPO / "data/qcd_dijet.root")
    return ["--out-dir", str(out), "--max-events", "10", "--background", qcd, "--physical-background", "none",
            "--wp-background", "none", *extra]


def test_a_cut_on_too_few_events_is_refused_as_hltcard_refuses_it(tmp_path, capsys):
    """10 background events: every cut passes nothing (the 1% cut is the top score). evaluate_models wrote such
    cuts into thresholds.json (exit 0, 1% and 0.1% equal); it refuses them now by hltcard's rule and check
    (card_entry.CardEntry.refusal, --min-events-above, default 10): one line, exit 2, nothing written."""
    from hltrun.tools.physics import evaluate_models

    out = tmp_path / "new"
    assert evaluate_models.main(_ten_events(out, "--closure", "none")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "not written" in line]
    assert err == ["evaluate_models: conv_vae bkg_eff_1e-2: the cut rests on 0.0 effective background events above "
                   "it (0 of 10 events; at least 10 needed); not written (a larger --background sample, or "
                   "--min-events-above N to accept fewer)"]
    assert not out.exists()


def test_the_card_of_a_tiny_evaluation_prints_counts_not_nan_or_zero_errors(tmp_path):
    """--min-events-above 0 accepts the cuts: the card then says what they rest on (counts, '—'), never
    'nan ± nan', '0.00 ± 0.00', '0 Hz ± 0 Hz' or 'consistent with flat' beside a max/min of ∞."""
    from hltrun.tools.physics import evaluate_models

    closure = tmp_path / "closure_copy.root"
    shutil.copy(REPO / "data/qcd_dijet.root", closure)
    out = tmp_path / "out"
    assert evaluate_models.main(_ten_events(out, "--closure", str(closure), "--min-events-above", "0")) == 0
    text = (out / "README.md").read_text()
    assert not re.search(r"\bnan\b", text) and "± 0.00 " not in text and "± 0.000 " not in text and "0 Hz ± 0 Hz" not in text
    assert not any("consistent with flat" in line and "∞" in line for line in text.splitlines())
    assert "0 Hz (0 of 10 events)" in text and "accepted with `--min-events-above 0`" in text
    assert "(no error: 0.0 effective events above the cut)" in text  # the pT fit's covariance means nothing here
    m = json.loads((out / "metrics.json").read_text())
    assert m["min_events_above"] == 0.0
    assert m["models"]["conv_vae"]["cut_stats"]["bkg_eff_1e-3"]["n_effective_above"] == 0.0
