"""The PyTorch engine for the ONNX translator (``onnx_graph``): ``array_api_compat``'s torch namespace
for the array API standard, ``torch.nn.functional`` for convolutions and pooling windows.

PyTorch runs eagerly, so the graph is ``specialize``d per batch size: the input-independent part is
evaluated once, and its static values (numpy: initializers, folded shapes) become tensors on the
engine's device the first time an op meets them, kept by the object's identity (``TorchNamespace``):
after the first call no weight is copied again, which is also what lets a CUDA graph capture the
call (a host-to-device copy of pageable memory cannot be captured).

fp32 fidelity: the backend turns TF32 off for matrix products and cuDNN convolutions
(``torch.backends``) before it runs anything; the agreement criterion is fp32's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .onnx_graph import Kernels, OnnxFunction, Pads, static_namespace
from .onnx_graph import translate as translate_for

__all__ = ["TorchKernels", "TorchNamespace", "translate"]


_SMALL = 1 << 16  # bytes: a static value this small is known by its contents, a larger one by its memory


def _static_key(value: np.ndarray) -> tuple[Any, ...]:
    """The same static value gives the same key on every call: small ones by contents (a folded
    ``abs(b)`` is a new object each call), large ones by the memory they view (initializers)."""
    if value.nbytes <= _SMALL:
        return ("c", value.dtype.str, value.shape, value.tobytes())
    return ("m", value.dtype.str, value.__array_interface__["data"][0], value.shape, value.strides)


class TorchNamespace:
    """``array_api_compat.torch`` whose functions take numpy values (and Python scalars) beside
    tensors, as ``jax.numpy``'s do: each becomes a tensor on the device of the call's tensors, made
    once per static value (``_static_key``), so that after the first call no value is copied to the
    device again; a call on static values only is numpy's (constant folding)."""

    def __init__(self) -> None:
        import array_api_compat.torch as xt
        import torch

        self._xt, self._torch = xt, torch
        self._lifted: dict[tuple[Any, ...], tuple[Any, Any]] = {}  # key -> (the static value, its tensor)
        self._functions: dict[str, Callable[..., Any]] = {}

    def lift(self, value: Any, like: Any) -> Any:
        """``value`` as a tensor beside ``like`` (a tensor); tensors pass through. Made once per value
        and device: a scalar (the 1 of a reciprocal) or a folded array is not copied again per call."""
        torch = self._torch
        if isinstance(value, (torch.Tensor, tuple, str)) or value is None:
            return value  # tensors, and shapes/axes given as tuples
        if isinstance(value, np.ndarray):
            key: tuple[Any, ...] = (str(like.device), *_static_key(value))
        elif isinstance(value, (float, np.floating)) and like.dtype.is_floating_point:
            # by its bits: a NaN equals itself and -0.0 is not +0.0 (1/x must keep its sign)
            key = (str(like.device), "f", str(like.dtype), np.float64(value).tobytes())
        else:
            key = (str(like.device), "s", type(value).__name__, value.item() if hasattr(value, "item") else value)
        hit = self._lifted.get(key)
        if hit is None:  # the value is kept with its tensor: the memory a large key names stays its own
            if key[1] == "f":
                tensor = torch.as_tensor(float(value), dtype=like.dtype, device=like.device)
            else:
                tensor = torch.as_tensor(np.array(value), device=like.device)  # a copy: torch writes none
            hit = (value, tensor)
            self._lifted[key] = hit
        return hit[1]

    def forget(self) -> None:
        """Drop every device copy made so far."""
        self._lifted.clear()

    def astype(self, x: Any, dtype: Any) -> Any:
        return self._xt.astype(x, self.dtype(dtype))

    def isdtype(self, dtype: Any, kind: Any) -> bool:
        return bool(self._xt.isdtype(self.dtype(dtype), kind))

    def dtype(self, dtype: Any) -> Any:
        """A numpy dtype as torch's (torch's own pass through)."""
        if isinstance(dtype, self._torch.dtype):
            return dtype
        return self._torch.from_numpy(np.zeros(0, np.dtype(dtype))).dtype

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = self._functions.get(name)
        if fn is None:
            fn = self._wrap(name)
            self._functions[name] = fn
        return fn

    def _wrap(self, name: str) -> Callable[..., Any]:
        torch, lift = self._torch, self.lift
        target, folded = getattr(self._xt, name), getattr(static_namespace(), name)

        def call(*args: Any, **kwargs: Any) -> Any:
            like = next((a for a in _flat(args) if isinstance(a, torch.Tensor)), None)
            if like is None:
                return folded(*args, **kwargs)
            args = tuple([lift(v, like) for v in a] if isinstance(a, list) else lift(a, like) for a in args)
            return target(*args, **kwargs)

        return call


