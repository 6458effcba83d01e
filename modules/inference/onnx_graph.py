"""A small ONNX translator, written once for every array engine: the ONNX file hltrun already ships,
run by JAX/XLA (``onnx_jax``) or by PyTorch (``onnx_torch``) on the CPU or a GPU.

Why ONNX and not the ``.keras`` file: Keras 3 picks its backend once per process, so Keras-on-JAX
could never share a process with the TensorFlow backend; the ONNX graph is the one model format
every engine here reads (ONNX Runtime, TensorRT, IREE, and this).

How: the graph's nodes are walked in topological order and each op becomes calls on the engine's
namespace, written against the Python array API standard (``permute_dims``, ``concat``, ``astype``
...: numpy 2, ``jax.numpy`` and PyTorch through ``array_api_compat`` all speak it), following the ONNX
operator spec (opset 13-20 forms, and Softmax/LogSoftmax's 2-D coercion before 13). What the standard
does not have — convolutions, pooling windows, a matrix product and an einsum at a stated precision,
softmax, erf, top-k, a filled array on the engine's device — each engine gives through ``Kernels``; so an op's ONNX semantics (pads, auto_pad, output_padding, ...) are worked
out here once, and an engine adds only its own calls.

Values that do not depend on the input (initializers, ``Shape`` of a tensor, the constant subgraphs
tf2onnx leaves behind) stay numpy arrays and are folded, so ``Reshape``, ``Slice``, ``Tile`` ... get the
static arguments a compiler needs; everything that depends on the input runs on the engine. JAX folds
while it traces under ``jit``; an eager engine folds once per batch size with ``specialize``.

Fidelity: matrix products and convolutions run at full fp32 precision (no TF32 on a GPU; each engine
says how). An op outside ``OPS`` (or an attribute value not implemented) is refused when the model is
read, in one line naming the op and the model, never discovered at the first event.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hltrun.framework.errors import ModuleError

from . import onnx_control
from .base import inline_local_functions, refuse_mixed_types, vendor_note
from .output_types import graph_output_types

OpFn = Callable[..., Any]
Pads = list[tuple[int, int]]  # (begin, end) per spatial axis


class Kernels(ABC):
    """What one engine adds to the array API standard. ``xp`` is the engine's namespace for values
    that depend on the input; numpy serves the static ones."""

    engine: str = "?"  # named in messages
    xp: Any = None

    def take_slice(self, x: Any, index: tuple[slice, ...]) -> Any:
        """``x[index]``; an engine without negative steps overrides it."""
        return x[index]

    def scan(self, step: Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[tuple[Any, ...], Any]],
             carry: tuple[Any, ...], xs: tuple[Any, ...], length: int | None = None,
             node: str = "") -> tuple[tuple[Any, ...], Any]:
        """A recurrence (LSTM, GRU, RNN; a Scan or Loop body, ``node``): ``step(carry, x_t) -> (carry, y_t)`` over the
        first axis of every ``xs`` (``length`` steps where there is none); (the last carry, the y_t stacked: each one
        where y_t is a tuple). A loop here, unrolled by a trace; JAX compiles one step."""
        ys = []
        for t in range(int(xs[0].shape[0]) if length is None else length):
            carry, y = step(carry, tuple(x[t] for x in xs))
            ys.append(y)
        if ys and type(ys[0]) is tuple:
            return carry, tuple(_xp(self, *col).stack(list(col), axis=0) for col in zip(*ys))
        return carry, _xp(self, *ys).stack(ys, axis=0)

    def cond(self, pred: Any, then: Callable[[], tuple[Any, ...]],
             other: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        """An If whose condition (``pred``, one element) depends on the input: both branches run and each output is
        selected by ``pred`` (``where``). Why both: the one form every executor of an eager engine holds alike, a
        trace (PyTorch on the CPU), a captured CUDA graph (which cannot branch) and op by op, so no executor takes one
        branch for every call; the branches of the networks that have one are a head each, cheap beside the rest.
        JAX compiles a conditional instead (``lax.cond``)."""
        a, b = then(), other()
        onnx_control.check_branches(a, b)
        xp, flag = self.xp, self.xp.reshape(pred, ())  # the condition is the engine's (a static one picked a branch)
        return tuple(xp.where(flag, x, y) for x, y in zip(a, b))

    def recurrent_layer(self, op: str, x: Any, w: Any, r: Any, b: Any, h0: Any, c0: Any, *, reverse: bool,
                        nonlinearity: str) -> tuple[Any, Any, Any] | None:
        """The engine's own fused layer for the forms ``_fused_form`` lets through (time-major ``x``, ONNX's
        weights and states, every jet its full length): (Y as (seq, dirs, batch, hidden), Y_h, Y_c or None).
        None: the engine has none, the step loop (``scan``) runs it; JAX's ``lax.scan`` already compiles one step."""
        return None

    def exact_divide(self, x: Any, divisor: Any) -> Any:
        """``x / divisor`` rounded once, as IEEE divides (QuantizeLinear rounds the quotient to an integer: a
        quotient one ulp under a half must not become the half); an engine that turns a division by a constant
        into a product with its reciprocal overrides it."""
        return _xp(self, x, divisor).divide(x, divisor)

    def integer_matmul(self, a: Any, b: Any) -> Any:
        """``a @ b`` of int32 tensors, exact in int32 (MatMulInteger's accumulation); an engine without integer
        products overrides it."""
        return _xp(self, a, b).matmul(a, b)

    def integer_conv(self, x: Any, w: Any, strides: list[int], pads: Pads, dilations: list[int], group: int) -> Any:
        """ONNX Conv of int32 tensors without bias, exact in int32 (ConvInteger's accumulation), zero padding."""
        raise ModuleError(f"ConvInteger is not implemented on {self.engine}")

    @abstractmethod
    def scatter(self, data: Any, indices: Any, updates: Any, axis: int, reduction: str) -> Any:
        """ONNX ScatterElements on a copy of ``data``: non-negative integer ``indices`` shaped as ``updates``;
        reduction none, add, mul, max or min."""

    @abstractmethod
    def full(self, dims: Sequence[int], value: Any, dtype: np.dtype) -> Any:
        """A filled array on the engine's device (a large ConstantOfShape)."""

    @abstractmethod
    def matmul(self, a: Any, b: Any) -> Any:
        """Matrix product at full fp32 precision."""

    @abstractmethod
    def conv(self, x: Any, w: np.ndarray | Any, strides: list[int], pads: Pads, dilations: list[int],
             group: int) -> Any:
        """ONNX Conv without bias: x (N, C, *spatial), w (O, C/group, *kernel), explicit pads."""

    @abstractmethod
    def conv_transpose(self, x: Any, w: Any, strides: list[int], pads: Pads, dilations: list[int]) -> Any:
        """ONNX ConvTranspose without bias, group 1: w (C_in, C_out, *kernel); ``pads`` are the
        ONNX (begin, end) crops, output_padding already added to the end crop (may be negative)."""

    @abstractmethod
    def window_sum(self, x: Any, kernel: list[int], strides: list[int], pads: Pads) -> Any:
        """Sum over each pooling window, zero padding (AveragePool divides it)."""

    @abstractmethod
    def softmax(self, x: Any, axis: int) -> Any: ...

    @abstractmethod
    def erf(self, x: Any) -> Any:
        """The error function (Erf, exact Gelu): not in the array API standard."""

    @abstractmethod
    def einsum(self, equation: str, *operands: Any) -> Any:
        """Einstein summation at full fp32 precision (attention written as ``torch.einsum``)."""

    @abstractmethod
    def topk(self, x: Any, k: int, axis: int, largest: bool) -> tuple[Any, Any]:
        """The k largest (or smallest) values along ``axis``, sorted, and their int64 indices."""

    @abstractmethod
    def window_max(self, x: Any, kernel: list[int], strides: list[int], pads: Pads) -> Any:
        """Maximum over each pooling window, padding never chosen (MaxPool)."""


def _is_static(*values: Any) -> bool:
    """True if every value is a numpy array/scalar (known while tracing), None counting as absent."""
    return all(v is None or isinstance(v, (np.ndarray, np.generic, int, float, bool)) for v in values)


def static_namespace() -> Any:
    """numpy for the static values: numpy 2 speaks the array API itself; numpy 1 through
    ``array_api_compat`` (installed with the jax and torch extras)."""
    if hasattr(np, "permute_dims"):
        return np
    import array_api_compat.numpy as compat_numpy

    return compat_numpy


_NP = static_namespace()


def _xp(k: Kernels, *values: Any) -> Any:
    """numpy when every input is static (constant folding), else the engine's namespace."""
    return _NP if _is_static(*values) else k.xp


def _ints(value: Any, what: str) -> list[int]:
    """A static integer tensor (shape, axes, starts ...) as a list; traced values cannot be shapes. An
    attribute's ints (Squeeze/Unsqueeze ``axes`` before opset 13) arrive as a list: static too."""
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    if not _is_static(value):
        raise ModuleError(f"{what} depends on the input; only static {what} can be compiled")
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# ---------------------------------------------------------------------- ops
def _binary(name: str) -> OpFn:
    def op(k: Kernels, a: Any, b: Any) -> Any:
        return getattr(_xp(k, a, b), name)(a, b)
    return op


def _unary(name: str) -> OpFn:
    def op(k: Kernels, a: Any) -> Any:
        return getattr(_xp(k, a), name)(a)
    return op


def _variadic(name: str) -> OpFn:
    def op(k: Kernels, *args: Any) -> Any:
        xp = _xp(k, *args)
        out = args[0]
        for a in args[1:]:
            out = getattr(xp, name)(out, a)
        return out
    return op


def _integral(xp: Any, a: Any) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.integer) if _is_static(a) else bool(xp.isdtype(a.dtype, "integral"))


def _div(k: Kernels, a: Any, b: Any) -> Any:
    """Integer Div truncates toward zero (ONNX), unlike numpy's floor division."""
    xp = _xp(k, a, b)
    if _integral(xp, a):
        q = xp.floor_divide(xp.abs(a), xp.abs(b))
        return xp.where(xp.not_equal(xp.less(a, 0), xp.less(b, 0)), xp.negative(q), q)
    return xp.divide(a, b)


def _reciprocal(k: Kernels, a: Any) -> Any:
    return _xp(k, a).divide(1, a) if not _is_static(a) else np.reciprocal(a)


def _relu(k: Kernels, x: Any) -> Any:
    xp = _xp(k, x)
    return xp.maximum(x, xp.zeros_like(x))


def _cast(k: Kernels, x: Any, *, to: int) -> Any:
    from onnx.helper import tensor_dtype_to_np_dtype

    dtype = np.dtype(tensor_dtype_to_np_dtype(to))
    return np.asarray(x).astype(dtype) if _is_static(x) else k.xp.astype(x, dtype)


def _shape(k: Kernels, x: Any, *, start: int = 0, end: int | None = None) -> np.ndarray:
    """Static: a tensor's shape is known per compiled (or specialised) batch size."""
    return np.asarray(tuple(x.shape)[start:end], np.int64)


def _constant_of_shape(k: Kernels, shape: Any, *, value: np.ndarray | None = None) -> Any:
    dims = _ints(shape, "ConstantOfShape shape")
    fill = np.zeros(1, np.float32) if value is None else value.reshape(-1)
    if int(np.prod(dims, dtype=np.int64)) <= 4096:
        return np.full(dims, fill[0], fill.dtype)
    return k.full(dims, fill[0], fill.dtype)  # a large constant stays a fill on the device, not a literal


def _reshape(k: Kernels, x: Any, shape: Any, *, allowzero: int = 0) -> Any:
    dims = _ints(shape, "Reshape shape")
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return _xp(k, x).reshape(x, tuple(dims))


def _transpose(k: Kernels, x: Any, *, perm: Sequence[int] | None = None) -> Any:
    order = tuple(perm) if perm is not None else tuple(reversed(range(x.ndim)))
    return _xp(k, x).permute_dims(x, order)


def _squeeze(k: Kernels, x: Any, axes: Any = None) -> Any:
    if axes is None:
        ax = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        ax = tuple(_axis(a, x.ndim) for a in _ints(axes, "Squeeze axes"))
    return _xp(k, x).squeeze(x, axis=ax) if ax else x


def _unsqueeze(k: Kernels, x: Any, axes: Any) -> Any:
    xp = _xp(k, x)
    rank = x.ndim + len(_ints(axes, "Unsqueeze axes"))
    for a in sorted(_axis(a, rank) for a in _ints(axes, "Unsqueeze axes")):
        x = xp.expand_dims(x, axis=a)
    return x


def _concat(k: Kernels, *xs: Any, axis: int) -> Any:
    return _xp(k, *xs).concat(list(xs), axis=axis)


