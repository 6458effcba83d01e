"""A small ONNX -> JAX translator: the ONNX file hltrun already ships, run by XLA on any JAX device.

Why ONNX and not the ``.keras`` file: Keras 3 picks its backend once per process, so Keras-on-JAX
could never share a process with the TensorFlow backend; the ONNX graph is the one model format
every engine here reads (ONNX Runtime, TensorRT, and this).

How: the graph's nodes are walked in topological order and each op becomes ``jax.numpy`` /
``jax.lax`` calls, following the ONNX operator spec (opset 13-18 forms). Values that do not depend
on the input (initializers, ``Shape`` of a traced tensor, the constant subgraphs tf2onnx leaves
behind) stay numpy arrays and are folded while tracing, so ``Reshape``, ``Slice``, ``Tile`` ... get the
static arguments XLA needs; everything that depends on the input is traced. The result is a pure
function of the input, meant to be ``jax.jit``-compiled once per static batch shape.

Fidelity: matrix products and convolutions run at ``lax.Precision.HIGHEST`` so that a GPU does not
silently use TF32 (the agreement criterion is fp32's). An op outside ``OPS`` (or an attribute value
this translator does not implement) is refused when the model is read, in one line naming the op
and the model, never discovered at the first event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hltrun.framework.errors import ModuleError

from .base import several_inputs

OpFn = Callable[..., Any]


def _is_static(*values: Any) -> bool:
    """True if every value is a numpy array/scalar (known while tracing), None counting as absent."""
    return all(v is None or isinstance(v, (np.ndarray, np.generic, int, float)) for v in values)


def _xp(*values: Any) -> Any:
    """numpy when every input is static (constant folding), else jax.numpy."""
    if _is_static(*values):
        return np
    import jax.numpy as jnp

    return jnp


def _ints(value: Any, what: str) -> list[int]:
    """A static integer tensor (shape, axes, starts ...) as a list; traced values cannot be shapes."""
    if not _is_static(value):
        raise ModuleError(f"onnx_jax: {what} depends on the input; only static {what} can be compiled")
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# ---------------------------------------------------------------------- ops
def _binary(name: str) -> OpFn:
    def op(a: Any, b: Any) -> Any:
        return getattr(_xp(a, b), name)(a, b)
    return op


def _unary(name: str) -> OpFn:
    def op(a: Any) -> Any:
        return getattr(_xp(a), name)(a)
    return op


def _variadic(name: str) -> OpFn:
    def op(*args: Any) -> Any:
        xp = _xp(*args)
        out = args[0]
        for a in args[1:]:
            out = getattr(xp, name)(out, a)
        return out
    return op


def _div(a: Any, b: Any) -> Any:
    """Integer Div truncates toward zero (ONNX), unlike numpy's floor division."""
    xp = _xp(a, b)
    if np.issubdtype(np.asarray(a).dtype if _is_static(a) else a.dtype, np.integer):
        q = xp.abs(a) // xp.abs(b)
        return xp.where((a < 0) != (b < 0), -q, q).astype(q.dtype)
    return a / b


def _cast(x: Any, *, to: int) -> Any:
    from onnx.helper import tensor_dtype_to_np_dtype

    return x.astype(tensor_dtype_to_np_dtype(to))


def _shape(x: Any, *, start: int = 0, end: int | None = None) -> np.ndarray:
    """Static under jit: a traced tensor's shape is known per compiled batch size."""
    return np.asarray(x.shape[start:end], np.int64)


def _constant_of_shape(shape: Any, *, value: np.ndarray | None = None) -> Any:
    dims = _ints(shape, "ConstantOfShape shape")
    fill = np.zeros(1, np.float32) if value is None else value.reshape(-1)
    if int(np.prod(dims, dtype=np.int64)) <= 4096:
        return np.full(dims, fill[0], fill.dtype)
    import jax.numpy as jnp  # a large constant stays a broadcast in the graph, not a literal

    return jnp.full(dims, fill[0], fill.dtype)