def _flat(args: Sequence[Any]) -> Any:
    for a in args:
        if isinstance(a, list):
            yield from a
        else:
            yield a


class TorchKernels(Kernels):
    engine = "torch"

    def __init__(self, device: Any = "cpu") -> None:
        import torch
        import torch.nn.functional as F

        self.torch, self.F, self.device = torch, F, device
        self.xp = TorchNamespace()
        self._index: dict[tuple[int, int, int, int], Any] = {}
        self._layers: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # key -> (the ONNX weights, their nn module)

    def recurrent_layer(self, op: str, x: Any, w: Any, r: Any, b: Any, h0: Any, c0: Any, *, reverse: bool,
                        nonlinearity: str) -> tuple[Any, Any, Any] | None:
        """PyTorch's own ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (one ``aten::lstm`` node in a trace, cuDNN on a GPU)
        with the ONNX weights reordered into it, made once per weight set and device; a reverse-only layer runs
        on the input flipped in time. Weights that depend on the input: None (the step loop)."""
        torch = self.torch
        if any(isinstance(v, torch.Tensor) for v in (w, r, b)):
            return None
        layer = self._layer(op, w, r, b, nonlinearity, x.device)
        dirs, hidden = int(w.shape[0]), int(r.shape[-1])
        if reverse:
            x = torch.flip(x, (0,))
        state = None
        if h0 is not None or c0 is not None:
            shape = (dirs, int(x.shape[1]), hidden)
            h, c = (self.xp.lift(s, x).contiguous() if s is not None else x.new_zeros(shape) for s in (h0, c0))
            state = (h, c) if op == "LSTM" else h
        y, last = layer(x, state)  # y: (seq, batch, dirs * hidden)
        if reverse:
            y = torch.flip(y, (0,))
        y = y.reshape(y.shape[0], y.shape[1], dirs, hidden).permute(0, 2, 1, 3)  # ONNX's (seq, dirs, batch, hidden)
        return (y, *last) if op == "LSTM" else (y, last, None)

    def _layer(self, op: str, w: Any, r: Any, b: Any, nonlinearity: str, device: Any) -> Any:
        """The ``nn`` module holding ONNX's W, R, B: gates iofc -> PyTorch's ifgo (LSTM), zrh -> rzn (GRU, whose
        ``linear_before_reset`` 1 is PyTorch's only form), W_b and R_b as ``bias_ih`` and ``bias_hh``."""
        weights = (_static_key(np.asarray(v)) if v is not None else None for v in (w, r, b))
        key = (op, nonlinearity, str(device), *weights)
        hit = self._layers.get(key)
        if hit is not None:
            return hit[-1]
        torch = self.torch
        dirs, n_in, hidden = int(w.shape[0]), int(w.shape[-1]), int(r.shape[-1])
        order = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}[op]

        def gates(a: np.ndarray) -> Any:  # the gate blocks of a's first axis in PyTorch's order
            return torch.from_numpy(np.concatenate([a[g * hidden:(g + 1) * hidden] for g in order]).astype(np.float32))

        kind = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN": torch.nn.RNN}[op]
        extra = {"nonlinearity": nonlinearity} if op == "RNN" else {}
        with torch.inference_mode(False), torch.no_grad():  # ordinary parameters (made in the backend's inference mode)
            layer = kind(n_in, hidden, bias=b is not None, bidirectional=dirs == 2, **extra)
            for d, suffix in enumerate(("_l0", "_l0_reverse")[:dirs]):
                getattr(layer, "weight_ih" + suffix).copy_(gates(np.asarray(w[d])))
                getattr(layer, "weight_hh" + suffix).copy_(gates(np.asarray(r[d])))
                if b is not None:
                    wb, rb = np.split(np.asarray(b[d]), 2)
                    getattr(layer, "bias_ih" + suffix).copy_(gates(wb))
                    getattr(layer, "bias_hh" + suffix).copy_(gates(rb))
            layer = layer.to(device).eval().requires_grad_(False)
            layer.flatten_parameters()  # one weight buffer, as cuDNN wants it (nothing on the CPU)
        self._layers[key] = (w, r, b, layer)
        return layer

    def take_slice(self, x: Any, index: tuple[slice, ...]) -> Any:
        """PyTorch has no negative slice steps: such an axis becomes an index_select of the same positions."""
        plain = tuple(s if (s.step or 1) > 0 else slice(None) for s in index)
        out = x[plain]
        for axis, s in enumerate(index):
            if (s.step or 1) < 0:
                key = (x.shape[axis], *s.indices(x.shape[axis]))
                idx = self._index.get(key)
                if idx is None:
                    idx = self.torch.as_tensor(np.arange(*key[1:]), device=x.device)
                    self._index[key] = idx
                out = self.torch.index_select(out, axis, idx)
        return out

    def forget(self) -> None:
        """Drop the device copies of the static values (the backend's close)."""
        self.xp.forget()
        self._index.clear()
        self._layers.clear()

    def full(self, dims: Sequence[int], value: Any, dtype: np.dtype) -> Any:
        return self.torch.full(tuple(dims), value.item() if hasattr(value, "item") else value,
                               dtype=self.xp.dtype(dtype), device=self.device)

    def matmul(self, a: Any, b: Any) -> Any:
        like = a if isinstance(a, self.torch.Tensor) else b
        return self.torch.matmul(self.xp.lift(a, like), self.xp.lift(b, like))

    def _padded(self, x: Any, pads: Pads) -> tuple[Any, list[int]]:
        """Symmetric pads go to the op; uneven ones are added here first (zeros)."""
        if all(b == e for b, e in pads):
            return x, [b for b, _ in pads]
        flat = [v for b, e in reversed(pads) for v in (b, e)]  # F.pad: last axis first
        return self.F.pad(x, flat), [0] * len(pads)

    def conv(self, x: Any, w: Any, strides: list[int], pads: Pads, dilations: list[int], group: int) -> Any:
        n = len(strides)
        x, padding = self._padded(x, pads)
        conv = (self.F.conv1d, self.F.conv2d, self.F.conv3d)[n - 1]
        return conv(x, self.xp.lift(w, x), None, strides, padding, dilations, group)

    def integer_matmul(self, a: Any, b: Any) -> Any:
        """In float64, exact (8-bit operands: every sum is an integer far below 2**53), then int32: CUDA has no
        integer matmul."""
        like = a if isinstance(a, self.torch.Tensor) else b
        f64 = self.torch.float64
        return self.torch.matmul(self.xp.lift(a, like).to(f64), self.xp.lift(b, like).to(f64)).to(self.torch.int32)

    def integer_conv(self, x: Any, w: Any, strides: list[int], pads: Pads, dilations: list[int], group: int) -> Any:
        """In float64, exact as ``integer_matmul`` (CUDA has no integer convolution), then int32."""
        f64 = self.torch.float64
        return self.conv(x.to(f64), self.xp.lift(w, x).to(f64), strides, pads, dilations, group).to(self.torch.int32)

    def conv_transpose(self, x: Any, w: Any, strides: list[int], pads: Pads, dilations: list[int]) -> Any:
        """Uncropped transposed convolution, then ONNX's crops (a negative end crop — output_padding
        over the end pad — is zeros: no input reaches those positions)."""
        n = len(strides)
        conv = (self.F.conv_transpose1d, self.F.conv_transpose2d, self.F.conv_transpose3d)[n - 1]
        y = conv(x, self.xp.lift(w, x), None, strides, 0, 0, 1, dilations)
        grow = [max(0, -e) for _, e in pads]
        if any(grow):
            y = self.F.pad(y, [v for g in reversed(grow) for v in (0, g)])
        index = (slice(None), slice(None)) + tuple(
            slice(b, y.shape[2 + i] - max(e, 0)) for i, (b, e) in enumerate(pads))
        return y[index]

    def window_sum(self, x: Any, kernel: list[int], strides: list[int], pads: Pads) -> Any:
        n = len(kernel)
        flat = [v for b, e in reversed(pads) for v in (b, e)]
        x = self.F.pad(x, flat) if any(flat) else x
        if n == 1:  # avg_pool1d has no divisor_override: the same window as a 1 x k one
            return self.window_sum(x.unsqueeze(2), [1, *kernel], [1, *strides], [(0, 0)]).squeeze(2)
        pool = (self.F.avg_pool2d, self.F.avg_pool3d)[n - 2]
        return pool(x, kernel, strides, divisor_override=1)

    def softmax(self, x: Any, axis: int) -> Any:
        return self.torch.softmax(x, dim=axis)

    def erf(self, x: Any) -> Any:
        return self.torch.erf(x)

    def einsum(self, equation: str, *operands: Any) -> Any:
        like = next(o for o in operands if isinstance(o, self.torch.Tensor))
        return self.torch.einsum(equation, *[self.xp.lift(o, like) for o in operands])

    def topk(self, x: Any, k: int, axis: int, largest: bool) -> tuple[Any, Any]:
        """A stable sort cut at k: ONNX puts the lower index first among equal values (padded
        constituents, rounded pT), which ``torch.topk`` does not promise."""
        values, idx = self.torch.sort(x, dim=axis, descending=largest, stable=True)
        return values.narrow(axis, 0, k), idx.narrow(axis, 0, k)

    def scatter(self, data: Any, indices: Any, updates: Any, axis: int, reduction: str) -> Any:
        """``torch.scatter`` / ``scatter_add`` / ``scatter_reduce`` (the data itself included, as ONNX)."""
        like = next(v for v in (data, indices, updates) if isinstance(v, self.torch.Tensor))
        data, updates = self.xp.lift(data, like), self.xp.lift(updates, like)
        indices = self.xp.lift(indices, like).long()  # torch scatters by int64 indices only
        if reduction == "none":
            return self.torch.scatter(data, axis, indices, updates)
        if reduction == "add":
            return self.torch.scatter_add(data, axis, indices, updates)
        how = {"mul": "prod", "max": "amax", "min": "amin"}[reduction]
        return self.torch.scatter_reduce(data, axis, indices, updates, how, include_self=True)

    def window_max(self, x: Any, kernel: list[int], strides: list[int], pads: Pads) -> Any:
        """Padding with -inf first (torch's own padding is symmetric and at most half the kernel)."""
        flat = [v for b, e in reversed(pads) for v in (b, e)]
        x = self.F.pad(x, flat, value=float("-inf")) if any(flat) else x
        pool = (self.F.max_pool1d, self.F.max_pool2d, self.F.max_pool3d)[len(kernel) - 1]
        return pool(x, kernel, strides)


def translate(path: Path, model: Any | None = None, device: Any = "cpu") -> OnnxFunction:
    """``path`` (or the loaded ModelProto) as a function of torch tensors on ``device``; run it through
    ``OnnxFunction.specialize`` per batch size."""
    return translate_for(path, TorchKernels(device), model)
