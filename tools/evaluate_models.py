#!/usr/bin/env python3
"""Evaluate the shipped VAEs: ROC/AUC per signal, efficiencies, thresholds, plots, model card.

Why: the trigger filter's default thresholds and the numbers in data/models/README.md must come
from one reproducible command.  Scores are per jet (the two leading jets of each event); the
thresholds are the per-jet score cuts that keep 1% and 0.1% of background jets.

Writes into ``--models-dir``: thresholds.json, metrics.json, roc.png, loss_curves.png,
score_distributions.png, and README.md (the model card, regenerated with the current numbers).

Example::

    python tools/evaluate_models.py --background data/large/qcd_test.root
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

MODELS = ("conv_vae", "gcn_vae")
SIGNALS = {
    "rsg_ww_1p5TeV": ("data/rsg_ww_1p5TeV.root", "RS G* (1.5 TeV) -> WW"),
    "rsg_ww_3p5TeV": ("data/rsg_ww_3p5TeV.root", "RS G* (3.5 TeV) -> WW"),
    "zprime_tt_2TeV": ("data/zprime_tt_2TeV.root", "Z' (2 TeV) -> tt"),
}
BKG_EFFS = {"bkg_eff_1e-2": 1e-2, "bkg_eff_1e-3": 1e-3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line interface."""
    p = argparse.ArgumentParser(description="ROC/AUC, efficiencies, thresholds and the model card for the VAEs.")
    default_bkg = REPO / "data/large/qcd_test.root"
    p.add_argument("--models-dir", type=Path, default=REPO / "data/models", help="directory with the models")
    p.add_argument("--background", type=Path, default=default_bkg if default_bkg.exists() else REPO / "data/qcd_dijet.root",
                   help="background sample NOT used in training (default: data/large/qcd_test.root if present, "
                        "else the shipped data/qcd_dijet.root)")
    p.add_argument("--signal-dir", type=Path, default=REPO,
                   help="root under which the signal paths data/<signal>.root are looked up")
    p.add_argument("--backend", choices=("onnx", "keras"), default="onnx",
                   help="run the .onnx files with onnxruntime (default) or the .keras files with TensorFlow")
    p.add_argument("--no-card", action="store_true", help="do not rewrite data/models/README.md")
    return p.parse_args(argv)


def scorer(models_dir: Path, name: str, backend: str):
    """Return f(jets) -> {'score','kl'} for one model on the chosen backend."""
    if backend == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from modules.models.vae import load_inference_model, predict_scores

        model = load_inference_model(models_dir / f"{name}.keras")
        return lambda jets: predict_scores(model, jets)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(models_dir / f"{name}.onnx"), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]

    def run(jets: np.ndarray) -> dict[str, np.ndarray]:
        parts = [dict(zip(names, sess.run(None, {"jets": jets[i:i + 2048]}))) for i in range(0, len(jets), 2048)]
        return {k: np.concatenate([p[k] for p in parts]) for k in ("score", "kl")}

    return run