def _reshape(x: Any, shape: Any, *, allowzero: int = 0) -> Any:
    dims = _ints(shape, "Reshape shape")
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _transpose(x: Any, *, perm: Sequence[int] | None = None) -> Any:
    return _xp(x).transpose(x, list(perm) if perm is not None else None)


def _squeeze(x: Any, axes: Any = None) -> Any:
    if axes is None:
        return _xp(x).squeeze(x)
    return _xp(x).squeeze(x, tuple(_axis(a, x.ndim) for a in _ints(axes, "Squeeze axes")))


def _unsqueeze(x: Any, axes: Any) -> Any:
    xp = _xp(x)
    rank = x.ndim + len(_ints(axes, "Unsqueeze axes"))
    for a in sorted(_axis(a, rank) for a in _ints(axes, "Unsqueeze axes")):
        x = xp.expand_dims(x, a)
    return x


def _concat(*xs: Any, axis: int) -> Any:
    return _xp(*xs).concatenate(xs, axis=axis)


def _slice(x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    s, e = _ints(starts, "Slice starts"), _ints(ends, "Slice ends")
    ax = _ints(axes, "Slice axes") if axes is not None else list(range(len(s)))
    st = _ints(steps, "Slice steps") if steps is not None else [1] * len(s)
    index: list[slice] = [slice(None)] * x.ndim
    for a, b, c, d in zip(ax, s, e, st):
        index[_axis(a, x.ndim)] = slice(b, c, d)  # Python clamps out-of-range bounds as ONNX does
    return x[tuple(index)]


def _tile(x: Any, repeats: Any) -> Any:
    return _xp(x).tile(x, _ints(repeats, "Tile repeats"))


def _expand(x: Any, shape: Any) -> Any:
    xp = _xp(x)
    out = np.broadcast_shapes(tuple(x.shape), tuple(_ints(shape, "Expand shape")))
    return xp.broadcast_to(x, out)


def _reduce(name: str) -> OpFn:
    """ReduceX: axes as an attribute (opset < 18, ReduceSum < 13: renamed ``axes_attr`` at load) or as
    the second input."""
    def op(x: Any, axes: Any = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0,
           axes_attr: Sequence[int] | None = None) -> Any:
        ax = _ints(axes, f"{name} axes") if axes is not None else (list(axes_attr) if axes_attr is not None else [])
        if not ax:
            if noop_with_empty_axes:
                return x
            ax = list(range(x.ndim))
        return getattr(_xp(x), name)(x, axis=tuple(_axis(a, x.ndim) for a in ax), keepdims=bool(keepdims))
    return op


def _matmul(a: Any, b: Any) -> Any:
    if _is_static(a, b):
        return np.matmul(a, b)
    import jax.numpy as jnp
    from jax import lax

    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)


def _gemm(a: Any, b: Any, c: Any = None, *, alpha: float = 1.0, beta: float = 1.0, transA: int = 0,
          transB: int = 0) -> Any:
    a = a.T if transA else a
    b = b.T if transB else b
    y = _matmul(a, b) * np.float32(alpha) if alpha != 1.0 else _matmul(a, b)
    return y if c is None else y + (c * np.float32(beta) if beta != 1.0 else c)


