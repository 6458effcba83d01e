#!/usr/bin/env python3
"""Time variants of the Chamfer score's P x P core in standalone ONNX graphs (ONNX Runtime, one thread).

Why: the in-graph score (``modules/models/losses.py::chamfer_distance``) is one batched MatMul of
augmented (N, P, 5) vectors and two min-reductions over the (N, P, P) result; issue 8 asks for it to
cost <= 10 % of the model.  This isolates the core so that a reformulation can be judged before a
re-export: each variant is a small graph from the augmented inputs to the per-jet sum of the two
minima (masked sum over the real slots), timed alternately with the others in one process (median of rounds, and the fastest round).

Variants: ``shipped`` (Transpose + MatMul, as tf2onnx writes it; ORT fuses it into FusedMatMul, then
ReduceMin over axes 2 and 1), ``crop`` (the same after cutting the constituent axis at the batch's last
real slot: Mul, ReduceMax, Cast, Reshape and three Slices), ``plain_b`` (B given as (N, 5, P), no
transpose), ``pool`` (max-pooling on -d instead of ReduceMin).  Inputs are the augmented vectors of random points; the first
``--real`` slots of every jet are real (the rest padded), which is what the crop can exploit.

Example::

    python tools/bench_score_core.py --batch-sizes 64 9 2 1 --real 78
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

P, K = 100, 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line interface."""
    p = argparse.ArgumentParser(description="Time variants of the Chamfer score's P x P core (ONNX Runtime, "
                                            "one thread) in standalone graphs.")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 9, 2, 1], help="jets per call")
    p.add_argument("--real", type=int, default=78, help="real (unpadded) leading slots in every jet, 1..100")
    p.add_argument("--rounds", type=int, default=9, help="alternating rounds; the median round counts")
    p.add_argument("--calls", type=int, default=3000, help="jets timed per round and variant (at least 20 calls)")
    args = p.parse_args(argv)
    if not 1 <= args.real <= P or any(b < 1 for b in args.batch_sizes):
        p.error(f"--real must be in 1..{P} and batch sizes >= 1")
    return args


