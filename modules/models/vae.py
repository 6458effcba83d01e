"""Architecture-independent VAE plumbing: training step, inference model, loading.

Both models are an ``encoder: jets -> [z_mean, z_log_var]`` and a
``decoder: [z, jets] -> reconstruction`` (the decoder reads the jets only for the constituent mask);
everything else — the loss, KL warm-up, the exported score — lives here once.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from . import layers as L
from .losses import chamfer_distance, check_pt_mode, kl_divergence, kl_per_dimension, point_weights, transform_pt_numpy
from .preprocess import N_CONSTITUENTS, N_FEATURES


@dataclass
class ModelSpec:
    """Hyper-parameters of one architecture (defaults live in conv_vae.py / gcn_vae.py)."""

    name: str
    latent_dim: int = 8
    beta: float = 1.0
    learning_rate: float = 1e-3
    kl_warmup_epochs: int = 0
    pt_mode: str = "linear"  # how the model sees constituent pT (losses.PT_MODES)
    free_bits: float = 0.0   # KL floor per latent dimension in training (nats; 0: off)
    weighting: str = "uniform"  # Chamfer sums: every constituent alike, or by pT share (losses.point_weights)


def feature_stats(jets: np.ndarray, pt_mode: str = "linear") -> tuple[list[float], list[float]]:
    """Per-feature mean and std over the real constituents of a training sample, after the pT
    transform the model applies in its graph (``pt_mode``)."""
    feats = transform_pt_numpy(jets, check_pt_mode(pt_mode))
    real = feats[jets[..., L.PT_INDEX] > 0]
    return real.mean(axis=0).tolist(), np.maximum(real.std(axis=0), 1e-6).tolist()


def encoder_inputs() -> tuple[Any, Any]:
    """The encoder's input ``jets`` (N, 100, 3) and its constituent mask (pT > 0)."""
    jets = keras.Input((N_CONSTITUENTS, N_FEATURES), name="jets")
    return jets, L.ConstituentMask()(jets)


def encoder_model(jets: Any, features: Any, latent_dim: int) -> keras.Model:
    """Close an encoder with the Gaussian latent head both architectures share."""
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(features)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(features)
    return keras.Model(jets, [z_mean, z_log_var], name="encoder")


def decoder_inputs(latent_dim: int) -> tuple[Any, Any, Any]:
    """The decoder's inputs: a latent point ``z`` and the jets, read only for their mask."""
    z = keras.Input((latent_dim,), name="z")
    jets = keras.Input((N_CONSTITUENTS, N_FEATURES), name="jets")
    return z, jets, L.ConstituentMask()(jets)


def decoder_model(z: Any, jets: Any, mask: Any, standardised: Any, mean: list[float], std: list[float],
                  pt_mode: str) -> keras.Model:
    """Close a decoder: back to the feature units (padded slots zeroed by the mask)."""
    y = L.Standardize(mean, std, inverse=True, pt_mode=pt_mode, name="un_normalize")([standardised, mask])
    return keras.Model([z, jets], y, name="decoder")


def default_spec(kind: str) -> ModelSpec:
    """The architecture's default hyper-parameters ('conv' or 'gcn')."""
    from . import MODEL_BUILDERS

    return importlib.import_module(MODEL_BUILDERS[kind]).default_spec()


def build_parts(kind: str, mean: list[float], std: list[float], spec: ModelSpec | None = None
                ) -> tuple[keras.Model, keras.Model, ModelSpec]:
    """Encoder, decoder and spec of architecture ``kind`` ('conv' or 'gcn')."""
    from . import MODEL_BUILDERS

    module = importlib.import_module(MODEL_BUILDERS[kind])
    spec = spec or module.default_spec()
    encoder, decoder = module.build(mean, std, spec.latent_dim, spec.pt_mode)
    return encoder, decoder, spec


def standardised_parts(encoder: keras.Model, decoder: keras.Model) -> tuple[keras.Model, keras.Model]:
    """Views of encoder and decoder (same layers and weights) that also return / stop at the
    standardised features: ``jets -> [z_mean, z_log_var, x_std]`` and ``[z, jets] -> y_std``.

    The score compares x_std with y_std; training minimises that same distance, whatever the pT
    transform (a pT fraction has no way back to GeV, so distances are never taken in physical units).
    """
    enc = keras.Model(encoder.inputs, [*encoder.outputs, encoder.get_layer("std_normalize").output],
                      name="encoder")
    dec = keras.Model(decoder.inputs, decoder.get_layer("un_normalize").input[0], name="decoder")
    return enc, dec