def _pads(attrs: dict[str, Any], x_spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
          dilations: Sequence[int], op: str) -> list[tuple[int, int]]:
    """Explicit (begin, end) padding per spatial axis from ``pads`` / ``auto_pad`` (Conv, pools)."""
    n = len(kernel)
    auto = attrs.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        p = list(attrs.get("pads") or [0] * (2 * n))
        return [(p[i], p[i + n]) for i in range(n)]
    if auto == "VALID":
        return [(0, 0)] * n
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k, s, d in zip(x_spatial, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    raise ModuleError(f"onnx_jax: {op} auto_pad {auto!r} is not implemented")


def _conv(x: Any, w: Any, b: Any = None, **attrs: Any) -> Any:
    """NC(spatial) x OI(spatial) -> NC(spatial), as lax.conv_general_dilated with explicit padding."""
    from jax import lax

    n = w.ndim - 2
    kernel = list(attrs.get("kernel_shape") or w.shape[2:])
    strides = list(attrs.get("strides") or [1] * n)
    dil = list(attrs.get("dilations") or [1] * n)
    pads = _pads(attrs, x.shape[2:], kernel, strides, dil, "Conv")
    spec = "NC" + "DHW"[-n:] if n <= 3 else None
    if spec is None:
        raise ModuleError(f"onnx_jax: Conv with {n} spatial dimensions is not implemented")
    kspec = "OI" + "DHW"[-n:]
    y = lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dil, dimension_numbers=(spec, kspec, spec),
                                 feature_group_count=int(attrs.get("group", 1)), precision=lax.Precision.HIGHEST)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * n)
    return y


def _conv_transpose(x: Any, w: Any, b: Any = None, **attrs: Any) -> Any:
    """ConvTranspose as the gradient of Conv: input dilated by the strides, the kernel flipped in
    space and its in/out channels swapped (ONNX weights are (C_in, C_out/group, k...)), padded by
    dilation*(k-1) - pad on each side (+ output_padding at the end)."""
    from jax import lax

    n = w.ndim - 2
    if int(attrs.get("group", 1)) != 1:
        raise ModuleError("onnx_jax: ConvTranspose with group != 1 is not implemented")
    if attrs.get("output_shape"):
        raise ModuleError("onnx_jax: ConvTranspose with an output_shape attribute is not implemented")
    auto = attrs.get("auto_pad", "NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "", "VALID"):
        raise ModuleError(f"onnx_jax: ConvTranspose auto_pad {auto!r} is not implemented")
    kernel = list(w.shape[2:])
    strides = list(attrs.get("strides") or [1] * n)
    dil = list(attrs.get("dilations") or [1] * n)
    p = list(attrs.get("pads") or [0] * (2 * n))
    outpad = list(attrs.get("output_padding") or [0] * n)
    pads = [(dil[i] * (kernel[i] - 1) - p[i], dil[i] * (kernel[i] - 1) - p[i + n] + outpad[i]) for i in range(n)]
    flipped = w[(slice(None), slice(None)) + (slice(None, None, -1),) * n]
    spec = "NC" + "DHW"[-n:]
    y = lax.conv_general_dilated(x, flipped, [1] * n, pads, lhs_dilation=strides, rhs_dilation=dil,
                                 dimension_numbers=(spec, "IO" + "DHW"[-n:], spec),
                                 precision=lax.Precision.HIGHEST)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * n)
    return y


def _average_pool(x: Any, **attrs: Any) -> Any:
    from jax import lax

    if attrs.get("ceil_mode", 0):
        raise ModuleError("onnx_jax: AveragePool with ceil_mode=1 is not implemented")
    kernel = list(attrs["kernel_shape"])
    n = len(kernel)
    strides = list(attrs.get("strides") or [1] * n)
    dil = list(attrs.get("dilations") or [1] * n)
    if any(d != 1 for d in dil):
        raise ModuleError("onnx_jax: AveragePool with dilations is not implemented")
    pads = [(0, 0), (0, 0)] + _pads(attrs, x.shape[2:], kernel, strides, dil, "AveragePool")
    window, step = (1, 1, *kernel), (1, 1, *strides)
    total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, window, step, pads)
    if attrs.get("count_include_pad", 0) or all(p == (0, 0) for p in pads):
        return total / np.array(np.prod(kernel), x.dtype)
    ones = np.ones((1, 1, *x.shape[2:]), x.dtype)
    count = lax.reduce_window(ones, np.array(0, x.dtype), lax.add, window, step, pads)
    return total / count


def _where(c: Any, a: Any, b: Any) -> Any:
    return _xp(c, a, b).where(c, a, b)


def _softmax(x: Any, *, axis: int = -1) -> Any:
    import jax

    return jax.nn.softmax(x, axis=axis)


