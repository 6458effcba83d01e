#!/usr/bin/env python3
"""Evaluate the VAEs against QCD: thresholds, pT-binned rates, baselines, plots and the model card.

Why: the trigger filter's thresholds and every number in the model card must come from one
reproducible command, on a QCD sample independent of training, with the simple observables a
physicist would cut on first (tau21, jet mass) next to every model number.

The thresholds.json entries come from ``tools/physics/card_entry.py::card_entry``, the same function
``hltcard`` (tools/physics/card.py) runs for a user's own model: the two cannot drift apart.

Steps (one module each): load the samples with their weights (tools/physics/eval_samples.py), score them
with both models and the baselines (here), weighted statistics (tools/physics/eval_stats.py), plots
(tools/physics/eval_plots.py) and the card (tools/physics/eval_card.py).

Writes into ``--out-dir`` (default: ``--models-dir``): thresholds.json (read by the trigger filter;
scalar event- and jet-level cuts plus ``vs_leading_jet_pt``, the cuts per leading-jet pT bin),
metrics.json, roc.png, score_distributions.png, loss_curves.png, pass_rate_vs_pt.png and README.md
(the model card; its "## INT8 quantisation" section, written by tools/physics/quantize_models.py, is kept).

Example::

    python tools/physics/evaluate_models.py --background data/large/qcd_flat_test.root \\
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

from hltrun.tools.catalogue import checkout  # noqa: E402

REPO = checkout()

from hltrun.framework.atomic import write_text  # noqa: E402
from hltrun.tools.physics.eval_stats import (auc_error, binned_pass_rates, effective_n, event_max, pass_rate,  # noqa: E402
                              roc)

from hltrun.tools.catalogue import MODELS, usage_error  # noqa: E402
from hltrun.tools.physics.card_entry import MIN_EFFECTIVE_ABOVE, check_min_events_above  # noqa: E402
from hltrun.tools.physics.eval_defs import (BASELINES, BKG_EFFS, INPUT_RATE_HZ, MATCHED_PT_GEV, PT_EDGES_GEV,  # noqa: E402
                                    RATIO_RANGE_GEV, SIGNALS, SignalSpec)

BACKGROUND_DEFAULTS = ("data/large/qcd_flat_test.root", "data/large/qcd_test.root", "data/qcd_dijet.root")
PHYSICAL_DEFAULT = "data/large/qcd_test.root"
# more QCD like --background (flat in pTHat, other seeds) for the pT-dependent cut; and the independent
# QCD it must close on (pTHat slices, other seeds again, stitched by tools/physics/qcd_slices.py): data/README.md
WP_BACKGROUND_DEFAULTS = ("data/large/qcd_flat_wp1.root", "data/large/qcd_flat_wp2.root")
CLOSURE_DEFAULTS = tuple(f"data/large/qcd_closure_pthat{t}.root" for t in (600, 850, 1150, 1450))
GENERATION_CONFIG = Path(__file__).resolve().with_name("generation.yaml")


PROG = "evaluate_models"


class InputProblem(Exception):
    """A sample or model the user named cannot be used (exit code 3)."""


class CutsRefused(Exception):
    """A model's cut rests on fewer effective background events than --min-events-above (exit code 2, as hltcard)."""


