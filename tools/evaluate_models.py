#!/usr/bin/env python3
"""Evaluate the VAEs against QCD: thresholds, pT-binned rates, baselines, plots and the model card.

Why: the trigger filter's thresholds and every number in the model card must come from one
reproducible command, on a QCD sample independent of training, with the simple observables a
physicist would cut on first (tau21, jet mass) next to every model number.

Steps (one module each): load the samples with their weights (tools/eval_samples.py), score them
with both models and the baselines (here), weighted statistics (tools/eval_stats.py), plots
(tools/eval_plots.py) and the card (tools/eval_card.py).

Writes into ``--out-dir`` (default: ``--models-dir``): thresholds.json (read by the trigger filter;
scalar event- and jet-level cuts plus ``vs_leading_jet_pt``, the cuts per leading-jet pT bin),
metrics.json, roc.png, score_distributions.png, loss_curves.png, pass_rate_vs_pt.png and README.md
(the model card; its "## INT8 quantisation" section, written by tools/quantize_models.py, is kept).

Example::

    python tools/evaluate_models.py --background data/large/qcd_flat_test.root \\
        --physical-background data/large/qcd_test.root
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from framework.atomic import write_text  # noqa: E402
from tools.eval_stats import (auc_error, binned_pass_rates, effective_n, event_max, pass_rate,  # noqa: E402
                              per_event_cut, pt_binned_cuts, roc, weighted_cut)

_event_max = event_max  # the name tools/export_onnx.py and tools/quantize_models.py import

MODELS = ("conv_vae", "gcn_vae")
BKG_EFFS = {"bkg_eff_1e-2": 1e-2, "bkg_eff_1e-3": 1e-3}
PT_EDGES_GEV = [600.0, 700.0, 850.0, 1000.0, 1300.0, 1600.0]  # lower edges; the last bin is open
RATIO_RANGE_GEV = (600.0, 1600.0)  # the max/min pass-rate ratio is over the bins inside this range
MATCHED_PT_GEV = (1100.0, 1400.0)  # leading-jet window of the matched-pT AUCs
INPUT_RATE_HZ = 100e3


@dataclass(frozen=True)
class SignalSpec:
    label: str
    defaults: tuple[str, ...]  # first existing file under --signal-dir wins
    held_out: bool = False


SIGNALS = {
    "rsg_ww_1p5TeV": SignalSpec("RS G* (1.5 TeV) → WW", ("data/large/rsg_ww_1p5TeV_eval.root", "data/rsg_ww_1p5TeV.root")),
    "rsg_ww_3p5TeV": SignalSpec("RS G* (3.5 TeV) → WW", ("data/large/rsg_ww_3p5TeV_eval.root", "data/rsg_ww_3p5TeV.root")),
    "zprime_tt_2TeV": SignalSpec("Z′ (2 TeV) → tt̄", ("data/large/zprime_tt_2TeV_eval.root", "data/zprime_tt_2TeV.root")),
    "wprime_wz_3TeV": SignalSpec("W′ (3 TeV) → WZ", ("data/large/wprime_wz_3TeV.root",), held_out=True),
}
BACKGROUND_DEFAULTS = ("data/large/qcd_flat_test.root", "data/large/qcd_test.root", "data/qcd_dijet.root")
PHYSICAL_DEFAULT = "data/large/qcd_test.root"


@dataclass(frozen=True)
class Baseline:
    """A simple observable scored like a model: per jet, larger = more signal-like; event = max."""

    label: str
    per_jet: Callable[[Any], np.ndarray]
    definition: str


BASELINES = {
    "tau21": Baseline("1 − τ21", lambda s: 1.0 - s.jet_tau21,
                      "1 − τ21 per jet (N-subjettiness, β = 1, exclusive-kT axes, R0 = 0.8, from all the jet's "
                      "constituents: `tools/substructure.py`); event: the larger of the two leading jets"),
    "mass": Baseline("jet mass", lambda s: s.jet_mass,
                     "`FatJet_mass` per jet; event: the larger of the two leading jets' masses"),
}


class InputProblem(Exception):
    """A sample or model the user named cannot be used (exit code 3)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line interface."""
    p = argparse.ArgumentParser(
        description="Thresholds (inclusive and per leading-jet pT bin), weighted ROC/AUC with tau21 and jet-mass "
                    "baselines, pT-binned QCD pass rates, plots and the model card for the VAEs.")
    p.add_argument("--models-dir", type=Path, default=REPO / "data/models",
                   help="directory with the models (<name>.onnx/.keras, <name>_history.json, onnx_check.json)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where thresholds.json, metrics.json, the plots and README.md go (default: --models-dir)")
    p.add_argument("--signal-dir", "--data-root", dest="signal_dir", type=Path, default=REPO,
                   help="root under which the default sample paths (data/large/..., data/...) are looked up")
    p.add_argument("--background", type=Path, default=None,
                   help="QCD test sample NOT used in training; events weighted by genWeight when present "
                        f"(default: the first existing of {', '.join(BACKGROUND_DEFAULTS)})")
    p.add_argument("--physical-background", default=None,
                   help=f"an unweighted QCD sample to cross-check the rates at the thresholds (default: {PHYSICAL_DEFAULT} "
                        "if it exists and is not --background; 'none' to skip)")
    p.add_argument("--signal", action="append", default=[], metavar="KEY=FILE",
                   help=f"signal file for KEY (known: {', '.join(SIGNALS)}; another KEY adds a signal); repeatable")
    p.add_argument("--held-out", action="append", default=None, metavar="KEY",
                   help="signals that played no part in training or model selection (default: "
                        f"{', '.join(k for k, s in SIGNALS.items() if s.held_out)}); repeatable")
    p.add_argument("--max-events", type=int, default=None, help="read at most this many events per file")
    p.add_argument("--backend", choices=("onnx", "keras"), default="onnx",
                   help="run the .onnx files with onnxruntime (default) or the .keras files with TensorFlow")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of the inference session")
    p.add_argument("--input-rate-hz", type=float, default=INPUT_RATE_HZ,
                   help="HLT input rate the pass fractions are turned into output rates with (default 100 kHz)")
    p.add_argument("--split-seed", type=int, default=12345,
                   help="seed of the random halving of the QCD events for the pT-binned working point's closure test")
    p.add_argument("--no-card", action="store_true", help="do not rewrite README.md (the model card)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------- samples

@dataclass
class Samples:
    background: Any
    signals: list[Any]
    physical: Any | None = None
    half: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # background events of half A

    def all(self) -> list[Any]:
        return [self.background] + ([self.physical] if self.physical is not None else []) + self.signals


def _first_existing(root: Path, candidates: tuple[str, ...]) -> Path | None:
    return next((root / c for c in candidates if (root / c).exists()), None)


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputProblem(f"{what}: {path} does not exist")
    return path


def sample_plan(args: argparse.Namespace) -> tuple[Path, Path | None, list[tuple[str, str, Path, bool]]]:
    """(background, physical background or None, [(key, label, file, held out)]) from the options."""
    root = args.signal_dir
    if args.background is not None:
        background = _existing(args.background, "--background")
    else:
        background = _first_existing(root, BACKGROUND_DEFAULTS)
        if background is None:
            raise InputProblem(f"no background sample: none of {', '.join(BACKGROUND_DEFAULTS)} under {root}")
    if args.physical_background == "none":
        physical = None
    elif args.physical_background is not None:
        physical = _existing(Path(args.physical_background), "--physical-background")
    else:
        physical = _first_existing(root, (PHYSICAL_DEFAULT,))
        if physical is not None and physical.resolve() == background.resolve():
            physical = None
    given: dict[str, Path] = {}
    for item in args.signal:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise InputProblem(f"--signal {item!r}: expected KEY=FILE")
        given[key] = _existing(Path(path), f"--signal {key}")
    held_out = set(args.held_out if args.held_out is not None else [k for k, s in SIGNALS.items() if s.held_out])
    plan = []
    for key in list(SIGNALS) + [k for k in given if k not in SIGNALS]:
        spec = SIGNALS.get(key, SignalSpec(key, ()))
        path = given.get(key) or _first_existing(root, spec.defaults)
        if path is None:
            print(f"evaluate_models: signal {key}: none of {', '.join(spec.defaults)} under {root}; not evaluated",
                  file=sys.stderr)
            continue
        plan.append((key, spec.label, path, key in held_out))
    if not plan:
        raise InputProblem("no signal sample found")
    return background, physical, plan


def load_samples(args: argparse.Namespace) -> Samples:
    """Read every sample once (model inputs, weights, leading-jet pT, jet mass, tau21)."""
    from tqdm import tqdm

    from tools.eval_samples import load_sample

    background, physical, plan = sample_plan(args)
    todo = [("qcd", "QCD (test)", background, False)]
    if physical is not None:
        todo.append(("qcd_physical", "QCD (unweighted check)", physical, False))
    todo += plan
    loaded = []
    for key, label, path, held in tqdm(todo, desc="reading samples", unit="file"):
        try:
            loaded.append(load_sample(path, key, label, held, args.max_events))
        except (OSError, ValueError, KeyError) as exc:
            raise InputProblem(f"{path}: cannot read it as an hltrun sample ({exc})") from None
    bkg = loaded[0]
    phys = loaded[1] if physical is not None else None
    half = np.random.default_rng(args.split_seed).random(bkg.n_events) < 0.5
    return Samples(bkg, loaded[1 + (phys is not None):], phys, half)


# ---------------------------------------------------------------------------------------- scoring

def scorer(models_dir: Path, name: str, backend: str, threads: int = 1) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Return f(jets) -> {'score','kl'} for one model on the chosen backend."""
    if backend == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from modules.models.vae import load_inference_model, predict_scores

        model = load_inference_model(_existing(models_dir / f"{name}.keras", "model"))
        return lambda jets: predict_scores(model, jets)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(_existing(models_dir / f"{name}.onnx", "model")), opts,
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]

    def run(jets: np.ndarray) -> dict[str, np.ndarray]:
        parts = [dict(zip(names, sess.run(None, {"jets": jets[i:i + 2048]}))) for i in range(0, len(jets), 2048)]
        if not parts:
            return {"score": np.zeros(0), "kl": np.zeros(0)}
        return {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in ("score", "kl")}

    return run