def _flatten(x: Any, *, axis: int = 1) -> Any:
    a = _axis(axis, x.ndim)
    return x.reshape((int(np.prod(x.shape[:a], dtype=np.int64)), -1))


def _elu(x: Any, *, alpha: float = 1.0) -> Any:
    xp = _xp(x)
    return xp.where(x > 0, x, np.float32(alpha) * (xp.exp(xp.minimum(x, 0)) - 1)).astype(x.dtype)


def _leaky_relu(x: Any, *, alpha: float = 0.01) -> Any:
    return _xp(x).where(x >= 0, x, x * np.float32(alpha))


def _sigmoid(x: Any) -> Any:
    xp = _xp(x)
    return 1 / (1 + xp.exp(-x))


def _gather(x: Any, indices: Any, *, axis: int = 0) -> Any:
    xp = _xp(x, indices)
    a = _axis(axis, x.ndim)
    idx = xp.where(indices < 0, indices + x.shape[a], indices)
    return xp.take(x, idx, axis=a)


def _constant(**attrs: Any) -> np.ndarray:
    """Constant: a static value (``value`` tensor or one of the ``value_*`` forms)."""
    if len(attrs) != 1:
        raise ModuleError(f"onnx_jax: Constant needs exactly one value attribute, got {sorted(attrs)}")
    (key, value), = attrs.items()
    if key in ("value_float", "value_floats"):
        return np.asarray(value, np.float32)
    if key in ("value_int", "value_ints"):
        return np.asarray(value, np.int64)
    if key == "value":
        return np.asarray(value)
    raise ModuleError(f"onnx_jax: Constant {key} is not implemented")


def _identity(x: Any) -> Any:
    return x


def _pow(a: Any, b: Any) -> Any:
    return _xp(a, b).power(a, b).astype(a.dtype)


OPS: dict[str, OpFn] = {
    "Abs": _unary("abs"), "Neg": _unary("negative"), "Exp": _unary("exp"), "Log": _unary("log"),
    "Sqrt": _unary("sqrt"), "Tanh": _unary("tanh"), "Reciprocal": _unary("reciprocal"),
    "Not": _unary("logical_not"), "Relu": lambda x: _xp(x).maximum(x, 0).astype(x.dtype),
    "Sigmoid": _sigmoid, "Elu": _elu, "LeakyRelu": _leaky_relu, "Identity": _identity,
    "Add": _binary("add"), "Sub": _binary("subtract"), "Mul": _binary("multiply"), "Div": _div,
    "Pow": _pow, "Greater": _binary("greater"), "Less": _binary("less"), "Equal": _binary("equal"),
    "And": _binary("logical_and"), "Or": _binary("logical_or"),
    "Max": _variadic("maximum"), "Min": _variadic("minimum"), "Where": _where,
    "Constant": _constant, "Cast": _cast, "Shape": _shape, "ConstantOfShape": _constant_of_shape, "Reshape": _reshape,
    "Transpose": _transpose, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Concat": _concat,
    "Slice": _slice, "Tile": _tile, "Expand": _expand, "Flatten": _flatten, "Gather": _gather,
    "ReduceSum": _reduce("sum"), "ReduceMin": _reduce("min"), "ReduceMax": _reduce("max"),
    "ReduceMean": _reduce("mean"),
    "MatMul": _matmul, "Gemm": _gemm, "Conv": _conv, "ConvTranspose": _conv_transpose,
    "AveragePool": _average_pool, "Softmax": _softmax,
}
# reductions: an ``axes`` attribute (older opsets) is passed on as ``axes_attr``, beside the input form
_REDUCE_OPS = ("ReduceSum", "ReduceMin", "ReduceMax", "ReduceMean")


