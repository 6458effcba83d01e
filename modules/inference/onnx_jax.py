"""The JAX engine for the ONNX translator (``onnx_graph``): ``jax.numpy`` for the array API standard,
``jax.lax`` for convolutions and pooling windows; XLA folds the static values while it traces.

Matrix products and convolutions run at ``lax.Precision.HIGHEST`` so that a GPU does not silently use
TF32 (the agreement criterion is fp32's).

Integer types: JAX has 64-bit integers only with ``jax_enable_x64`` (``JAX_ENABLE_X64=1``), which hltrun
leaves as it finds it. Without it every int64 of the graph is int32 on JAX, TopK's indices included
(``index_dtype``); with it they are ONNX's int64. The values are the same either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hltrun.framework.errors import ModuleError

from .onnx_control import check_branches
from .onnx_graph import OPS, Kernels, OnnxFunction, Pads
from .onnx_graph import translate as translate_for

__all__ = ["OPS", "JaxKernels", "index_dtype", "translate"]


class JaxKernels(Kernels):
    engine = "jax"

    def __init__(self) -> None:
        import jax.numpy as jnp

        self.xp = jnp
        self.unrolled: dict[str, int] = {}  # Loop/Scan node -> steps, for the loops traced as copies of their body

    def cond(self, pred: Any, then: Any, other: Any) -> tuple[Any, ...]:
        """``lax.cond``: XLA runs the taken branch only. Its branches must give outputs of one shape and type
        (said in one line naming the node otherwise, as the base class's select does)."""
        from jax import lax

        xp = self.xp

        def branch(run: Any) -> Any:
            def traced() -> tuple[Any, ...]:
                outs = run()
                if any(isinstance(v, list) for v in outs):
                    raise TypeError("a sequence")
                return tuple(xp.asarray(v) for v in outs)
            return traced

        try:
            return tuple(lax.cond(xp.reshape(pred, ()), branch(then), branch(other)))
        except TypeError:  # the branches' outputs differ: traced again alone, to name what each gives
            check_branches(then(), other())
            raise

    def full(self, dims: Sequence[int], value: Any, dtype: np.dtype) -> Any:
        return self.xp.full(tuple(dims), value, dtype)

    def matmul(self, a: Any, b: Any) -> Any:
        from jax import lax

        return self.xp.matmul(a, b, precision=lax.Precision.HIGHEST)

    def conv(self, x: Any, w: Any, strides: list[int], pads: Pads, dilations: list[int], group: int) -> Any:
        from jax import lax

        spatial = "DHW"[-(w.ndim - 2):]
        return lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dilations,
                                        dimension_numbers=("NC" + spatial, "OI" + spatial, "NC" + spatial),
                                        feature_group_count=group, precision=lax.Precision.HIGHEST)

    def integer_conv(self, x: Any, w: Any, strides: list[int], pads: Pads, dilations: list[int], group: int) -> Any:
        from jax import lax

        spatial = "DHW"[-(w.ndim - 2):]
        return lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dilations,
                                        dimension_numbers=("NC" + spatial, "OI" + spatial, "NC" + spatial),
                                        feature_group_count=group, preferred_element_type=np.int32)

    def conv_transpose(self, x: Any, w: Any, strides: list[int], pads: Pads, dilations: list[int]) -> Any:
        """The gradient of Conv: input dilated by the strides, the kernel flipped in space and its
        in/out channels swapped, padded by dilation*(k-1) minus the crop on each side."""
        from jax import lax

        n = w.ndim - 2
        kernel = list(w.shape[2:])
        full = [(dilations[i] * (kernel[i] - 1) - pads[i][0], dilations[i] * (kernel[i] - 1) - pads[i][1])
                for i in range(n)]
        flipped = w[(slice(None), slice(None)) + (slice(None, None, -1),) * n]
        spatial = "DHW"[-n:]
        return lax.conv_general_dilated(x, flipped, [1] * n, full, lhs_dilation=strides, rhs_dilation=dilations,
                                        dimension_numbers=("NC" + spatial, "IO" + spatial, "NC" + spatial),
                                        precision=lax.Precision.HIGHEST)

    def window_sum(self, x: Any, kernel: list[int], strides: list[int], pads: Pads) -> Any:
        from jax import lax

        return lax.reduce_window(x, np.array(0, x.dtype), lax.add, (1, 1, *kernel), (1, 1, *strides),
                                 [(0, 0), (0, 0), *pads])

    def exact_divide(self, x: Any, divisor: Any) -> Any:
        """XLA rewrites a division by a broadcast value (a quantisation scale: one per tensor or per channel) as a
        product with its reciprocal, one rounding more: 2.25 / 0.3 gave 7.5 (rounded to 8) where IEEE and ONNX
        Runtime give 7.4999995 (7), eagerly and under ``jit``. The divisor is broadcast to the quotient's shape
        behind an optimisation barrier, which the rewrite cannot see through."""
        from jax import lax

        xp = self.xp
        shape = np.broadcast_shapes(tuple(x.shape), tuple(np.shape(divisor)))
        return xp.divide(x, lax.optimization_barrier(xp.broadcast_to(xp.asarray(divisor), shape)))

    def softmax(self, x: Any, axis: int) -> Any:
        import jax

        return jax.nn.softmax(x, axis=axis)

    def erf(self, x: Any) -> Any:
        from jax import lax

        return lax.erf(x)

    def einsum(self, equation: str, *operands: Any) -> Any:
        from jax import lax

        return self.xp.einsum(equation, *operands, precision=lax.Precision.HIGHEST)

    def topk(self, x: Any, k: int, axis: int, largest: bool) -> tuple[Any, Any]:
        """``lax.top_k`` works on the last axis, largest first: the axis is moved there and back. Its
        indices are int32 whatever JAX's settings: made ONNX's int64 where JAX has it (``index_dtype``)."""
        from jax import lax

        xp = self.xp
        last = xp.moveaxis(x, axis, -1)
        values, idx = lax.top_k(last if largest else xp.negative(last), k)
        values = values if largest else xp.negative(values)
        return xp.moveaxis(values, -1, axis), xp.moveaxis(idx, -1, axis).astype(index_dtype())

    def scan(self, step: Any, carry: tuple[Any, ...], xs: tuple[Any, ...],
             length: int | None = None, node: str = "") -> tuple[tuple[Any, ...], Any]:
        """``lax.scan``: XLA compiles the step once, not once per constituent (a 100-step LSTM unrolled
        would compile 100 copies per bucket). A carried value whose shape the first step settles (an initial
        state of one row broadcast to the batch: ``torch.zeros(1, 8)``) is one step peeled, then ``lax.scan``;
        it was unrolled in every bucket but batch 1. A Loop body that needs a per-step value static (a ``Slice``
        at the counter) or whose carried values keep changing shape cannot be one step: it is unrolled (the loop
        here), and so is one carrying a sequence (a scripted ``outs.append``: a list that grows each step); each
        such loop's node and steps are kept in ``unrolled``, which the backend says at begin_job."""
        from jax import lax

        if not any(isinstance(c, list) for c in carry):
            try:
                return lax.scan(step, tuple(self.xp.asarray(c) for c in carry), xs, length=length)
            except ModuleError:
                pass
            except TypeError:  # the carry's type changed in the step, or a per-step value was needed static
                peeled = self._peeled(step, carry, xs, length)
                if peeled is not None:
                    return peeled
        if node:
            self.unrolled[node] = int(xs[0].shape[0]) if length is None else length
        return super().scan(step, carry, xs, length)

    def _peeled(self, step: Any, carry: tuple[Any, ...], xs: tuple[Any, ...],
                length: int | None) -> tuple[tuple[Any, ...], Any] | None:
        """The first step alone, then ``lax.scan`` over the rest from the carry it gave, when that step changed
        the carry's shapes and the rest keeps them; else None."""
        from jax import lax

        xp = self.xp
        n = int(xs[0].shape[0]) if length is None else length
        if n < 2:
            return None
        first, y0 = step(tuple(xp.asarray(c) for c in carry), tuple(x[0] for x in xs))
        first = tuple(xp.asarray(c) for c in first)
        if [(c.shape, c.dtype) for c in first] == [(np.shape(c), xp.asarray(c).dtype) for c in carry]:
            return None  # the carry kept its type: the step needs something static, unrolled
        try:
            last, ys = lax.scan(step, first, tuple(x[1:] for x in xs), length=n - 1)
        except (ModuleError, TypeError):
            return None
        join = lambda y, rest: xp.concatenate([xp.expand_dims(xp.asarray(y), 0), rest])  # noqa: E731
        return last, (tuple(map(join, y0, ys)) if type(y0) is tuple else join(y0, ys))

    def scatter(self, data: Any, indices: Any, updates: Any, axis: int, reduction: str) -> Any:
        """``.at[...]`` with every other axis's position from an index grid of the indices' shape."""
        grid = list(self.xp.indices(tuple(indices.shape), sparse=True))
        grid[axis] = indices
        at = self.xp.asarray(data).at[tuple(grid)]
        how = {"none": "set", "add": "add", "mul": "multiply", "max": "max", "min": "min"}[reduction]
        return getattr(at, how)(updates)

    def window_max(self, x: Any, kernel: list[int], strides: list[int], pads: Pads) -> Any:
        from jax import lax

        return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, (1, 1, *kernel), (1, 1, *strides),
                                 [(0, 0), (0, 0), *pads])


def index_dtype() -> np.dtype:
    """The integer type of TopK's indices on JAX now: ONNX's int64 with ``jax_enable_x64``, else int32 (JAX
    without it has no 64-bit integers: asking for int64 gives int32 and a warning). Read at trace time."""
    import jax

    return np.dtype(np.int64 if jax.config.jax_enable_x64 else np.int32)


def translate(path: Path, model: Any | None = None) -> OnnxFunction:
    """``path`` (or the loaded ModelProto) as a function of JAX arrays, to ``jax.jit``."""
    return translate_for(path, JaxKernels(), model)
