#!/usr/bin/env python3
"""Time variants of the Chamfer score's P x P core in standalone ONNX graphs (ONNX Runtime, one thread).

Why: the in-graph score (``modules/models/losses.py::chamfer_distance``) is one batched MatMul of
augmented (N, P, 5) vectors and two min-reductions over the (N, P, P) result; issue 8 asks for it to
cost <= 10 % of the model.  This isolates the core so that a reformulation can be judged before a
re-export: each variant is a small graph from the augmented inputs to the per-jet sum of the two
minima (masked sum over the real slots), timed alternately with the others in one process (median of rounds, and the fastest round).

Variants (all from x, y (N, P, 3) and the mask; checked against a float64 brute force and each
other before timing): ``shipped`` (as tf2onnx writes the score: augmented (N, P, 5) vectors by two
Concats, Transpose + MatMul, which ORT fuses into FusedMatMul, ReduceMin over axes 2 and 1),
``crop`` (the augmented vectors and the mask cut at the batch's last real slot first: Mul,
ReduceMax, Cast, Reshape and three Slices), ``keepdims`` (norm sums keep their axis: one Unsqueeze
instead of two), ``transposed`` (augmented vectors built as (N, 5, P): norms over a middle axis,
Concats of whole rows), ``pool`` (max-pooling on -d instead of ReduceMin).  The first ``--real``
slots of every jet are real, the rest padded: what the crop can exploit.

Example::

    hltbench score-core --batch-sizes 64 9 2 1 --real 78
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from hltrun.tools.bench import runner

P, K = 100, 5


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``hltbench score-core`` options."""
    p.add_argument("--batch-sizes", nargs="+", type=runner.positive_int, default=[64, 9, 2, 1], help="jets per call")
    p.add_argument("--real", type=int, default=78, help="real (unpadded) leading slots in every jet, 1..100")
    runner.add_repeat(p, 9, "alternating rounds; the median round counts")
    p.add_argument("--calls", type=int, default=3000, help="jets timed per round and variant (at least 20 calls)")


