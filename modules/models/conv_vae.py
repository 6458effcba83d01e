"""Convolutional VAE of the IML 2022 HLT study (encoder/decoder as in its model summary)."""
from __future__ import annotations

import keras
from keras import layers

from . import layers as L
from .preprocess import N_CONSTITUENTS, N_FEATURES
from .vae import ModelSpec, decoder_inputs, decoder_model, encoder_inputs, encoder_model

ACT = "elu"


def default_spec() -> ModelSpec:
    """Training settings (issue 12): Adam 1e-3, latent 8; pT as log of its share of the jet pT, so the
    score sees substructure, not the jet's pT; every constituent weighs alike in the Chamfer sums.
    beta = 1 with free bits 0.25 nat per latent dimension: a narrow but live latent (the study's
    beta = 5e-4 let the latent encode enough to reconstruct 2-prong jets as well as QCD)."""
    return ModelSpec(name="conv_vae", latent_dim=8, beta=1.0, learning_rate=1e-3, kl_warmup_epochs=0,
                     pt_mode="log_fraction", free_bits=0.25, weighting="uniform")


def build(mean: list[float], std: list[float], latent_dim: int = 8, pt_mode: str = "linear"
          ) -> tuple[keras.Model, keras.Model]:
    """Encoder jets -> [z_mean, z_log_var] and decoder [z, jets] -> reconstruction (physical units)."""
    jets, mask = encoder_inputs()
    x = L.Standardize(mean, std, pt_mode=pt_mode, name="std_normalize")([jets, mask])
    x = layers.Reshape((N_CONSTITUENTS, N_FEATURES, 1))(x)
    x = layers.Conv2D(16, (3, 3), activation=ACT)(x)                     # (98, 1, 16)
    x = layers.Reshape((N_CONSTITUENTS - 2, 16))(x)
    x = layers.Conv1D(20, 3, activation=ACT)(x)                          # (96, 20)
    x = layers.Conv1D(24, 3, activation=ACT)(x)                          # (94, 24)
    x = layers.AveragePooling1D(2)(x)                                    # (47, 24)
    x = layers.Flatten()(x)                                              # 1128
    x = layers.Dense(136, activation=ACT)(x)
    x = layers.Dense(32, activation=ACT)(x)
    encoder = encoder_model(jets, x, latent_dim)

    z, jets_d, mask_d = decoder_inputs(latent_dim)
    y = layers.Dense(32, activation=ACT)(z)
    y = layers.Dense(136, activation=ACT)(y)
    y = layers.Dense(47 * 24, activation=ACT)(y)
    y = layers.Reshape((47, 24))(y)
    y = layers.UpSampling1D(2)(y)                                        # (94, 24)
    y = layers.Conv1DTranspose(20, 3, activation=ACT)(y)                 # (96, 20)
    y = layers.Conv1DTranspose(16, 3, activation=ACT)(y)                 # (98, 16)
    y = layers.Reshape((N_CONSTITUENTS - 2, 1, 16))(y)
    y = layers.Conv2DTranspose(1, (3, 3))(y)                             # (100, 3, 1)
    y = layers.Reshape((N_CONSTITUENTS, N_FEATURES))(y)
    return encoder, decoder_model(z, jets_d, mask_d, y, mean, std, pt_mode)