def score_models(samples: Samples, args: argparse.Namespace) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """{model: {sample key: {'score', 'kl'} per jet}}."""
    from tqdm import tqdm

    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    with tqdm(total=len(MODELS) * len(samples.all()), desc="scoring", unit="sample") as bar:
        for name in MODELS:
            run = scorer(args.models_dir, name, args.backend, args.threads)
            out[name] = {}
            for s in samples.all():
                out[name][s.key] = run(s.jets)
                bar.update()
    return out


# ---------------------------------------------------------------------------------------- metrics

def _ratio_bins() -> list[int]:
    """Bins whose range lies inside RATIO_RANGE_GEV (the last, open bin never does)."""
    lo, hi = RATIO_RANGE_GEV
    return [i for i, e in enumerate(PT_EDGES_GEV[:-1]) if e >= lo and PT_EDGES_GEV[i + 1] <= hi]


def max_min_ratio(rates: list[dict]) -> dict[str, float | None]:
    """Largest / smallest pass rate over the bins inside RATIO_RANGE_GEV, with its error from the
    two rates' errors (ratio None when a bin passes nothing)."""
    vals = [rates[i] for i in _ratio_bins()]
    hi, lo = max(vals, key=lambda r: r["rate"]), min(vals, key=lambda r: r["rate"])
    if not lo["rate"] > 0:
        return {"ratio": None, "error": None}
    ratio = hi["rate"] / lo["rate"]
    return {"ratio": float(ratio),
            "error": float(ratio * np.hypot(hi["error"] / hi["rate"], lo["error"] / lo["rate"]))}


