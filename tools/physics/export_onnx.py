#!/usr/bin/env python3
"""Export trained ``.keras`` VAEs to ONNX (score computed in the graph) and check them.

Why: the HLT path runs the models on ONNX Runtime / TensorRT.  The exported graph takes
``jets`` (N, 100, 3) float32 with a dynamic batch axis and returns ``score`` (N,) and ``kl`` (N,),
exactly the Keras inference model's outputs.  The check runs both on real jets with
onnxruntime and fails (exit 1) if any per-jet score differs by more than ``--rtol`` relative
(default 1e-4) or if any trigger decision differs: per event, the larger score of its two leading
jets against each threshold in ``thresholds.json``.

Lean graph (issue 8): after conversion the shape arithmetic tf2onnx emits for the dynamic batch axis
is folded into constants (``fold_shapes``: ~60 fewer kernels per call, what dominates at batch 1-2),
then every Elu (alpha 1) is rewritten as
Max(x, Exp(Min(x, 0)) - 1) on a flattened view, the same function: ONNX Runtime's Elu kernel
evaluates exp element by element (~1.5 ns per value on one core), the four vectorised kernels take
~0.5 ns (measured with onnxruntime 1.32).  The new nodes
keep the Elu's name as their scope, so profilers still attribute them to their layer.

``--rebuild-keras`` first rebuilds the ``.keras`` inference models with the current score code
(``hltrun.modules.models.vae.rebuild_inference_model``: same encoder/decoder layers and weights) and saves
them, so TensorFlow and the ONNX export run one and the same score graph.

Route: tf.function with a fixed input signature around the Keras 3 model -> tf2onnx.from_function
(tf2onnx's from_keras does not understand Keras 3 models; the traced TF graph converts cleanly).

Example::

    python tools/physics/export_onnx.py --model all
"""
from __future__ import annotations

import dataclasses

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hltrun.tools.catalogue import SAMPLE_NAMES, checkout, sample_path  # noqa: E402

REPO = checkout()

from hltrun.framework.atomic import write_text, writing  # noqa: E402
from hltrun.modules.inference.base import AGREEMENT_RTOL  # noqa: E402  (after the path set-up above)