def _slice(k: Kernels, x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    s, e = _ints(starts, "Slice starts"), _ints(ends, "Slice ends")
    ax = _ints(axes, "Slice axes") if axes is not None else list(range(len(s)))
    st = _ints(steps, "Slice steps") if steps is not None else [1] * len(s)
    index: list[slice] = [slice(None)] * x.ndim
    for a, b, c, d in zip(ax, s, e, st):
        index[_axis(a, x.ndim)] = slice(b, c, d)  # Python clamps out-of-range bounds as ONNX does
    return x[tuple(index)] if _is_static(x) else k.take_slice(x, tuple(index))


def _tile(k: Kernels, x: Any, repeats: Any) -> Any:
    return _xp(k, x).tile(x, tuple(_ints(repeats, "Tile repeats")))


def _expand(k: Kernels, x: Any, shape: Any) -> Any:
    out = np.broadcast_shapes(tuple(x.shape), tuple(_ints(shape, "Expand shape")))
    return _xp(k, x).broadcast_to(x, out)


def _reduce(name: str) -> OpFn:
    """ReduceX: axes as an attribute (opset < 18, ReduceSum < 13: renamed ``axes_attr`` at load) or as
    the second input."""
    def op(k: Kernels, x: Any, axes: Any = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0,
           axes_attr: Sequence[int] | None = None) -> Any:
        ax = _ints(axes, f"{name} axes") if axes is not None else (list(axes_attr) if axes_attr is not None else [])
        if not ax:
            if noop_with_empty_axes:  # reduced over no axis: each value alone, as ONNX Runtime (|x| for L1 and L2,
                # x^2 for SumSquare, log x for LogSum; x itself was returned for all, and the score silently differed)
                return _REDUCERS[name](_xp(k, x), x, (), True) if name in _REDUCERS else x
            ax = list(range(x.ndim))
        xp, axis = _xp(k, x), tuple(_axis(a, x.ndim) for a in ax)
        if name in _REDUCERS:  # L1, L2, SumSquare, LogSum, LogSumExp: composed of the standard's sum
            return _REDUCERS[name](xp, x, axis, bool(keepdims))
        return getattr(xp, name)(x, axis=axis, keepdims=bool(keepdims))
    return op


def _matmul(k: Kernels, a: Any, b: Any) -> Any:
    return np.matmul(a, b) if _is_static(a, b) else k.matmul(a, b)


def _gemm(k: Kernels, a: Any, b: Any, c: Any = None, *, alpha: float = 1.0, beta: float = 1.0, transA: int = 0,
          transB: int = 0) -> Any:
    a = _transpose(k, a) if transA else a
    b = _transpose(k, b) if transB else b
    y = _matmul(k, a, b)
    if alpha != 1.0:
        y = _xp(k, y).multiply(y, np.float32(alpha))
    if c is None:
        return y
    return _xp(k, y, c).add(y, _xp(k, c).multiply(c, np.float32(beta)) if beta != 1.0 else c)


def _pads(attrs: dict[str, Any], x_spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
          dilations: Sequence[int], op: str) -> Pads:
    """Explicit (begin, end) padding per spatial axis from ``pads`` / ``auto_pad`` (Conv, pools)."""
    n = len(kernel)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = list(attrs.get("pads") or [0] * (2 * n))
        return [(p[i], p[i + n]) for i in range(n)]
    if auto == "VALID":
        return [(0, 0)] * n
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, kk, s, d in zip(x_spatial, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (kk - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    raise ModuleError(f"{op} auto_pad {auto!r} is not implemented")


def _add_bias(k: Kernels, y: Any, b: Any, n: int) -> Any:
    if b is None:
        return y
    return _xp(k, y, b).add(y, _xp(k, b).reshape(b, (1, -1) + (1,) * n))


def _conv_window(x: Any, w: Any, attrs: dict[str, Any], op: str) -> tuple[list[int], Pads, list[int]]:
    """A Conv-like node's strides, (begin, end) pads and dilations (Conv, ConvInteger); more than 3 spatial
    dimensions refused in one line naming the op."""
    n = w.ndim - 2
    if n > 3:
        raise ModuleError(f"{op} with {n} spatial dimensions is not implemented")
    kernel = list(attrs.get("kernel_shape") or w.shape[2:])
    strides = list(attrs.get("strides") or [1] * n)
    dil = list(attrs.get("dilations") or [1] * n)
    return strides, _pads(attrs, x.shape[2:], kernel, strides, dil, op), dil


def _conv(k: Kernels, x: Any, w: Any, b: Any = None, **attrs: Any) -> Any:
    """NC(spatial) x OI(spatial) -> NC(spatial), explicit padding."""
    strides, pads, dil = _conv_window(x, w, attrs, "Conv")
    return _add_bias(k, k.conv(x, w, strides, pads, dil, int(attrs.get("group", 1))), b, w.ndim - 2)


def _conv_transpose(k: Kernels, x: Any, w: Any, b: Any = None, **attrs: Any) -> Any:
    """ONNX ConvTranspose: out = (in-1)*stride + dilation*(k-1) + 1 + output_padding - pad_begin - pad_end."""
    n = w.ndim - 2
    if int(attrs.get("group", 1)) != 1:
        raise ModuleError("ConvTranspose with group != 1 is not implemented")
    if attrs.get("output_shape"):
        raise ModuleError("ConvTranspose with an output_shape attribute is not implemented")
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "", "VALID"):
        raise ModuleError(f"ConvTranspose auto_pad {attrs.get('auto_pad')!r} is not implemented")
    strides = list(attrs.get("strides") or [1] * n)
    dil = list(attrs.get("dilations") or [1] * n)
    p = list(attrs.get("pads") or [0] * (2 * n))
    outpad = list(attrs.get("output_padding") or [0] * n)
    crops = [(p[i], p[i + n] - outpad[i]) for i in range(n)]
    return _add_bias(k, k.conv_transpose(x, w, strides, crops, dil), b, n)


def _pool_window(x: Any, attrs: dict[str, Any], op: str) -> tuple[list[int], list[int], Pads]:
    """A pooling node's kernel, strides and (begin, end) pads; what the translator does not do
    (ceil_mode, dilations) is refused in one line naming the op."""
    if attrs.get("ceil_mode", 0):
        raise ModuleError(f"{op} with ceil_mode=1 is not implemented")
    kernel = list(attrs["kernel_shape"])
    n = len(kernel)
    strides = list(attrs.get("strides") or [1] * n)
    dil = list(attrs.get("dilations") or [1] * n)
    if any(d != 1 for d in dil):
        raise ModuleError(f"{op} with dilations is not implemented")
    return kernel, strides, _pads(attrs, x.shape[2:], kernel, strides, dil, op)


def _average_pool(k: Kernels, x: Any, **attrs: Any) -> Any:
    kernel, strides, pads = _pool_window(x, attrs, "AveragePool")
    total = _window_sum_static(x, kernel, strides, pads) if _is_static(x) else k.window_sum(x, kernel, strides, pads)
    xp = _xp(k, x)
    if attrs.get("count_include_pad", 0) or all(q == (0, 0) for q in pads):
        return xp.divide(total, np.array(np.prod(kernel), np.float32))
    ones = np.ones((1, 1, *x.shape[2:]), np.float32)  # how many real values each window saw: static
    count = _window_sum_static(ones, kernel, strides, pads)
    return xp.divide(total, count)


def _window_sum_static(x: np.ndarray, kernel: list[int], strides: list[int], pads: Pads) -> np.ndarray:
    """numpy's window sum (the divisor of an AveragePool that excludes its padding)."""
    x = np.pad(x, [(0, 0), (0, 0), *pads])
    view = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=tuple(range(2, x.ndim)))
    view = view[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]
    return view.sum(axis=tuple(range(x.ndim, view.ndim))).astype(np.float32)


def _where(k: Kernels, c: Any, a: Any, b: Any) -> Any:
    return _xp(k, c, a, b).where(c, a, b)


def _flatten(k: Kernels, x: Any, *, axis: int = 1) -> Any:
    a = _axis(axis, x.ndim)
    return _xp(k, x).reshape(x, (int(np.prod(x.shape[:a], dtype=np.int64)), -1))


def _elu(k: Kernels, x: Any, *, alpha: float = 1.0) -> Any:
    xp = _xp(k, x)
    neg = xp.multiply(xp.subtract(xp.exp(xp.minimum(x, xp.zeros_like(x))), 1), np.float32(alpha))
    return xp.where(xp.greater(x, 0), x, neg)


def _leaky_relu(k: Kernels, x: Any, *, alpha: float = 0.01) -> Any:
    xp = _xp(k, x)
    return xp.where(xp.greater_equal(x, 0), x, xp.multiply(x, np.float32(alpha)))


def _sigmoid(k: Kernels, x: Any) -> Any:
    xp = _xp(k, x)
    return xp.divide(1, xp.add(1, xp.exp(xp.negative(x))))


def _gather(k: Kernels, x: Any, indices: Any, *, axis: int = 0) -> Any:
    """ONNX Gather (indices of any rank, negative ones from the end) through the standard's 1-D take."""
    xp = _xp(k, x, indices)
    a = _axis(axis, x.ndim)
    size = int(x.shape[a])  # an int, not the tensor torch.jit.trace hands out for a size (numpy cannot add it)
    idx = indices if _is_static(indices) else None
    if idx is not None:
        idx = np.asarray(idx)
        flat = np.where(idx < 0, idx + size, idx).reshape(-1)
    else:
        flat = xp.reshape(xp.where(xp.less(indices, 0), xp.add(indices, size), indices), (-1,))
    taken = xp.take(x, flat, axis=a)
    shape = tuple(x.shape[:a]) + tuple(indices.shape) + tuple(x.shape[a + 1:])
    return xp.reshape(taken, shape)


def _gather_elements(k: Kernels, x: Any, indices: Any, *, axis: int = 0) -> Any:
    """ONNX GatherElements (ParticleNet's k nearest neighbours: TopK's indices gathered per constituent)
    through the standard's ``take_along_axis``. ONNX lets the indices be shorter than the data on the
    other axes (the output has the indices' shape): the data is cut to them first. Negative indices count
    from the end. ONNX allows int32 indices; torch's ``take_along_dim`` takes int64 only, so they are widened."""
    xp = _xp(k, x, indices)
    a = _axis(axis, x.ndim)
    size = int(x.shape[a])
    cut = tuple(slice(None) if d == a or int(x.shape[d]) == int(indices.shape[d]) else slice(0, int(indices.shape[d]))
                for d in range(x.ndim))
    if any(c != slice(None) for c in cut):
        x = k.take_slice(x, cut)
    if _is_static(indices):
        indices = np.asarray(indices).astype(np.int64)
        indices = np.where(indices < 0, indices + size, indices)
    else:
        indices = xp.astype(indices, np.dtype(np.int64))
        indices = xp.where(xp.less(indices, 0), xp.add(indices, size), indices)
    return xp.take_along_axis(x, indices, axis=a)


def _constant(k: Kernels, **attrs: Any) -> np.ndarray:
    """Constant: a static value (``value`` tensor or one of the ``value_*`` forms)."""
    if len(attrs) != 1:
        raise ModuleError(f"Constant needs exactly one value attribute, got {sorted(attrs)}")
    (key, value), = attrs.items()
    if key in ("value_float", "value_floats"):
        return np.asarray(value, np.float32)
    if key in ("value_int", "value_ints"):
        return np.asarray(value, np.int64)
    if key == "value":
        return np.asarray(value)
    raise ModuleError(f"Constant {key} is not implemented")


def _identity(k: Kernels, x: Any) -> Any:
    return x


def _pow(k: Kernels, a: Any, b: Any) -> Any:
    xp = _xp(k, a, b)
    return xp.astype(xp.pow(a, b), a.dtype)


def _erf(k: Kernels, x: Any) -> Any:
    if _is_static(x):
        import math

        return np.vectorize(math.erf, otypes=[np.asarray(x).dtype])(x)
    return k.erf(x)


def _gelu(k: Kernels, x: Any, *, approximate: str = "none") -> Any:
    """Gelu (opset 20): x/2 (1 + erf(x/sqrt 2)), or its tanh approximation."""
    xp = _xp(k, x)
    if approximate == "tanh":
        inner = xp.multiply(np.float32(np.sqrt(2 / np.pi)), xp.add(x, xp.multiply(np.float32(0.044715), xp.multiply(x, xp.multiply(x, x)))))
        return xp.multiply(xp.multiply(x, np.float32(0.5)), xp.add(xp.tanh(inner), np.float32(1)))
    if approximate != "none":
        raise ModuleError(f"Gelu approximate={approximate!r} is not implemented")
    return xp.multiply(xp.multiply(x, np.float32(0.5)), xp.add(_erf(k, xp.multiply(x, np.float32(1 / np.sqrt(2)))), np.float32(1)))


def _normalise(xp: Any, x: Any, axes: tuple[int, ...], epsilon: float) -> tuple[Any, Any, Any]:
    """(x - mean) / sqrt(var + eps) over ``axes``, the mean and 1/sqrt(var + eps) (kept dims)."""
    mean = xp.mean(x, axis=axes, keepdims=True)
    centred = xp.subtract(x, mean)
    inv = xp.divide(np.float32(1), xp.sqrt(xp.add(xp.mean(xp.multiply(centred, centred), axis=axes, keepdims=True),
                                                  np.float32(epsilon))))
    return xp.multiply(centred, inv), mean, inv


def _layer_norm(k: Kernels, x: Any, scale: Any, bias: Any = None, *, axis: int = -1, epsilon: float = 1e-5,
                stash_type: int = 1) -> tuple[Any, Any, Any]:
    """LayerNormalization (opset 17): normalised over the axes from ``axis`` on; (Y, Mean, InvStdDev)."""
    xp = _xp(k, x, scale, bias)
    y, mean, inv = _normalise(xp, x, tuple(range(_axis(axis, x.ndim), x.ndim)), epsilon)
    y = xp.multiply(y, scale)
    return (y if bias is None else xp.add(y, bias)), mean, inv


def _batch_norm(k: Kernels, x: Any, scale: Any, bias: Any, mean: Any, var: Any, *, epsilon: float = 1e-5,
                momentum: float = 0.9, training_mode: int = 0, spatial: int = 1) -> Any:
    """BatchNormalization at inference: the running statistics, per channel (axis 1)."""
    if training_mode:
        raise ModuleError("BatchNormalization with training_mode=1 is not implemented (export in eval mode)")
    fp = _xp(k, scale, bias, mean, var)  # numpy for the usual initializers: folded once
    shape = (1, -1) + (1,) * (x.ndim - 2)
    factor = fp.divide(scale, fp.sqrt(fp.add(var, np.float32(epsilon))))
    shift = fp.reshape(fp.subtract(bias, fp.multiply(mean, factor)), shape)
    xp = _xp(k, x, factor)
    return xp.add(xp.multiply(x, fp.reshape(factor, shape)), shift)


def _global_pool(name: str) -> OpFn:
    def op(k: Kernels, x: Any) -> Any:
        return getattr(_xp(k, x), name)(x, axis=tuple(range(2, x.ndim)), keepdims=True)
    return op


def _float_limits(x: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(lowest, max) of ``x``'s floating type as 0-d arrays of it; None for an integer or unknown type."""
    try:
        dtype = np.dtype(str(x.dtype).removeprefix("torch."))  # numpy and jax dtypes; torch.float32 by name
    except TypeError:
        return None
    if not np.issubdtype(dtype, np.floating):
        return None
    info = np.finfo(dtype)
    return np.asarray(info.min, dtype), np.asarray(info.max, dtype)


def _clip(k: Kernels, x: Any, low: Any = None, high: Any = None, *, min: float | None = None,
          max: float | None = None) -> Any:
    """Clip: bounds as inputs (opset 11+) or attributes (older); an absent one is the type's lowest() or
    max(), as ONNX defines it (a float's ±inf becomes ∓/±3.4e38 as on ONNX Runtime; an integer is unchanged)."""
    xp = _xp(k, x, low, high)
    limits = _float_limits(x)
    low = low if low is not None else (np.asarray(min, np.float32) if min is not None else limits and limits[0])
    high = high if high is not None else (np.asarray(max, np.float32) if max is not None else limits and limits[1])
    for bound, pick in ((low, "maximum"), (high, "minimum")):
        if bound is not None:  # a bound of the input's own type (an int64 tensor is clipped by ints)
            x = getattr(xp, pick)(x, bound if not _is_static(bound) or not _is_static(x)
                                  else np.asarray(bound).astype(np.asarray(x).dtype))
    return x


def _softplus(k: Kernels, x: Any) -> Any:
    xp = _xp(k, x)
    return xp.logaddexp(x, xp.zeros_like(x))


def _coerced(fn: Callable[[Kernels, Any, int], Any]) -> OpFn:
    """Softmax / LogSoftmax: over one axis (opset 13+), or over the 2-D coercion at ``axis`` (opset < 13:
    every axis from ``axis`` on, default 1); ``opset`` is set at load."""
    def op(k: Kernels, x: Any, *, axis: int | None = None, opset: int = 13) -> Any:
        if opset >= 13:
            return fn(k, x, _axis(-1 if axis is None else axis, x.ndim))
        a = _axis(1 if axis is None else axis, x.ndim)
        if a == x.ndim - 1:
            return fn(k, x, a)
        xp = _xp(k, x)
        flat = xp.reshape(x, (int(np.prod(x.shape[:a], dtype=np.int64)), -1))
        return xp.reshape(fn(k, flat, 1), tuple(x.shape))
    return op


def _softmax_axis(k: Kernels, x: Any, axis: int) -> Any:
    if _is_static(x):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    return k.softmax(x, axis)


def _log_softmax_axis(k: Kernels, x: Any, axis: int) -> Any:
    xp = _xp(k, x)
    shifted = xp.subtract(x, xp.max(x, axis=axis, keepdims=True))
    return xp.subtract(shifted, xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True)))


