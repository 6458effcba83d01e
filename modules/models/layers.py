"""Custom Keras layers of the hltrun VAEs (registered, so ``.keras`` files load by name).

All layers use ``keras.ops`` only, so they trace into plain TensorFlow graphs that tf2onnx can
convert; nothing here depends on the batch size.
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from .losses import PT_INDEX, check_pt_mode, chamfer_distance, point_weights, kl_divergence, to_metric_space, transform_pt
register = keras.saving.register_keras_serializable(package="hltrun")


@register
class ConstituentMask(keras.layers.Layer):
    """(N, P, 3) jets -> (N, P) float mask of real constituents (pT > 0; padding is all zeros)."""

    def call(self, jets: Any) -> Any:
        return ops.cast(jets[..., PT_INDEX] > 0.0, jets.dtype)


@register
class Standardize(keras.layers.Layer):
    """Per-feature (x - mean) / std with the training sample's constants (or the inverse).

    Inputs ``[x, mask]``.  The pT feature is first transformed as ``pt_mode`` says
    (``losses.PT_MODES``: GeV, log GeV, fraction of the jet's pT, log fraction); the inverse undoes
    the log (exp) but not the fraction, so a reconstruction is in the model's feature units.  Padded
    rows are set to exactly 0 on the way in and on the way out, so the networks never see the
    artificial -mean/std of a padded row, and a reconstruction has the same zero padding as the input.
    ``log_pt=True`` is how files saved before ``pt_mode`` spell ``pt_mode="log"``.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inverse: bool = False,
                 log_pt: bool = False, pt_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.inverse = bool(inverse)
        self.pt_mode = check_pt_mode(pt_mode or ("log" if log_pt else "linear"))

    def call(self, inputs: Sequence[Any]) -> Any:
        x, mask = inputs
        n_points, n_features = int(x.shape[-2]), int(x.shape[-1])
        scale = [1.0 / s for s in self.std] if not self.inverse else self.std
        shift = [-m / s for m, s in zip(self.mean, self.std)] if not self.inverse else self.mean
        f = x if self.inverse else transform_pt(x, self.pt_mode)
        # y = f * scale + shift on the flattened (N, P*F) rows: a per-feature constant broadcast over an
        # inner axis of length F = 3 runs span by span (~1 µs per jet and op in ONNX Runtime); over
        # P*F contiguous values it is one vectorised loop.
        flat = ops.reshape(f, (-1, n_points * n_features))
        y = flat * ops.convert_to_tensor(scale * n_points, dtype=x.dtype) \
            + ops.convert_to_tensor(shift * n_points, dtype=x.dtype)
        y = ops.reshape(y, (-1, n_points, n_features))
        if self.inverse and self.pt_mode in ("log", "log_fraction"):
            y = ops.concatenate([y[..., :PT_INDEX], ops.exp(y[..., PT_INDEX:PT_INDEX + 1])], axis=-1)
        return y * ops.expand_dims(mask, -1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std, "inverse": self.inverse,
                "pt_mode": self.pt_mode}


@register
class NormalizedAdjacency(keras.layers.Layer):
    """mask (N, P) -> w (N, P, 1), the factor of A_hat = D^-1/2 A D^-1/2 = w w^T.

    A is fully connected over the real constituents (A_ij = m_i m_j, self-loops included), so every
    real constituent has degree n (the number of real ones) and A_hat_ij = m_i m_j / n = w_i w_j with
    w_i = m_i / sqrt(n): A_hat has rank one.  Returning w instead of the dense (P, P) matrix lets
    ``GraphConv`` compute A_hat X W = w (w^T X W) in O(P F) instead of O(P^2 F), with the same
    weights and the same result (up to float rounding); no P x P tensor is ever built.
    """

    def call(self, mask: Any) -> Any:
        n = ops.sum(mask, axis=-1, keepdims=True)                  # (N, 1) real constituents
        return ops.expand_dims(mask * ops.rsqrt(ops.maximum(n, 1.0)), -1)


@register
class GraphConv(keras.layers.Layer):
    """Kipf-Welling graph convolution act(A_hat . X . W + b); inputs ``[X, w]`` with A_hat = w w^T
    (see ``NormalizedAdjacency``), so A_hat . (X W) = w * sum_j w_j (X W)_j."""

    def __init__(self, units: int, activation: str | None = "tanh", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape: Sequence[Any]) -> None:
        n_in = int(input_shape[0][-1])
        self.kernel = self.add_weight(shape=(n_in, self.units), initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs: Sequence[Any]) -> Any:
        x, w = inputs
        xw = ops.matmul(x, self.kernel)                                  # (N, P, units)
        return self.activation(w * ops.sum(w * xw, axis=1, keepdims=True) + self.bias)

    def compute_output_shape(self, input_shape: Sequence[Any]) -> tuple:
        return tuple(input_shape[0][:-1]) + (self.units,)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


@register
class MaskedMeanPool(keras.layers.Layer):
    """[X (N, P, F), mask (N, P)] -> mean of X over the real constituents (N, F)."""

    def call(self, inputs: Sequence[Any]) -> Any:
        x, mask = inputs
        n = ops.maximum(ops.sum(mask, axis=-1, keepdims=True), 1.0)
        return ops.sum(x * ops.expand_dims(mask, -1), axis=1) / n


@register
class ChamferScore(keras.layers.Layer):
    """[x, y, mask] -> per-jet Chamfer distance (N,) in standardised units.

    Distances are measured in (delta-eta, delta-phi, pT or log pT) / training std, so the three
    features weigh alike.  With ``standardised=False`` x and y are the jets and the reconstruction in
    physical units and go through ``losses.to_metric_space`` (the training loss does the same).  With
    ``standardised=True`` (the shipped inference models) x and y are already standardised,
    (f - mean) / std: the encoder's input after ``std_normalize`` and the decoder's output before
    ``un_normalize``.  That is the same distance (the mean cancels in differences) without converting
    the reconstruction back to physical units and dividing it again.
    """

    def __init__(self, std: Sequence[float], log_pt: bool = False, standardised: bool = False,
                 weighting: str = "uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.std = [float(v) for v in std]
        self.log_pt = bool(log_pt)
        self.standardised = bool(standardised)
        self.weighting = str(weighting)

    def call(self, inputs: Sequence[Any]) -> Any:
        """[x, y, mask] (uniform weighting) or [x, y, mask, jets] (weights from the jets' pT)."""
        x, y, mask = inputs[:3]
        if self.standardised:
            weights = None if self.weighting == "uniform" else point_weights(inputs[3], mask, self.weighting)
            return chamfer_distance(x, y, mask, weights)
        return chamfer_distance(to_metric_space(x, mask, self.std, self.log_pt),
                                to_metric_space(y, mask, self.std, self.log_pt), mask)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "std": self.std, "log_pt": self.log_pt,
                "standardised": self.standardised, "weighting": self.weighting}


@register
class KLScore(keras.layers.Layer):
    """[z_mean, z_log_var] -> beta * KL per jet (N,), the latent-space part of the loss."""

    def __init__(self, beta: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = float(beta)

    def call(self, inputs: Sequence[Any]) -> Any:
        z_mean, z_log_var = inputs
        return self.beta * kl_divergence(z_mean, z_log_var)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta": self.beta}