def _graph(nodes: list, inits: list, b_shape: list) -> Any:
    """ORT session of a graph with inputs xa (N, P, K), yb (N, *b_shape), mask (N, P) and output s (N,)."""
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as h

    inputs = [h.make_tensor_value_info("xa", T.FLOAT, ["N", P, K]),
              h.make_tensor_value_info("yb", T.FLOAT, ["N", *b_shape]),
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


def variants() -> dict[str, tuple[Any, list]]:
    """name -> (session, shape of its B input without the batch axis)."""
    from onnx import TensorProto as T
    from onnx import helper as h

    n = h.make_node
    consts = [h.make_tensor("zero", T.FLOAT, [], [0.0]), h.make_tensor("ax1", T.INT64, [1], [1]),
              h.make_tensor("start", T.INT64, [1], [0]), h.make_tensor("slots", T.FLOAT, [P], list(range(1, P + 1))),
              h.make_tensor("shape4", T.INT64, [4], [-1, 1, P, P]), h.make_tensor("shape2", T.INT64, [2], [-1, P])]

    def tail(m2: str, m1: str, mask: str) -> list:  # clamp, mask, sum: as in chamfer_distance
        return [n("Add", [m2, m1], ["nn"]), n("Max", ["nn", "zero"], ["c"]), n("Mul", ["c", mask], ["cm"]),
                n("ReduceSum", ["cm", "ax1"], ["s"], keepdims=0)]

    def core(xa: str, yb: str, mask: str, transpose: bool = True) -> list:
        pre = [n("Transpose", [yb], ["bt"], perm=[0, 2, 1])] if transpose else []
        return pre + [n("MatMul", [xa, "bt" if transpose else yb], ["d"]),
                      n("ReduceMin", ["d"], ["m2"], axes=[2], keepdims=0),
                      n("ReduceMin", ["d"], ["m1"], axes=[1], keepdims=0)] + tail("m2", "m1", mask)

    crop = [n("Mul", ["mask", "slots"], ["pos"]), n("ReduceMax", ["pos"], ["last"], axes=[0, 1], keepdims=1),
            n("Cast", ["last"], ["last_i"], to=T.INT64), n("Reshape", ["last_i", "ax1"], ["end"])] + \
           [n("Slice", [t, "start", "end", "ax1"], [t + "_c"]) for t in ("xa", "yb", "mask")]
    neg_pool = [n("Transpose", ["yb"], ["bt"], perm=[0, 2, 1]), n("MatMul", ["xa", "bt"], ["d"]),
                n("Neg", ["d"], ["nd"]), n("GlobalMaxPool", ["nd"], ["g2"]), n("Reshape", ["g2", "shape2"], ["p2"]),
                n("Reshape", ["nd", "shape4"], ["nd4"]), n("MaxPool", ["nd4"], ["g1"], kernel_shape=[P, 1]),
                n("Reshape", ["g1", "shape2"], ["p1"]), n("Neg", ["p2"], ["m2"]), n("Neg", ["p1"], ["m1"])] \
        + tail("m2", "m1", "mask")
    return {"shipped": (_graph(core("xa", "yb", "mask"), consts, [P, K]), [P, K]),
            "crop": (_graph(crop + core("xa_c", "yb_c", "mask_c"), consts, [P, K]), [P, K]),
            "plain_b": (_graph(core("xa", "yb", "mask", transpose=False), consts, [K, P]), [K, P]),
            "pool": (_graph(neg_pool, consts, [P, K]), [P, K])}


def augmented(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The score's augmented vectors [x, |x|^2 + far, 1] and [-2y, 1, |y|^2 + far] (losses.chamfer_distance)."""
    far = ((1.0 - mask) * 1e30)[..., None]
    ones = np.ones_like(far)
    xa = np.concatenate([x, (x * x).sum(-1, keepdims=True) + far, ones], axis=-1)
    yb = np.concatenate([-2.0 * y, ones, (y * y).sum(-1, keepdims=True) + far], axis=-1)
    return xa.astype(np.float32), yb.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    """Print µs per call and per jet for each variant and batch size; all variants must agree."""
    args = parse_args(argv)
    sessions = variants()
    rng = np.random.default_rng(0)
    print(f"Chamfer core, P = {P}, {args.real} real slots per jet; µs per call (median of {args.rounds} "
          "alternating rounds / fastest round), µs per jet")
    for batch in args.batch_sizes:
        mask = np.zeros((batch, P), np.float32)
        mask[:, :args.real] = 1.0
        xa, yb = augmented(rng.normal(size=(batch, P, 3)), rng.normal(size=(batch, P, 3)), mask)
        feeds = {name: {"xa": xa, "mask": mask,
                        "yb": yb if b_shape == [P, K] else np.ascontiguousarray(yb.transpose(0, 2, 1))}
                 for name, (_, b_shape) in sessions.items()}
        ref = sessions["shipped"][0].run(None, feeds["shipped"])[0]
        for name, (sess, _) in sessions.items():  # every variant computes the same scores
            np.testing.assert_allclose(sess.run(None, feeds[name])[0], ref, rtol=1e-5, err_msg=name)
        calls = max(20, args.calls // batch)
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.rounds):
            for name, (sess, _) in sessions.items():
                t0 = time.perf_counter()
                for _ in range(calls):
                    sess.run(None, feeds[name])
                times[name].append((time.perf_counter() - t0) / calls * 1e6)
        for name, t in times.items():
            med, best = statistics.median(t), min(t)
            print(f"  batch {batch:3d}  {name:8s} {med:8.2f} / {best:8.2f} µs per call   "
                  f"{med / batch:7.3f} / {best / batch:7.3f} µs per jet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