def _mod(k: Kernels, a: Any, b: Any, *, fmod: int = 0) -> Any:
    """Mod: the divisor's sign (fmod=0, Python's %), or the dividend's (fmod=1, C's fmod)."""
    xp = _xp(k, a, b)
    r = xp.remainder(a, b)
    if not fmod:
        return r
    wrong = xp.logical_and(xp.not_equal(r, 0), xp.not_equal(xp.less(r, 0), xp.less(a, 0)))
    return xp.where(wrong, xp.subtract(r, b), r)


def _einsum(k: Kernels, *operands: Any, equation: str) -> Any:
    if _is_static(*operands):
        return np.einsum(equation, *operands)
    return k.einsum(equation, *operands)


def _topk(k: Kernels, x: Any, kk: Any, *, axis: int = -1, largest: int = 1, sorted: int = 1) -> tuple[Any, Any]:
    """TopK: (values, int64 indices), sorted (an unsorted request gets them sorted: a valid order)."""
    n = _ints(kk, "TopK k")[0]
    a = _axis(axis, x.ndim)
    if _is_static(x):
        order = np.argsort(-x if largest else x, axis=a, kind="stable")
        idx = np.take(order, np.arange(n), axis=a)
        return np.take_along_axis(x, idx, axis=a), idx.astype(np.int64)
    return k.topk(x, n, a, bool(largest))


def _max_pool(k: Kernels, x: Any, **attrs: Any) -> Any:
    kernel, strides, pads = _pool_window(x, attrs, "MaxPool")
    if _is_static(x):
        xs = np.pad(x, [(0, 0), (0, 0), *pads], constant_values=-np.inf)
        view = np.lib.stride_tricks.sliding_window_view(xs, kernel, axis=tuple(range(2, xs.ndim)))
        view = view[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]
        return view.max(axis=tuple(range(xs.ndim, view.ndim)))
    return k.window_max(x, kernel, strides, pads)