class VAETrainer(keras.Model):
    """Trains encoder + decoder on Chamfer + beta * w(epoch) * KL, with w the KL warm-up weight.

    Training samples z with the reparametrisation trick; validation uses the latent mean and the
    full beta (without free bits: exactly the deployed score + kl), so val_loss is comparable across
    epochs.  With free bits val_loss counts the KL as training does (floored per dimension): else the
    KL's epoch-to-epoch wobble, which the objective ignores below the floor, would steer early stopping.
    ``free_bits`` (nats per latent dimension, 0: off) stops the KL term pulling a dimension below
    that value ("free bits", Kingma et al. 2016): the posterior cannot collapse onto the prior.
    """

    def __init__(self, encoder: keras.Model, decoder: keras.Model, std: list[float], beta: float,
                 free_bits: float = 0.0, weighting: str = "uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weighting = weighting
        self.encoder, self.decoder = encoder, decoder
        self.enc_std, self.dec_std = standardised_parts(encoder, decoder)
        self.std = [float(v) for v in std]
        self.free_bits = float(free_bits)
        self.beta = float(beta)
        self.kl_weight = keras.Variable(1.0, trainable=False, name="kl_weight")
        self.seed = keras.random.SeedGenerator(1234)
        self.trackers = {k: keras.metrics.Mean(name=k) for k in ("loss", "reco", "kl")}

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def _terms(self, jets: Any, training: bool) -> tuple[Any, Any, Any]:
        """Mean Chamfer, mean KL, and the KL the loss sees (free bits applied in training)."""
        mask = ops.cast(jets[..., L.PT_INDEX] > 0.0, jets.dtype)
        z_mean, z_log_var, x_std = self.enc_std(jets, training=training)
        z = z_mean
        if training:
            eps = keras.random.normal(ops.shape(z_mean), seed=self.seed)
            z = z_mean + ops.exp(0.5 * z_log_var) * eps
        y_std = self.dec_std([z, jets], training=training)
        reco_loss = chamfer_distance(x_std, y_std, mask, point_weights(jets, mask, self.weighting))
        kl = kl_divergence(z_mean, z_log_var)
        kl_loss = kl
        if self.free_bits > 0:  # in validation too: val_loss must be the objective early stopping follows
            per_dim = ops.mean(kl_per_dimension(z_mean, z_log_var), axis=0)
            kl_loss = ops.sum(ops.maximum(per_dim, self.free_bits))
        return ops.mean(reco_loss), ops.mean(kl), ops.mean(kl_loss)

    def _report(self, loss: Any, reco: Any, kl: Any) -> dict[str, Any]:
        for key, val in (("loss", loss), ("reco", reco), ("kl", kl)):
            self.trackers[key].update_state(val)
        return {k: m.result() for k, m in self.trackers.items()}

    def call(self, jets: Any, training: bool = False) -> Any:
        z_mean, _ = self.encoder(jets, training=training)
        return self.decoder([z_mean, jets], training=training)

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        jets = data[0] if isinstance(data, (tuple, list)) else data
        with tf.GradientTape() as tape:
            reco, kl, kl_loss = self._terms(jets, training=True)
            loss = reco + self.beta * self.kl_weight * kl_loss
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(grads, self.trainable_weights)
        return self._report(loss, reco, kl)

    def test_step(self, data: Any) -> dict[str, Any]:
        jets = data[0] if isinstance(data, (tuple, list)) else data
        reco, kl, kl_loss = self._terms(jets, training=False)
        return self._report(reco + self.beta * kl_loss, reco, kl)


class KLWarmup(keras.callbacks.Callback):
    """Ramp the KL weight linearly from 1/n to 1 over the first n epochs (n = 0: no warm-up)."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.n = int(epochs)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.model.kl_weight.assign(1.0 if self.n <= 0 else min(1.0, (epoch + 1) / self.n))


def build_inference_model(encoder: keras.Model, decoder: keras.Model, std: list[float], beta: float,
                          name: str, weighting: str = "uniform") -> keras.Model:
    """jets (N, 100, 3) -> {'score': Chamfer distance (N,), 'kl': beta * KL (N,)}, deterministic.

    Uses the latent mean, and computes the score inside the graph so one inference call returns
    two floats per jet instead of a 100x3 reconstruction.  The score compares the encoder's
    standardised input with the decoder's standardised output (``ChamferScore(standardised=True)``):
    the same distance as in physical units divided by std, without ``un_normalize`` and a second
    division in the graph.  Encoder and decoder layers (and weights) are shared, not copied.
    """
    jets = keras.Input((N_CONSTITUENTS, N_FEATURES), name="jets", dtype="float32")
    mask = L.ConstituentMask(name="mask")(jets)
    enc, dec = standardised_parts(encoder, decoder)
    z_mean, z_log_var, x_std = enc(jets)
    y_std = dec([z_mean, jets])
    score_in = [x_std, y_std, mask] + ([] if weighting == "uniform" else [jets])
    score = L.ChamferScore(std, standardised=True, weighting=weighting, name="score")(score_in)
    kl = L.KLScore(beta, name="kl")([z_mean, z_log_var])
    return keras.Model(jets, {"score": score, "kl": kl}, name=name)


def rebuild_inference_model(model: keras.Model) -> keras.Model:
    """A loaded inference model rebuilt with the current ``build_inference_model`` (same weights).

    Why: a ``.keras`` file stores the graph it was saved with; after the score's graph changes, the
    shipped files are rebuilt from their own encoder and decoder (``tools/physics/export_onnx.py --rebuild-keras``)
    so TensorFlow and the ONNX export keep running one and the same score code.
    """
    encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
    score, kl = model.get_layer("score"), model.get_layer("kl")
    if getattr(score, "standardised", False):  # already the current graph: nothing to rebuild
        return model
    return build_inference_model(encoder, decoder, score.std, kl.beta, model.name,
                                 getattr(score, "weighting", "uniform"))


def load_inference_model(path: str | Path) -> keras.Model:
    """Load a shipped ``.keras`` inference model (the custom layers register on import)."""
    return keras.saving.load_model(str(path), compile=False)


def predict_scores(model: keras.Model, jets: np.ndarray, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Run the inference model in batches; returns {'score': (N,), 'kl': (N,)} as float32 numpy."""
    outs: dict[str, list[np.ndarray]] = {"score": [], "kl": []}
    for start in range(0, len(jets), batch_size):
        res = model(jets[start:start + batch_size], training=False)
        for key in outs:
            outs[key].append(ops.convert_to_numpy(res[key]))
    return {k: (np.concatenate(v) if v else np.zeros(0, np.float32)) for k, v in outs.items()}