def evaluate_discriminant(jet_scores: dict[str, np.ndarray], samples: Samples) -> dict[str, Any]:
    """Everything the card says about one discriminant (a model's score or a baseline), background
    weighted: thresholds, AUCs (inclusive and at matched pT), signal efficiencies, QCD pass rates per
    leading-jet pT bin, the pT-binned working point with its closure test, rates for the HLT."""
    b = samples.background
    bj = jet_scores[b.key]
    be = event_max(bj, b.event_of_jet, b.n_events)
    w, lpt = b.weight, b.leading_pt
    thr = {k: weighted_cut(be, w, e) for k, e in BKG_EFFS.items()}
    thr_jet = {f"jet_{k}": weighted_cut(bj, b.jet_weight, e) for k, e in BKG_EFFS.items()}
    binned, empty = {}, {}
    for k, e in BKG_EFFS.items():
        cuts = pt_binned_cuts(be, w, lpt, PT_EDGES_GEV, e)
        empty[k] = [int(i) for i in np.flatnonzero(np.isnan(cuts))]
        binned[k] = np.where(np.isnan(cuts), thr[k], cuts)  # an empty bin keeps the inclusive cut
    res: dict[str, Any] = {
        "thresholds": {**thr, **thr_jet},
        "vs_leading_jet_pt": {"edges_gev": list(PT_EDGES_GEV), **{k: v.tolist() for k, v in binned.items()}},
        "vs_leading_jet_pt_empty_bins": empty,
        "pt_pass_rates": {}, "pt_pass_ratio": {}, "closure": {}, "hlt": {}, "signals": {}}
    a = samples.half
    for k, e in BKG_EFFS.items():
        rates = [r.to_json() for r in binned_pass_rates(be, w, lpt, PT_EDGES_GEV, thr[k])]
        res["pt_pass_rates"][k] = rates
        res["pt_pass_ratio"][k] = max_min_ratio(rates)
        cuts_a = pt_binned_cuts(be[a], w[a], lpt[a], PT_EDGES_GEV, e)
        cuts_a = np.where(np.isnan(cuts_a), weighted_cut(be[a], w[a], e), cuts_a)
        rates_b = [r.to_json() for r in binned_pass_rates(be[~a], w[~a], lpt[~a], PT_EDGES_GEV, cuts_a)]
        res["closure"][k] = {
            "cuts_half_a": cuts_a.tolist(), "pass_rates_half_b": rates_b, "ratio_half_b": max_min_ratio(rates_b),
            "inclusive_half_b": pass_rate(be[~a], w[~a], per_event_cut(cuts_a, PT_EDGES_GEV, lpt[~a])).to_json()}
        cut_a = weighted_cut(be[a], w[a], e)  # the inclusive cut's own closure, for a like-for-like rate
        hlt = {"inclusive": {"background": pass_rate(be, w, thr[k]).to_json(),
                             "background_half_b": pass_rate(be[~a], w[~a], cut_a).to_json()},
               "vs_leading_jet_pt": {"background_half_b": res["closure"][k]["inclusive_half_b"]}}
        if samples.physical is not None:
            p = samples.physical
            pe = event_max(jet_scores[p.key], p.event_of_jet, p.n_events)
            hlt["inclusive"]["physical"] = pass_rate(pe, p.weight, thr[k]).to_json()
            hlt["vs_leading_jet_pt"]["physical"] = pass_rate(
                pe, p.weight, per_event_cut(binned[k], PT_EDGES_GEV, p.leading_pt)).to_json()
            hlt["physical_pt_pass_rates"] = [r.to_json() for r in binned_pass_rates(
                pe, p.weight, p.leading_pt, PT_EDGES_GEV, thr[k])]
            hlt["physical_pt_pass_ratio"] = max_min_ratio(hlt["physical_pt_pass_rates"])
        res["hlt"][k] = hlt
    lo, hi = MATCHED_PT_GEV
    b_win = (lpt >= lo) & (lpt < hi)
    for s in samples.signals:
        sj = jet_scores[s.key]
        se = event_max(sj, s.event_of_jet, s.n_events)
        s_win = (s.leading_pt >= lo) & (s.leading_pt < hi)
        entry = {"auc_jet": roc(bj, sj, b.jet_weight, s.jet_weight)[2], "auc_event": roc(be, se, w, s.weight)[2],
                 "n_events_matched_pt": int(s_win.sum())}
        entry["auc_event_matched_pt"] = entry["auc_event_matched_pt_error"] = None
        if s_win.any() and b_win.any():
            auc = roc(be[b_win], se[s_win], w[b_win], s.weight[s_win])[2]
            entry["auc_event_matched_pt"] = auc
            entry["auc_event_matched_pt_error"] = auc_error(auc, effective_n(s.weight[s_win]), effective_n(w[b_win]))
        entry["auc_event_error"] = auc_error(entry["auc_event"], effective_n(s.weight), effective_n(w))
        for k in BKG_EFFS:
            entry[f"jet_sig_eff_at_{k}"] = pass_rate(sj, s.jet_weight, thr_jet[f"jet_{k}"]).rate
            entry[f"event_sig_eff_at_{k}"] = pass_rate(se, s.weight, thr[k]).rate
            entry[f"event_sig_eff_at_vs_leading_jet_pt_{k}"] = pass_rate(
                se, s.weight, per_event_cut(binned[k], PT_EDGES_GEV, s.leading_pt)).rate
        res["signals"][s.key] = entry
    res["n_bkg_events_matched_pt"] = int(b_win.sum())
    return res