def _split(k: Kernels, x: Any, split: Any = None, *, axis: int = 0, num_outputs: int | None = None,
           split_attr: Sequence[int] | None = None, n_outputs: int = 1) -> tuple[Any, ...]:
    """Split into parts of the given sizes, else equal ones (the last smaller, opset 18)."""
    a = _axis(axis, x.ndim)
    size = x.shape[a]
    if split is not None or split_attr is not None:
        sizes = _ints(split, "Split split") if split is not None else list(split_attr)
    else:
        parts = num_outputs or n_outputs
        step = -(-size // parts)
        sizes = [min(step, size - i * step) for i in range(parts)]
    out, start = [], 0
    for s in sizes:
        index: list[slice] = [slice(None)] * x.ndim
        index[a] = slice(start, start + s)
        out.append(x[tuple(index)] if _is_static(x) else k.take_slice(x, tuple(index)))
        start += s
    return tuple(out)


def _dropout(k: Kernels, x: Any, ratio: Any = None, training_mode: Any = None, *, seed: int = 0,
             n_outputs: int = 1) -> Any:
    """Dropout at inference is the identity (a training_mode input that is true is refused); its optional
    mask output is, as ONNX defines it there, all true in the input's shape (a graph that reads it got no
    value at all)."""
    if training_mode is not None and (not _is_static(training_mode) or bool(np.asarray(training_mode))):
        raise ModuleError("Dropout in training mode is not implemented (export in eval mode)")
    if n_outputs < 2:
        return x
    mask = np.ones(x.shape, bool) if _is_static(x) else k.full(tuple(x.shape), True, np.dtype(bool))
    return x, mask


def _range(k: Kernels, start: Any, limit: Any, delta: Any) -> np.ndarray:
    if not _is_static(start, limit, delta):
        raise ModuleError("Range bounds depend on the input; only static ones can be compiled")
    return np.arange(np.asarray(start), np.asarray(limit), np.asarray(delta)).astype(np.asarray(start).dtype)


def _pad_block(k: Kernels, x: Any, axis: int, width: int, value: Any) -> Any:
    """A block of ``value`` shaped like ``x`` but ``width`` long on ``axis`` (static when small)."""
    dims = list(x.shape)
    dims[axis] = width
    dtype = np.asarray(x).dtype if _is_static(x) else np.dtype(str(x.dtype).removeprefix("torch."))
    if _is_static(x) or int(np.prod(dims, dtype=np.int64)) <= 4096:
        return np.full(dims, value, dtype)
    return k.full(dims, np.asarray(value, dtype), dtype)


def _pad(k: Kernels, x: Any, pads: Any = None, constant_value: Any = None, axes: Any = None, *,
         mode: str = "constant", pads_attr: Sequence[int] | None = None, value: float = 0.0) -> Any:
    """Pad: ``pads`` as an input (opset 11+, ``axes`` 18+) or an attribute (before 11, with ``value``);
    constant, edge, reflect and wrap modes; a negative pad crops. Edge/reflect/wrap take static indices."""
    p = _ints(pads, "Pad pads") if pads is not None else list(pads_attr or [])
    ax = [_axis(a, x.ndim) for a in _ints(axes, "Pad axes")] if axes is not None else list(range(x.ndim))
    if len(p) != 2 * len(ax):
        raise ModuleError(f"Pad pads has {len(p)} values for {len(ax)} axes")
    fill = np.asarray(constant_value).reshape(-1)[0] if constant_value is not None else value
    xp = _xp(k, x)
    for i, a in enumerate(ax):
        begin, end = p[i], p[i + len(ax)]
        if begin < 0 or end < 0:  # crop first
            index: list[slice] = [slice(None)] * x.ndim
            index[a] = slice(max(-begin, 0), x.shape[a] - max(-end, 0))
            x = x[tuple(index)] if _is_static(x) else k.take_slice(x, tuple(index))
            begin, end = max(begin, 0), max(end, 0)
        if not begin and not end:
            continue
        n = int(x.shape[a])
        if mode == "constant":
            parts = ([_pad_block(k, x, a, begin, fill)] if begin else []) + [x] + \
                    ([_pad_block(k, x, a, end, fill)] if end else [])
            x = _xp(k, *parts).concat(parts, axis=a)
            continue
        pos = np.arange(-begin, n + end)
        if mode == "edge":
            idx = np.clip(pos, 0, n - 1)
        elif mode == "wrap":
            idx = np.mod(pos, n)
        elif mode == "reflect":
            if n < 2 or begin >= n or end >= n:
                raise ModuleError(f"Pad reflect of {begin}/{end} on an axis of {n} is not implemented")
            idx = np.abs(pos)
            idx = np.where(idx > n - 1, 2 * (n - 1) - idx, idx)
        else:
            raise ModuleError(f"Pad mode {mode!r} is not implemented")
        x = xp.take(x, idx.astype(np.int64), axis=a)
    return x


_NEAREST = {"round_prefer_floor": lambda c: np.ceil(c - 0.5), "round_prefer_ceil": lambda c: np.floor(c + 0.5),
            "floor": np.floor, "ceil": np.ceil}


def _source_coordinates(out: int, size: int, scale: float, how: str) -> np.ndarray:
    """Where each output position of a Resize axis samples its input (ONNX's coordinate_transformation_mode)."""
    o = np.arange(out, dtype=np.float64)
    if how == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if how == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    if how == "align_corners":
        return o * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    if how == "asymmetric":
        return o / scale
    raise ModuleError(f"Resize coordinate_transformation_mode {how!r} is not implemented")


def _resize(k: Kernels, x: Any, roi: Any = None, scales: Any = None, sizes: Any = None, *, mode: str = "nearest",
            coordinate_transformation_mode: str = "half_pixel", nearest_mode: str = "round_prefer_floor",
            axes: Sequence[int] | None = None, antialias: int = 0, keep_aspect_ratio_policy: str = "stretch",
            exclude_outside: int = 0, cubic_coeff_a: float = -0.75, extrapolation_value: float = 0.0,
            opset: int = 13) -> Any:
    """Resize (opset 11+): nearest or linear, separable per axis through static indices and weights
    (a Conv-VAE decoder's nn.Upsample / F.interpolate); cubic, antialias and tf_crop_and_resize are refused."""
    if opset < 11:
        raise ModuleError("Resize before opset 11 is not implemented (export at opset 11 or later)")
    if mode not in ("nearest", "linear") or antialias or coordinate_transformation_mode == "tf_crop_and_resize":
        raise ModuleError(f"Resize mode={mode!r} antialias={antialias} coordinate_transformation_mode="
                          f"{coordinate_transformation_mode!r} is not implemented (nearest or linear only)")
    ax = [_axis(a, x.ndim) for a in axes] if axes is not None else list(range(x.ndim))
    scale_list: list[float]
    if scales is not None and np.asarray(scales).size:
        if not _is_static(scales):
            raise ModuleError("Resize scales depend on the input; only static scales can be compiled")
        scale_list = [float(v) for v in np.asarray(scales).reshape(-1)]
        outs = [int(np.floor(x.shape[a] * f)) for a, f in zip(ax, scale_list)]
    elif sizes is not None:
        outs = _ints(sizes, "Resize sizes")
        if keep_aspect_ratio_policy != "stretch":
            raise ModuleError(f"Resize keep_aspect_ratio_policy {keep_aspect_ratio_policy!r} is not implemented")
        scale_list = [o / int(x.shape[a]) for a, o in zip(ax, outs)]
    else:
        raise ModuleError("Resize needs scales or sizes")
    if nearest_mode not in _NEAREST:
        raise ModuleError(f"Resize nearest_mode {nearest_mode!r} is not implemented")
    xp = _xp(k, x)
    for a, out, f in zip(ax, outs, scale_list):
        size = int(x.shape[a])
        if out == size and f == 1.0:
            continue
        c = _source_coordinates(out, size, f, coordinate_transformation_mode)
        if mode == "nearest":
            idx = np.clip(_NEAREST[nearest_mode](c), 0, size - 1).astype(np.int64)
            x = xp.take(x, idx, axis=a)
            continue
        c = np.clip(c, 0, size - 1)
        lo = np.floor(c).astype(np.int64)
        hi = np.minimum(lo + 1, size - 1)
        shape = [1] * x.ndim
        shape[a] = out
        w = (c - lo).astype(np.float32).reshape(shape)
        x = xp.add(xp.multiply(xp.take(x, lo, axis=a), (1 - w).astype(np.float32)),
                   xp.multiply(xp.take(x, hi, axis=a), w))
    return x


# ---------------------------------------------------------------------- activations, reductions, scans, scatters
def _prelu(k: Kernels, x: Any, slope: Any) -> Any:
    """PRelu: ``slope`` broadcast to x (one per channel, or one for all: nn.PReLU)."""
    xp = _xp(k, x, slope)
    return xp.where(xp.less(x, 0), xp.multiply(x, slope), x)


def _hard_sigmoid(k: Kernels, x: Any, *, alpha: float = 0.2, beta: float = 0.5) -> Any:
    xp = _xp(k, x)
    y = xp.add(xp.multiply(x, np.float32(alpha)), np.float32(beta))
    return xp.minimum(xp.maximum(y, xp.zeros_like(y)), xp.ones_like(y))


def _hard_swish(k: Kernels, x: Any) -> Any:
    """HardSwish: x * HardSigmoid(x) with alpha 1/6, beta 1/2 (nn.Hardswish)."""
    return _xp(k, x).multiply(x, _hard_sigmoid(k, x, alpha=1 / 6, beta=0.5))


def _selu(k: Kernels, x: Any, *, alpha: float = 1.67326319217681884765625,
          gamma: float = 1.05070102214813232421875) -> Any:
    return _xp(k, x).multiply(_elu(k, x, alpha=alpha), np.float32(gamma))


def _mean(k: Kernels, *args: Any) -> Any:
    """Mean of several tensors, element-wise (broadcast)."""
    return _xp(k, *args).divide(_variadic("add")(k, *args), np.float32(len(args)))


def _sum_squares(xp: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
    return xp.sum(xp.multiply(x, x), axis=axis, keepdims=keepdims)


def _log_sum_exp(xp: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
    """log(sum(exp(x))), shifted by the maximum as ONNX Runtime computes it (no overflow at large x)."""
    top = xp.max(x, axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    out = xp.add(xp.log(xp.sum(xp.exp(xp.subtract(x, top)), axis=axis, keepdims=True)), top)
    return out if keepdims else xp.squeeze(out, axis=axis)


_REDUCERS: dict[str, Callable[..., Any]] = {
    "L1": lambda xp, x, axis, keepdims: xp.sum(xp.abs(x), axis=axis, keepdims=keepdims),
    "L2": lambda xp, x, axis, keepdims: xp.sqrt(_sum_squares(xp, x, axis, keepdims)),
    "SumSquare": _sum_squares,
    "LogSum": lambda xp, x, axis, keepdims: xp.log(xp.sum(x, axis=axis, keepdims=keepdims)),
    "LogSumExp": _log_sum_exp,
}


def _arg(name: str) -> OpFn:
    """ArgMax / ArgMin: the first index of the extreme value (``select_last_index``: the last), int64 (int32
    on JAX without ``jax_enable_x64``, as TopK's indices: ``onnx_jax.index_dtype``)."""
    def op(k: Kernels, x: Any, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0) -> Any:
        xp = _xp(k, x)
        a = _axis(axis, x.ndim)
        if not select_last_index:
            return getattr(xp, name)(x, axis=a, keepdims=bool(keepdims))
        last = int(x.shape[a]) - 1
        return xp.subtract(last, getattr(xp, name)(xp.flip(x, axis=a), axis=a, keepdims=bool(keepdims)))
    return op


def _shift_in_zero(k: Kernels, x: Any, axis: int) -> Any:
    """x moved one place along ``axis``, a zero first and its last value dropped (an exclusive CumSum)."""
    index: list[slice] = [slice(None)] * x.ndim
    index[axis] = slice(0, int(x.shape[axis]) - 1)
    head = x[tuple(index)] if _is_static(x) else k.take_slice(x, tuple(index))
    dtype = np.asarray(x).dtype if _is_static(x) else np.dtype(str(x.dtype).removeprefix("torch."))
    zero = _pad_block(k, x, axis, 1, np.zeros((), dtype))
    return _xp(k, zero, head).concat([zero, head], axis=axis)


def _cumsum(k: Kernels, x: Any, axis: Any, *, exclusive: int = 0, reverse: int = 0) -> Any:
    """CumSum (a normalising flow's cumulative pT, a sorted-constituent index): ``exclusive`` starts at
    zero, ``reverse`` sums from the end."""
    xp = _xp(k, x)
    a = _axis(_ints(axis, "CumSum axis")[0], x.ndim)
    if reverse:
        x = xp.flip(x, axis=a)
    if exclusive:
        x = _shift_in_zero(k, x, a)
    y = xp.cumulative_sum(x, axis=a)
    return xp.flip(y, axis=a) if reverse else y


def _instance_norm(k: Kernels, x: Any, scale: Any, bias: Any, *, epsilon: float = 1e-5) -> Any:
    """InstanceNormalization: each (jet, channel) normalised over its spatial axes, then per-channel affine."""
    xp = _xp(k, x, scale, bias)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y, _, _ = _normalise(xp, x, tuple(range(2, x.ndim)), epsilon)
    return xp.add(xp.multiply(y, _xp(k, scale).reshape(scale, shape)), _xp(k, bias).reshape(bias, shape))


_SCATTER_REDUCTIONS = ("none", "add", "mul", "max", "min")


def _positive_indices(k: Kernels, indices: Any, size: Any) -> Any:
    """Negative indices counted from the end (``size``: a scalar or an array broadcast against them)."""
    if _is_static(indices):
        indices = np.asarray(indices).astype(np.int64)
        return np.where(indices < 0, indices + size, indices)
    xp = k.xp  # the indices' own integer type (int32 on JAX without x64: no int64 asked for, no warning)
    return xp.where(xp.less(indices, 0), xp.add(indices, size), indices)


def _scatter_static(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, axis: int,
                    reduction: str) -> np.ndarray:
    """numpy's ScatterElements (constant folding)."""
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis] = indices
    out = np.array(data, copy=True)
    if reduction == "none":
        out[tuple(grid)] = updates
    else:
        ufunc = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}[reduction]
        ufunc.at(out, tuple(grid), updates)
    return out


def _scatter_elements(k: Kernels, data: Any, indices: Any, updates: Any, *, axis: int = 0,
                      reduction: str = "none") -> Any:
    """ScatterElements (``index_add_`` / ``scatter_add_`` message passing in a Deep-Sets or GNN model):
    ``updates`` written (or added, multiplied, max'd, min'd) into a copy of ``data`` at ``indices`` along
    ``axis``. With reduction ``none`` and a repeated index ONNX leaves the winner undefined."""
    if reduction not in _SCATTER_REDUCTIONS:
        raise ModuleError(f"ScatterElements reduction {reduction!r} is not implemented")
    a = _axis(axis, data.ndim)
    indices = _positive_indices(k, indices, int(data.shape[a]))
    if _is_static(data, indices, updates):
        return _scatter_static(np.asarray(data), indices, np.asarray(updates), a, reduction)
    return k.scatter(data, indices, updates, a, reduction)


def _linear_index(k: Kernels, shape: Sequence[Any], indices: Any) -> tuple[Any, tuple[int, ...]]:
    """ScatterND/GatherND's index tuples (last axis of ``indices``, q long) as one index into the first q axes
    of an array of ``shape`` flattened, and the shape of what one index addresses."""
    q = int(indices.shape[-1])
    dims = [int(d) for d in shape[:q]]
    strides = np.asarray([int(np.prod(dims[i + 1:], dtype=np.int64)) for i in range(q)], np.int64)
    indices = _positive_indices(k, indices, np.asarray(dims, np.int64))
    xp = _xp(k, indices)
    flat = xp.sum(xp.multiply(indices, strides), axis=-1)
    return xp.reshape(flat, (-1,)), tuple(int(d) for d in shape[q:])


def _scatter_nd(k: Kernels, data: Any, indices: Any, updates: Any, *, reduction: str = "none") -> Any:
    """ScatterND (the dynamo exporter's ``index_add_``, ``x[:, idx] = v``): the index tuples made one index
    into the data's leading axes flattened, then ScatterElements along that axis."""
    if reduction not in _SCATTER_REDUCTIONS:
        raise ModuleError(f"ScatterND reduction {reduction!r} is not implemented")
    flat, rest = _linear_index(k, data.shape, indices)
    n = int(np.prod(indices.shape[:-1], dtype=np.int64))
    xp = _xp(k, data, flat, updates)
    rows = xp.reshape(data, (-1, *rest))
    wide = _xp(k, flat).broadcast_to(_xp(k, flat).reshape(flat, (n,) + (1,) * len(rest)), (n, *rest))
    out = _scatter_elements(k, rows, wide, _xp(k, updates).reshape(updates, (n, *rest)), axis=0, reduction=reduction)
    return _xp(k, out).reshape(out, tuple(int(d) for d in data.shape))


@lru_cache(maxsize=64)
def _batch_offsets(entries: int, per_entry: int, tuples: int) -> np.ndarray:
    """GatherND's static offset of each batch entry, repeated for its ``tuples`` index tuples: one read-only array
    per shape, the same object on every call. PyTorch copies a static value to the device once per value, a large one
    (a bucket of 32 jets' 100 x 4 neighbours: 100 kB) known by its memory: an array made again on every call was
    copied again inside the CUDA-graph capture, which CUDA refuses (every kNN network refused its graphs)."""
    offsets = np.repeat(np.arange(entries, dtype=np.int64) * per_entry, tuples)
    offsets.setflags(write=False)
    return offsets


def _gather_nd(k: Kernels, data: Any, indices: Any, *, batch_dims: int = 0) -> Any:
    """GatherND: the index tuples made one index into the data's leading axes flattened. With ``batch_dims``
    b (tf2onnx writes ``tf.gather(..., batch_dims=1)``, Keras' ``take_along_axis``: EdgeConv's neighbours of
    each jet) the first b axes of data and indices pair up: each tuple indexes its own batch entry, one static
    offset per entry added to its flat index."""
    b, q = int(batch_dims), int(indices.shape[-1])
    if b < 0 or b >= min(data.ndim, indices.ndim) or b + q > data.ndim \
            or [int(d) for d in data.shape[:b]] != [int(d) for d in indices.shape[:b]]:
        raise ModuleError(f"GatherND with batch_dims={b} does not fit data {tuple(data.shape)} and indices "
                          f"{tuple(indices.shape)}")
    flat, rest = _linear_index(k, data.shape[b:], indices)
    xp = _xp(k, data, flat)
    if b:
        entries = int(np.prod([int(d) for d in data.shape[:b]], dtype=np.int64))
        per_entry = int(np.prod([int(d) for d in data.shape[b:b + q]], dtype=np.int64))
        tuples = int(np.prod([int(d) for d in indices.shape[b:-1]], dtype=np.int64))
        offsets = _batch_offsets(entries, per_entry, tuples)
        flat = _xp(k, flat).add(flat, offsets.astype(flat.dtype) if _is_static(flat) else offsets)
    taken = xp.take(xp.reshape(data, (-1, *rest)), flat, axis=0)
    return xp.reshape(taken, tuple(int(d) for d in indices.shape[:-1]) + rest)


# ---------------------------------------------------------------------- quantisation (QDQ)
# the integer types QuantizeLinear / DequantizeLinear run here (and int32 into DequantizeLinear: a QDQ model's
# biases); 4-bit and float8 ones are refused in one line
_QUANT_TYPES = tuple(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16))
_INT32 = np.dtype(np.int32)


def _per_axis(k: Kernels, v: Any, x: Any, axis: int, op: str) -> Any:
    """A scale or zero point as ONNX broadcasts it: a scalar for the whole tensor, or one value per slice of
    ``axis`` (per-channel weights: ``quantize_static(per_channel=True)``); blocked ones are refused by the op."""
    if v.ndim == 0 or (v.ndim == 1 and int(v.shape[0]) == 1):
        return _xp(k, v).reshape(v, ())
    if v.ndim != 1 or int(v.shape[0]) != int(x.shape[_axis(axis, x.ndim)]):
        raise ModuleError(f"{op} scale of shape {tuple(v.shape)} for an input of shape {tuple(x.shape)} on axis "
                          f"{axis} is not implemented")
    shape = [1] * x.ndim
    shape[_axis(axis, x.ndim)] = -1
    return _xp(k, v).reshape(v, tuple(shape))


def _quant_dtype(dtype: Any, op: str) -> np.dtype:
    """``dtype`` as numpy's, if QuantizeLinear / DequantizeLinear run it here (int8, uint8, int16, uint16; int32
    into DequantizeLinear)."""
    try:
        dt = np.dtype(str(dtype).removeprefix("torch."))
    except TypeError:
        dt = None
    if dt not in _QUANT_TYPES and not (dt == _INT32 and op == "DequantizeLinear"):
        raise ModuleError(f"{op} of type {dtype} is not implemented (8- and 16-bit integers only; use backend: "
                          f"onnxruntime for this model)")
    return dt


def _quantize_linear(k: Kernels, x: Any, scale: Any, zero_point: Any = None, *, axis: int = 1, saturate: int = 1,
                     block_size: int = 0, output_dtype: int = 0, precision: int = 0) -> Any:
    """QuantizeLinear as ONNX (and ONNX Runtime's kernel) computes it: x / scale rounded half to even, the zero
    point added, saturated to the integer type (the zero point's; output_dtype; else uint8)."""
    if block_size:
        raise ModuleError(f"QuantizeLinear with block_size={block_size} is not implemented")
    if output_dtype:
        from onnx.helper import tensor_dtype_to_np_dtype

        dtype = _quant_dtype(tensor_dtype_to_np_dtype(output_dtype), "QuantizeLinear")
    else:
        dtype = _quant_dtype(np.asarray(zero_point).dtype if _is_static(zero_point) else zero_point.dtype,
                             "QuantizeLinear") if zero_point is not None else np.dtype(np.uint8)
    xp = _xp(k, x, scale, zero_point)
    info = np.iinfo(dtype)
    s = _per_axis(k, scale, x, axis, "QuantizeLinear")
    q = xp.round(np.divide(x, s) if _is_static(x, s) else k.exact_divide(x, s))  # numpy divides as IEEE does
    if zero_point is not None:
        zp = _per_axis(k, zero_point, x, axis, "QuantizeLinear")
        q = xp.add(q, _xp(k, zp).astype(zp, np.dtype(np.float32)))
    q = xp.minimum(xp.maximum(q, np.float32(info.min)), np.float32(info.max))
    return xp.astype(q, dtype)


def _dequantize_linear(k: Kernels, x: Any, scale: Any, zero_point: Any = None, *, axis: int = 1,
                       block_size: int = 0, output_dtype: int = 0) -> Any:
    """DequantizeLinear: (x - zero point) * scale, the difference taken in int32 (exact), in the scale's type."""
    if block_size:
        raise ModuleError(f"DequantizeLinear with block_size={block_size} is not implemented")
    _quant_dtype(np.asarray(x).dtype if _is_static(x) else x.dtype, "DequantizeLinear")
    xp = _xp(k, x, scale, zero_point)
    v = _xp(k, x).astype(x, _INT32)
    if zero_point is not None:
        zp = _per_axis(k, zero_point, x, axis, "DequantizeLinear")
        v = _xp(k, v, zp).subtract(v, _xp(k, zp).astype(zp, _INT32))
    s = _per_axis(k, scale, x, axis, "DequantizeLinear")
    sdt = np.asarray(s).dtype if _is_static(s) else np.dtype(str(s.dtype).removeprefix("torch."))
    return xp.multiply(_xp(k, v).astype(v, sdt), s)


def _dynamic_quantize_linear(k: Kernels, x: Any) -> tuple[Any, Any, Any]:
    """DynamicQuantizeLinear as ONNX (and ONNX Runtime's kernel) computes it: the range of the whole tensor widened
    to hold 0, the scale its width / 255 (1 where the width is 0: ONNX Runtime's, for a tensor of zeros), the uint8
    zero point -min / scale clipped to 0..255 and rounded half to even, and x quantised as QuantizeLinear does.
    (y, scale, zero point). Why the range holds 0: zero padding cannot move it (``dynamic_quant``)."""
    xp = _xp(k, x)
    zero = np.float32(0)
    lo = xp.minimum(xp.min(x), zero)
    hi = xp.maximum(xp.max(x), zero)
    width = xp.subtract(hi, lo)
    scale = xp.where(width == zero, np.float32(1), np.divide(width, np.float32(255)) if _is_static(width)
                     else k.exact_divide(width, np.float32(255)))
    start = np.divide(lo, scale) if _is_static(lo, scale) else k.exact_divide(lo, scale)
    zp = xp.round(xp.minimum(xp.maximum(xp.subtract(zero, start), zero), np.float32(255)))
    zp = xp.astype(zp, np.dtype(np.uint8))
    return _quantize_linear(k, x, scale, zp), scale, zp


def _integer_operand(k: Kernels, v: Any, zero_point: Any, axis: int, op: str) -> Any:
    """``v - zero_point`` in int32 (exact), the zero point one per tensor or one per slice of ``axis``
    (MatMulInteger: a's rows, b's columns; ConvInteger: w's output channels)."""
    _quant_dtype(np.asarray(v).dtype if _is_static(v) else v.dtype, op)
    v32 = _xp(k, v).astype(v, _INT32)
    if zero_point is None:
        return v32
    zp = _per_axis(k, zero_point, v, axis, op)
    return _xp(k, v32, zp).subtract(v32, _xp(k, zp).astype(zp, _INT32))


def _matmul_integer(k: Kernels, a: Any, b: Any, a_zero_point: Any = None, b_zero_point: Any = None) -> Any:
    """MatMulInteger (``quantize_dynamic``'s MatMul): (a - its zero point) @ (b - its zero point) accumulated in
    int32, as ONNX Runtime does; a zero point per tensor, per row of a or per column of b."""
    a32 = _integer_operand(k, a, a_zero_point, -2, "MatMulInteger")
    b32 = _integer_operand(k, b, b_zero_point, -1, "MatMulInteger")
    return np.matmul(a32, b32) if _is_static(a32, b32) else k.integer_matmul(a32, b32)


def _conv_integer(k: Kernels, x: Any, w: Any, x_zero_point: Any = None, w_zero_point: Any = None,
                  **attrs: Any) -> Any:
    """ConvInteger (``quantize_dynamic``'s Conv): Conv of (x - its zero point) and (w - its zero point) in int32;
    padding is the zero point, a real 0, as in ONNX Runtime's kernel, so the shifted input is padded with 0."""
    strides, pads, dil = _conv_window(x, w, attrs, "ConvInteger")
    x32 = _integer_operand(k, x, x_zero_point, 1, "ConvInteger")
    w32 = _integer_operand(k, w, w_zero_point, 0, "ConvInteger")
    return k.integer_conv(x32, w32, strides, pads, dil, int(attrs.get("group", 1)))


# recurrent layers (ONNX LSTM, GRU, RNN): the activations a cell may name, with how many of the
# activation_alpha / activation_beta values each consumes, in the order the cell's activations come
_CELL_ACTIVATIONS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    "Sigmoid": (0, 0, lambda k, x: _sigmoid(k, x)),
    "Tanh": (0, 0, lambda k, x: _xp(k, x).tanh(x)),
    "Relu": (0, 0, lambda k, x: _relu(k, x)),
    "HardSigmoid": (1, 1, lambda k, x, a, b: _hard_sigmoid(k, x, alpha=a, beta=b)),
    "LeakyRelu": (1, 0, lambda k, x, a: _leaky_relu(k, x, alpha=a)),
    "Elu": (1, 0, lambda k, x, a: _elu(k, x, alpha=a)),
    "Softplus": (0, 0, lambda k, x: _softplus(k, x)),
    "Softsign": (0, 0, lambda k, x: _xp(k, x).divide(x, _xp(k, x).add(_xp(k, x).abs(x), np.float32(1)))),
}
_CELL_DEFAULTS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}
_ALPHA_DEFAULTS = {"HardSigmoid": (0.2, 0.5), "LeakyRelu": (0.01,), "Elu": (1.0,)}


