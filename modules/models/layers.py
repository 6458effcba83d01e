"""Custom Keras layers of the hltrun VAEs (registered, so ``.keras`` files load by name).

All layers use ``keras.ops`` only, so they trace into plain TensorFlow graphs that tf2onnx can
convert; nothing here depends on the batch size.
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from .losses import PT_INDEX, chamfer_distance, kl_divergence, pt_to_log, to_metric_space
register = keras.saving.register_keras_serializable(package="hltrun")


@register
class ConstituentMask(keras.layers.Layer):
    """(N, P, 3) jets -> (N, P) float mask of real constituents (pT > 0; padding is all zeros)."""

    def call(self, jets: Any) -> Any:
        return ops.cast(jets[..., PT_INDEX] > 0.0, jets.dtype)


@register
class Standardize(keras.layers.Layer):
    """Per-feature (x - mean) / std with the training sample's constants (or the inverse).

    Inputs ``[x, mask]``.  With ``log_pt`` the pT feature is standardised as log(pT) (and the
    inverse returns exp), so pT spans similar ranges for 700 GeV and 1.5 TeV jets.  Padded rows are
    set to exactly 0 on the way in and on the way out, so the networks never see the artificial
    -mean/std of a padded row, and a reconstruction has the same zero padding as the input.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inverse: bool = False,
                 log_pt: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.inverse = bool(inverse)
        self.log_pt = bool(log_pt)

    def call(self, inputs: Sequence[Any]) -> Any:
        x, mask = inputs
        mean = ops.convert_to_tensor(self.mean, dtype=x.dtype)
        std = ops.convert_to_tensor(self.std, dtype=x.dtype)
        if self.inverse:
            y = x * std + mean
            if self.log_pt:
                y = ops.concatenate([y[..., :PT_INDEX], ops.exp(y[..., PT_INDEX:PT_INDEX + 1])], axis=-1)
        else:
            y = ((pt_to_log(x) if self.log_pt else x) - mean) / std
        return y * ops.expand_dims(mask, -1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std, "inverse": self.inverse,
                "log_pt": self.log_pt}


@register
class NormalizedAdjacency(keras.layers.Layer):
    """mask (N, P) -> A_hat = D^-1/2 A D^-1/2 (N, P, P), A fully connected over real constituents.

    A_ij = m_i m_j (self-loops included), so only real constituents are connected; built in the
    graph at inference time so no P x P matrix is ever stored per event.
    """

    def call(self, mask: Any) -> Any:
        adj = ops.expand_dims(mask, 2) * ops.expand_dims(mask, 1)
        deg = ops.sum(adj, axis=-1)
        inv_sqrt = ops.where(deg > 0.0, ops.rsqrt(ops.maximum(deg, 1.0)), 0.0)
        return adj * ops.expand_dims(inv_sqrt, 2) * ops.expand_dims(inv_sqrt, 1)


@register
class GraphConv(keras.layers.Layer):
    """Kipf-Welling graph convolution act(A_hat . X . W + b); inputs ``[X, A_hat]``."""

    def __init__(self, units: int, activation: str | None = "tanh", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape: Sequence[Any]) -> None:
        n_in = int(input_shape[0][-1])
        self.kernel = self.add_weight(shape=(n_in, self.units), initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs: Sequence[Any]) -> Any:
        x, adj = inputs
        return self.activation(ops.matmul(adj, ops.matmul(x, self.kernel)) + self.bias)

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
    """[jets, reconstruction, mask] -> per-jet Chamfer distance (N,) in standardised units.

    Both sets go through ``losses.to_metric_space`` (the training loss does the same), so
    delta-eta, delta-phi and pT (or log pT) weigh alike.
    """

    def __init__(self, std: Sequence[float], log_pt: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.std = [float(v) for v in std]
        self.log_pt = bool(log_pt)

    def call(self, inputs: Sequence[Any]) -> Any:
        x, y, mask = inputs
        return chamfer_distance(to_metric_space(x, mask, self.std, self.log_pt),
                                to_metric_space(y, mask, self.std, self.log_pt), mask)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "std": self.std, "log_pt": self.log_pt}


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