def _latent(history: dict | None, kl_out: np.ndarray, jet_weight: np.ndarray) -> dict[str, Any]:
    """KL per jet in nats: on validation (training history, best epoch) and on the QCD test jets
    (the inference model's ``kl`` output is beta * KL)."""
    if history is None:
        return {"val_kl_best_epoch": None, "test_kl_mean": None}
    beta = float(history["beta"])
    best = int(history["best_epoch"]) - 1
    val = history["history"].get("val_kl")
    return {"beta": beta, "free_bits": history.get("free_bits"), "kl_warmup_epochs": history.get("kl_warmup_epochs"),
            "val_kl_best_epoch": float(val[best]) if val else None,
            "test_kl_mean": float(np.average(kl_out, weights=jet_weight) / beta) if beta > 0 and len(kl_out) else None}


def histories(models_dir: Path) -> dict[str, dict]:
    return {n: json.loads((models_dir / f"{n}_history.json").read_text()) for n in MODELS
            if (models_dir / f"{n}_history.json").exists()}


def evaluate(args: argparse.Namespace, samples: Samples | None = None) -> dict[str, Any]:
    """Score every sample with both models and the baselines; returns the metrics dictionary (plus
    the per-jet scores and ROC curves the plots need, under 'scores' and 'roc')."""
    from tools.eval_samples import relative

    samples = samples or load_samples(args)
    hist = histories(args.models_dir)
    scored = score_models(samples, args)
    b = samples.background
    metrics: dict[str, Any] = {
        "background": samples.background.describe(REPO),
        "physical_background": samples.physical.describe(REPO) if samples.physical is not None else None,
        "signals": {s.key: s.describe(REPO) for s in samples.signals},
        "backend": args.backend, "models_dir": relative(args.models_dir, REPO), "input_rate_hz": args.input_rate_hz,
        "pt_edges_gev": list(PT_EDGES_GEV), "ratio_range_gev": list(RATIO_RANGE_GEV),
        "matched_pt_gev": list(MATCHED_PT_GEV), "split_seed": args.split_seed,
        "n_bkg_events_half_a": int(samples.half.sum()), "models": {}, "baselines": {}}
    jet_scores: dict[str, dict[str, np.ndarray]] = {}
    for name in MODELS:
        jet_scores[name] = {k: v["score"] for k, v in scored[name].items()}
        entry = evaluate_discriminant(jet_scores[name], samples)
        entry["latent"] = _latent(hist.get(name), scored[name][b.key]["kl"], b.jet_weight)
        metrics["models"][name] = entry
    for key, base in BASELINES.items():
        jet_scores[key] = {s.key: base.per_jet(s) for s in samples.all()}
        metrics["baselines"][key] = evaluate_discriminant(jet_scores[key], samples)
    metrics["scores"] = jet_scores
    metrics["weights"] = {s.key: s.jet_weight for s in samples.all()}
    metrics["roc"] = {name: {s.key: {"event": roc(event_max(sc[b.key], b.event_of_jet, b.n_events),
                                                  event_max(sc[s.key], s.event_of_jet, s.n_events),
                                                  b.weight, s.weight)[:2],
                                     "jet": roc(sc[b.key], sc[s.key], b.jet_weight, s.jet_weight)[:2]}
                             for s in samples.signals}
                      for name, sc in jet_scores.items()}
    return metrics


