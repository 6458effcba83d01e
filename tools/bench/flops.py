"""The arithmetic a model asks for and what one core can deliver: multiply-accumulates counted from
an ONNX graph, and the measured one-core sgemm rate.

Why its own module: ``hltbench backends`` (limit per jet) and ``hltbench profile`` (ratio to the floor)
both need these; kept here, neither study imports the other.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def declared_jet_shapes(path: Path, inputs: list[tuple[str, Any]]) -> dict[str, tuple[int, ...]]:
    """Input name -> the shape of one jet (batch 1) as the contract the model declares in its ONNX metadata
    gives it (modules/contract.py), matched to the model's ``(name, shape)`` inputs; undeclared, the shipped
    contract where the model takes it, else {}. A model exported with open constituent axes, (N, C, 5), reads
    what its declaration says, (1, 40, 5): fed the shipped (1, 100, 3), its count failed; fed (batch, batch, 5),
    its time per jet mixed lengths."""
    from hltrun.framework.errors import ModuleError
    from hltrun.modules.contract import default_contract, from_metadata, match_model, read_onnx_metadata

    signature = [(name, tuple(shape)) for name, shape in inputs]
    declared = from_metadata(read_onnx_metadata(path), path)
    if declared is None:  # undeclared: hltrun feeds the shipped (N, 100, 3) to a model that takes it, (N, C, 3) too
        try:
            contract = match_model(default_contract(), signature, path)
        except ModuleError:  # a model hltrun cannot feed undeclared: its own shape, as before
            return {}
    else:
        contract = match_model(declared, signature, path)
    return {name: tuple(decl.shape(1)) for (name, _), decl in zip(inputs, contract.inputs)}


def one_jet(shape: list[Any], declared: tuple[int, ...] | None = None) -> np.ndarray:
    """One jet of an input of this (ONNX Runtime) shape: ``declared`` (its contract's shape at batch 1) where
    the model declares one, else the shipped (1, 100, 3) input with 50 constituents when the model's shape
    leaves its axes open or is that one, else small values of the model's own shape (jet-level (N, F), ...);
    only the shapes matter for the count."""
    if declared is not None and tuple(declared[1:]) != (100, 3):  # the shipped input: the jet below
        return np.full(declared, 0.1, np.float32)
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape[1:]]
    if not dims or None in dims or dims == [100, 3]:
        x = np.zeros((1, 100, 3), np.float32)
        x[0, :50, 2] = 1.0
        x[0, :50, :2] = 0.1
        return x
    return np.full((1, *dims), 0.1, np.float32)


def count_macs(path: Path) -> dict[str, int]:
    """Multiply-accumulates per jet of Conv/ConvTranspose/MatMul/Gemm, split into ops with weights
    ('weights') and data x data products ('data': Chamfer, GCN adjacency)."""
    import onnx
    import onnxruntime as ort

    from hltrun.modules.inference.base import inline_local_functions

    model = inline_local_functions(onnx.load(str(path)))  # a Linear written as a function is counted too
    g = model.graph
    heavy = [n for n in g.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")]
    inits = {i.name: tuple(i.dims) for i in g.initializer}
    inputs = {i.name for i in g.input}
    known = {o.name for o in g.output}
    wanted = sorted({t for n in heavy for t in (*n.input[:2], n.output[0]) if t and t not in inits})
    for name in wanted:
        if name not in known and name not in inputs:
            g.output.append(onnx.ValueInfoProto(name=name))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor name
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    declared = declared_jet_shapes(path, [(i.name, i.shape) for i in sess.get_inputs()])
    feed = {i.name: one_jet(i.shape, declared.get(i.name)) for i in sess.get_inputs()}
    names = [o.name for o in sess.get_outputs()]
    shapes = dict(inits)
    shapes.update({n: v.shape for n, v in zip(names, sess.run(names, feed))})
    shapes.update({n: x.shape for n, x in feed.items()})
    macs = {"weights": 0, "data": 0}
    for n in heavy:
        a, b, out = shapes[n.input[0]], shapes[n.input[1]], shapes[n.output[0]]
        if n.op_type == "MatMul":
            m = int(np.prod(out)) * a[-1]
        elif n.op_type == "Gemm":
            trans_a = any(at.name == "transA" and at.i for at in n.attribute)
            m = int(np.prod(out)) * (a[0] if trans_a else a[-1])
        elif n.op_type == "Conv":
            m = int(np.prod(out)) * int(np.prod(b[1:]))
        else:  # ConvTranspose: every input element meets the whole kernel of its group
            m = int(np.prod(a)) * int(np.prod(b[1:]))
        macs["weights" if (n.input[0] in inits or n.input[1] in inits) else "data"] += int(m)
    return macs


def sgemm_rates(n: int = 256, min_time: float = 0.3) -> dict[str, Any]:
    """GFLOP/s of one-core float32 matmul: ONNX Runtime's MatMul and numpy (threadpoolctl, 1 thread)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    flop = 2.0 * n ** 3
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out: dict[str, Any] = {"n": n}
    out["ort_gflops"] = flop / _best_time(lambda: sess.run(None, {"a": a, "b": a}), min_time) / 1e9
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        out["numpy_gflops"], out["numpy_blas"] = None, "threadpoolctl not installed"
        return out
    with threadpool_limits(limits=1):
        out["numpy_gflops"] = flop / _best_time(lambda: a @ a, min_time) / 1e9
        info = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture', '')}".strip()
                for i in threadpool_info() if i.get("user_api") == "blas"]
    out["numpy_blas"] = "; ".join(info) or "unknown"
    out["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE")
    return out


def _best_time(fn: Any, min_time: float) -> float:
    """Median of 5 medians of calls over ``min_time`` seconds, in seconds per call."""
    fn()
    meds = []
    for _ in range(5):
        times, t_end = [], time.perf_counter() + min_time / 5
        while time.perf_counter() < t_end or len(times) < 3:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        meds.append(statistics.median(times))
    return statistics.median(meds)