def _cell_activations(op: str, n_dirs: int, attrs: dict[str, Any]) -> list[list[Callable[[Kernels, Any], Any]]]:
    """Per direction, the cell's activation functions (f, g, h for an LSTM), their alphas and betas bound."""
    per = len(_CELL_DEFAULTS[op])
    names = [n.decode() if isinstance(n, bytes) else n for n in attrs.get("activations") or []]
    names = names or list(_CELL_DEFAULTS[op]) * n_dirs
    if len(names) != per * n_dirs:
        raise ModuleError(f"{op} has {len(names)} activations for {n_dirs} direction(s) of {per}")
    alphas, betas = list(attrs.get("activation_alpha") or []), list(attrs.get("activation_beta") or [])
    out: list[Callable[[Kernels, Any], Any]] = []
    for name in names:
        if name not in _CELL_ACTIVATIONS:
            raise ModuleError(f"{op} activation {name!r} is not implemented ({', '.join(_CELL_ACTIVATIONS)} are)")
        n_alpha, n_beta, fn = _CELL_ACTIVATIONS[name]
        default = _ALPHA_DEFAULTS.get(name, ())
        args = ([float(alphas.pop(0)) if alphas else default[0]] if n_alpha else []) + \
               ([float(betas.pop(0)) if betas else default[1]] if n_beta else [])
        out.append(lambda k, x, fn=fn, args=tuple(args): fn(k, x, *args))
    return [out[d * per:(d + 1) * per] for d in range(n_dirs)]


def _gates(k: Kernels, x: Any, n: int) -> list[Any]:
    """The last axis of ``x`` cut into ``n`` equal gates."""
    size = int(x.shape[-1]) // n
    lead = (slice(None),) * (x.ndim - 1)
    return [x[lead + (slice(i * size, (i + 1) * size),)] if _is_static(x) else
            k.take_slice(x, lead + (slice(i * size, (i + 1) * size),)) for i in range(n)]


def _split_last(k: Kernels, x: Any, at: int) -> tuple[Any, Any]:
    """The last axis of ``x`` cut in two at ``at``."""
    lead = (slice(None),) * (x.ndim - 1)
    cut = (lead + (slice(0, at),), lead + (slice(at, None),))
    return tuple(x[c] if _is_static(x) else k.take_slice(x, c) for c in cut)  # type: ignore[return-value]