# ---------------------------------------------------------------------------------------- outputs

def _atomic_write(path: Path, text: str) -> None:
    write_text(path, text, "evaluate_models")


def thresholds_table(metrics: dict[str, Any]) -> dict[str, Any]:
    """thresholds.json: per model the scalar cuts (unchanged keys) and ``vs_leading_jet_pt``."""
    return {n: {**m["thresholds"], "vs_leading_jet_pt": m["vs_leading_jet_pt"]} for n, m in metrics["models"].items()}


def write_outputs(metrics: dict[str, Any], args: argparse.Namespace) -> None:
    """thresholds.json (read by the trigger filter), metrics.json and the model card, atomically."""
    from tools.eval_card import OTHER_TOOLS_SECTIONS, kept_sections, model_card

    d = args.out_dir
    _atomic_write(d / "thresholds.json", json.dumps(thresholds_table(metrics), indent=1) + "\n")
    slim = {k: v for k, v in metrics.items() if k not in ("roc", "scores", "weights")}
    _atomic_write(d / "metrics.json", json.dumps(slim, indent=1) + "\n")
    if not args.no_card:
        card = d / "README.md"
        old = card if card.exists() else args.models_dir / "README.md"
        kept = kept_sections(old.read_text() if old.exists() else "", OTHER_TOOLS_SECTIONS)
        text = model_card(metrics, histories(args.models_dir), args, command_line(args))
        _atomic_write(card, text.rstrip("\n") + ("\n\n" + kept if kept else "") + "\n")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this evaluation (paths relative to the checkout where possible)."""
    from tools.eval_samples import relative

    def show(token: str) -> str:
        key, sep, rest = token.partition("=")
        if sep and not token.startswith("-") and Path(rest).exists():
            return f"{key}={relative(Path(rest), REPO)}"
        return relative(Path(token), REPO) if not token.startswith("-") and Path(token).exists() else token

    return "python tools/evaluate_models.py " + " ".join(show(t) for t in args.argv_for_card)


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 3 with one line when a sample or model cannot be read."""
    args = parse_args(argv)
    args.argv_for_card = list(sys.argv[1:] if argv is None else argv)
    args.out_dir = args.out_dir or args.models_dir
    if args.threads < 1:
        print("evaluate_models: --threads must be >= 1", file=sys.stderr)
        return 2
    try:
        metrics = evaluate(args)
    except InputProblem as exc:
        print(f"evaluate_models: {exc}", file=sys.stderr)
        return 3
    from tools.eval_plots import plots

    args.out_dir.mkdir(parents=True, exist_ok=True)
    plots(metrics, histories(args.models_dir), args.out_dir)
    write_outputs(metrics, args)
    print(summary_text(metrics))
    print(f"wrote thresholds.json, metrics.json, plots{'' if args.no_card else ' and README.md'} to {args.out_dir}")
    return 0


