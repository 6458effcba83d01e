"""Anomaly-detection models of hltrun: Conv-VAE and GCN-VAE on (N, 100, 3) jet constituents.

Importing this package is cheap and never imports TensorFlow or Keras: the jet batcher imports
``hltrun.modules.models.preprocess`` in ONNX-Runtime-only jobs.  The Keras code lives in the submodules
``layers``, ``losses``, ``vae``, ``conv_vae`` and ``gcn_vae``; load a shipped model with
``hltrun.modules.models.vae.load_inference_model``.
"""
from .preprocess import N_CONSTITUENTS, N_FEATURES, jets_to_array

MODEL_BUILDERS = {"conv": "hltrun.modules.models.conv_vae", "gcn": "hltrun.modules.models.gcn_vae"}

__all__ = ["N_CONSTITUENTS", "N_FEATURES", "jets_to_array", "MODEL_BUILDERS"]
