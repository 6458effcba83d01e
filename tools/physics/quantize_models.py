#!/usr/bin/env python3
"""INT8 variants of the shipped ONNX VAEs, and what they cost in physics (AUC) against fp32.

Why: INT8 weights make the models ~4x smaller and can make CPU inference faster, but the anomaly
score is a small distance between a jet and its reconstruction, so precision loss can move it.
This tool makes ``data/models/<name>_int8.onnx`` with ONNX Runtime's quantisation and measures the
AUC of each signal against QCD with both files, so the model card says what INT8 costs.

Only the network's weight-carrying ops are quantised (Conv, ConvTranspose, MatMul, Gemm with an
initializer input); the data x data products inside the exported score (the Chamfer distance's
x.y^T, the GCN's A.X) stay fp32: they have no weights to compress and quantising them damages the
score directly.

The shipped file keeps the encoder in fp32 by default (``--exclude encoder``): measured on the
Conv-VAE, int8 encoder weights move the latent mean enough to change the QCD jet score by ~4% (median)
and signal AUCs by up to 0.09, while an int8 decoder alone changes the score by ~0.5%. Both variants
are measured and written to the card, so the choice is visible.

* ``--method dynamic`` (default): int8 weights, activations quantised per batch at run time; no
  calibration sample.
* ``--method static``: QDQ int8 weights and activations, calibrated on QCD jets (the first
  ``--calib-events`` events of the background file; the AUC then uses all of it).

Speed: the shipped INT8 file and its fp32 source are timed in the same process (ONNX Runtime, one
thread, alternating rounds, ``hltrun.tools.bench.profile_onnx.time_models``) at batch 2 and 64.  INT8 counts as a
speed option only where it is at least 5% faster (beyond timing noise) at both sizes with an AUC
loss <= 0.005 for every signal; the
card says which, so no one picks INT8 for a speed-up that is not there.

Writes ``data/models/int8.json`` and the section "## INT8 quantisation" of ``data/models/README.md``
(replaced if present, else appended; the rest of the card is not touched).

Example::

    python tools/physics/quantize_models.py --method dynamic
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


from hltrun.framework.atomic import write_text, writing  # noqa: E402

from hltrun.tools.catalogue import (MODELS, SAMPLES, models_dir, require_files, sample_path,  # noqa: E402
                                    usage_error)

PROG = "quantize_models"

WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
SECTION = "## INT8 quantisation"
SPEED_BATCHES = (2, 64)
MAX_AUC_LOSS = 0.005  # INT8 is a speed option only when it is faster and loses at most this much AUC
MIN_SPEEDUP = 1.05    # "faster" = fp32 time / int8 time at least this, at every batch size (timing noise is ~2-5%)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line interface."""
    p = argparse.ArgumentParser(description="Make INT8 ONNX models with onnxruntime.quantization and "
                                            "measure their AUC loss against fp32 on the shipped samples.")
    p.add_argument("--models", nargs="+", default=list(MODELS), help="model names in --models-dir (default: both)")
    p.add_argument("--models-dir", type=Path, default=models_dir(), help="folder with <name>.onnx")
    p.add_argument("--method", choices=("dynamic", "static"), default="dynamic",
                   help="dynamic: int8 weights only (no calibration); static: QDQ weights+activations")
    p.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    p.add_argument("--background", type=Path, default=sample_path("qcd_dijet"), help="QCD sample")
    p.add_argument("--signals", nargs="+", type=Path,
                   default=[sample_path(s.name) for s in SAMPLES if s.signal], help="signal samples")
    p.add_argument("--max-events", type=int, default=None, help="events read per sample (default: all)")
    p.add_argument("--calib-events", type=int, default=500, help="static: QCD events used for calibration")
    p.add_argument("--exclude", default="encoder",
                   help="regular expression: weight nodes whose name matches stay fp32 in the shipped file "
                        "(default 'encoder': the latent mean is what the score is most sensitive to); "
                        "'' quantises all weights. The all-weights variant is always measured too.")
    p.add_argument("--no-card", action="store_true", help="do not touch data/models/README.md")
    p.add_argument("--speed-time", type=float, default=1.0,
                   help="seconds of timing per model and batch size for the fp32-vs-int8 speed check")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Every argument and input file, one line and exit 2 (``catalogue.usage_error``) before any sample is read:
    a missing model was exit 1 after every sample had been read, a missing sample uproot's traceback."""
    for option in ("max_events", "calib_events"):
        value = getattr(args, option)
        if value is not None and value < 1:
            usage_error(PROG, f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if not args.speed_time > 0:
        usage_error(PROG, f"--speed-time must be positive, got {args.speed_time}")
    try:
        re.compile(args.exclude)
    except re.error as exc:
        usage_error(PROG, f"--exclude {args.exclude!r} is not a regular expression ({exc})")
    for name in args.models:
        require_files(PROG, models_dir=args.models_dir / f"{name}.onnx")
    require_files(PROG, background=args.background)
    for signal in args.signals:
        require_files(PROG, signals=signal)


def weight_nodes(model_path: Path, exclude: str | None = None) -> list[str]:
    """Names of the nodes to quantise: weight-carrying Conv/ConvTranspose/MatMul/Gemm, less those
    matching ``exclude``."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    weights = {init.name for init in graph.initializer}
    # a weight may reach its op through an Identity/Cast (tf2onnx does this for some constants)
    aliases = {n.output[0]: n.input[0] for n in graph.node if n.op_type in ("Identity", "Cast") and n.input}
    return [n.name for n in graph.node if n.op_type in WEIGHT_OPS
            and any(i in weights or aliases.get(i) in weights for i in n.input[:2])
            and not (exclude and re.search(exclude, n.name))]


class JetReader:
    """Calibration batches of QCD jets for quantize_static."""

    def __init__(self, jets: np.ndarray, input_name: str, batch: int = 256) -> None:
        self.batches = iter([{input_name: jets[i:i + batch]} for i in range(0, len(jets), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)

    def rewind(self) -> None:  # pragma: no cover - only for multi-pass calibrators
        pass


def quantize(src: Path, dst: Path, method: str, per_channel: bool, calib: np.ndarray | None,
             exclude: str | None = None) -> dict[str, Any]:
    """Write the INT8 model; returns what was done (for the card)."""
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_name(dst.name + ".pre.tmp")
    try:  # shape inference only (no graph optimisation, so node names stay those of src)
        quant_pre_process(str(src), str(pre), skip_optimization=True)
        src_q = pre
    except Exception as exc:  # the quantiser still works without it, only less well informed
        print(f"quantize_models: pre-processing {src} failed ({exc}); quantising the raw graph", file=sys.stderr)
        src_q = src
    nodes = weight_nodes(src_q, exclude)
    try:
        with writing(dst, "quantize_models") as staged:
            if method == "dynamic":
                q.quantize_dynamic(src_q, staged.tmp, nodes_to_quantize=nodes, per_channel=per_channel,
                                   weight_type=q.QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
            else:
                q.quantize_static(src_q, staged.tmp, JetReader(calib, "jets"), quant_format=q.QuantFormat.QDQ,
                                  nodes_to_quantize=nodes, per_channel=per_channel,
                                  activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                                  calibrate_method=q.CalibrationMethod.MinMax)
    finally:
        pre.unlink(missing_ok=True)
    return {"method": method, "per_channel": per_channel, "exclude": exclude, "quantised_nodes": len(nodes),
            "fp32_MB": round(src.stat().st_size / 1e6, 3), "int8_MB": round(dst.stat().st_size / 1e6, 3)}


def score(path: Path, jets: np.ndarray) -> np.ndarray:
    """Per-jet score with the hltrun ONNX Runtime backend (1 thread), in batches of 1024."""
    from hltrun.modules.inference import BackendOptions, create_backend

    backend = create_backend("onnxruntime", path, BackendOptions(outputs=["score"])).load()
    return np.concatenate([backend.run(jets[i:i + 1024])["score"] for i in range(0, len(jets), 1024)]
                          or [np.zeros(0, np.float32)]).astype(np.float64)


def scores_for(path: Path, bkg: tuple[np.ndarray, np.ndarray],
               sigs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    return {"qcd": score(path, bkg[0])} | {k: score(path, v[0]) for k, v in sigs.items()}


def compare(fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], bkg_evt: np.ndarray,
            sig_evt: dict[str, np.ndarray]) -> dict[str, Any]:
    """AUC per signal (jet level, and event level = max over the leading jets) for both models, and
    how much the INT8 score moves."""
    from hltrun.tools.physics.eval_stats import event_max as _event_max, roc

    rel = np.abs(int8["qcd"] - fp32["qcd"]) / np.abs(fp32["qcd"])
    out: dict[str, Any] = {"qcd_score_rel_diff_median": float(np.median(rel)),
                           "qcd_score_rel_diff_p99": float(np.quantile(rel, 0.99)), "signals": {}}
    for sig, evt in sig_evt.items():
        entry = {}
        for tag, s in (("fp32", fp32), ("int8", int8)):
            entry[f"auc_jet_{tag}"] = roc(s["qcd"], s[sig])[2]
            entry[f"auc_event_{tag}"] = roc(_event_max(s["qcd"], bkg_evt), _event_max(s[sig], evt))[2]
        entry["auc_jet_loss"] = entry["auc_jet_fp32"] - entry["auc_jet_int8"]
        entry["auc_event_loss"] = entry["auc_event_fp32"] - entry["auc_event_int8"]
        out["signals"][sig] = entry
    return out


def speed(fp32: Path, int8: Path, jets: np.ndarray, min_time: float) -> dict[str, Any]:
    """µs per jet of both files at SPEED_BATCHES, timed alternately in this process (one thread): the
    fastest call (what decides; robust to a busy machine) and the median."""
    from hltrun.tools.bench.profile_onnx import session, time_models

    sessions = {"fp32": session(fp32, 1), "int8": session(int8, 1)}
    feeds = {k: {b: {"jets": np.ascontiguousarray(jets[:b])} for b in SPEED_BATCHES} for k in sessions}
    best: dict[str, dict[int, float]] = {}
    us = time_models(sessions, feeds, list(SPEED_BATCHES), min_time, rounds=5, best=best)
    out = {f"us_per_jet_{k}": {str(b): round(v, 1) for b, v in per_b.items()} for k, per_b in best.items()}
    out.update({f"us_per_jet_{k}_median": {str(b): round(v, 1) for b, v in per_b.items()} for k, per_b in us.items()})
    return out


def speed_verdict(r: dict[str, Any]) -> bool:
    """INT8 is a speed option: faster at every timed batch size and AUC loss <= MAX_AUC_LOSS."""
    sp = r.get("speed", {})
    faster = bool(sp) and all(sp["us_per_jet_fp32"][b] >= MIN_SPEEDUP * sp["us_per_jet_int8"][b]
                              for b in sp["us_per_jet_fp32"])
    loss = max(max(e["auc_jet_loss"], e["auc_event_loss"]) for e in r["signals"].values())
    return faster and loss <= MAX_AUC_LOSS


def card_section(results: dict[str, Any], command: str) -> str:
    """Markdown for the model card's INT8 section (one row per model, variant and signal)."""
    lines = [SECTION, "",
             "INT8 variants made with ONNX Runtime quantisation by `tools/physics/quantize_models.py`: weights of "
             "Conv/ConvTranspose/MatMul/Gemm only, the in-graph score (Chamfer, adjacency) stays fp32. "
             "AUC loss = AUC(fp32) - AUC(int8), signal vs QCD, per jet (two leading jets) and per event "
             "(max over them); a negative loss is a change, not a gain to rely on: the score moved. "
             "The shipped `<model>_int8.onnx` is the variant marked **shipped**.", "",
             f"Command: `{command}`", "",
             "| model | variant | MB fp32 -> int8 | QCD score change median / p99 | signal | AUC jet fp32 -> int8 "
             "| loss jet | loss event |", "|---|---|---|---|---|---|---|---|"]
    for name, variants in results.items():
        for label, r in variants.items():
            tag = f"{label}{' (**shipped**)' if r['shipped'] else ''}, {r['method']}"
            for sig, e in r["signals"].items():
                lines.append(f"| {name} | {tag} | {r['fp32_MB']} -> {r['int8_MB']} | "
                             f"{r['qcd_score_rel_diff_median']:.1%} / {r['qcd_score_rel_diff_p99']:.1%} | {sig} | "
                             f"{e['auc_jet_fp32']:.4f} -> {e['auc_jet_int8']:.4f} | {e['auc_jet_loss']:+.4f} | "
                             f"{e['auc_event_loss']:+.4f} |")
    lines += ["", "Speed of the shipped INT8 file against fp32 (ONNX Runtime, one thread, timed alternately in one "
              "process; µs per jet, fastest call: on a shared machine medians are inflated at random). INT8 is "
              f"a speed option only where it is at least {MIN_SPEEDUP - 1:.0%} faster "
              f"(beyond timing noise) at every batch size with an AUC loss ≤ {MAX_AUC_LOSS}:", "",
              "| model | batch | fp32 µs/jet | int8 µs/jet | speed option |", "|---|---|---|---|---|"]
    for name, variants in results.items():
        r = next((v for v in variants.values() if v.get("shipped")), None)
        if not r or "speed" not in r:
            continue
        for b, t32 in r["speed"]["us_per_jet_fp32"].items():
            lines.append(f"| {name} | {b} | {t32} | {r['speed']['us_per_jet_int8'][b]} | "
                         f"{'**yes**' if r['speed_option'] else 'no'} |")
    if all(not next((v for v in variants.values() if v.get("shipped")), {}).get("speed_option", False)
           for variants in results.values()):
        lines += ["", "**INT8 is not a speed option here**: on this CPU (ONNX Runtime's dynamic quantisation, "
                  "one thread) it is no faster than fp32 — the models are small, activations are quantised at "
                  "run time and the fp32 score, element-wise ops and per-kernel overhead dominate. The files are "
                  "kept to study what quantisation does to the score, not to run the trigger faster."]
    lines += ["", "Thresholds in thresholds.json are for the fp32 models; re-derive them before triggering "
              "on an INT8 model.", "",
              "**Dynamic INT8 scores depend on the batch**: `quantize_dynamic` quantises activations per call "
              "(`DynamicQuantizeLinear`: one scale from every jet of the call), so a jet's score depends on the "
              "other jets of its call. The scores above come from calls of 1024 jets; the HLT path calls once "
              "per event (its leading jets together), and hltrun says at begin_job, in the log and in "
              "hltrun.json's `caveats`, by how much a score moves between a call of many jets and the jet alone "
              "(docs/your-model.md). A statically quantised model (`--method static`, QDQ) has no such dependence.", ""]
    return "\n".join(lines)


def write_card(readme: Path, section: str) -> None:
    """Replace our section if the card has it, else append it; never touch the other sections."""
    text = readme.read_text() if readme.exists() else ""
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    write_text(readme, text, "quantize_models card")


def main(argv: list[str] | None = None) -> int:
    from hltrun.framework.stdio import standard_streams

    standard_streams()  # stderr closed, or its reader gone: a refusal keeps its exit code, nothing in stdout
    args = parse_args(argv)
    check_args(args)
    from hltrun.modules.models.preprocess import load_jets

    t0 = time.perf_counter()
    bkg = load_jets(str(args.background), max_events=args.max_events)
    sigs = {p.stem: load_jets(str(p), max_events=args.max_events) for p in args.signals}
    sig_evt = {k: v[1] for k, v in sigs.items()}
    calib = load_jets(str(args.background), max_events=args.calib_events)[0] if args.method == "static" else None
    variants: dict[str, str | None] = {"all weights int8": None}
    if args.exclude:
        variants = {f"fp32 where /{args.exclude}/": args.exclude, **variants}
    results: dict[str, Any] = {}
    for name in args.models:
        src, dst = args.models_dir / f"{name}.onnx", args.models_dir / f"{name}_int8.onnx"
        fp32 = scores_for(src, bkg, sigs)
        results[name] = {}
        for i, (label, exclude) in enumerate(variants.items()):
            path = dst if i == 0 else dst.with_name(f"{name}_int8_variant.tmp.onnx")
            r = quantize(src, path, args.method, args.per_channel, calib, exclude)
            r.update(compare(fp32, scores_for(path, bkg, sigs), bkg[1], sig_evt), shipped=(i == 0))
            if i == 0:
                r["speed"] = speed(src, path, bkg[0], args.speed_time)
                r["speed_option"] = speed_verdict(r)
            results[name][label] = r
            if i:
                path.unlink()
            worst = max(abs(e["auc_jet_loss"]) for e in r["signals"].values())
            print(f"{name} [{label}]: {'wrote ' + str(path) if i == 0 else 'measured'} ({r['fp32_MB']} -> "
                  f"{r['int8_MB']} MB, {r['quantised_nodes']} nodes); QCD score change median "
                  f"{r['qcd_score_rel_diff_median']:.1%}; largest |jet AUC change| {worst:.4f}"
                  + (f"; µs/jet fp32 {r['speed']['us_per_jet_fp32']} int8 {r['speed']['us_per_jet_int8']} -> speed "
                     f"option: {'yes' if r['speed_option'] else 'no'}" if "speed" in r else ""))
    command = ("python tools/physics/quantize_models.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    report = args.models_dir / "int8.json"
    old = json.loads(report.read_text()) if report.exists() else {}
    write_text(report, json.dumps({**old, **results, "command": command}, indent=1), "quantize_models")
    if not args.no_card:
        write_card(args.models_dir / "README.md", card_section(results, command))
    print(f"done in {time.perf_counter() - t0:.0f} s; {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