def roc(bkg: np.ndarray, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC (background eff, signal eff) for 'score > cut', and the AUC = P(score_sig > score_bkg)."""
    cuts = np.unique(np.concatenate([bkg, sig]))[::-1]
    fpr = 1.0 - np.searchsorted(np.sort(bkg), cuts, side="right") / len(bkg)
    tpr = 1.0 - np.searchsorted(np.sort(sig), cuts, side="right") / len(sig)
    ranks = np.searchsorted(np.sort(bkg), sig, side="left") + 0.5 * (
        np.searchsorted(np.sort(bkg), sig, side="right") - np.searchsorted(np.sort(bkg), sig, side="left"))
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]), float(ranks.mean() / len(bkg))


def threshold(bkg: np.ndarray, eff: float) -> float:
    """Score cut above which a fraction ``eff`` of background jets lies."""
    return float(np.quantile(bkg, 1.0 - eff))


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Score background and signals with both models; returns the metrics dictionary."""
    from modules.models.preprocess import load_jets

    bkg_jets, bkg_evt = load_jets(str(args.background))
    sig_jets = {k: load_jets(str(args.signal_dir / path)) for k, (path, _) in SIGNALS.items()}
    metrics: dict[str, Any] = {"background": _rel(args.background), "n_bkg_jets": int(len(bkg_jets)),
                               "n_bkg_events": int(bkg_evt.max() + 1), "backend": args.backend,
                               "signals": {k: {"file": SIGNALS[k][0], "n_jets": int(len(v[0]))}
                                           for k, v in sig_jets.items()},
                               "models": {}, "roc": {}, "scores": {}}
    for name in MODELS:
        run = scorer(args.models_dir, name, args.backend)
        b = run(bkg_jets)["score"].astype(np.float64)
        b_evt = _event_max(b, bkg_evt)
        thr_jet = {k: threshold(b, e) for k, e in BKG_EFFS.items()}
        thr_evt = {k: threshold(b_evt, e) for k, e in BKG_EFFS.items()}
        entry: dict[str, Any] = {"thresholds": {**thr_evt, **{f"jet_{k}": v for k, v in thr_jet.items()}},
                                 "signals": {}}
        metrics["roc"][name], metrics["scores"][name] = {}, {"qcd": b}
        for sig, (jets, evt) in sig_jets.items():
            s = run(jets)["score"].astype(np.float64)
            s_evt = _event_max(s, evt)
            fpr, tpr, auc = roc(b, s)
            fpr_e, tpr_e, auc_evt = roc(b_evt, s_evt)
            entry["signals"][sig] = {
                "auc_jet": auc, "auc_event": auc_evt,
                **{f"jet_sig_eff_at_{k}": float(np.mean(s > thr_jet[k])) for k in BKG_EFFS},
                **{f"event_sig_eff_at_{k}": float(np.mean(s_evt > thr_evt[k])) for k in BKG_EFFS}}
            metrics["roc"][name][sig] = {"jet": (fpr, tpr), "event": (fpr_e, tpr_e)}
            metrics["scores"][name][sig] = s
        metrics["models"][name] = entry
    return metrics


def _event_max(scores: np.ndarray, event_index: np.ndarray) -> np.ndarray:
    """Per-event maximum of the jet scores (the event fires if any leading jet is anomalous)."""
    out = np.full(event_index.max() + 1, -np.inf)
    np.maximum.at(out, event_index, scores)
    return out


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plots(metrics: dict[str, Any], models_dir: Path) -> None:
    """ROC curves, score distributions and loss curves as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(MODELS), figsize=(11, 9))
    for col, name in enumerate(MODELS):
        for row, level in enumerate(("event", "jet")):
            ax = axes[row, col]
            for sig, curves in metrics["roc"][name].items():
                fpr, tpr = curves[level]
                auc = metrics["models"][name]["signals"][sig][f"auc_{level}"]
                ax.plot(tpr, np.where(fpr > 0, fpr, np.nan), label=f"{SIGNALS[sig][1]} (AUC {auc:.3f})")
            ax.set_yscale("log")
            what = "events, max of 2 leading jets" if level == "event" else "leading 2 jets"
            ax.set_xlabel(f"signal efficiency ({what})")
            ax.set_ylabel("QCD efficiency")
            ax.set_title(f"{name}: {level} level")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    _save(plt, fig, models_dir / "roc.png")

    fig, axes = plt.subplots(1, len(MODELS), figsize=(11, 4.5))
    for ax, name in zip(axes, MODELS):
        scores = metrics["scores"][name]
        bins = np.logspace(np.log10(max(min(v.min() for v in scores.values()), 1e-4)),
                           np.log10(max(v.max() for v in scores.values())), 60)
        for key, vals in scores.items():
            ax.hist(vals, bins=bins, histtype="step", density=True, label=key)
        for k in BKG_EFFS:
            ax.axvline(metrics["models"][name]["thresholds"][f"jet_{k}"], ls="--", color="grey")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("score (Chamfer distance)")
        ax.set_title(f"{name} jets (dashed: 1%, 0.1% of QCD jets)")
        ax.legend(fontsize=8)
    _save(plt, fig, models_dir / "score_distributions.png")

    fig, axes = plt.subplots(1, len(MODELS), figsize=(11, 4.5))
    for ax, name in zip(axes, MODELS):
        hist_file = models_dir / f"{name}_history.json"
        if not hist_file.exists():
            continue
        h = json.loads(hist_file.read_text())["history"]
        epochs = np.arange(1, len(h["loss"]) + 1)
        for key, style in (("loss", "-"), ("val_loss", "-"), ("reco", "--"), ("val_reco", "--")):
            ax.plot(epochs, h[key], style, label=key)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{name} loss (val: latent mean, full beta)")
        ax.legend(fontsize=8)
    _save(plt, fig, models_dir / "loss_curves.png")


def write_outputs(metrics: dict[str, Any], args: argparse.Namespace) -> None:
    """thresholds.json (read by the trigger filter), metrics.json and the model card."""
    d = args.models_dir
    thresholds = {name: metrics["models"][name]["thresholds"] for name in MODELS}
    (d / "thresholds.json").write_text(json.dumps(thresholds, indent=1) + "\n")
    slim = {k: v for k, v in metrics.items() if k not in ("roc", "scores")}
    (d / "metrics.json").write_text(json.dumps(slim, indent=1) + "\n")
    if not args.no_card:
        card = d / "README.md"
        kept = _sections_owned_by_other_tools(card.read_text() if card.exists() else "")
        card.write_text(model_card(metrics, args).rstrip("\n") + ("\n\n" + kept if kept else "") + "\n")


OTHER_TOOLS_SECTIONS = ("## INT8 quantisation",)  # written by tools/quantize_models.py


def _sections_owned_by_other_tools(card: str) -> str:
    """Sections of the model card that other tools write: kept when this tool rewrites the card."""
    kept = []
    for title in OTHER_TOOLS_SECTIONS:
        start = card.find(title + "\n")
        if start >= 0:
            end = card.find("\n## ", start + len(title))
            kept.append(card[start:end if end >= 0 else len(card)].rstrip("\n"))
    return "\n\n".join(kept)


def model_card(m: dict[str, Any], args: argparse.Namespace) -> str:
    """Render data/models/README.md from the metrics, the training histories and the ONNX check."""
    d = args.models_dir
    hist = {n: json.loads((d / f"{n}_history.json").read_text()) for n in MODELS if (d / f"{n}_history.json").exists()}
    check_file = d / "onnx_check.json"
    check = json.loads(check_file.read_text()) if check_file.exists() else {}
    size = {n: {ext: (d / f"{n}.{ext}").stat().st_size / 1e6 for ext in ("keras", "onnx") if (d / f"{n}.{ext}").exists()}
            for n in MODELS}
    eval_cmd = (f"python tools/evaluate_models.py --background {m['background']} --backend {m['backend']}")
    L: list[str] = []
    add = L.append
    add("# hltrun anomaly-detection models (model card)\n")
    add("Generated by `tools/evaluate_models.py` — edit that tool, not this file: the numbers below are "
        "rewritten on every evaluation.\n")
    add("Two variational autoencoders trained on QCD jets only; a jet is anomalous when its reconstruction "
        "is poor.  Both take `jets` float32 **(N, 100, 3)** = (Δη, Δφ, pT [GeV]) of the jet's constituents "
        "relative to the jet axis (Δφ wrapped to [−π, π]), sorted by pT, truncated / zero-padded to 100 "
        "(`modules/models/preprocess.py::jets_to_array`; the framework's jet batcher builds the same array). Real constituents are "
        "those with pT > 0; the mask is computed inside the models.\n")
    add("| file | what | size |\n|---|---|---|")
    for n in MODELS:
        for ext, mb in size[n].items():
            add(f"| `{n}.{ext}` | {'Keras 3 inference model' if ext == 'keras' else 'ONNX, opset ' + str(check.get(n, {}).get('opset', '?')) + ', dynamic batch'} | {mb:.2f} MB |")
    add("| `thresholds.json` | score cuts at 1% and 0.1% QCD efficiency, event level (trigger-filter defaults) and per jet | |")
    add("| `metrics.json`, `onnx_check.json`, `*_history.json` | raw numbers behind this card | |")
    add("| `roc.png`, `score_distributions.png`, `loss_curves.png` | plots | |\n")

    add("## Outputs (both models)\n")
    add("* `score` (N,): symmetric **Chamfer distance** between the input constituents and the reconstruction, "
        "computed inside the graph on standardised features ((f − mean)/std: Δη, Δφ and pT weigh alike; the "
        "mean cancels in differences) — the encoder's standardised input against the decoder's output before "
        "un-standardising. All squared distances come from one matrix product of augmented vectors, "
        "[x, |x|² + far, 1]·[−2y, 1, |y|² + far]ᵀ = |x − y|², followed by two min-reductions "
        "(`modules/models/losses.py::chamfer_distance`). Padding: only real constituents (pT > 0) enter — "
        "`far` = 1e30 on padded points, so they are never nearest neighbours, and their own nearest-neighbour "
        "distances are excluded from the means. Score = mean over real inputs of the distance to the nearest "
        "reconstructed point + mean over real reconstructed points of the distance to the nearest input (the "
        "reconstruction uses the input's mask).")
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
    add("Loss = Chamfer + β·KL (reparametrised z in training). Adam, ReduceLROnPlateau (×0.3 after 3 flat "
        "epochs) and EarlyStopping on val_loss (restoring the best weights); val_loss uses the latent mean and "
        "the full β, i.e. exactly `score + kl`.\n")

    add("## Training\n")
    add("| | Conv-VAE | GCN-VAE |\n|---|---|---|")
    rows = [("training file(s)", lambda h: ", ".join(f"`{f}`" for f in h["train_files"])),
            ("training / validation jets", lambda h: f"{h['n_train_jets']} / {h['n_val_jets']}"),
            ("β (KL weight)", lambda h: f"{h['beta']:g}" + (f", warm-up {h['kl_warmup_epochs']} epochs" if h['kl_warmup_epochs'] else "")),
            ("initial learning rate, batch", lambda h: f"{h['learning_rate']:g}, {h['batch_size']}"),
            ("epochs run (max) / best", lambda h: f"{h['epochs_run']} ({h['max_epochs']}) / {h['best_epoch']}"),
            ("best val_loss", lambda h: f"{h['best_val_loss']:.4f}"),
            ("val Chamfer / val KL (nats) at best epoch", lambda h: f"{h['history']['val_reco'][h['best_epoch'] - 1]:.4f} / "
             f"{h['history']['val_kl'][h['best_epoch'] - 1]:.2g}"),
            ("pT feature", lambda h: "log pT" if h.get("log_pt") else "linear pT (GeV)"),
            ("training time (1 CPU core)", lambda h: f"{h['train_seconds'] / 60:.1f} min"),
            ("command", lambda h: f"`{h['command']}`")]
    for label, fn in rows:
        add(f"| {label} | " + " | ".join(fn(hist[n]) if n in hist else "?" for n in MODELS) + " |")
    add("\nTraining jets: the two leading jets of every event of the QCD training sample (pTHat > 600 GeV; "
        "generation in `data/README.md`), 10% held out for validation. The training sample is generated, "
        "not shipped (`data/large/` is git-ignored).\n")
    add("A KL of ~1e-4 nats or less means the posterior has collapsed onto the prior: the encoder then passes "
        "(almost) no information and the decoder emits one template jet, shaped only by the constituent mask "
        "(for the GCN, through Â). That is what β = 10 does to the GCN-VAE here; its score is then the distance of "
        "a jet to the mean QCD jet of the same multiplicity. The Conv-VAE (β = 5e-4) keeps ~20 nats in its latent.\n")
    add("![loss curves](loss_curves.png)\n")

    add("## Performance\n")
    trained_on = {f for h in hist.values() for f in h["train_files"]}
    independent = ("an independent sample (other seeds) not used in training" if m["background"] not in trained_on
                   else "**the training sample itself** (optimistic)")
    add(f"Background: **{m['n_bkg_jets']} QCD jets** (two leading jets of {m['n_bkg_events']} events) from "
        f"`{m['background']}`, {independent}. Signals: the two leading jets of the shipped signal samples "
        f"(backend: {m['backend']}).\n")
    add("* **Event level** (what the default HLT path does: `JetBatcher max_jets: 2` → `AnomalyScoreFilter "
        "reduce: max`): an event passes when the larger `score` of its two leading jets is above the cut; "
        "background efficiency = fraction of QCD events passing.")
    add("* **Jet level**: every leading jet on its own; background efficiency = fraction of QCD jets passing.\n")
    n_rare = m["n_bkg_events"] // 1000
    add(f"Statistical caution: the 0.1% event-level working point rests on ~{n_rare} background events, "
        f"so its threshold carries a ~{100 / max(n_rare, 1) ** 0.5:.0f}% relative uncertainty on the background rate.\n")
    add("| model | signal | jets | AUC event | AUC jet | event sig. eff. @ bkg 1% | @ 0.1% | jet sig. eff. @ bkg 1% | @ 0.1% |\n"
        "|---|---|---|---|---|---|---|---|---|")
    for n in MODELS:
        for sig, r in m["models"][n]["signals"].items():
            add(f"| {n} | {SIGNALS[sig][1]} | {m['signals'][sig]['n_jets']} | {r['auc_event']:.3f} | {r['auc_jet']:.3f} "
                f"| {r['event_sig_eff_at_bkg_eff_1e-2']:.3f} | {r['event_sig_eff_at_bkg_eff_1e-3']:.3f} "
                f"| {r['jet_sig_eff_at_bkg_eff_1e-2']:.3f} | {r['jet_sig_eff_at_bkg_eff_1e-3']:.3f} |")
    add("\nThresholds (`thresholds.json`). `bkg_eff_1e-2` / `bkg_eff_1e-3` (read by the trigger filter's "
        "defaults) are **event-level** cuts on the max score of the two leading jets; `jet_bkg_eff_*` are the "
        "per-jet cuts for a filter that reduces differently:\n")
    add("| model | event, bkg 1% | event, bkg 0.1% | jet, bkg 1% | jet, bkg 0.1% |\n|---|---|---|---|---|")
    for n in MODELS:
        t = m["models"][n]["thresholds"]
        add(f"| {n} | {t['bkg_eff_1e-2']:.5g} | {t['bkg_eff_1e-3']:.5g} | {t['jet_bkg_eff_1e-2']:.5g} "
            f"| {t['jet_bkg_eff_1e-3']:.5g} |")
    best = max((m["models"][n]["signals"]["rsg_ww_3p5TeV"][f"auc_{lvl}"], n, lvl)
               for n in MODELS for lvl in ("event", "jet"))
    add(f"\nGoal of issue 3 — AUC > 0.85 against the 3.5 TeV graviton with at least one model: "
        f"**{'met' if best[0] > 0.85 else 'not met'}**; best {best[0]:.3f} ({best[1]}, {best[2]} level).\n")
    add("\n![ROC curves](roc.png)\n\n![score distributions](score_distributions.png)\n")
    add("Reading the numbers: QCD is generated with pTHat > 600 GeV, so the 1.5 TeV graviton's W jets "
        "(pT ≈ 650 GeV) have QCD-like kinematics and test substructure only, whereas the 3.5 TeV graviton's jets "
        "(pT ≈ 1.5 TeV) are also much harder than most training jets; since pT enters the input in GeV, part of "
        "that separation is kinematic rather than two-prong structure. An informative latent (Conv-VAE, "
        "β = 5e-4) learns to reconstruct the narrow, harder graviton jets almost as well as QCD jets; the "
        "collapsed GCN-VAE measures the distance to a typical QCD jet and separates the 3.5 TeV jets better. "
        "One-off study, not shipped: the same Conv-VAE trained with `--beta 1.0` also collapses (val KL ~1e-3) "
        "and gives AUC 0.825 (event) / 0.788 (jet) against the 3.5 TeV graviton, 0.636 / 0.675 against 1.5 TeV "
        "and 0.474 / 0.540 against the Z′ — the same as the GCN-VAE. A log(pT) feature (`--pt-scale log`, "
        "5-epoch pilot on 24k jets) raised the 1.5 TeV and Z′ AUCs (0.76 / 0.64 event) but lowered the 3.5 TeV "
        "one (0.71). Published numbers for comparable architectures against RS G* → WW are AUC ≈ 0.67 "
        "(GCN-VAE) and 0.73–0.85 (EdgeConv AE).\n")

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
        add(f"\nonnxruntime (CPU) vs Keras/TensorFlow (`tools/export_onnx.py`) on the two leading jets of every event of "
            f"{', '.join(f'`data/{f}`' for f in files) if files else 'the shipped samples'}; required: score within "
            f"{rtol or 1e-4:g} relative and no trigger decision changed (event = larger score of its two leading jets, "
            "against each event threshold of `thresholds.json`). The in-graph score is one augmented matrix product "
            "and two min-reductions (`modules/models/losses.py::chamfer_distance`), the same code in TensorFlow "
            "and in the export.\n")

    add("## Reproducing\n")
    add("```bash\npip install -e '.[cpu,generate]'\n"
        "python tools/generate_events.py --process qcd --events 40000 --seed 30000000 --out data/large/qcd_train.root\n"
        "python tools/generate_events.py --process qcd --events 10000 --seed 40000000 --out data/large/qcd_test.root\n")
    for n in MODELS:
        if n in hist:
            add(hist[n]["command"])
    add(f"python tools/export_onnx.py --model all\n{eval_cmd}\n```\n")
    add("Trained single-threaded on CPU; TensorFlow kernels are not bit-reproducible across machines, so "
        "retraining gives statistically, not bitwise, equal models.\n")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    metrics = evaluate(args)
    plots(metrics, args.models_dir)
    write_outputs(metrics, args)
    for n in MODELS:
        t = metrics["models"][n]["thresholds"]
        print(f"{n}: event thresholds bkg 1% {t['bkg_eff_1e-2']:.4g}, 0.1% {t['bkg_eff_1e-3']:.4g}; "
              f"jet thresholds 1% {t['jet_bkg_eff_1e-2']:.4g}, 0.1% {t['jet_bkg_eff_1e-3']:.4g}")
        for sig, r in metrics["models"][n]["signals"].items():
            print(f"  {sig:16s} AUC event {r['auc_event']:.3f} jet {r['auc_jet']:.3f} | event sig eff @1% "
                  f"{r['event_sig_eff_at_bkg_eff_1e-2']:.3f} @0.1% {r['event_sig_eff_at_bkg_eff_1e-3']:.3f} | jet "
                  f"@1% {r['jet_sig_eff_at_bkg_eff_1e-2']:.3f} @0.1% {r['jet_sig_eff_at_bkg_eff_1e-3']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