NAMES = {"conv": "conv_vae", "gcn": "gcn_vae"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line interface."""
    p = argparse.ArgumentParser(description="Convert data/models/*.keras to ONNX and verify with onnxruntime.")
    p.add_argument("--model", choices=("conv", "gcn", "all"), default="all", help="which model(s) to export")
    p.add_argument("--models-dir", type=Path, default=REPO / "data/models", help="directory with <name>.keras")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 13)")
    p.add_argument("--check-file", nargs="+", type=Path,
                   default=[sample_path(n) for n in SAMPLE_NAMES],
                   help="sample(s) whose two leading jets per event are used for the Keras-vs-ONNX check")
    p.add_argument("--check-events", type=int, default=None, help="events read per check file (default: all)")
    p.add_argument("--rtol", type=float, default=AGREEMENT_RTOL, help="maximum allowed relative difference per jet")
    p.add_argument("--rebuild-keras", action="store_true",
                   help="first rebuild and re-save the .keras inference models with the current score code "
                        "(same weights)")
    return p.parse_args(argv)


def lean_graph(proto: Any) -> int:
    """Rewrite every Elu (alpha 1) as Max(x, Exp(Min(x, 0)) - 1) in place; returns how many."""
    from onnx import TensorProto, helper

    import onnx

    graph = proto.graph
    inferred = onnx.shape_inference.infer_shapes(proto).graph.value_info
    last_dim = {v.name: "ok" for v in inferred if v.type.tensor_type.shape.dim
                and v.type.tensor_type.shape.dim[-1].dim_value > 1}
    zero, one, flat = "hltrun_lean/zero", "hltrun_lean/one", "hltrun_lean/flat"
    nodes, n_elu = [], 0
    for node in graph.node:
        alpha = next((a.f for a in node.attribute if a.name == "alpha"), 1.0)
        if node.op_type != "Elu" or alpha != 1.0 or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        x, y, base = node.input[0], node.output[0], node.name or f"elu_{n_elu}"
        src = x
        if last_dim.get(x) != "ok":  # trailing axis of length 1 (or unknown): work on a flat view, since
            # ORT broadcasts a scalar span by span over it (the first conv's (N, 16, 98, 1) output), ~30x slower
            src = f"{base}/flat"
            nodes.append(helper.make_node("Reshape", [x, flat], [src], name=f"{base}/flatten"))
        out = y if src == x else f"{base}/elu"
        nodes += [helper.make_node("Min", [src, zero], [f"{base}/neg"], name=f"{base}/min"),
                  helper.make_node("Exp", [f"{base}/neg"], [f"{base}/exp"], name=f"{base}/exp"),
                  helper.make_node("Sub", [f"{base}/exp", one], [f"{base}/expm1"], name=f"{base}/sub"),
                  helper.make_node("Max", [src, f"{base}/expm1"], [out], name=f"{base}/max")]
        if src != x:
            nodes += [helper.make_node("Shape", [x], [f"{base}/shape"], name=f"{base}/shape"),
                      helper.make_node("Reshape", [out, f"{base}/shape"], [y], name=f"{base}/unflatten")]
        n_elu += 1
    if n_elu:
        graph.initializer.extend([helper.make_tensor(zero, TensorProto.FLOAT, [], [0.0]),
                                  helper.make_tensor(one, TensorProto.FLOAT, [], [1.0]),
                                  helper.make_tensor(flat, TensorProto.INT64, [1], [-1])])
        del graph.node[:]
        graph.node.extend(nodes)
    return n_elu


def fold_shapes(proto: Any) -> int:
    """Replace integer tensors that depend on nothing but the batch size by constants; returns how
    many nodes were removed.

    tf2onnx computes every Reshape target, Tile repeat and ConvTranspose output slice at run time
    from ``Shape(x)`` (the batch axis is dynamic), ~60 small kernels per call that dominate at batch
    1-2.  Every integer tensor of the graph is evaluated with ONNX Runtime for several batch sizes
    and random inputs (with different numbers of padded trailing slots, so that the score's crop
    length differs between probes): a tensor equal in all probes becomes an initializer; a Reshape target that
    differs only in one entry equal to (batch x const) gets -1 there.  Nodes left without consumers
    are removed.  Data-dependent integers (they differ between random inputs) are never folded.
    """
    import copy

    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True).graph
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.value_info}
    ints = (TensorProto.INT64, TensorProto.INT32)
    outputs = {o.name for o in graph.output}
    cands = [o for n in graph.node for o in n.output if types.get(o) in ints and o not in outputs]
    if not cands:
        return 0
    probe = copy.deepcopy(proto)
    probe.graph.output.extend([helper.make_tensor_value_info(c, types[c], None) for c in cands])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    runs = []
    for batch, last in ((1, 3), (2, 7), (3, 40), (5, None)):
        feed = {}
        for inp in sess.get_inputs():
            shape = [batch if not isinstance(d, int) else d for d in inp.shape]
            x = rng.normal(size=shape).astype(np.float32)
            x[..., -1] = np.abs(x[..., -1]) * (rng.random(shape[:-1]) < 0.6)  # some rows padded (pT = 0)
            if last is not None and x.ndim == 3:  # every jet padded after slot ``last``: the score's
                x[:, last:] = 0.0                 # crop (losses.crop_to_real) must stay data-dependent
            feed[inp.name] = x
        runs.append((batch, dict(zip(cands, sess.run(cands, feed)))))
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i, name in enumerate(n.input):
            consumers.setdefault(name, []).append((n, i))
    folded: dict[str, np.ndarray] = {}
    for c in cands:
        vals = [r[c] for _, r in runs]
        if all(v.shape == vals[0].shape and np.array_equal(v, vals[0]) for v in vals):
            folded[c] = vals[0]
            continue
        only_reshape = all(n.op_type == "Reshape" and i == 1 for n, i in consumers.get(c, []))
        if not only_reshape or vals[0].ndim != 1 or any(v.shape != vals[0].shape for v in vals):
            continue
        diff = {j for v in vals[1:] for j in np.flatnonzero(v != vals[0])}
        if len(diff) != 1 or -1 in vals[0] or 0 in vals[0]:
            continue
        j = diff.pop()
        per_jet = vals[0][j]
        if all(v[j] == b * per_jet for (b, _), v in zip(runs, vals)):
            folded[c] = vals[0].copy()
            folded[c][j] = -1
    if not folded:
        return 0
    graph.initializer.extend([numpy_helper.from_array(np.asarray(v), name) for name, v in folded.items()])
    n_before = len(graph.node)
    keep = [n for n in graph.node if not all(o in folded for o in n.output)]
    # drop nodes whose outputs nobody reads any more (repeat: chains of shape arithmetic)
    while True:
        used = {i for n in keep for i in n.input} | outputs
        pruned = [n for n in keep if any(o in used for o in n.output)]
        if len(pruned) == len(keep):
            break
        keep = pruned
    used = {i for n in keep for i in n.input}
    live_inits = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(live_inits)
    return n_before - len(keep)


def export(keras_path: Path, onnx_path: Path, opset: int) -> None:
    """Convert one Keras inference model to ONNX with input 'jets' and outputs 'score', 'kl'."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from hltrun.modules.contract import METADATA_KEY, Contract, default_contract
    from hltrun.modules.models.vae import load_inference_model

    model = load_inference_model(keras_path)
    signature = (tf.TensorSpec((None, 100, 3), tf.float32, name="jets"),)

    @tf.function(input_signature=signature)
    def serve(jets: tf.Tensor) -> dict[str, tf.Tensor]:
        out = model(jets, training=False)
        return {"score": out["score"], "kl": out["kl"]}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    fold_shapes(proto)
    lean_graph(proto)
    # name the batch axis so that tools (and TensorRT profiles) see one symbolic dimension
    for value in list(proto.graph.input) + list(proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    proto.doc_string = (f"hltrun {model.name}: jets (N,100,3) of (deta, dphi, pT) -> score (N,) Chamfer "
                        "distance in standardised units, kl (N,) beta*KL; latent mean, deterministic")
    # what the model reads, declared in the file itself (modules/contract.py): hltrun reads it at begin_job
    contract = Contract(tuple(dataclasses.replace(i, name="jets") for i in default_contract().inputs))
    onnx.helper.set_model_props(proto, {"hltrun.model": model.name, "hltrun.source": keras_path.name,
                                        METADATA_KEY: contract.to_json()})
    onnx.checker.check_model(proto)
    doubles = [n.name for n in proto.graph.node if n.op_type == "Cast"
               and any(a.name == "to" and a.i == onnx.TensorProto.DOUBLE for a in n.attribute)]
    if doubles:  # TensorRT has no float64: keep the graph float32 end to end
        raise RuntimeError(f"{keras_path.name}: float64 casts in the ONNX graph: {doubles}")
    with writing(onnx_path, "export_onnx") as staged:
        onnx.save(proto, str(staged.tmp))


def compare(keras_path: Path, onnx_path: Path, jets: Any, event_index: Any,
            thresholds: dict[str, float]) -> dict[str, Any]:
    """Max relative (and absolute) difference between Keras and onnxruntime outputs on ``jets``, and
    the trigger decisions that differ (event = max over its leading jets, against each threshold)."""
    import numpy as np
    import onnxruntime as ort

    from hltrun.modules.models.vae import load_inference_model, predict_scores
    from hltrun.tools.physics.eval_stats import event_max as _event_max

    ref = predict_scores(load_inference_model(keras_path), jets)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    parts = [dict(zip(names, sess.run(None, {"jets": jets[i:i + 1024]}))) for i in range(0, len(jets), 1024)]
    got = {k: np.concatenate([p[k] for p in parts]) for k in ("score", "kl")}
    res: dict[str, Any] = {"n_jets": int(len(jets)), "n_events": int(event_index.max() + 1)}
    for key in ("score", "kl"):
        diff = np.abs(got[key].astype(np.float64) - ref[key])
        res[f"{key}_max_abs"] = float(diff.max())
        res[f"{key}_max_rel"] = float((diff / np.maximum(np.abs(ref[key]), 1e-30)).max())
    evt_ref, evt_got = _event_max(ref["score"], event_index), _event_max(got["score"], event_index)
    res["decision_changes"] = {k: int(((evt_ref > t) != (evt_got > t)).sum()) for k, t in thresholds.items()}
    return res


def rebuild_keras(keras_path: Path) -> None:
    """Re-save a .keras inference model rebuilt with the current score code (same weights)."""
    from hltrun.modules.models.vae import load_inference_model, rebuild_inference_model

    model = rebuild_inference_model(load_inference_model(keras_path))
    with writing(keras_path, "export_onnx", suffix=".keras") as staged:  # Keras saves only to *.keras
        model.save(str(staged.tmp))
    print(f"{keras_path.name}: rebuilt with the current score graph (same weights)")


def main(argv: list[str] | None = None) -> int:
    """Export and verify; exit status 1 if the score check fails."""
    from hltrun.framework.stdio import standard_streams

    standard_streams()  # stderr closed, or its reader gone: a refusal keeps its exit code, nothing in stdout
    args = parse_args(argv)
    from hltrun.tools.catalogue import require_files

    for f in args.check_file:
        require_files("export_onnx", check_file=f)
    for kind in (list(NAMES) if args.model == "all" else [args.model]):
        require_files("export_onnx", models_dir=args.models_dir / f"{NAMES[kind]}.keras")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from hltrun.modules.models.preprocess import load_jets

    loaded = [load_jets(str(f), max_events=args.check_events) for f in args.check_file]
    jets = np.concatenate([j for j, _ in loaded])
    offsets = np.cumsum([0] + [int(e.max()) + 1 for _, e in loaded[:-1]])
    event_index = np.concatenate([e + o for (_, e), o in zip(loaded, offsets)])
    thr_file = args.models_dir / "thresholds.json"
    all_thresholds = json.loads(thr_file.read_text()) if thr_file.exists() else {}
    kinds = list(NAMES) if args.model == "all" else [args.model]
    report, ok = {}, True
    for kind in kinds:
        name = NAMES[kind]
        keras_path, onnx_path = args.models_dir / f"{name}.keras", args.models_dir / f"{name}.onnx"
        if args.rebuild_keras:
            rebuild_keras(keras_path)
        export(keras_path, onnx_path, args.opset)
        thresholds = {k: float(v) for k, v in all_thresholds.get(name, {}).items() if k.startswith("bkg_eff")}
        res = compare(keras_path, onnx_path, jets, event_index, thresholds)
        res.update(opset=args.opset, onnx_MB=onnx_path.stat().st_size / 1e6, rtol=args.rtol,
                   check_files=[f.name for f in args.check_file])
        report[name] = res
        good = res["score_max_rel"] <= args.rtol and not any(res["decision_changes"].values())
        ok &= good
        print(f"{name}: wrote {onnx_path} ({res['onnx_MB']:.2f} MB, opset {args.opset}); ONNX vs Keras on "
              f"{res['n_jets']} jets: score max rel diff {res['score_max_rel']:.2e}, kl max rel diff "
              f"{res['kl_max_rel']:.2e}, decision changes over {res['n_events']} events "
              f"{res['decision_changes']} -> {'OK' if good else 'FAIL'} (rtol {args.rtol:g})")
    check = args.models_dir / "onnx_check.json"
    old = json.loads(check.read_text()) if check.exists() else {}
    write_text(check, json.dumps({**old, **report}, indent=1), "export_onnx")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
