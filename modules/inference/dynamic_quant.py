"""Whether the zero jets an engine pads a call with can move a dynamically quantised model's scores.

``quantize_dynamic``'s DynamicQuantizeLinear takes one scale and zero point from the whole tensor of a call:
``min(0, min(x))`` to ``max(0, max(x))`` (ONNX), so an element that is exactly 0 never moves them. Measured on
ONNX Runtime (2026-12-07): a bias-free MatMul MLP scores its real jets bit for bit the same padded with zero jets
or not; the shipped conv_vae_int8 and gcn_vae_int8 do not (up to 5.7e-4 and 3.7e-3 relative), because a zero
jet reaches their quantisers as non-zero values (a bias, the encoder before the quantised decoder).

So padding is harmless exactly when every quantiser's input is 0 on the padded jets. Proved in two steps:

* the graph: each DynamicQuantizeLinear's integers and zero point feed only MatMulInteger / ConvInteger as
  (input, its zero point), and its scale only multiplies their products (quantize_dynamic's own pattern). Then
  a padded jet's integer product is exactly ``(zp - zp) * w = 0`` whatever the call's scale, and the call's
  scale reaches a padded jet only as ``0 * scale``: its values are the same in every call;
* one call of zero jets on ONNX Runtime: every quantiser's input is 0 there, hence in every padded call.

Anything else (a bias before a quantiser, a scale used otherwise, a quantiser inside a subgraph) is refused
with its reason. Jets are assumed scored each alone apart from the quantisers (``score_per: jet``), as every
engine that pads assumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hltrun.framework.extras import need

_DQL = "DynamicQuantizeLinear"
_INTEGER_PRODUCTS = ("MatMulInteger", "ConvInteger")


def padding_moves_scale(path: Path, ops: tuple[str, ...]) -> str | None:
    """Why zero jets padding a call of the ONNX model ``path`` (whose per-call quantising ``ops`` are given)
    may move its real jets' scores; None where they provably cannot."""
    fused = [op for op in ops if op != _DQL]
    if fused:  # ONNX Runtime's optimiser's: the quantiser and its product in one op no engine here translates
        return f"{', '.join(fused)} (ONNX Runtime's fused form) cannot be checked"
    # the check runs the model on ONNX Runtime, which an engine's extra ([jax], [torch], [iree]) does not install:
    # without it, one line naming the package (it was "ModuleNotFoundError: No module named 'onnxruntime'")
    why = f"checking that the zero jets padding a call cannot move the int8 scale of model {path}"
    onnx = need("onnx", why)
    need("onnxruntime", why)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # the engine's own load says what is wrong with the file
        return f"the model cannot be read to check it ({type(exc).__name__})"
    why = _not_quantize_dynamic_pattern(model.graph)
    return why if why is not None else _zero_jet_reaches_quantiser(model)


def _not_quantize_dynamic_pattern(graph: Any) -> str | None:
    """Why a quantiser's outputs are used otherwise than quantize_dynamic uses them, or None."""
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                if any(n.op_type == _DQL for n in sub.node):
                    return f"its {_DQL} inside {node.op_type} {node.name!r} cannot be checked"
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    constants = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    integer: set[str] = set()  # integer products of quantised tensors, and their Casts: 0 on a padded jet
    for node in graph.node:
        if node.op_type in _INTEGER_PRODUCTS:
            integer.add(node.output[0])
        elif node.op_type == "Cast" and node.input[0] in integer:
            integer.add(node.output[0])
    for node in graph.node:
        if node.op_type != _DQL:
            continue
        q, scale, zp = (list(node.output) + ["", "", ""])[:3]
        where = f"the output of its {_DQL} {node.name or node.input[0]!r}"
        if (q and q in outputs) or (zp and zp in outputs) or (scale and scale in outputs):
            return f"{where} is an output of the model"
        for name in (q, zp):
            for use in consumers.get(name, []) if name else ():
                if use.op_type not in _INTEGER_PRODUCTS or list(use.input[:1]) != [q] or \
                        (len(use.input) < 3 or use.input[2] != zp):
                    return (f"{where} feeds {use.op_type} {use.name!r}, not a MatMulInteger / ConvInteger with "
                            f"its zero point")
        scales, todo = {scale}, [scale] if scale else []
        while todo:  # the scale, and its products with constants (the weights' scales)
            for use in consumers.get(todo.pop(), []):
                rest = [i for i in use.input if i not in scales]
                if use.op_type == "Mul" and all(i in constants for i in rest):
                    if use.output[0] in outputs:
                        return f"{where}'s scale is an output of the model"
                    scales.add(use.output[0])
                    todo.append(use.output[0])
                elif use.op_type == "Mul" and len(rest) == 1 and rest[0] in integer:
                    continue  # 0 * scale on a padded jet
                else:
                    return f"{where}'s scale reaches {use.op_type} {use.name!r}, not only the integer products"
    return None


def _zero_jet_reaches_quantiser(model: Any) -> str | None:
    """Why a call of zero jets reaches a quantiser as non-zero values on ONNX Runtime (the reference engine), or
    None: every quantiser's input is 0 there."""
    import onnx
    import onnxruntime as ort  # installed: ``padding_moves_scale`` asked
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = model.graph
    quantisers = [n for n in graph.node if n.op_type == _DQL]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for n in quantisers:
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(n.input[0]))
    constants = {i.name for i in graph.initializer}
    feed = {}
    for inp in graph.input:
        if inp.name in constants:
            continue
        t = inp.type.tensor_type
        if not t.HasField("elem_type") or np.dtype(tensor_dtype_to_np_dtype(t.elem_type)).kind != "f":
            return f"its input {inp.name!r} is not a float tensor of zeros when padded"
        feed[inp.name] = np.zeros([d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim],
                                  tensor_dtype_to_np_dtype(t.elem_type))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
    try:
        values = ort.InferenceSession(probe.SerializeToString(), options,
                                      providers=["CPUExecutionProvider"]).run(None, feed)
    except Exception as exc:
        return f"ONNX Runtime cannot run a jet of zeros through it to check it ({type(exc).__name__})"
    for node, value in zip(quantisers, values):
        nonzero = np.asarray(value) != 0
        if nonzero.any():
            return (f"a zero jet reaches its {_DQL} {node.name or node.input[0]!r} as non-zero values "
                    f"({int(nonzero.sum())} of {nonzero.size}, e.g. {np.asarray(value)[nonzero].flat[0]:.3g}: a bias "
                    f"or a layer before it maps 0 elsewhere: the padding widens its range where the real jets' is "
                    f"narrower)")
    return None