CUTS_REMEDY = "a larger --background sample, or --min-events-above N to accept fewer"


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
    p.add_argument("--signal", action="append", default=[], metavar="KEY=FILE", type=_key_file,
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
    p.add_argument("--wp-background", action="append", default=None, metavar="FILE",
                   help="more QCD weighted like --background, pooled with it to fit the pT-dependent cut (default: "
                        f"those of {', '.join(WP_BACKGROUND_DEFAULTS)} that exist; 'none' for none); repeatable")
    p.add_argument("--closure", action="append", default=None, metavar="FILE",
                   help="independent QCD the pT-dependent cut is tested on: pTHat slices stitched by their pTHat "
                        f"(default: those of {', '.join(CLOSURE_DEFAULTS)} that exist; 'none' to skip); repeatable")
    p.add_argument("--min-events-above", type=float, default=MIN_EFFECTIVE_ABOVE, metavar="N",
                   help="refuse a model's cut resting on fewer effective background events above it, as hltcard does "
                        "(the relative statistical error on its rate is about 1/sqrt(N); default %(default)g; 0 "
                        "accepts every finite cut)")
    p.add_argument("--no-card", action="store_true", help="do not rewrite README.md (the model card)")
    return p.parse_args(argv)


def _key_file(text: str) -> tuple[str, Path]:
    """``--signal KEY=FILE`` as (key, file); malformed: an argument error (exit 2), not a bad input file."""
    key, sep, path = text.partition("=")
    if not sep or not key or not path:
        usage_error(PROG, f"--signal {text!r}: expected KEY=FILE")
    return key, Path(path)


def check_args(args: argparse.Namespace) -> None:
    """The arguments' own errors: one line, exit 2 (``catalogue.usage_error``), before any file is looked at."""
    for option in ("threads", "max_events"):
        value = getattr(args, option)
        if value is not None and value < 1:
            usage_error(PROG, f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if not args.input_rate_hz > 0:  # NaN too: every output rate would be one
        usage_error(PROG, f"--input-rate-hz must be positive, got {args.input_rate_hz}")
    why = check_min_events_above(args.min_events_above)
    if why:
        usage_error(PROG, why)
    given: dict[str, Path] = {}
    for key, path in args.signal:
        if key in given:
            usage_error(PROG, f"--signal {key}: given twice ({given[key]}, {path})")
        given[key] = path
    for key in args.held_out or []:
        if key not in SIGNALS and key not in given:
            usage_error(PROG, f"--held-out {key}: not a signal of the evaluation (signals: "
                              f"{', '.join([*SIGNALS, *(k for k in given if k not in SIGNALS)])})")


# ---------------------------------------------------------------------------------------- samples

@dataclass
class Samples:
    background: Any
    signals: list[Any]
    physical: Any | None = None
    wp_extra: Any | None = None  # more QCD for the pT-dependent cut (--wp-background)
    closure: Any | None = None  # the independent QCD the pT-dependent cut is tested on (--closure)
    closure_slices: dict[str, Any] = field(default_factory=dict)  # how it was stitched

    def all(self) -> list[Any]:
        """The samples every discriminant (models and baselines) is evaluated on."""
        return [self.background] + ([self.physical] if self.physical is not None else []) + self.signals

    def working_point(self) -> list[Any]:
        """The samples only the models' pT-dependent working point needs."""
        return [s for s in (self.wp_extra, self.closure) if s is not None]


def _first_existing(root: Path, candidates: tuple[str, ...]) -> Path | None:
    return next((root / c for c in candidates if (root / c).exists()), None)


def _existing(path: Path, what: str) -> Path:
    """``path`` when it is a file the evaluation can read; else InputProblem naming ``what`` (the option)."""
    from hltrun.framework.resources import why_not_readable

    why = why_not_readable(path)
    if why is not None:
        raise InputProblem(f"{what}: {path} {'does not exist' if why == 'not found' else why}")
    return path


@dataclass
class InputPlan:
    """Every file the evaluation reads, each checked readable before the first is read (a missing model
    was found after every sample had been read)."""

    models: list[Path]
    background: Path
    physical: Path | None
    signals: list[tuple[str, str, Path, bool]]  # (key, label, file, held out)
    wp_background: list[Path]
    closure: list[Path]
    notes: list[str] = field(default_factory=list)  # default signals not found: not evaluated


def input_plan(args: argparse.Namespace) -> InputPlan:
    """The models and samples from the options, or InputProblem (exit 3) for the first that cannot be read."""
    from hltrun.framework.resources import unreadable_reason

    suffix = ".keras" if args.backend == "keras" else ".onnx"
    models = [args.models_dir / f"{name}{suffix}" for name in MODELS]
    for path in models:
        why = unreadable_reason(path, "model file")
        if why is not None:
            raise InputProblem(f"--models-dir: {why}")
    background, physical, signals, notes = sample_plan(args)
    extra = _optional_files(args.wp_background, args.signal_dir, WP_BACKGROUND_DEFAULTS, "--wp-background")
    closure = _optional_files(args.closure, args.signal_dir, CLOSURE_DEFAULTS, "--closure")
    evaluated = {p.resolve() for p in [background, *([physical] if physical else []), *(s[2] for s in signals)]}
    for path in extra + closure:
        if path.resolve() in evaluated:
            raise InputProblem(f"{path}: already a sample of the evaluation; the working point's samples must be others")
    return InputPlan(models, background, physical, signals, extra, closure, notes)


def sample_plan(args: argparse.Namespace) -> tuple[Path, Path | None, list[tuple[str, str, Path, bool]], list[str]]:
    """(background, physical background or None, [(key, label, file, held out)], notes on the default signals
    not found) from the options."""
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
    given = {key: _existing(path, f"--signal {key}") for key, path in args.signal}
    held_out = set(args.held_out if args.held_out is not None else [k for k, s in SIGNALS.items() if s.held_out])
    plan, notes = [], []
    for key in list(SIGNALS) + [k for k in given if k not in SIGNALS]:
        spec = SIGNALS.get(key, SignalSpec(key, ()))
        path = given.get(key) or _first_existing(root, spec.defaults)
        if path is None:
            notes.append(f"evaluate_models: signal {key}: none of {', '.join(spec.defaults)} under {root}; not evaluated")
            continue
        plan.append((key, spec.label, path, key in held_out))
    if not plan:
        raise InputProblem("no signal sample found")
    return background, physical, plan, notes


def load_samples(args: argparse.Namespace) -> Samples:
    """Read every sample once (model inputs, weights, leading-jet pT, jet mass, tau21): those of the
    plan ``main`` checked (``args.plan``)."""
    from tqdm import tqdm

    from hltrun.tools.physics.eval_samples import Sample

    inputs: InputPlan = getattr(args, "plan", None) or input_plan(args)
    background, physical, plan = inputs.background, inputs.physical, inputs.signals
    todo = [("qcd", "QCD (test)", background, False)]
    if physical is not None:
        todo.append(("qcd_physical", "QCD (unweighted check)", physical, False))
    todo += plan
    loaded = []
    for key, label, path, held in tqdm(todo, desc="reading samples", unit="file"):
        loaded.append(_read(path, key, label, args, held))
    phys = loaded[1] if physical is not None else None
    samples = Samples(loaded[0], loaded[1 + (phys is not None):], phys)
    extra, closure = inputs.wp_background, inputs.closure
    if extra:
        samples.wp_extra = Sample.concat([_read(p, "qcd_wp", "QCD (working point)", args, substructure=False) for p in extra],
                                         "qcd_wp", "QCD (more, for the pT-dependent cut)")
    if closure:
        samples.closure, samples.closure_slices = stitched_closure(
            [_read(p, "qcd_closure", "QCD (closure)", args, substructure=False) for p in closure])
    return samples


def _optional_files(given: list[str] | None, root: Path, defaults: tuple[str, ...], option: str) -> list[Path]:
    """The files of a repeatable option; unset: those of ``defaults`` that exist; 'none': none."""
    if given is None:
        return [root / d for d in defaults if (root / d).exists()]
    return [] if given == ["none"] else [_existing(Path(g), option) for g in given]


def _read(path: Path, key: str, label: str, args: argparse.Namespace, held_out: bool = False,
          substructure: bool = True) -> Any:
    """One file as an evaluation sample; exit 3 (InputProblem) when it cannot be read."""
    from hltrun.tools.physics.eval_samples import load_sample

    try:
        return load_sample(path, key, label, held_out, args.max_events, substructure)
    except (OSError, ValueError, KeyError) as exc:
        raise InputProblem(f"{path}: cannot read it as an hltrun sample ({exc})") from None


def stitched_closure(parts: list[Any]) -> tuple[Any, dict[str, Any]]:
    """The closure files as one physical sample: pTHat slices stitched (tools/physics/qcd_slices.py)."""
    from hltrun.tools.physics.eval_samples import Sample
    from hltrun.tools.physics.qcd_slices import stitch_weights, thresholds_of

    if len(parts) == 1:
        return Sample.concat(parts, "qcd_closure", "QCD (independent closure sample)"), {}
    for part in parts:
        ids = set() if part.process_id is None else set(part.process_id.tolist())
        if part.pthat is None or len(ids) != 1:
            raise InputProblem(f"{part.path}: a closure slice needs Generator_binvar (pTHat) and one processId "
                               "(regenerate it with tools/physics/generate_events.py)")
    try:
        thresholds = thresholds_of([int(p.process_id[0]) for p in parts], GENERATION_CONFIG)
        order = np.argsort(thresholds)
        parts, thresholds = [parts[i] for i in order], [thresholds[i] for i in order]
        weights, sigma = stitch_weights([p.pthat for p in parts], [p.weight for p in parts], thresholds)
    except ValueError as exc:
        raise InputProblem(f"--closure: {exc}") from None
    info = {"pthat_min_gev": thresholds, "events": [p.n_events for p in parts], "sigma_ratio": sigma}
    return Sample.concat(parts, "qcd_closure", "QCD (independent closure sample)", weights), info


# ---------------------------------------------------------------------------------------- scoring

def scorer(models_dir: Path, name: str, backend: str, threads: int = 1) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Return f(jets) -> {'score','kl'} for one model on the chosen backend."""
    if backend == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from hltrun.modules.models.vae import load_inference_model, predict_scores

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
    todo = samples.all() + samples.working_point()
    with tqdm(total=len(MODELS) * len(todo), desc="scoring", unit="sample") as bar:
        for name in MODELS:
            run = scorer(args.models_dir, name, args.backend, args.threads)
            out[name] = {}
            for s in todo:
                out[name][s.key] = run(s.jets)
                bar.update()
    return out


# ---------------------------------------------------------------------------------------- metrics

def _ratio_bins() -> list[int]:
    """Bins whose range lies inside RATIO_RANGE_GEV (the last, open bin never does)."""
    lo, hi = RATIO_RANGE_GEV
    return [i for i, e in enumerate(PT_EDGES_GEV[:-1]) if e >= lo and PT_EDGES_GEV[i + 1] <= hi]


def max_min_ratio(rates: list[dict]) -> dict[str, Any]:
    """Largest / smallest pass rate over the bins inside RATIO_RANGE_GEV that have events, with its error
    from the two rates' errors. Ratio None, and ``why``, where there is none: fewer than two bins with
    events, nothing passing in any of them, or a bin passing nothing (∞)."""
    vals = [rates[i] for i in _ratio_bins() if rates[i]["n_events"]]  # an empty bin is no rate, not a zero one
    if len(vals) < 2:
        return {"ratio": None, "error": None, "why": "fewer than two bins with events"}
    hi, lo = max(vals, key=lambda r: r["rate"]), min(vals, key=lambda r: r["rate"])
    if not hi["rate"] > 0:
        return {"ratio": None, "error": None, "why": "nothing passes"}
    if not lo["rate"] > 0:
        return {"ratio": None, "error": None, "why": "a bin passes nothing"}
    ratio = hi["rate"] / lo["rate"]
    return {"ratio": float(ratio), "why": None,
            "error": float(ratio * np.hypot(hi["error"] / hi["rate"], lo["error"] / lo["rate"]))}


def model_card_entry(jet_scores: dict[str, np.ndarray], samples: Samples, fit_pt: bool = True) -> Any:
    """The discriminant's thresholds.json entry by the one function ``hltcard`` uses too
    (tools/physics/card_entry.py): scalar cuts on the background, the pT-dependent cut fitted on the
    background pooled with --wp-background."""
    from hltrun.tools.physics.card_entry import card_entry

    b = samples.background
    bj = jet_scores[b.key]
    be = event_max(bj, b.event_of_jet, b.n_events)
    derivation = None
    if fit_pt:
        parts = [_events(jet_scores, s) for s in (b, samples.wp_extra) if s is not None]
        derivation = tuple(np.concatenate(col) for col in zip(*parts))
    return card_entry(be, b.weight, b.leading_pt, bj, b.jet_weight, BKG_EFFS, pt_fit_sample=derivation,
                      fit_pt=fit_pt)


def evaluate_discriminant(jet_scores: dict[str, np.ndarray], samples: Samples,
                          thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """Everything the card says about one discriminant (a model's score or a baseline) at its
    inclusive cuts, background weighted: thresholds, AUCs (inclusive and at matched pT), signal
    efficiencies, QCD pass rates per leading-jet pT bin, rates for the HLT. ``thresholds``: the
    scalar cuts of ``model_card_entry`` (default: computed here by the same function)."""
    b = samples.background
    bj = jet_scores[b.key]
    be = event_max(bj, b.event_of_jet, b.n_events)
    w, lpt = b.weight, b.leading_pt
    if thresholds is None:
        thresholds = model_card_entry(jet_scores, samples, fit_pt=False).scalar
    thr = {k: thresholds[k] for k in BKG_EFFS}
    thr_jet = {f"jet_{k}": thresholds[f"jet_{k}"] for k in BKG_EFFS}
    res: dict[str, Any] = {"thresholds": {**thr, **thr_jet}, "pt_pass_rates": {}, "pt_pass_ratio": {}, "hlt": {},
                           "signals": {}}
    for k in BKG_EFFS:
        rates = [r.to_json() for r in binned_pass_rates(be, w, lpt, PT_EDGES_GEV, thr[k])]
        res["pt_pass_rates"][k] = rates
        res["pt_pass_ratio"][k] = max_min_ratio(rates)
        hlt: dict[str, Any] = {"inclusive": {"background": pass_rate(be, w, thr[k]).to_json()}}
        if samples.physical is not None:
            p = samples.physical
            pe = event_max(jet_scores[p.key], p.event_of_jet, p.n_events)
            hlt["inclusive"]["physical"] = pass_rate(pe, p.weight, thr[k]).to_json()
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
        res["signals"][s.key] = entry
    res["n_bkg_events_matched_pt"] = int(b_win.sum())
    return res


def _events(jet_scores: dict[str, np.ndarray], sample: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(event score, weight, leading-jet pT) of a sample."""
    return event_max(jet_scores[sample.key], sample.event_of_jet, sample.n_events), sample.weight, sample.leading_pt


def evaluate_working_point(jet_scores: dict[str, np.ndarray], samples: Samples, entry: dict[str, Any],
                           card: Any = None) -> None:
    """A model's pT-dependent working point into ``entry``: the smooth cut fitted on the background
    (pooled with --wp-background; ``card``: ``model_card_entry``'s, default computed here), its closure
    on the independent sample, the inclusive cuts' rate vs pT there, signal efficiencies and HLT rates
    under both kinds of cut."""
    from hltrun.tools.physics.eval_working_point import closure, flatness

    parts = [_events(jet_scores, s) for s in (samples.background, samples.wp_extra) if s is not None]
    derivation = tuple(np.concatenate(col) for col in zip(*parts))
    card = card if card is not None else model_card_entry(jet_scores, samples)
    fits = card.fits
    entry["vs_leading_jet_pt"] = card.pt_entry()
    entry["wp_fit"] = {k: {**f.to_json(), "n_effective_above": card.fit_above.get(k)} for k, f in fits.items()}
    entry["wp_derivation_rates"] = {k: [r.to_json() for r in binned_pass_rates(
        derivation[0], derivation[1], derivation[2], PT_EDGES_GEV, f.cuts_at(derivation[2]))] for k, f in fits.items()}
    for s in samples.signals:
        se, sw, spt = _events(jet_scores, s)
        for k, f in fits.items():
            entry["signals"][s.key][f"event_sig_eff_at_vs_leading_jet_pt_{k}"] = pass_rate(se, sw, f.cuts_at(spt)).rate
    if samples.physical is not None:
        pe, pw, ppt = _events(jet_scores, samples.physical)
        for k, f in fits.items():
            entry["hlt"][k]["vs_leading_jet_pt"] = {"physical": pass_rate(pe, pw, f.cuts_at(ppt)).to_json()}
    if samples.closure is None:
        entry["closure"] = entry["closure_inclusive"] = None
        return
    independent = _events(jet_scores, samples.closure)
    entry["closure"] = {k: closure(f, derivation, independent, PT_EDGES_GEV) for k, f in fits.items()}
    entry["closure_inclusive"] = {}
    for k in BKG_EFFS:
        flat = flatness(*independent, PT_EDGES_GEV, entry["thresholds"][k])
        flat["ratio"] = max_min_ratio(flat["rates"])
        entry["closure_inclusive"][k] = flat
        hlt = entry["hlt"][k]
        hlt["inclusive"]["closure"] = pass_rate(independent[0], independent[1], entry["thresholds"][k]).to_json()
        hlt.setdefault("vs_leading_jet_pt", {})["closure"] = entry["closure"][k]["inclusive"]


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
    from hltrun.tools.physics.eval_samples import relative

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
        "matched_pt_gev": list(MATCHED_PT_GEV), "min_events_above": args.min_events_above,
        "wp_background": samples.wp_extra.describe(REPO) if samples.wp_extra is not None else None,
        "closure_sample": ({**samples.closure.describe(REPO), "slices": samples.closure_slices}
                           if samples.closure is not None else None),
        "models": {}, "baselines": {}}
    jet_scores: dict[str, dict[str, np.ndarray]] = {}
    for name in MODELS:
        jet_scores[name] = {k: v["score"] for k, v in scored[name].items()}
        card = model_card_entry(jet_scores[name], samples)  # thresholds.json's entry: the function hltcard uses
        why = card.refusal(args.min_events_above, CUTS_REMEDY)  # and hltcard's rule on what it rests on
        if why:
            raise CutsRefused(f"{name} {why}")
        entry = evaluate_discriminant(jet_scores[name], samples, card.scalar)
        entry["cut_stats"] = {k: st.to_json() for k, st in card.stats.items()}
        evaluate_working_point(jet_scores[name], samples, entry, card)
        entry["latent"] = _latent(hist.get(name), scored[name][b.key]["kl"], b.jet_weight)
        metrics["models"][name] = entry
    for key, base in BASELINES.items():
        jet_scores[key] = {s.key: base.per_jet(s) for s in samples.all()}
        metrics["baselines"][key] = evaluate_discriminant(jet_scores[key], samples)
    shown = {s.key for s in samples.all()}  # the plots show the card's samples, not the working point's
    metrics["scores"] = {name: {k: v for k, v in sc.items() if k in shown} for name, sc in jet_scores.items()}
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
    """thresholds.json: per model the scalar cuts (unchanged keys) and ``vs_leading_jet_pt``, in the
    form ``hltcard`` writes (tools/physics/card_entry.py's ``entry_json``)."""
    from hltrun.tools.physics.card_entry import entry_json

    return {n: entry_json(m["thresholds"], m["vs_leading_jet_pt"]) for n, m in metrics["models"].items()}


def write_outputs(metrics: dict[str, Any], args: argparse.Namespace) -> None:
    """thresholds.json (read by the trigger filter), metrics.json and the model card, atomically."""
    from hltrun.tools.physics.eval_card import OTHER_TOOLS_SECTIONS, kept_sections, model_card

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
    from hltrun.tools.physics.eval_samples import relative

    def show(token: str) -> str:
        key, sep, rest = token.partition("=")
        if sep and not token.startswith("-") and Path(rest).exists():
            return f"{key}={relative(Path(rest), REPO)}"
        return relative(Path(token), REPO) if not token.startswith("-") and Path(token).exists() else token

    return "python tools/physics/evaluate_models.py " + " ".join(show(t) for t in args.argv_for_card)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line and exit 3 when a sample or model cannot be read, 2 for an argument or a cut resting
    on fewer than --min-events-above effective background events (hltcard's rule), 4 for an unusable --out-dir."""
    from hltrun.framework.stdio import standard_streams

    standard_streams()  # stderr closed, or its reader gone: a refusal keeps its exit code, nothing in stdout
    args = parse_args(argv)
    args.argv_for_card = list(sys.argv[1:] if argv is None else argv)
    args.out_dir = args.out_dir or args.models_dir
    check_args(args)
    from hltrun.framework.destinations import check_folder_destination, folders_made_undone
    from hltrun.framework.errors import ModuleError

    with folders_made_undone() as undo:  # a folder the check made is removed again if the evaluation fails
        try:  # every input, then a file where the folder goes: one line now, not a traceback after the evaluation
            args.plan = input_plan(args)
            check_folder_destination(args.out_dir, "evaluate_models --out-dir")
            for note in args.plan.notes:
                print(note, file=sys.stderr)
            metrics = evaluate(args)
        except ModuleError as exc:
            undo()
            print(exc, file=sys.stderr)
            return exc.exit_code
        except InputProblem as exc:
            undo()
            print(f"evaluate_models: {exc}", file=sys.stderr)
            return 3
        except CutsRefused as exc:
            undo()
            print(f"evaluate_models: {exc}", file=sys.stderr)
            return 2
    from hltrun.tools.physics.eval_plots import plots

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
                     + (f"none ({ratio.get('why')})" if ratio["ratio"] is None
                        else f"{ratio['ratio']:.2f} +- {ratio['error']:.2f}"))
        for sig, r in m["signals"].items():
            base = "  ".join(f"{k} {metrics['baselines'][k]['signals'][sig]['auc_event']:.3f}" for k in BASELINES)
            matched = r["auc_event_matched_pt"]
            lines.append(f"  {sig:16s} AUC event {r['auc_event']:.3f} jet {r['auc_jet']:.3f} matched-pT "
                         f"{'-' if matched is None else f'{matched:.3f}'} | baselines (event) {base}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
