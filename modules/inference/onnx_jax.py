"""The JAX engine for the ONNX translator (``onnx_graph``): ``jax.numpy`` for the array API standard,
``jax.lax`` for convolutions and pooling windows; XLA folds the static values while it traces.

Matrix products and convolutions run at ``lax.Precision.HIGHEST`` so that a GPU does not silently use
TF32 (the agreement criterion is fp32's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .onnx_graph import OPS, Kernels, OnnxFunction, Pads
from .onnx_graph import translate as translate_for

__all__ = ["OPS", "JaxKernels", "translate"]


class JaxKernels(Kernels):
    engine = "jax"

    def __init__(self) -> None:
        import jax.numpy as jnp

        self.xp = jnp

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
        """``lax.top_k`` works on the last axis, largest first: the axis is moved there and back."""
        from jax import lax

        xp = self.xp
        last = xp.moveaxis(x, axis, -1)
        values, idx = lax.top_k(last if largest else xp.negative(last), k)  # int32 indices without x64
        values = values if largest else xp.negative(values)
        return xp.moveaxis(values, -1, axis), xp.moveaxis(idx, -1, axis)

    def window_max(self, x: Any, kernel: list[int], strides: list[int], pads: Pads) -> Any:
        from jax import lax

        return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, (1, 1, *kernel), (1, 1, *strides),
                                 [(0, 0), (0, 0), *pads])


def translate(path: Path, model: Any | None = None) -> OnnxFunction:
    """``path`` (or the loaded ModelProto) as a function of JAX arrays, to ``jax.jit``."""
    return translate_for(path, JaxKernels(), model)
