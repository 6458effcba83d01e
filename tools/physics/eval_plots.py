"""Plots of the model evaluation: ROC per signal (models and baselines), score distributions, loss
and KL curves, QCD pass rate vs leading-jet pT. Drawn from the metrics only (tools/physics/evaluate_models.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hltrun.tools.figures import save_figure


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    try:
        save_figure(fig, path, "evaluation plots", dpi=90)
    finally:
        plt.close(fig)


def plots(metrics: dict[str, Any], hist: dict[str, dict], out_dir: Path) -> None:
    """roc.png, score_distributions.png, loss_curves.png, pass_rate_vs_pt.png into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hltrun.tools.catalogue import MODELS
    from hltrun.tools.physics.eval_defs import BASELINES, BKG_EFFS

    names = list(MODELS) + list(BASELINES)
    label = {**{n: n for n in MODELS}, **{k: b.label for k, b in BASELINES.items()}}
    disc = {**metrics["models"], **metrics["baselines"]}
    sigs = metrics["signals"]

    fig, axes = plt.subplots(2, len(sigs), figsize=(4.2 * len(sigs), 8), squeeze=False)
    for col, (sig, info) in enumerate(sigs.items()):
        for row, level in enumerate(("event", "jet")):
            ax = axes[row, col]
            for n in names:
                fpr, tpr = metrics["roc"][n][sig][level]
                auc = disc[n]["signals"][sig][f"auc_{level}"]
                ax.plot(tpr, np.where(fpr > 0, fpr, np.nan), ls="-" if n in MODELS else "--",
                        label=f"{label[n]} ({auc:.3f})")
            ax.set_yscale("log")
            ax.set_xlabel("signal efficiency")
            ax.set_ylabel("QCD efficiency (weighted)")
            ax.set_title(f"{info['label']}{' [held out]' if info['held_out'] else ''}\n{level} level", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, title="AUC", title_fontsize=7)
    _save(plt, fig, out_dir / "roc.png")

    bkg_key = metrics["background"]["key"]
    fig, axes = plt.subplots(1, len(MODELS), figsize=(11, 4.5), squeeze=False)
    for ax, name in zip(axes[0], MODELS):
        scores = metrics["scores"][name]
        finite = np.concatenate([v[np.isfinite(v)] for v in scores.values()])
        bins = np.logspace(np.log10(max(finite.min(), 1e-4)), np.log10(max(finite.max(), 2e-4)), 60)
        for key, vals in scores.items():
            ax.hist(vals, bins=bins, histtype="step", density=True,
                    weights=metrics["weights"][key] if key == bkg_key else None, label=key)
        for k in BKG_EFFS:
            ax.axvline(metrics["models"][name]["thresholds"][f"jet_{k}"], ls="--", color="grey")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("score (Chamfer distance)")
        ax.set_title(f"{name} jets (dashed: 1%, 0.1% of QCD jets)", fontsize=9)
        ax.legend(fontsize=7)
    _save(plt, fig, out_dir / "score_distributions.png")

    fig, axes = plt.subplots(2, len(MODELS), figsize=(11, 8), squeeze=False)
    for col, name in enumerate(MODELS):
        h = hist.get(name, {}).get("history")
        if not h:
            continue
        epochs = np.arange(1, len(h["loss"]) + 1)
        for key, style in (("loss", "-"), ("val_loss", "-"), ("reco", "--"), ("val_reco", "--")):
            if key in h:
                axes[0, col].plot(epochs, h[key], style, label=key)
        axes[0, col].set_yscale("log")
        axes[0, col].set_title(f"{name} loss (val: latent mean, full beta)", fontsize=9)
        for key in ("kl", "val_kl"):
            if key in h:
                axes[1, col].plot(epochs, np.maximum(h[key], 1e-12), label=f"{key} (nats per jet)")
        axes[1, col].set_yscale("log")
        axes[1, col].set_title(f"{name} KL(q(z|x) || N(0,1))", fontsize=9)
        for ax in axes[:, col]:
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
    _save(plt, fig, out_dir / "loss_curves.png")

    pass_rate_plot(plt, metrics, out_dir)


def pass_rate_plot(plt: Any, metrics: dict[str, Any], out_dir: Path) -> None:
    """pass_rate_vs_pt.png: the QCD pass rate per leading-jet pT bin, one panel per model and baseline, under
    one legend (the first panel's). Each series has one colour in every panel: the baselines have no
    pT-dependent cut, and by the colour cycle their second series (the 0.1 % inclusive cut) took the colour
    the legend gives the models' "pT-dependent cut, 1.0 %"."""
    from hltrun.tools.catalogue import MODELS
    from hltrun.tools.physics.eval_defs import BASELINES, BKG_EFFS

    names = list(MODELS) + list(BASELINES)
    label = {**{n: n for n in MODELS}, **{k: b.label for k, b in BASELINES.items()}}
    disc = {**metrics["models"], **metrics["baselines"]}
    kinds = ("inclusive cut", "pT-dependent cut, independent sample")
    colour = {(kind, k): f"C{i}" for i, (k, kind) in enumerate((k, kind) for k in BKG_EFFS for kind in kinds)}
    edges = metrics["pt_edges_gev"]
    top = edges[-1] + (edges[-1] - edges[-2])
    centres = [0.5 * (a + b) for a, b in zip(edges, edges[1:] + [top])]
    widths = [0.5 * (b - a) for a, b in zip(edges, edges[1:] + [top])]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 4), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], names):
        for k, eff in BKG_EFFS.items():
            series_list = [("inclusive cut", disc[n]["pt_pass_rates"][k], "o")]
            if n in MODELS and disc[n]["closure"] is not None:
                series_list.append(("pT-dependent cut, independent sample", disc[n]["closure"][k]["bins"], "s"))
            for series, rates, marker in series_list:
                rate = np.array([r["rate"] for r in rates]) * 100
                err = np.array([r["error"] for r in rates]) * 100
                ax.errorbar(centres, rate, yerr=err, xerr=widths, fmt=marker, ms=4, capsize=2,
                            color=colour[series, k], label=f"{series}, {eff:.1%}",
                            mfc="none" if marker == "s" else None)
            ax.axhline(eff * 100, color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("leading-jet pT [GeV] (last bin open)")
        ax.set_title(label[n], fontsize=9)
        ax.grid(alpha=0.3)
    # a rate whose error bar reaches zero would stretch the log axis down to 1e-7 %: stop at 1/100 of
    # the tightest working point (bars reaching the bottom are consistent with zero)
    axes[0, 0].set_ylim(min(BKG_EFFS.values()) * 100 / 100, 100)
    axes[0, 0].set_ylabel("QCD pass rate [%] (weighted)")
    axes[0, 0].legend(fontsize=6)
    _save(plt, fig, out_dir / "pass_rate_vs_pt.png")
