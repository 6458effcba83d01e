"""Graph-convolutional VAE: GCN layers act(A_hat X W + b) over the jet's constituents.

With a fully connected A_hat every GCN output row is the same mean over the jet, so each graph
convolution is used as a residual block X + act(A_hat X W + b): the GCN term brings in the whole
jet, the skip keeps each constituent's own features (otherwise the decoder could only emit one
point per jet).  Encoder: per-constituent embedding, two residual GCN blocks, masked mean pooling,
graph-level latent.  Decoder: latent -> 100 constituent slots (slot = pT rank), two residual GCN
blocks on the input's graph, per-constituent (deta, dphi, pT).
"""
from __future__ import annotations

from typing import Any

import keras
from keras import layers

from . import layers as L
from .preprocess import N_CONSTITUENTS, N_FEATURES
from .vae import ModelSpec, decoder_inputs, decoder_model, encoder_inputs, encoder_model

ACT = "tanh"
WIDTH_ENC, WIDTH_DEC = 32, 16


def default_spec() -> ModelSpec:
    """Training settings (issue 12): tanh, latent 8; pT as log of its share of the jet pT; Chamfer
    sums weighted by each constituent's pT share (energy-weighted, like the energy mover's distance),
    which makes the hard prongs count.  beta = 1e-3: the study's beta_KL = 10 collapsed the latent
    (KL ~1e-6 nats, a template jet); at 1e-3 it stays live."""
    return ModelSpec(name="gcn_vae", latent_dim=8, beta=1e-3, learning_rate=1e-3, kl_warmup_epochs=0,
                     pt_mode="log_fraction", weighting="pt_fraction")


def residual_gcn(x: Any, adj: Any, units: int, n_blocks: int) -> Any:
    """``n_blocks`` blocks x <- x + act(A_hat x W + b)."""
    for _ in range(n_blocks):
        x = layers.Add()([x, L.GraphConv(units, ACT)([x, adj])])
    return x


def build(mean: list[float], std: list[float], latent_dim: int = 8, pt_mode: str = "linear"
          ) -> tuple[keras.Model, keras.Model]:
    """Encoder jets -> [z_mean, z_log_var] and decoder [z, jets] -> reconstruction (physical units)."""
    jets, mask = encoder_inputs()
    adj = L.NormalizedAdjacency()(mask)
    x = L.Standardize(mean, std, pt_mode=pt_mode, name="std_normalize")([jets, mask])
    x = layers.Dense(WIDTH_ENC, activation=ACT)(x)
    x = residual_gcn(x, adj, WIDTH_ENC, 2)
    x = layers.Dense(WIDTH_ENC, activation=ACT)(x)
    x = L.MaskedMeanPool()([x, mask])
    x = layers.Dense(WIDTH_ENC, activation=ACT)(x)
    encoder = encoder_model(jets, x, latent_dim)

    z, jets_d, mask_d = decoder_inputs(latent_dim)
    adj_d = L.NormalizedAdjacency()(mask_d)
    y = layers.Dense(WIDTH_ENC, activation=ACT)(z)
    y = layers.Dense(N_CONSTITUENTS * WIDTH_DEC, activation=ACT)(y)
    y = layers.Reshape((N_CONSTITUENTS, WIDTH_DEC))(y)
    y = residual_gcn(y, adj_d, WIDTH_DEC, 2)
    y = layers.Dense(N_FEATURES)(y)
    return encoder, decoder_model(z, jets_d, mask_d, y, mean, std, pt_mode)