# ---------------------------------------------------------------------- the graph
@dataclass
class OnnxFunction:
    """A translated graph: ``fn(x)`` -> tuple of outputs in ``output_names`` order (jit it)."""

    model: Path
    input_name: str
    input_shape: tuple[Any, ...]  # dynamic dims as their dim_param string (or None)
    input_dtype: np.dtype
    output_names: list[str]
    ops: list[str]  # op types used, sorted
    fn: Callable[[Any], tuple[Any, ...]]


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if a.type == a.TENSOR:
            from onnx import numpy_helper

            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        out[a.name] = value
    return out


def _topological(nodes: Sequence[Any], known: set[str]) -> list[Any]:
    """Kahn's order over value names (ONNX files should already be sorted; not trusted to be)."""
    waiting = {i: {n for n in node.input if n and n not in known} for i, node in enumerate(nodes)}
    consumers: dict[str, list[int]] = {}
    for i, needs in waiting.items():
        for name in needs:
            consumers.setdefault(name, []).append(i)
    ready = deque(sorted(i for i, needs in waiting.items() if not needs))
    order: list[Any] = []
    while ready:
        i = ready.popleft()
        order.append(nodes[i])
        for out in nodes[i].output:
            for j in consumers.pop(out, []):
                waiting[j].discard(out)
                if not waiting[j]:
                    ready.append(j)
    if len(order) != len(nodes):
        stuck = sorted({n for i, needs in waiting.items() if needs for n in needs})[:5]
        raise ModuleError(f"onnx_jax: graph has a cycle or inputs nothing produces: {stuck}")
    return order


def translate(path: Path, model: Any | None = None) -> OnnxFunction:
    """Read ``path`` (or the already loaded ModelProto) into an OnnxFunction; unsupported ops are one
    ModuleError line naming them and the model."""
    import onnx
    from onnx import numpy_helper

    if model is None:
        try:
            model = onnx.load(str(path))
        except Exception as exc:
            raise ModuleError(f"jax: cannot read ONNX model {path}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    bad = sorted({(n.domain + "." if n.domain not in ("", "ai.onnx") else "") + n.op_type
                  for n in graph.node if n.domain not in ("", "ai.onnx") or n.op_type not in OPS})
    if bad:
        raise ModuleError(f"jax: model {path} uses ONNX op(s) the JAX translator does not implement: "
                          f"{', '.join(bad)} (use backend: onnxruntime for this model)")
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise several_inputs("jax", Path(path), [i.name for i in inputs])
    inp = inputs[0]
    shape = tuple((d.dim_param or None) if not d.HasField("dim_value") else int(d.dim_value)
                  for d in inp.type.tensor_type.shape.dim)
    nodes = _topological(list(graph.node), set(consts) | {inp.name})
    plan = []
    for node in nodes:
        attrs = _attributes(node)
        fn = OPS[node.op_type]
        if node.op_type in _REDUCE_OPS and "axes" in attrs:
            attrs["axes_attr"] = attrs.pop("axes")
        if node.op_type == "ConstantOfShape" and "value" in attrs:
            attrs["value"] = np.asarray(attrs["value"])
        if node.op_type == "Shape" and opset < 15:
            attrs.pop("start", None), attrs.pop("end", None)
        plan.append((node.op_type, fn, list(node.input), list(node.output), attrs))
    outputs = [o.name for o in graph.output]

    def fn(x: Any) -> tuple[Any, ...]:
        env: dict[str, Any] = dict(consts)
        env[inp.name] = x
        for op_type, op, ins, outs, attrs in plan:
            args = [env[n] if n else None for n in ins]
            while args and args[-1] is None:  # trailing optional inputs left out
                args.pop()
            try:
                result = op(*args, **attrs)
            except ModuleError as exc:
                raise ModuleError(f"jax: model {path}: {op_type} node {outs[0]!r}: {exc}") from None
            env[outs[0]] = result
        return tuple(env[name] for name in outputs)

    from onnx.helper import tensor_dtype_to_np_dtype

    dtype = np.dtype(tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type))
    return OnnxFunction(Path(path), inp.name, shape, dtype, outputs, sorted({p[0] for p in plan}), fn)