def _masked(k: Kernels, mask: Any, new: Any, old: Any) -> Any:
    """Past a jet's sequence length its state is held (``mask`` false); no mask: every step is real."""
    return new if mask is None else _xp(k, mask, new, old).where(mask, new, old)


def _lstm_step(k: Kernels, h: Any, c: Any, xw: Any, rt: Any, peep: Any, acts: list[Any], clip: float | None,
               input_forget: int) -> tuple[Any, Any]:
    """One LSTM step, gates in ONNX's iofc order: ``xw`` is X_t W^T + Wb + Rb, ``rt`` is R^T."""
    xp = _xp(k, xw, h, c)
    f_act, g_act, h_act = acts
    z = _clipped(k, xp.add(xw, _matmul(k, h, rt)), clip)
    if peep is None and not input_forget:  # the usual cell: f over the i, o, f gates at once (fewer ops to trace)
        iof, g = _split_last(k, z, 3 * int(z.shape[-1]) // 4)
        i, o, f = _gates(k, f_act(k, iof), 3)
        c_new = xp.add(xp.multiply(f, c), xp.multiply(i, g_act(k, g)))
        return xp.multiply(o, h_act(k, c_new)), c_new
    i, o, f, g = _gates(k, z, 4)
    if peep is not None:
        pi, po, pf = peep
        i, f = xp.add(i, xp.multiply(pi, c)), xp.add(f, xp.multiply(pf, c))
    i = f_act(k, i)
    f = xp.subtract(np.float32(1), i) if input_forget else f_act(k, f)
    c_new = xp.add(xp.multiply(f, c), xp.multiply(i, g_act(k, g)))
    if peep is not None:
        o = xp.add(o, xp.multiply(peep[1], c_new))
    return xp.multiply(f_act(k, o), h_act(k, c_new)), c_new


def _clipped(k: Kernels, x: Any, clip: float | None) -> Any:
    """A cell's gate input clipped to [-clip, clip] (the ``clip`` attribute); None: unclipped."""
    if clip is None:
        return x
    xp = _xp(k, x)
    return xp.minimum(xp.maximum(x, np.float32(-clip)), np.float32(clip))


def _gru_step(k: Kernels, h: Any, xw: Any, rt: Any, rbh: Any, acts: list[Any], clip: float | None,
              linear_before_reset: int) -> Any:
    """One GRU step, gates in ONNX's zrh order: ``xw`` is X_t W^T + Wb + Rb (Rb_h left out when it sits
    inside the reset gate's product, ``linear_before_reset``), ``rt`` is R^T."""
    xp = _xp(k, xw, h)
    xz, xr, xh = _gates(k, xw, 3)
    f_act, g_act = acts
    if linear_before_reset:
        hz, hr, hh = _gates(k, _matmul(k, h, rt), 3)
    else:
        rz, rr, rh = _gates(k, rt, 3)
        hz, hr = _matmul(k, h, rz), _matmul(k, h, rr)
    z = f_act(k, _clipped(k, xp.add(xz, hz), clip))
    r = f_act(k, _clipped(k, xp.add(xr, hr), clip))
    if linear_before_reset:
        cand = xp.add(xh, xp.multiply(r, xp.add(hh, rbh)))
    else:
        cand = xp.add(xh, _matmul(k, xp.multiply(r, h), rh))
    cand = g_act(k, _clipped(k, cand, clip))
    return xp.add(xp.multiply(xp.subtract(np.float32(1), z), cand), xp.multiply(z, h))


def _rnn_step(k: Kernels, h: Any, xw: Any, rt: Any, acts: list[Any], clip: float | None) -> Any:
    xp = _xp(k, xw, h)
    return acts[0](k, _clipped(k, xp.add(xw, _matmul(k, h, rt)), clip))


def _reverse_within(k: Kernels, x: Any, lengths: Any | None) -> Any:
    """``x`` (seq, batch, ...) with each jet's first ``length`` steps in reverse order (the rest where they
    are): a reverse direction runs over a jet's own steps only. Applied twice, the identity."""
    seq = int(x.shape[0])
    if lengths is None:
        return _xp(k, x).flip(x, axis=0)
    xp = _xp(k, x, lengths)
    t = np.arange(seq, dtype=np.int64).reshape(seq, 1)
    n = lengths if not _is_static(lengths) else np.asarray(lengths, np.int64)
    idx = xp.where(xp.less(t, n), xp.subtract(xp.subtract(n, 1), t), xp.add(xp.zeros_like(n), t))
    idx = xp.broadcast_to(xp.reshape(idx, (seq, -1) + (1,) * (x.ndim - 2)), tuple(int(d) for d in x.shape))
    return xp.take_along_axis(x, idx, axis=0)


def _fused_form(op: str, n_dirs: int, attrs: dict[str, Any], peepholes: Any, clip: float | None,
                input_forget: int, linear_before_reset: int, lengths: Any, seq: int) -> str | None:
    """The nonlinearity (``tanh``/``relu``) when the node is what PyTorch's ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``
    compute, else None: the default activations (an RNN's Tanh or Relu, the same both ways), no peepholes, no
    ``clip``, ``input_forget`` 0, a GRU's reset gate after its product (``linear_before_reset`` 1: PyTorch's only
    GRU), and every jet its full length (``sequence_lens`` absent or all the sequence: a folded constant). Jets of
    their own lengths keep the step loop: PyTorch wants them packed, and ``pack_padded_sequence`` takes the
    lengths on the host (a device-to-host sync per call, which no CUDA graph can capture)."""
    if peepholes is not None or clip is not None or input_forget or (op == "GRU" and not linear_before_reset):
        return None
    if lengths is not None and not (_is_static(lengths) and bool(np.all(np.asarray(lengths) == seq))):
        return None
    names = [n.decode() if isinstance(n, bytes) else n for n in attrs.get("activations") or []]
    names = names or list(_CELL_DEFAULTS[op]) * n_dirs
    if op == "RNN" and names in (["Tanh"] * n_dirs, ["Relu"] * n_dirs):
        return names[0].lower()
    return "tanh" if names == list(_CELL_DEFAULTS[op]) * n_dirs else None


def _recurrent(op: str) -> OpFn:
    """ONNX LSTM / GRU / RNN (every direction, ``layout`` 0 and 1, initial states, ``sequence_lens``, peepholes,
    ``clip``, the cell activations and their alphas). The forms an engine has its own layer for (``_fused_form``:
    PyTorch's ``nn.LSTM``/``nn.GRU``/``nn.RNN``, one op in a trace) run as that layer (``Kernels.recurrent_layer``);
    the others, and JAX's, as a step loop (``_step_loop``). Past a jet's ``sequence_lens`` its state is held and
    its Y is zero, as ONNX Runtime gives."""

    def run(k: Kernels, x: Any, w: Any, r: Any, b: Any = None, lengths: Any = None, h0: Any = None,
            c0: Any = None, peepholes: Any = None, *, hidden_size: int | None = None, direction: str = "forward",
            layout: int = 0, clip: float | None = None, input_forget: int = 0, linear_before_reset: int = 0,
            **acts_attrs: Any) -> tuple[Any, ...]:
        direction = direction.decode() if isinstance(direction, bytes) else direction
        dirs = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}.get(direction)
        if dirs is None:
            raise ModuleError(f"{op} direction {direction!r} is not implemented")
        if op != "LSTM" and c0 is not None:  # GRU/RNN have no 7th input; a name here is an exporter's error
            raise ModuleError(f"{op} has no initial cell state input")
        acts = _cell_activations(op, len(dirs), acts_attrs)
        hidden = int(r.shape[-1])
        if hidden_size is not None and int(hidden_size) != hidden:
            raise ModuleError(f"{op} hidden_size {hidden_size} but R is {tuple(r.shape)}")
        xp = _xp(k, x)
        if layout:
            x = xp.permute_dims(x, (1, 0, 2))
            h0 = _xp(k, h0).permute_dims(h0, (1, 0, 2)) if h0 is not None else None
            c0 = _xp(k, c0).permute_dims(c0, (1, 0, 2)) if c0 is not None else None
        seq, batch = int(x.shape[0]), int(x.shape[1])
        how = _fused_form(op, len(dirs), acts_attrs, peepholes, clip, input_forget, linear_before_reset, lengths, seq)
        fused = None if how is None or _is_static(x) else k.recurrent_layer(
            op, x, w, r, b, h0, c0, reverse=dirs == (True,), nonlinearity=how)
        y, y_h, y_c = fused if fused is not None else _step_loop(
            k, op, x, w, r, b, lengths, h0, c0, peepholes, dirs, acts, clip, input_forget, linear_before_reset)
        if layout:
            y = _xp(k, y).permute_dims(y, (2, 0, 1, 3))
            y_h = _xp(k, y_h).permute_dims(y_h, (1, 0, 2))
            y_c = _xp(k, y_c).permute_dims(y_c, (1, 0, 2)) if y_c is not None else None
        return (y, y_h, y_c) if op == "LSTM" else (y, y_h)
    return run


def _step_loop(k: Kernels, op: str, x: Any, w: Any, r: Any, b: Any, lengths: Any, h0: Any, c0: Any,
               peepholes: Any, dirs: tuple[bool, ...], acts: list[list[Any]], clip: float | None, input_forget: int,
               linear_before_reset: int) -> tuple[Any, Any, Any]:
    """Every form, one cell step at a time through ``Kernels.scan``: time-major ``x``; (Y, Y_h, Y_c or None)."""
    n_gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    hidden = int(r.shape[-1])
    seq, batch = int(x.shape[0]), int(x.shape[1])
    zeros = np.zeros((batch, hidden), np.float32)
    mask = None
    if lengths is not None:
        t = np.arange(seq, dtype=np.int64).reshape(seq, 1, 1)
        n = lengths if not _is_static(lengths) else np.asarray(lengths, np.int64)
        mask = _xp(k, n).less(t, _xp(k, n).reshape(n, (1, batch, 1)))  # (seq, batch, 1): a real step
    ys, hs, cs = [], [], []
    for d, backward in enumerate(dirs):
        wd, rd = w[d], r[d]
        xw = _matmul(k, x, _transpose(k, wd))  # (seq, batch, gates * hidden)
        bias = None
        rbh = None
        if b is not None:
            wb, rb = b[d][: n_gates * hidden], b[d][n_gates * hidden:]
            if op == "GRU" and linear_before_reset:  # Rb_h stays inside the reset gate's product
                rbh = rb[2 * hidden:]
                rb = _xp(k, rb).concat([rb[: 2 * hidden], _xp(k, rb).zeros_like(rbh)], axis=0)
            bias = _xp(k, wb, rb).add(wb, rb)
        if rbh is None:
            rbh = np.zeros(hidden, np.float32)
        if bias is not None:
            xw = _xp(k, xw, bias).add(xw, bias)
        if backward:
            xw = _reverse_within(k, xw, lengths)
        rt = _transpose(k, rd)
        h = h0[d] if h0 is not None else zeros
        c = c0[d] if c0 is not None else zeros
        act = acts[d]
        peep = None
        if peepholes is not None:
            peep = tuple(_gates(k, peepholes[d], 3))
        if op == "LSTM":
            def step(carry: tuple[Any, ...], xs: tuple[Any, ...], rt=rt, peep=peep, act=act) -> tuple[Any, Any]:
                hp, cp = carry
                hn, cn = _lstm_step(k, hp, cp, xs[0], rt, peep, act, clip, input_forget)
                m = xs[1] if len(xs) > 1 else None
                hn, cn = _masked(k, m, hn, hp), _masked(k, m, cn, cp)
                return (hn, cn), (hn if m is None else _xp(k, m, hn).where(m, hn, _xp(k, hn).zeros_like(hn)))
            carry0: tuple[Any, ...] = (h, c)
        else:
            def step(carry: tuple[Any, ...], xs: tuple[Any, ...], rt=rt, act=act, rbh=rbh) -> tuple[Any, Any]:
                hp, = carry
                hn = (_gru_step(k, hp, xs[0], rt, rbh, act, clip, linear_before_reset) if op == "GRU"
                      else _rnn_step(k, hp, xs[0], rt, act, clip))
                m = xs[1] if len(xs) > 1 else None
                hn = _masked(k, m, hn, hp)
                return (hn,), (hn if m is None else _xp(k, m, hn).where(m, hn, _xp(k, hn).zeros_like(hn)))
            carry0 = (h,)
        steps = (xw,) if mask is None else (xw, mask)
        final, y = k.scan(step, carry0, steps)
        if mask is not None:  # a jet of no step at all ends with zero states, not its initial ones (ONNX Runtime)
            final = tuple(_masked(k, mask[0] if seq else None, f, _xp(k, f).zeros_like(f)) for f in final)
        if backward:
            y = _reverse_within(k, y, lengths)
        ys.append(y)
        hs.append(final[0])
        if op == "LSTM":
            cs.append(final[1])
    y = _xp(k, *ys).stack(ys, axis=1)  # (seq, dirs, batch, hidden)
    return y, _xp(k, *hs).stack(hs, axis=0), (_xp(k, *cs).stack(cs, axis=0) if cs else None)