def _graph(nodes: list, inits: list) -> Any:
    """ORT session of a graph with inputs x, y (N, P, 3), mask (N, P) and output s (N,)."""
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as h

    inputs = [h.make_tensor_value_info("x", T.FLOAT, ["N", P, 3]), h.make_tensor_value_info("y", T.FLOAT, ["N", P, 3]),
              h.make_tensor_value_info("mask", T.FLOAT, ["N", P])]
    graph = h.make_graph(nodes, "core", inputs, [h.make_tensor_value_info("s", T.FLOAT, ["N"])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # the variants share one list of constants; unused ones are dropped
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def variants() -> dict[str, Any]:
    """name -> ORT session; every graph computes sum over real slots of (min_j d_ij + min_i d_ji)."""
    from onnx import TensorProto as T
    from onnx import helper as h

    n = h.make_node
    consts = [h.make_tensor("zero", T.FLOAT, [], [0.0]), h.make_tensor("one", T.FLOAT, [], [1.0]),
              h.make_tensor("far", T.FLOAT, [], [1e30]), h.make_tensor("m2", T.FLOAT, [], [-2.0]),
              h.make_tensor("ax1", T.INT64, [1], [1]), h.make_tensor("axl", T.INT64, [1], [-1]),
              h.make_tensor("start", T.INT64, [1], [0]), h.make_tensor("slots", T.FLOAT, [P], list(range(1, P + 1))),
              h.make_tensor("shape4", T.INT64, [4], [-1, 1, P, P]), h.make_tensor("shape2", T.INT64, [2], [-1, P])]
    ones_of = n("ConstantOfShape", ["sh"], ["ones"], value=h.make_tensor("v", T.FLOAT, [1], [1.0]))
    far = [n("Sub", ["one", "mask"], ["nm"]), n("Mul", ["nm", "far"], ["fr"])]

    def augment(keepdims: bool = False) -> list:
        """xa = [x, |x|^2 + far, 1], ya = [-2y, 1, |y|^2 + far] (N, P, 5), as tf2onnx writes the score."""
        out = list(far)
        if keepdims:  # sums keep their axis: one Unsqueeze (of far) instead of two
            out.append(n("Unsqueeze", ["fr", "axl"], ["fr3"]))
        for v in ("x", "y"):
            out += [n("Mul", [v, v], [v + "2"]), n("ReduceSum", [v + "2", "axl"], [v + "s"], keepdims=int(keepdims))]
            if keepdims:
                out.append(n("Add", [v + "s", "fr3"], [v + v]))
            else:
                out += [n("Add", [v + "s", "fr"], [v + "f"]), n("Unsqueeze", [v + "f", "axl"], [v + v])]
        return out + [n("Shape", ["xx"], ["sh"]), ones_of, n("Concat", ["x", "xx", "ones"], ["xa"], axis=2),
                      n("Mul", ["y", "m2"], ["ym"]), n("Concat", ["ym", "ones", "yy"], ["ya"], axis=2)]

    def augment_transposed() -> list:
        """The same vectors built as (N, 5, P): norms and concatenation along the middle axis."""
        out = far + [n("Unsqueeze", ["fr", "ax1"], ["frT"])]
        for v in ("x", "y"):
            out += [n("Transpose", [v], [v + "T"], perm=[0, 2, 1]), n("Mul", [v + "T", v + "T"], [v + "2"]),
                    n("ReduceSum", [v + "2", "ax1"], [v + "s"], keepdims=1), n("Add", [v + "s", "frT"], [v + v])]
        return out + [n("Shape", ["xx"], ["sh"]), ones_of, n("Concat", ["xT", "xx", "ones"], ["xaT"], axis=1),
                      n("Mul", ["yT", "m2"], ["ym"]), n("Concat", ["ym", "ones", "yy"], ["yaT"], axis=1),
                      n("Transpose", ["xaT"], ["xa"], perm=[0, 2, 1])]

    def tail(mask: str = "mask") -> list:  # clamp, mask, sum: as in chamfer_distance
        return [n("Add", ["mn2", "mn1"], ["nn"]), n("Max", ["nn", "zero"], ["c"]), n("Mul", ["c", mask], ["cm"]),
                n("ReduceSum", ["cm", "ax1"], ["s"], keepdims=0)]

    def core(xa: str = "xa", ya: str = "ya", mask: str = "mask", transpose: bool = True) -> list:
        pre = [n("Transpose", [ya], ["yt"], perm=[0, 2, 1])] if transpose else []
        return pre + [n("MatMul", [xa, "yt" if transpose else ya], ["d"]),
                      n("ReduceMin", ["d"], ["mn2"], axes=[2], keepdims=0),
                      n("ReduceMin", ["d"], ["mn1"], axes=[1], keepdims=0)] + tail(mask)

    crop = [n("Mul", ["mask", "slots"], ["pos"]), n("ReduceMax", ["pos"], ["last"], axes=[0, 1], keepdims=1),
            n("Cast", ["last"], ["last_i"], to=T.INT64), n("Reshape", ["last_i", "ax1"], ["end"])] + \
           [n("Slice", [t, "start", "end", "ax1"], [t + "_c"]) for t in ("xa", "ya", "mask")]
    pool = [n("Transpose", ["ya"], ["yt"], perm=[0, 2, 1]), n("MatMul", ["xa", "yt"], ["d"]),
            n("Neg", ["d"], ["nd"]), n("GlobalMaxPool", ["nd"], ["g2"]), n("Reshape", ["g2", "shape2"], ["p2"]),
            n("Reshape", ["nd", "shape4"], ["nd4"]), n("MaxPool", ["nd4"], ["g1"], kernel_shape=[P, 1]),
            n("Reshape", ["g1", "shape2"], ["p1"]), n("Neg", ["p2"], ["mn2"]), n("Neg", ["p1"], ["mn1"])] + tail()
    return {"shipped": _graph(augment() + core(), consts),
            "crop": _graph(augment() + crop + core("xa_c", "ya_c", "mask_c"), consts),
            "keepdims": _graph(augment(keepdims=True) + core(), consts),
            "transposed": _graph(augment_transposed() + core("xa", "yaT", transpose=False), consts),
            "pool": _graph(augment() + pool, consts)}


def brute_force(x: np.ndarray, y: np.ndarray, n_real: int) -> np.ndarray:
    """Per-jet sum over the first ``n_real`` slots of both nearest-neighbour distances, in float64."""
    d = ((x[:, :n_real, None, :].astype(np.float64) - y[:, None, :n_real, :]) ** 2).sum(-1)
    return d.min(2).sum(1) + d.min(1).sum(1)


def run(args: argparse.Namespace) -> int:
    """Print µs per call and per jet for each variant and batch size; all variants must agree."""
    if not 1 <= args.real <= P or any(b < 1 for b in args.batch_sizes):
        raise runner.BenchError(f"hltbench score-core: --real must be in 1..{P} and batch sizes >= 1")
    runner.check_repeat(args.repeat, "hltbench score-core")
    sessions = variants()
    rng = np.random.default_rng(0)
    print(f"Chamfer core, P = {P}, {args.real} real slots per jet; µs per call (median of {args.repeat} "
          "alternating rounds / fastest round), µs per jet")
    for batch in args.batch_sizes:
        mask = np.zeros((batch, P), np.float32)
        mask[:, :args.real] = 1.0
        x = rng.normal(size=(batch, P, 3)).astype(np.float32) * mask[..., None]
        feed = {"x": x, "y": rng.normal(size=(batch, P, 3)).astype(np.float32), "mask": mask}
        ref = sessions["shipped"].run(None, feed)[0]
        np.testing.assert_allclose(ref, brute_force(feed["x"], feed["y"], args.real), rtol=1e-4)
        for name, sess in sessions.items():  # every variant computes the same scores
            np.testing.assert_allclose(sess.run(None, feed)[0], ref, rtol=1e-5, err_msg=name)
        calls = max(20, args.calls // batch)
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.repeat):
            for name, sess in sessions.items():
                t0 = time.perf_counter()
                for _ in range(calls):
                    sess.run(None, feed)
                times[name].append((time.perf_counter() - t0) / calls * 1e6)
        for name, t in times.items():
            med, best = statistics.median(t), min(t)
            print(f"  batch {batch:3d}  {name:10s} {med:8.2f} / {best:8.2f} µs per call   "
                  f"{med / batch:7.3f} / {best / batch:7.3f} µs per jet")
    return 0