def summary_text(metrics: dict[str, Any]) -> str:
    """A few lines for the terminal: per model the cuts, the AUCs next to the baselines, pT ratio."""
    lines = []
    for name in MODELS:
        m = metrics["models"][name]
        t = m["thresholds"]
        ratio = m["pt_pass_ratio"]["bkg_eff_1e-2"]
        lines.append(f"{name}: event cut @1% {t['bkg_eff_1e-2']:.4g}, @0.1% {t['bkg_eff_1e-3']:.4g}; QCD pass-rate "
                     f"max/min over {RATIO_RANGE_GEV[0]:.0f}-{RATIO_RANGE_GEV[1]:.0f} GeV @1%: "
                     + ("inf" if ratio["ratio"] is None else f"{ratio['ratio']:.2f} +- {ratio['error']:.2f}"))
        for sig, r in m["signals"].items():
            base = "  ".join(f"{k} {metrics['baselines'][k]['signals'][sig]['auc_event']:.3f}" for k in BASELINES)
            matched = r["auc_event_matched_pt"]
            lines.append(f"  {sig:16s} AUC event {r['auc_event']:.3f} jet {r['auc_jet']:.3f} matched-pT "
                         f"{'-' if matched is None else f'{matched:.3f}'} | baselines (event) {base}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
