"""The model card (data/models/README.md), rendered from the evaluation's metrics only.

Why a module of its own: every number in the card comes from ``metrics`` (tools/physics/evaluate_models.py),
the training histories or onnx_check.json, so the card can never disagree with the files it describes. One
exception: the ``.tflite`` rows (``TFLITE_WHAT``) quote the agreement ``tools/physics/conv_tflite.py --check``
printed on the shipped samples when the files were written (on fresh samples of other seeds the GCN-VAE's
reaches 5.4e-5, still under the 1e-4 criterion); rerun that check after replacing a sample or a file.
"""
from __future__ import annotations

import argparse
import json
import math
from typing import Any

from hltrun.tools.physics.eval_stats import percent_text

OTHER_TOOLS_SECTIONS = ("## INT8 quantisation",)  # written by tools/physics/quantize_models.py
# the .tflite files are written by tools/physics/conv_tflite.py, not by the evaluation: how, and how they agree
TFLITE_WHAT = {
    "conv_vae": "TensorFlow Lite, dynamic batch, for `backend: tflite` (and `auto`): the ONNX file's weights written "
                "in TF ops for XNNPACK (`python tools/physics/conv_tflite.py --out data/models/conv_vae.tflite --check`, "
                "which reproduces it byte for byte: on the backend, every shipped jet within 8.4e-7 relative on the "
                "score, 1.7e-6 on kl, no decision changed; docs/inference.md)",
    "gcn_vae": "TensorFlow Lite, dynamic batch, for `backend: tflite` (and `auto`): the Keras model as Keras built it "
               "(`python tools/physics/conv_tflite.py --out data/models/gcn_vae.tflite --keras data/models/gcn_vae.keras "
               "--model data/models/gcn_vae.onnx --check`, byte for byte: every shipped jet within 3.7e-5 relative on "
               "the score, as the ONNX export itself, 1.1e-6 on kl, no decision changed; docs/inference.md)",
}


def kept_sections(card: str, titles: tuple[str, ...]) -> str:
    """Sections of the model card that other tools write: kept when this tool rewrites the card."""
    kept = []
    for title in titles:
        start = card.find(title + "\n")
        if start >= 0:
            end = card.find("\n## ", start + len(title))
            kept.append(card[start:end if end >= 0 else len(card)].rstrip("\n"))
    return "\n\n".join(kept)


