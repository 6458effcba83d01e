#!/usr/bin/env python3
"""Export trained ``.keras`` VAEs to ONNX (score computed in the graph) and check them.

Why: the HLT path runs the models on ONNX Runtime / TensorRT.  The exported graph takes
``jets`` (N, 100, 3) float32 with a dynamic batch axis and returns ``score`` (N,) and ``kl`` (N,),
exactly the Keras inference model's outputs.  The check runs both on real jets with
onnxruntime and fails (exit 1) if any per-jet score differs by more than ``--rtol`` relative.

Route: tf.function with a fixed input signature around the Keras 3 model -> tf2onnx.from_function
(tf2onnx's from_keras does not understand Keras 3 models; the traced TF graph converts cleanly).

Example::

    python tools/export_onnx.py --model all
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

NAMES = {"conv": "conv_vae", "gcn": "gcn_vae"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line interface."""
    p = argparse.ArgumentParser(description="Convert data/models/*.keras to ONNX and verify with onnxruntime.")
    p.add_argument("--model", choices=("conv", "gcn", "all"), default="all", help="which model(s) to export")
    p.add_argument("--models-dir", type=Path, default=REPO / "data/models", help="directory with <name>.keras")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 13)")
    p.add_argument("--check-file", nargs="+", type=Path,
                   default=[REPO / "data/qcd_dijet.root", REPO / "data/rsg_ww_3p5TeV.root"],
                   help="sample(s) whose leading jets are used for the Keras-vs-ONNX check")
    p.add_argument("--check-events", type=int, default=1000, help="events read per check file")
    p.add_argument("--rtol", type=float, default=1e-5, help="maximum allowed relative difference per jet")
    return p.parse_args(argv)


def export(keras_path: Path, onnx_path: Path, opset: int) -> None:
    """Convert one Keras inference model to ONNX with input 'jets' and outputs 'score', 'kl'."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from modules.models.vae import load_inference_model

    model = load_inference_model(keras_path)
    signature = (tf.TensorSpec((None, 100, 3), tf.float32, name="jets"),)

    @tf.function(input_signature=signature)
    def serve(jets: tf.Tensor) -> dict[str, tf.Tensor]:
        out = model(jets, training=False)
        return {"score": out["score"], "kl": out["kl"]}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    # name the batch axis so that tools (and TensorRT profiles) see one symbolic dimension
    for value in list(proto.graph.input) + list(proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    proto.doc_string = (f"hltrun {model.name}: jets (N,100,3) of (deta, dphi, pT) -> score (N,) Chamfer "
                        "distance in standardised units, kl (N,) beta*KL; latent mean, deterministic")
    onnx.helper.set_model_props(proto, {"hltrun.model": model.name, "hltrun.source": keras_path.name})
    onnx.checker.check_model(proto)
    doubles = [n.name for n in proto.graph.node if n.op_type == "Cast"
               and any(a.name == "to" and a.i == onnx.TensorProto.DOUBLE for a in n.attribute)]
    if doubles:  # TensorRT has no float64: keep the graph float32 end to end
        raise RuntimeError(f"{keras_path.name}: float64 casts in the ONNX graph: {doubles}")
    tmp = onnx_path.with_name(onnx_path.name + ".tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, onnx_path)


def compare(keras_path: Path, onnx_path: Path, jets) -> dict[str, float]:
    """Max relative (and absolute) difference between Keras and onnxruntime outputs on ``jets``."""
    import numpy as np
    import onnxruntime as ort

    from modules.models.vae import load_inference_model, predict_scores

    ref = predict_scores(load_inference_model(keras_path), jets)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"jets": jets})))
    res = {"n_jets": int(len(jets))}
    for key in ("score", "kl"):
        diff = np.abs(got[key].astype(np.float64) - ref[key])
        res[f"{key}_max_abs"] = float(diff.max())
        res[f"{key}_max_rel"] = float((diff / np.maximum(np.abs(ref[key]), 1e-30)).max())
    return res


def main(argv: list[str] | None = None) -> int:
    """Export and verify; exit status 1 if the score check fails."""
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from modules.models.preprocess import load_jets

    jets = np.concatenate([load_jets(str(f), max_events=args.check_events)[0] for f in args.check_file])
    kinds = list(NAMES) if args.model == "all" else [args.model]
    report, ok = {}, True
    for kind in kinds:
        name = NAMES[kind]
        keras_path, onnx_path = args.models_dir / f"{name}.keras", args.models_dir / f"{name}.onnx"
        export(keras_path, onnx_path, args.opset)
        res = compare(keras_path, onnx_path, jets)
        res.update(opset=args.opset, onnx_MB=onnx_path.stat().st_size / 1e6)
        report[name] = res
        good = res["score_max_rel"] <= args.rtol
        ok &= good
        print(f"{name}: wrote {onnx_path} ({res['onnx_MB']:.2f} MB, opset {args.opset}); ONNX vs Keras on "
              f"{res['n_jets']} jets: score max rel diff {res['score_max_rel']:.2e}, kl max rel diff "
              f"{res['kl_max_rel']:.2e} -> {'OK' if good else 'FAIL'} (rtol {args.rtol:g})")
    check = args.models_dir / "onnx_check.json"
    old = json.loads(check.read_text()) if check.exists() else {}
    check.write_text(json.dumps({**old, **report}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