def _reverse_sequence(k: Kernels, x: Any, lengths: Any, *, batch_axis: int = 1, time_axis: int = 0) -> Any:
    """ONNX ReverseSequence: each batch element's first ``lengths[b]`` steps reversed along the time axis, the rest
    as they are (tf2onnx's Keras ``Bidirectional`` / ``go_backwards`` recurrent layers). A gather at the reversed
    positions, worked out in numpy when the lengths are static, on the engine when they come from the input."""
    steps, batch = int(x.shape[time_axis]), int(x.shape[batch_axis])
    t = np.arange(steps, dtype=np.int64).reshape(steps, 1)
    xp = _xp(k, lengths)
    n = xp.reshape(xp.astype(lengths, np.dtype(np.int64)), (1, batch))
    idx = xp.where(xp.less(t, n), xp.subtract(xp.subtract(n, 1), t), xp.broadcast_to(t, (steps, batch)))
    if time_axis > batch_axis:
        idx = xp.permute_dims(idx, (1, 0))
    shape = [1] * x.ndim
    shape[time_axis], shape[batch_axis] = steps, batch
    idx = xp.broadcast_to(xp.reshape(idx, tuple(shape)), tuple(x.shape))
    return _xp(k, x, idx).take_along_axis(x, idx, axis=time_axis)


def _loop(k: Kernels, m: Any = None, cond: Any = None, *init: Any, body: onnx_control.Subgraph,
          outer: dict[str, Any], node: str = "") -> tuple[Any, ...]:
    """ONNX Loop: ``for i in range(M) while cond`` over the body, (iteration_num, condition, carried...) ->
    (condition, carried..., scan outputs...); the node gives the last carried values and the scan outputs stacked.
    M and the condition must be static (``onnx_control.check_loops`` refuses the model at load otherwise)."""
    if m is not None and not _is_static(m):
        raise ModuleError("its trip count (M) depends on the input's values; use backend: onnxruntime for this model")
    if cond is not None and not _is_static(cond):
        raise ModuleError("its initial condition depends on the input's values; use backend: onnxruntime for this "
                          "model")
    n = len(init)
    go = True if cond is None else bool(np.asarray(cond).reshape(-1)[0])
    finals, ys = onnx_control.iterate(k, _HOST, body, outer, init, carried=body.inputs[2:2 + n],
                                      carried_out=body.outputs[1:1 + n], scan_out=body.outputs[1 + n:],
                                      trip=None if m is None else _ints(m, "Loop M")[0], counter=body.inputs[0],
                                      cond=(body.inputs[1], body.outputs[0], go), node=node)
    return (*finals, *ys)


def _scan(k: Kernels, *inputs: Any, body: onnx_control.Subgraph, outer: dict[str, Any], num_scan_inputs: int,
          node: str = "",
          scan_input_axes: Sequence[int] | None = None, scan_input_directions: Sequence[int] | None = None,
          scan_output_axes: Sequence[int] | None = None,
          scan_output_directions: Sequence[int] | None = None) -> tuple[Any, ...]:
    """ONNX Scan (opset 9+; opset 8's batch axis is refused at load): the states carried, each scan input sliced
    along its axis (reversed where its direction is 1), each scan output stacked along its axis (reversed where its
    direction is 1)."""
    n_states = len(inputs) - num_scan_inputs
    if num_scan_inputs < 1 or n_states < 0:
        raise ModuleError(f"num_scan_inputs {num_scan_inputs} does not fit its {len(inputs)} inputs")
    xs = []
    for j, x in enumerate(inputs[n_states:]):
        axis = _axis(int((scan_input_axes or [0] * num_scan_inputs)[j]), x.ndim)
        xp = _xp(k, x)
        x = xp.permute_dims(x, (axis, *(d for d in range(x.ndim) if d != axis))) if axis else x
        xs.append(xp.flip(x, axis=0) if (scan_input_directions or [0] * num_scan_inputs)[j] else x)
    lengths = {int(x.shape[0]) for x in xs}
    if len(lengths) != 1:
        raise ModuleError(f"its scan inputs have different lengths {sorted(lengths)}")
    n_out = len(body.outputs) - n_states
    finals, ys = onnx_control.iterate(k, _HOST, body, outer, inputs[:n_states], carried=body.inputs[:n_states],
                                      carried_out=body.outputs[:n_states], scan_out=body.outputs[n_states:],
                                      scanned=list(zip(body.inputs[n_states:], xs)), trip=lengths.pop(),
                                      node=node)
    out = []
    for j, y in enumerate(ys):
        xp = _xp(k, y)
        y = xp.flip(y, axis=0) if (scan_output_directions or [0] * n_out)[j] else y
        axis = _axis(int((scan_output_axes or [0] * n_out)[j]), y.ndim)
        if axis:
            order = list(range(1, y.ndim))
            order.insert(axis, 0)
            y = xp.permute_dims(y, tuple(order))
        out.append(y)
    return (*finals, *out)


def _if(k: Kernels, cond: Any, *, then_branch: onnx_control.Subgraph, else_branch: onnx_control.Subgraph,
        outer: dict[str, Any]) -> tuple[Any, ...]:
    """ONNX If: the taken branch when the condition is static, else the engine's conditional (``onnx_control``)."""
    return onnx_control.run_if(k, _HOST, cond, then_branch, else_branch, outer)


# ---------------------------------------------------------------------- sequences
# A sequence (torch.jit.script's list: ``torch.unbind``/``split``, ``outs.append``, ``torch.stack``) is a Python list
# of the engine's values: its length is static (as a shape is), its elements need not be.
def _sequence_empty(k: Kernels, *, dtype: int = 1) -> list[Any]:
    return []


def _sequence_construct(k: Kernels, *xs: Any) -> list[Any]:
    return list(xs)


def _sequence_ints(value: Any, what: str) -> list[int]:
    """A position or split sizes: static, or the sequence (or what is taken from it) depends on the values."""
    if not _is_static(value):
        raise ModuleError(f"its {what} depends on the input's values, so what its sequence holds is data-dependent, "
                          f"which the ONNX translator's static graphs per batch bucket cannot hold; use backend: "
                          f"onnxruntime for this model")
    return _ints(value, what)


def _position(seq: list[Any], position: Any, what: str, end: int) -> int:
    """A static position in a sequence of ``len(seq)``, negative counted from the end, within [-n, end]."""
    i = _sequence_ints(position, "position")[0]
    if not -len(seq) <= i <= end:
        raise ModuleError(f"{what} position {i} is outside its sequence of {len(seq)}")
    return i + len(seq) if i < 0 else i


def _sequence_at(k: Kernels, seq: list[Any], position: Any) -> Any:
    return seq[_position(seq, position, "SequenceAt", len(seq) - 1)]


def _sequence_length(k: Kernels, seq: list[Any]) -> np.ndarray:
    return np.array(len(seq), np.int64)


def _sequence_insert(k: Kernels, seq: list[Any], x: Any, position: Any = None) -> list[Any]:
    i = len(seq) if position is None else _position(seq, position, "SequenceInsert", len(seq))
    return [*seq[:i], x, *seq[i:]]


def _sequence_erase(k: Kernels, seq: list[Any], position: Any = None) -> list[Any]:
    i = len(seq) - 1 if position is None else _position(seq, position, "SequenceErase", len(seq) - 1)
    return [*seq[:i], *seq[i + 1:]]