def _f(x: Any, fmt: str = ".3f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _pct(r: dict[str, Any], err: bool = True) -> str:
    """A pass rate in percent, with its statistical error (the raw count when nothing or everything passed)."""
    return percent_text(r, ".2f", err)


def _ratio(r: dict[str, Any]) -> str:
    from hltrun.tools.physics.eval_card_wp import ratio_text

    return ratio_text(r)


def _bins(edges: list[float]) -> list[str]:
    out = [f"{edges[i]:.0f}–{edges[i + 1]:.0f}" for i in range(len(edges) - 1)]
    return out + [f"> {edges[-1]:.0f}"]


def _hz(rate: float, input_hz: float) -> str:
    hz = rate * input_hz
    return f"{hz / 1e3:.2f} kHz" if hz >= 999.5 else f"{hz:.0f} Hz"


def _hz_pm(r: dict[str, Any], input_hz: float) -> str:
    """A rate at the HLT input ± its error; the count it rests on where nothing (or everything) passed: '0 Hz ± 0 Hz'
    would read as a rate known exactly."""
    n, k = int(r["n_events"]), int(r["n_pass"])
    if n == 0:
        return "no events"
    if k in (0, n):
        return f"{_hz(r['rate'], input_hz)} ({k} of {n} events)"
    return f"{_hz(r['rate'], input_hz)} ± {_hz(r['error'], input_hz)}"


def events_above_text(m: dict[str, Any], models: tuple[str, ...], eff_label: dict[str, str]) -> str:
    """What each event-level cut rests on: the background's events above it and their effective number
    (stored by the evaluation as ``cut_stats``; for older metrics.json recovered exactly from the pass rate and
    its error, ``eval_stats.effective_above``), and which fall short of the minimum both tools require."""
    from hltrun.tools.physics.card_entry import MIN_EFFECTIVE_ABOVE
    from hltrun.tools.physics.eval_stats import effective_above

    minimum = m.get("min_events_above")  # None: metrics.json from before the evaluation checked it
    parts, short = [], []
    for n in models:
        cells = []
        for k, label in eff_label.items():
            stat = m["models"][n].get("cut_stats", {}).get(k)
            if stat is not None:
                n_pass, eff = stat["n_pass"], stat["n_effective_above"]
            else:
                r = m["models"][n]["hlt"][k]["inclusive"]["background"]
                n_pass, eff = r["n_pass"], effective_above(r)
            cells.append(f"{label}: {n_pass} ({eff:.1f})")
            if eff < MIN_EFFECTIVE_ABOVE:  # a higher --min-events-above refused the cut
                short.append(f"{n} {label}")
        parts.append(f"{n}: " + ", ".join(cells))
    text = ("Behind each event-level cut, the background's QCD events above it (effective events in brackets: the "
            "relative error on the cut's rate is about 1/√ of it): " + "; ".join(parts) + ".")
    if short:
        text += (f" **Fewer than {MIN_EFFECTIVE_ABOVE:g} effective events** (the minimum `evaluate_models` and "
                 f"`hltcard` require by default, `--min-events-above`): {', '.join(short)}; " + (
                     "these cuts were written before the evaluation checked it: evaluated again on the same sample "
                     "they are refused unless the background is larger or `--min-events-above` is lowered."
                     if minimum is None else f"accepted with `--min-events-above {minimum:g}`."))
    return text


def model_card(m: dict[str, Any], hist: dict[str, dict], args: argparse.Namespace, command: str) -> str:
    """Render the model card."""
    from hltrun.tools.catalogue import MODELS
    from hltrun.tools.physics.eval_defs import BASELINES, BKG_EFFS

    d = args.models_dir
    check_file = d / "onnx_check.json"
    check = json.loads(check_file.read_text()) if check_file.exists() else {}
    size = {n: {ext: (d / f"{n}.{ext}").stat().st_size / 1e6 for ext in ("keras", "onnx", "tflite") if (d / f"{n}.{ext}").exists()}
            for n in MODELS}
    names = list(MODELS) + list(BASELINES)
    label = {**{n: n for n in MODELS}, **{k: b.label for k, b in BASELINES.items()}}
    disc = {**m["models"], **m["baselines"]}
    bins = _bins(m["pt_edges_gev"])
    eff_label = {"bkg_eff_1e-2": "1%", "bkg_eff_1e-3": "0.1%"}
    L: list[str] = []
    add = L.append

    add("# hltrun anomaly-detection models (model card)\n")
    add("Generated by `tools/physics/evaluate_models.py` — edit that tool, not this file: every number below is "
        "rewritten on every evaluation.\n")
    add("Two variational autoencoders trained on QCD jets only; a jet is anomalous when its reconstruction "
        "is poor.  Both take `jets` float32 **(N, 100, 3)** = (Δη, Δφ, pT [GeV]) of the jet's constituents "
        "relative to the jet axis (Δφ wrapped to [−π, π]), sorted by pT, truncated / zero-padded to 100 "
        "(`modules/models/preprocess.py::jets_to_array`; the framework's jet batcher builds the same array). Real "
        "constituents are those with pT > 0; the mask, and the pT transform of the training table below, are "
        "computed inside the models.\n")
    add("| file | what | size |\n|---|---|---|")
    for n in MODELS:
        for ext, mb in size[n].items():
            what = {"keras": "Keras 3 inference model",
                    "onnx": f"ONNX, opset {check.get(n, {}).get('opset', '?')}, dynamic batch",
                    "tflite": TFLITE_WHAT.get(n, "TensorFlow Lite, dynamic batch, for `backend: tflite`")}[ext]
            add(f"| `{n}.{ext}` | {what} | {mb:.2f} MB |")
    add("| `thresholds.json` | score cuts at 1% and 0.1% QCD efficiency: event level (trigger-filter defaults), per "
        "jet, and as a function of the leading-jet pT (`vs_leading_jet_pt`) | |")
    add("| `metrics.json`, `onnx_check.json`, `*_history.json` | raw numbers behind this card | |")
    add("| `roc.png`, `score_distributions.png`, `loss_curves.png`, `pass_rate_vs_pt.png` | plots | |\n")

    add("## Outputs (both models)\n")
    add("* `score` (N,): symmetric **Chamfer distance** between the input constituents and the reconstruction, "
        "computed inside the graph on standardised features ((f − mean)/std: Δη, Δφ and pT weigh alike; the "
        "mean cancels in differences) — the encoder's standardised input against the decoder's output before "
        "un-standardising. All squared distances come from one matrix product of augmented vectors, "
        "[x, |x|² + far, 1]·[−2y, 1, |y|² + far]ᵀ = |x − y|², followed by two min-reductions "
        "(`modules/models/losses.py::chamfer_distance`). Padding: only real constituents (pT > 0) enter — "
        "`far` = 1e30 on padded points, so they are never nearest neighbours, and their own nearest-neighbour "
        "distances are excluded from the sums. Score = Σ_i w_i·(distance of input i to the nearest reconstructed "
        "point) + Σ_j w_j·(distance of reconstructed point j to the nearest input), over the real slots (the "
        "reconstruction uses the input's mask; slot j = pT rank j). The weights w (`weighting` in the training "
        "table, `modules/models/losses.py::point_weights`) sum to one per jet: `uniform` = 1/n, every constituent "
        "alike, so the many soft wide-angle constituents dominate; `pt_fraction` = the constituent's share of the "
        "jet pT, an energy-weighted distance like the energy mover's distance, dominated by the hard prongs.")
    add("* `kl` (N,): β·KL(q(z|x) ‖ N(0,1)), reported separately (not part of `score`). Computed as "
        "0.5·Σ(μ² + [exp(v) − 1 − v]) with the bracket from a Taylor series for |v| < 0.5, because the float32 "
        "form cancels when the posterior is close to the prior (the graph stays float32 for TensorRT).")
    add("* The latent **mean** is decoded (no sampling): inference is deterministic.\n")

    add("## Architectures\n")
    add("**Conv-VAE** (`modules/models/conv_vae.py`), as in the IML 2022 HLT study's model summary, ELU: "
        "Standardize (training mean/std per feature, padded rows kept 0) → Conv2D(16, 3×3) → Conv1D(20, 3) → "
        "Conv1D(24, 3) → AveragePooling1D(2) → Flatten(1128) → Dense(136) → Dense(32) → z_mean, z_log_var (8); "
        "decoder Dense(32) → Dense(136) → Dense(1128) → Reshape(47, 24) → UpSampling1D(2) → Conv1DTranspose(20, 3) "
        "→ Conv1DTranspose(16, 3) → Conv2DTranspose(1, 3×3) → un-standardize. "
        f"{hist.get('conv_vae', {}).get('n_params', '?')} parameters in the inference model.\n")
    add("**GCN-VAE** (`modules/models/gcn_vae.py`), tanh: graph convolutions act(Â·X·W + b) with "
        "Â = D^−1/2 A D^−1/2, A fully connected over the real constituents with self-loops, built inside the "
        "graph from the mask (`NormalizedAdjacency`): with A fully connected Â = w·wᵀ, w_i = m_i/√n, so Â·X·W is "
        "computed as w·(wᵀ·X·W), nothing N×100×100 is built. With a fully connected Â every "
        "GCN output row is the same jet-wide average, so each graph convolution is a residual block "
        "X + act(ÂXW + b) to keep each constituent's own features. Encoder: per-constituent Dense(32) → 2 residual "
        "GCN(32) → Dense(32) → masked mean pool → Dense(32) → z_mean, z_log_var (8). Decoder: Dense(32) → "
        "Dense(100·16) → Reshape(100, 16) (one slot per pT rank) → 2 residual GCN(16) on the input's graph → "
        "Dense(3) → un-standardize. "
        f"{hist.get('gcn_vae', {}).get('n_params', '?')} parameters.\n")
    add("Both graphs start with the pT transform of the training table (`pt_mode`: GeV, log GeV, fraction of the "
        "jet's pT or its log; `modules/models/losses.py::PT_MODES`) before standardising. With `log_fraction` "
        "the input contract is unchanged (pT in GeV) but the network only sees how the jet's pT is shared among "
        "its constituents (the sum over the 100 hardest fed): a jet and the same jet with every pT scaled get the "
        "same score (`tests/test_models.py::test_fraction_models_are_blind_to_the_jet_pt_scale`). The training "
        "sample is flat in p̂T (`qcd_flat`, data/README.md), so 600 GeV and 1.6 TeV jets are learnt alike.\n")
    add("Loss = Chamfer + β·KL (reparametrised z in training). Adam, ReduceLROnPlateau (×0.3 after 3 flat "
        "epochs) and EarlyStopping on val_loss (restoring the best weights); val_loss uses the latent mean and "
        "the full β, i.e. exactly `score + kl` (with free bits, the KL counted as in training: floored per "
        "dimension).\n")

    add("## Training\n")
    add("| | " + " | ".join(MODELS) + " |\n|---|" + "---|" * len(MODELS))
    rows = [("training file(s)", lambda h: ", ".join(f"`{f}`" for f in h["train_files"])),
            ("training / validation jets", lambda h: f"{h['n_train_jets']} / {h['n_val_jets']}"),
            ("parameters (inference model)", lambda h: str(h.get("n_params", "?"))),
            ("pT as the model sees it (`pt_mode`)", lambda h: str(h.get("pt_mode", "log" if h.get("log_pt") else "linear"))),
            ("β (KL weight)", lambda h: f"{h['beta']:g}"),
            ("KL warm-up (epochs)", lambda h: str(h.get("kl_warmup_epochs", 0))),
            ("free bits (nats per latent dimension)", lambda h: f"{h.get('free_bits') or 0:g}"),
            ("Chamfer weights (`weighting`)", lambda h: str(h.get("weighting", "uniform"))),
            ("initial learning rate, batch", lambda h: f"{h['learning_rate']:g}, {h['batch_size']}"),
            ("epochs run (max) / best", lambda h: f"{h['epochs_run']} ({h['max_epochs']}) / {h['best_epoch']}"),
            ("best val_loss", lambda h: f"{h['best_val_loss']:.4f}"),
            ("training time", lambda h: f"{h['train_seconds'] / 60:.1f} min"),
            ("command", lambda h: f"`{h['command']}`")]
    for text, fn in rows:
        add(f"| {text} | " + " | ".join(fn(hist[n]) if n in hist else "?" for n in MODELS) + " |")
    add("\nTraining jets: the two leading jets of every event of the training sample(s) above (generation: "
        "`data/README.md`; `data/large/` is git-ignored), a fraction held out for validation.\n")
    add("![loss curves](loss_curves.png)\n")

    add("## Latent space\n")
    add("KL(q(z|x) ‖ N(0,1)) per jet in nats: on the validation jets at the best epoch (training history) and on "
        "the QCD test jets below (the models' `kl` output divided by β, weighted like the test events). A KL "
        "near zero means the posterior equals the prior for every jet: the latent then carries no information "
        "and the decoder emits one template per constituent multiplicity.\n")
    add("| model | β | KL warm-up | free bits | KL per jet, validation | KL per jet, QCD test |\n|---|---|---|---|---|---|")
    for n in MODELS:
        lat = m["models"][n]["latent"]
        add(f"| {n} | {_f(lat.get('beta'), 'g')} | {lat.get('kl_warmup_epochs', '—')} | {_f(lat.get('free_bits'), 'g')} "
            f"| {_f(lat['val_kl_best_epoch'], '.3g')} | {_f(lat['test_kl_mean'], '.3g')} |")
    add("\nHow the latent is kept alive: the KL term is ramped in over the warm-up epochs (the decoder first "
        "learns to use z), and with free bits λ > 0 the training loss counts each latent dimension's "
        "batch-mean KL as max(KL_d, λ): below λ nats a dimension costs nothing more, so the optimiser gains "
        "nothing by collapsing it onto the prior. Validation and the deployed `kl` use the plain KL.\n")
    add("Why the two models differ (choices made on pilot trainings scored against the QCD test sample and the "
        "non-held-out signals only; the held-out signal played no part): with `uniform` Chamfer weights the "
        "reconstruction error grows for 2-prong (W) jets, with `pt_fraction` weights for 3-prong (top) jets, while "
        "2-prong jets then reconstruct *better* than QCD. A narrow latent (β = 1 with free bits) sharpened the "
        "2-prong response of the uniform-weight model. So the Conv-VAE (uniform, narrow latent) and the GCN-VAE "
        "(pT-share weights) are complementary detectors; the tables below show what each one finds.\n")

    add("## Samples\n")
    add("| role | sample | file | events | jets | weights | effective events |\n|---|---|---|---|---|---|---|")
    rows_s = [("QCD background (thresholds, rates, ROC)", m["background"])]
    if m.get("physical_background"):
        rows_s.append(("QCD cross-check (rates only)", m["physical_background"]))
    if m.get("wp_background"):
        rows_s.append(("QCD, more for the pT-dependent cut (pooled with the background)", m["wp_background"]))
    if m.get("closure_sample"):
        rows_s.append(("QCD, independent: closure of the pT-dependent cut only", m["closure_sample"]))
    rows_s += [("signal, **held out**" if s["held_out"] else "signal", s) for s in m["signals"].values()]
    for role, s in rows_s:
        add(f"| {role} | {s['label']} | `{s['file']}` | {s['n_events']} | {s['n_jets']} | "
            f"{'genWeight' if s['gen_weight'] else '1'} | {s['n_effective']:.0f} |")
    trained_on = {f for h in hist.values() for f in h["train_files"]}
    bkg_file = m["background"]["file"]
    add("\nThe QCD background is " + ("**the training sample itself** (optimistic)" if bkg_file in trained_on
                                      else "independent of the training sample(s)") + "; every background number "
        "is weighted by `genWeight` when the file has one (a flat-pT̂ sample then gives physical rates), "
        "effective events = (Σw)²/Σw². A **held-out** signal played no part in any training or model-selection "
        "choice. Events: the two leading jets are scored; an event's score is the larger of its two jets' "
        "(what the default HLT path does: `JetBatcher max_jets: 2` → `AnomalyScoreFilter reduce: max`). Jet "
        "level: every leading jet on its own, with its event's weight.\n")

    add("## Baselines\n")
    for k, b in BASELINES.items():
        add(f"* **{b.label}**: {b.definition}.")
    add("\nThey are evaluated exactly like the models (same events, weights, thresholds and tables). Both are "
        "one-sided (larger = more signal-like), as an anomaly score is: a mass window around a known resonance "
        "would be a signal hypothesis, so a light resonance (W, 80 GeV, lighter than typical QCD jets at this pT) "
        "can give a mass AUC below 0.5.\n")

    add("## Discrimination (inclusive)\n")
    add("AUC = P(score_signal > score_QCD), background weighted. Columns: the two models, then the baselines.\n")
    add("| signal | level | " + " | ".join(label[n] for n in names) + " |\n|---|---|" + "---|" * len(names))
    for sig, s in m["signals"].items():
        name = s["label"] + (" (**held out**)" if s["held_out"] else "")
        for lvl in ("event", "jet"):
            add(f"| {name} | {lvl} | " + " | ".join(_f(disc[n]["signals"][sig][f"auc_{lvl}"]) for n in names) + " |")
    add("\nSignal efficiency at the inclusive working points (event level; jet level in `metrics.json`):\n")
    add("| signal | QCD eff. | " + " | ".join(label[n] for n in names) + " |\n|---|---|" + "---|" * len(names))
    for sig, s in m["signals"].items():
        name = s["label"] + (" (**held out**)" if s["held_out"] else "")
        for k in BKG_EFFS:
            add(f"| {name} | {eff_label[k]} | "
                + " | ".join(_f(disc[n]["signals"][sig][f"event_sig_eff_at_{k}"]) for n in names) + " |")
    add("\n![ROC curves](roc.png)\n\n![score distributions](score_distributions.png)\n")

    lo, hi = m["matched_pt_gev"]
    add("## Discrimination at matched pT\n")
    add(f"Events whose leading jet has {lo:.0f} ≤ pT < {hi:.0f} GeV, signal against QCD (event level): the jet-pT "
        f"difference between signal and QCD is then mostly gone, so what separates is substructure. QCD events in "
        f"the window: {disc[MODELS[0]]['n_bkg_events_matched_pt']}.\n")
    add("| signal | signal events | " + " | ".join(label[n] for n in names) + " |\n|---|---|" + "---|" * len(names))
    for sig, s in m["signals"].items():
        name = s["label"] + (" (**held out**)" if s["held_out"] else "")
        n_win = disc[MODELS[0]]["signals"][sig]["n_events_matched_pt"]
        add(f"| {name} | {n_win} | " + " | ".join(
            _f(disc[n]["signals"][sig]["auc_event_matched_pt"]) + (
                f" ± {disc[n]['signals'][sig]['auc_event_matched_pt_error']:.3f}"
                if disc[n]["signals"][sig]["auc_event_matched_pt"] is not None else "") for n in names) + " |")
    add("\n± : statistical error (Hanley & McNeil, with effective event counts); inclusive event-level AUC errors "
        "are in `metrics.json` (`auc_event_error`).")

    r_lo, r_hi = m["ratio_range_gev"]
    add("\n## QCD pass rate vs leading-jet pT (inclusive working points)\n")
    add(f"Fraction of QCD events (weighted, %, ± statistical error) above the inclusive event-level cut, per bin of "
        f"the leading jet's pT (GeV; the first bin also holds the events below its lower edge). Ratio: largest / "
        f"smallest pass rate over the bins between {r_lo:.0f} and {r_hi:.0f} GeV (± from the two rates' errors). A flat rate means the score does "
        "not simply measure jet pT." + (" Rows marked cross-check: the same cuts on the independent unweighted QCD "
                                       "sample." if m.get("physical_background") else "") + "\n")
    for k in BKG_EFFS:
        add(f"**{eff_label[k]} working point**\n")
        add("| | " + " | ".join(bins) + " | ratio |\n|---|" + "---|" * (len(bins) + 1))
        for n in names:
            add(f"| {label[n]} | " + " | ".join(_pct(r) for r in disc[n]["pt_pass_rates"][k])
                + f" | {_ratio(disc[n]['pt_pass_ratio'][k])} |")
        if m.get("physical_background"):
            for n in MODELS:
                h = disc[n]["hlt"][k]
                add(f"| {n}, cross-check sample | " + " | ".join(_pct(r) for r in h["physical_pt_pass_rates"])
                    + f" | {_ratio(h['physical_pt_pass_ratio'])} |")
        add("")
    bkg_bins = disc[MODELS[0]]["pt_pass_rates"]["bkg_eff_1e-2"]
    add("QCD events per bin (effective): " + ", ".join(f"{b} GeV: {r['n_events']} ({r['n_effective']:.0f})"
                                                       for b, r in zip(bins, bkg_bins)) + ".\n")
    add("![pass rate vs pT](pass_rate_vs_pt.png)\n")

    from hltrun.tools.physics.eval_card_wp import working_point_section

    L.extend(working_point_section(m, MODELS, BKG_EFFS, eff_label, bins))
    add("\nSignal efficiency at the pT-dependent working points (event level):\n")
    add("| signal | QCD eff. | " + " | ".join(MODELS) + " |\n|---|---|" + "---|" * len(MODELS))
    for sig, s in m["signals"].items():
        name = s["label"] + (" (**held out**)" if s["held_out"] else "")
        for k in BKG_EFFS:
            add(f"| {name} | {eff_label[k]} | " + " | ".join(
                _f(disc[n]["signals"][sig][f"event_sig_eff_at_vs_leading_jet_pt_{k}"]) for n in MODELS) + " |")

    hz = m["input_rate_hz"]
    add("\n## Rate at the HLT input\n")
    indep = m.get("closure_sample") is not None
    add(f"QCD pass fraction × {hz / 1e3:g} kHz input rate (`--input-rate-hz`), ± statistical error"
        + (": the cuts of `thresholds.json` on the independent closure sample (on the sample a cut was derived on, "
           "the fraction would be the target by construction)" if indep else "")
        + ("; cross-check: the same cuts on the unweighted QCD sample" if m.get("physical_background") else "")
        + ".\n")
    head = (["inclusive (independent)", "pT-dependent (independent)"] if indep else []) + (
        ["inclusive (cross-check)", "pT-dependent (cross-check)"] if m.get("physical_background") else [])
    head = head or ["inclusive (background: the target by construction)"]
    add("| model | QCD eff. | " + " | ".join(head) + " |\n|---|---|" + "---|" * len(head))
    for n in MODELS:
        for k in BKG_EFFS:
            h = disc[n]["hlt"][k]
            cells = ([h["inclusive"]["closure"], h["vs_leading_jet_pt"]["closure"]] if indep else []) + (
                [h["inclusive"]["physical"], h["vs_leading_jet_pt"]["physical"]] if m.get("physical_background") else [])
            cells = cells or [h["inclusive"]["background"]]
            add(f"| {n} | {eff_label[k]} | " + " | ".join(
                _hz_pm(r, hz) for r in cells) + " |")

    add("\n## Thresholds (scalar)\n")
    add("`bkg_eff_1e-2` / `bkg_eff_1e-3` (the trigger filter's defaults, `working_point: inclusive`) are "
        "**event-level** cuts on the larger score of the two leading jets; `jet_bkg_eff_*` are per-jet cuts for a "
        "filter that reduces differently. Each cut lies halfway between the highest failing and the lowest passing "
        "QCD score.\n")
    add("| model | event, bkg 1% | event, bkg 0.1% | jet, bkg 1% | jet, bkg 0.1% |\n|---|---|---|---|---|")
    for n in MODELS:
        t = m["models"][n]["thresholds"]
        add(f"| {n} | {t['bkg_eff_1e-2']:.5g} | {t['bkg_eff_1e-3']:.5g} | {t['jet_bkg_eff_1e-2']:.5g} "
            f"| {t['jet_bkg_eff_1e-3']:.5g} |")
    add("\n" + events_above_text(m, MODELS, eff_label) + "\n")

    add("## ONNX export check\n")
    if check:
        add("| model | jets compared | max rel. diff `score` | max rel. diff `kl` | trigger decisions changed | opset |\n"
            "|---|---|---|---|---|---|")
        for n in MODELS:
            if n in check:
                c = check[n]
                changes = c.get("decision_changes")
                changed = (f"{sum(changes.values())} of {c['n_events']} events × {len(changes)} thresholds"
                           if changes is not None else "not checked")
                add(f"| {n} | {c['n_jets']} | {c['score_max_rel']:.1e} | {c['kl_max_rel']:.1e} | {changed} | {c['opset']} |")
        files = next((c.get("check_files") for c in check.values() if isinstance(c, dict) and c.get("check_files")),
                     None)
        rtol = next((c.get("rtol") for c in check.values() if isinstance(c, dict) and c.get("rtol")), None)
        add(f"\nonnxruntime (CPU) vs Keras/TensorFlow (`tools/physics/export_onnx.py`) on the two leading jets of every event "
            f"of {', '.join(f'`data/{f}`' for f in files) if files else 'the shipped samples'}; required: score within "
            f"{rtol or 1e-4:g} relative and no trigger decision changed against the scalar event thresholds.\n")
    else:
        add("No `onnx_check.json` beside the models: run `python tools/physics/export_onnx.py --model all`.\n")

    add("## Reproducing\n")
    add("Samples: the commands in `data/README.md`. Then:\n")
    add("```bash\npip install -e '.[cpu,generate]'")
    for n in MODELS:
        if n in hist:
            add(hist[n]["command"])
    add(f"python tools/physics/export_onnx.py --model all\n{command}\n"
        "python tools/physics/export_onnx.py --model all   # again: its decision check uses the new thresholds\n"
        "python tools/physics/quantize_models.py            # INT8 variants and their section of this card\n"
        f"{command}   # again: the card quotes the final ONNX check\n"
        "python -m hltrun.tools.physics.make_reference             # data/reference/: the regression tests' expected outputs\n```\n")
    add("Trained single-threaded on CPU; TensorFlow kernels are not bit-reproducible across machines, so "
        "retraining gives statistically, not bitwise, equal models.\n")
    return "\n".join(L)