def _split_to_sequence(k: Kernels, x: Any, split: Any = None, *, axis: int = 0, keepdims: int = 1) -> list[Any]:
    """Parts of size 1 (the axis dropped unless ``keepdims``: ``torch.unbind``), of one size (the last smaller:
    ``torch.split(x, 25)``) or of the sizes given."""
    a = _axis(axis, x.ndim)
    size = int(x.shape[a])
    if split is None:
        parts = _split(k, x, np.ones(size, np.int64), axis=a)
        return [_squeeze(k, p, np.array([a])) for p in parts] if not keepdims else list(parts)
    sizes = _sequence_ints(split, "split")
    if np.ndim(split) == 0:
        sizes = [sizes[0]] * (size // sizes[0]) + ([size % sizes[0]] if size % sizes[0] else [])
    return list(_split(k, x, np.asarray(sizes, np.int64), axis=a))


def _concat_from_sequence(k: Kernels, seq: list[Any], *, axis: int, new_axis: int = 0) -> Any:
    """The sequence's tensors joined along ``axis``, or stacked on a new one there (``torch.stack``)."""
    if not seq:
        raise ModuleError("its sequence is empty, so its output has no shape; use backend: onnxruntime for this model")
    xp = _xp(k, *seq)
    if new_axis:
        return xp.stack(list(seq), axis=_axis(axis, seq[0].ndim + 1))
    return xp.concat(list(seq), axis=_axis(axis, seq[0].ndim))


OPS: dict[str, OpFn] = {
    "Abs": _unary("abs"), "Neg": _unary("negative"), "Exp": _unary("exp"), "Log": _unary("log"),
    "Sqrt": _unary("sqrt"), "Tanh": _unary("tanh"), "Reciprocal": _reciprocal,
    "Not": _unary("logical_not"), "Relu": _relu,
    "Sigmoid": _sigmoid, "Elu": _elu, "LeakyRelu": _leaky_relu, "Identity": _identity,
    "Add": _binary("add"), "Sub": _binary("subtract"), "Mul": _binary("multiply"), "Div": _div,
    "Pow": _pow, "Greater": _binary("greater"), "Less": _binary("less"), "Equal": _binary("equal"),
    "And": _binary("logical_and"), "Or": _binary("logical_or"),
    "Max": _variadic("maximum"), "Min": _variadic("minimum"), "Where": _where,
    "Constant": _constant, "Cast": _cast, "Shape": _shape, "ConstantOfShape": _constant_of_shape, "Reshape": _reshape,
    "Transpose": _transpose, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Concat": _concat,
    "Slice": _slice, "Tile": _tile, "Expand": _expand, "Flatten": _flatten, "Gather": _gather,
    "GatherElements": _gather_elements,
    "ReduceSum": _reduce("sum"), "ReduceMin": _reduce("min"), "ReduceMax": _reduce("max"),
    "ReduceMean": _reduce("mean"),
    "MatMul": _matmul, "Gemm": _gemm, "Conv": _conv, "ConvTranspose": _conv_transpose,
    "AveragePool": _average_pool, "Softmax": _coerced(_softmax_axis),
    "Erf": _erf, "Gelu": _gelu, "LayerNormalization": _layer_norm, "BatchNormalization": _batch_norm,
    "GlobalAveragePool": _global_pool("mean"), "GlobalMaxPool": _global_pool("max"), "Clip": _clip,
    "Softplus": _softplus, "LogSoftmax": _coerced(_log_softmax_axis), "Mod": _mod, "Einsum": _einsum,
    "TopK": _topk, "MaxPool": _max_pool, "Split": _split, "Dropout": _dropout, "Range": _range,
    "GreaterOrEqual": _binary("greater_equal"), "LessOrEqual": _binary("less_equal"),
    "Sin": _unary("sin"), "Cos": _unary("cos"), "Floor": _unary("floor"), "Ceil": _unary("ceil"),
    "Sign": _unary("sign"), "Pad": _pad, "Resize": _resize, "IsNaN": _unary("isnan"),
    # 2026-12-07: recurrent, scatter and normalising-flow networks users bring
    "LSTM": _recurrent("LSTM"), "GRU": _recurrent("GRU"), "RNN": _recurrent("RNN"),
    "ScatterElements": _scatter_elements, "ScatterND": _scatter_nd, "GatherND": _gather_nd, "CumSum": _cumsum,
    "ArgMax": _arg("argmax"), "ArgMin": _arg("argmin"), "PRelu": _prelu, "HardSigmoid": _hard_sigmoid,
    "HardSwish": _hard_swish, "Selu": _selu, "InstanceNormalization": _instance_norm, "Sum": _variadic("add"),
    "Mean": _mean, "ReduceProd": _reduce("prod"), "Loop": _loop, "Scan": _scan, "ReverseSequence": _reverse_sequence,
    "QuantizeLinear": _quantize_linear, "DequantizeLinear": _dequantize_linear,  # quantize_static's QDQ format
    # quantize_dynamic's ops: one scale per call from the whole tensor (``dynamic_quant`` says when padding is harmless)
    "DynamicQuantizeLinear": _dynamic_quantize_linear, "MatMulInteger": _matmul_integer, "ConvInteger": _conv_integer,
    **{f"Reduce{name}": _reduce(name) for name in _REDUCERS},
    # 2026-12-07: If, and sequences of a static length (torch.jit.script's if and lists; torch.cond, tf.cond)
    "If": _if, "SequenceEmpty": _sequence_empty, "SequenceConstruct": _sequence_construct, "SequenceAt": _sequence_at,
    "SequenceLength": _sequence_length, "SequenceInsert": _sequence_insert, "SequenceErase": _sequence_erase,
    "SplitToSequence": _split_to_sequence, "ConcatFromSequence": _concat_from_sequence,
}
# reductions: an ``axes`` attribute (older opsets) is passed on as ``axes_attr``, beside the input form
_REDUCE_OPS = ("ReduceSum", "ReduceMin", "ReduceMax", "ReduceMean", "ReduceProd", *(f"Reduce{n}" for n in _REDUCERS))
# ops whose output's shape (or which of its subgraphs runs) depends on the input's values: never translated
# (JAX and PyTorch run one static graph per batch bucket); what the shape depends on, and who runs them
DATA_DEPENDENT: dict[str, tuple[str, str]] = {
    "NonZero": ("is the count of non-zero values (boolean indexing: x[mask])", "ONNX Runtime"),
    "Compress": ("is the count of true conditions", "ONNX Runtime"),
    "Unique": ("is the count of distinct values", "ONNX Runtime"),
}
# Loop and Scan (onnx_control) run when their trip count is static; a Loop whose count or condition depends on
# a value is refused at load (onnx_control.check_loops). If runs: its branch picked when the condition is static,
# else both branches held by the engine's conditional, refused at the first trace when their outputs' shapes differ
_SHAPE_OPS = onnx_control.SHAPE_OPS  # ops whose output is static even when their input is not


# ---------------------------------------------------------------------- the graph
Step = tuple[str, OpFn, list[str], list[str], dict[str, Any]]  # op type, op, inputs, outputs, attributes


def run_plan(k: Kernels, plan: Sequence[Step], env: dict[str, Any]) -> None:
    """Run ``plan``'s steps on the values in ``env``, adding their outputs; a step holding a body (Loop, Scan) also
    gets the outer values its body reads. A ModuleError names the node."""
    for op_type, op, ins, outs, attrs in plan:
        args = [env[n] if n else None for n in ins]
        while args and args[-1] is None:  # trailing optional inputs left out
            args.pop()
        subs = onnx_control.subgraphs(attrs)
        extra = {"outer": {n: env[n] for sub in subs for n in sub.free}} if subs else {}
        try:
            result = op(k, *args, **attrs, **extra)
        except ModuleError as exc:
            raise ModuleError(f"{op_type} node {outs[0]!r}: {exc}") from None
        if type(result) is tuple:  # several outputs (TopK, Split, LayerNormalization, Dropout); "" is one left out
            for name, value in zip(outs, result):
                if name:
                    env[name] = value
        else:
            env[outs[0]] = result


_HOST = onnx_control.Host(run_plan, _is_static, lambda k, values: _xp(k, *values).stack(values, axis=0))


@dataclass
class OnnxFunction:
    """A translated graph: ``fn(*xs)`` -> tuple of outputs in ``output_names`` order, one array per model input in
    the model's input order (jit it, or ``specialize`` it per batch size for an eager engine). Several inputs are
    ParticleNet's ``points``, ``features``, ``mask``: each bound to its graph name, nothing else differs."""

    model: Path
    engine: str
    input_names: tuple[str, ...]
    input_shapes: tuple[tuple[Any, ...], ...]  # per input; dynamic dims as their dim_param string (or None)
    input_dtypes: tuple[np.dtype, ...]
    output_names: list[str]
    ops: list[str]  # op types used, sorted
    plan: list[Step]
    consts: dict[str, np.ndarray]
    kernels: Kernels
    output_types: dict[str, str] = field(default_factory=dict)  # name -> ONNX Runtime's type string (output_types)

    def fn(self, *xs: Any) -> tuple[Any, ...]:
        env: dict[str, Any] = dict(self.consts)
        env.update(self._bind(xs))
        self._execute(self.plan, env)
        return tuple(env[name] for name in self.output_names)

    def _bind(self, xs: tuple[Any, ...]) -> dict[str, Any]:
        """The model's inputs by name; a wrong count is a bug of the caller, said at trace time, never run."""
        if len(xs) != len(self.input_names):
            raise TypeError(f"{self.engine}: model {self.model} takes {len(self.input_names)} input(s) "
                            f"{list(self.input_names)}, got {len(xs)}")
        return dict(zip(self.input_names, xs))

    def _execute(self, plan: Sequence[Step], env: dict[str, Any]) -> None:
        try:
            run_plan(self.kernels, plan, env)
        except ModuleError as exc:
            raise ModuleError(f"{self.engine}: model {self.model}: {exc}") from None

    def specialize(self, *examples: Any) -> Callable[..., tuple[Any, ...]]:
        """The graph for inputs shaped like ``examples`` (one per model input), its input-independent part
        evaluated once (``examples`` are run through it once): what an eager engine runs per call, with every
        static value a fixed object (so an engine can keep its device copy). A one-input model's function
        takes its one array as before, with no per-call work for the inputs' count."""
        env: dict[str, Any] = dict(self.consts)
        env.update(self._bind(examples))
        live: set[str] = set(self.input_names)
        runtime: list[Step] = []
        for step in self.plan:
            op_type, _, ins, outs, _ = step
            self._execute([step], env)
            if op_type not in _SHAPE_OPS and any(n in live for n in onnx_control.reads(step)):
                live.update(outs)
                runtime.append(step)
        fixed = {name: value for name, value in env.items() if name not in live}
        names, execute, inputs = self.output_names, self._execute, self.input_names

        if len(inputs) == 1:  # the shipped models: the input bound as before, no tuple per call
            (only,) = inputs

            def run(x: Any) -> tuple[Any, ...]:
                values = dict(fixed)
                values[only] = x
                execute(runtime, values)
                return tuple(values[name] for name in names)

            return run

        def run_inputs(*xs: Any) -> tuple[Any, ...]:
            values = dict(fixed)
            values.update(zip(inputs, xs))
            execute(runtime, values)
            return tuple(values[name] for name in names)

        return run_inputs


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper, numpy_helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if a.type == a.TENSOR:
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        out[a.name] = value
    return out


def _topological(nodes: Sequence[Any], known: set[str], engine: str) -> list[Any]:
    """Kahn's order over value names (ONNX files should already be sorted; not trusted to be)."""
    waiting = {i: {n for n in [*node.input, *(f for sub in onnx_control.graphs_of(node)
                                             for f in onnx_control.free_names(sub))] if n and n not in known}
               for i, node in enumerate(nodes)}
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
        raise ModuleError(f"{engine}: graph has a cycle or inputs nothing produces: {stuck}")
    return order


def _all_nodes(graph: Any) -> list[Any]:
    """The graph's nodes and those of every body inside it (Loop, Scan, If)."""
    return [m for n in graph.node for m in [n, *(x for sub in onnx_control.graphs_of(n) for x in _all_nodes(sub))]]


def _plan(graph: Any, known: set[str], engine: str, opset: int, path: Path) -> list[Step]:
    """The graph's nodes as steps in topological order, each op's attributes in the form its function takes
    (a Loop's or Scan's body translated the same way: ``onnx_control.Subgraph``)."""
    plan: list[Step] = []
    for node in _topological(list(graph.node), known, engine):
        attrs = _attributes(node)
        if node.op_type in _REDUCE_OPS and "axes" in attrs:
            attrs["axes_attr"] = attrs.pop("axes")
        if node.op_type == "ConstantOfShape" and "value" in attrs:
            attrs["value"] = np.asarray(attrs["value"])
        if node.op_type == "Shape" and opset < 15:
            attrs.pop("start", None), attrs.pop("end", None)
        if node.op_type in ("Softmax", "LogSoftmax"):
            attrs["opset"] = opset  # before 13: over the 2-D coercion at axis
        if node.op_type == "Split" and "split" in attrs:  # an attribute before opset 13, an input since
            attrs["split_attr"] = attrs.pop("split")
        if node.op_type == "Pad" and "pads" in attrs:  # an attribute before opset 11, an input since
            attrs["pads_attr"] = attrs.pop("pads")
        if node.op_type == "Resize":
            attrs["opset"] = opset
        if node.op_type in ("Split", "Dropout"):  # how many outputs the node names (Dropout's mask is optional)
            attrs["n_outputs"] = len(node.output)
        if node.op_type in ("Loop", "Scan"):
            attrs["body"] = _body(attrs["body"], engine, opset, path)
            attrs["node"] = node.output[0]  # named where an engine says how it ran the loop
        if node.op_type == "If":
            attrs = {b: _body(attrs[b], engine, opset, path) for b in ("then_branch", "else_branch")}
        if node.op_type == "Scan" and opset < 9:
            raise ModuleError(f"{engine}: model {path} uses Scan of opset {opset} (a batch axis and sequence_lens), "
                              f"which the ONNX translator does not implement; export at opset 9 or later, or use "
                              f"backend: onnxruntime for this model")
        plan.append((node.op_type, OPS[node.op_type], list(node.input), list(node.output), attrs))
    return plan


def _body(graph: Any, engine: str, opset: int, path: Path) -> onnx_control.Subgraph:
    """A Loop's or Scan's body, or an If's branch: its own initializers static, the outer names it reads given at
    each run."""
    from onnx import numpy_helper

    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    inputs = [i.name for i in graph.input]
    free = onnx_control.free_names(graph)
    plan = _plan(graph, set(consts) | set(inputs) | set(free), engine, opset, path)
    return onnx_control.Subgraph(plan, inputs, [o.name for o in graph.output], consts, free)


def translate(path: Path, kernels: Kernels, model: Any | None = None) -> OnnxFunction:
    """Read ``path`` (or the already loaded ModelProto) into an OnnxFunction for ``kernels``' engine;
    unsupported ops are one ModuleError line naming them and the model."""
    import onnx
    from onnx import numpy_helper
    from onnx.helper import tensor_dtype_to_np_dtype

    engine = kernels.engine
    if model is None:
        try:
            model = onnx.load(str(path))
        except Exception as exc:
            raise ModuleError(f"{engine}: cannot read ONNX model {path}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
    model = inline_local_functions(model)
    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    bad = sorted({(n.domain + "." if n.domain not in ("", "ai.onnx") else "") + n.op_type
                  for n in _all_nodes(graph) if n.domain not in ("", "ai.onnx") or n.op_type not in OPS})
    foreign = [op for op in bad if "." not in op and not onnx.defs.has(op)]
    if foreign:  # no engine runs these: "use onnxruntime" would send the user to the same wall
        raise ModuleError(f"{engine}: model {path} uses op(s) that are not ONNX operators: {', '.join(foreign)} "
                          f"(the exporter wrote an invalid graph that no ONNX engine runs; re-export it, e.g. with "
                          f"another converter version or opset, or without the layer that produced it)")
    shaped = [op for op in bad if op in DATA_DEPENDENT]
    if shaped:  # not a gap to fill: a compiled bucket has one shape per value, these ops have none
        op = shaped[0]
        why, runs = DATA_DEPENDENT[op]
        rest = [o for o in bad if o != op]
        raise ModuleError(f"{engine}: model {path} uses {op}, whose output's shape {why}: a data-dependent shape, "
                          f"which the ONNX translator's static graphs per batch bucket cannot hold; {runs} runs this "
                          f"model (use backend: onnxruntime for it)"
                          + (f"; other ops the translator lacks: {', '.join(rest)}" if rest else ""))
    if bad:
        raise ModuleError(f"{engine}: model {path} uses ONNX op(s) the ONNX translator does not implement: "
                          f"{', '.join(bad)} (use backend: onnxruntime for this model{vendor_note(bad)})")
    refuse_mixed_types(model, engine, Path(path))
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    names = tuple(i.name for i in inputs)
    shapes = tuple(tuple((d.dim_param or None) if not d.HasField("dim_value") else int(d.dim_value)
                         for d in i.type.tensor_type.shape.dim) for i in inputs)
    plan = _plan(graph, set(consts) | set(names), engine, opset, path)
    onnx_control.check_loops(plan, set(consts), engine, path)
    dtypes = tuple(np.dtype(tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in inputs)
    return OnnxFunction(Path(path), engine, names, shapes, dtypes, [o.name for o in graph.output],
                        sorted({n.op_type for n in _all_nodes(graph)}), plan, consts, kernels,
                        graph_output_types(graph))
