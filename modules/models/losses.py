"""Reconstruction and latent-space terms shared by training and by the exported score.

One implementation serves the training loss and the in-graph anomaly score, so what the trigger
cuts on is exactly what the model was trained to minimise.
"""
from __future__ import annotations

from typing import Any

from keras import ops

# Stand-in distance for pairs that involve a padded constituent: large enough never to be a
# minimum, finite so that no inf/NaN reaches gradients or the ONNX graph.
_FAR = 1.0e30


PT_INDEX = 2  # feature order is (delta eta, delta phi, pT)

# How the models see a constituent's pT (the input contract stays pT in GeV; the transform is in the
# graph, so the batcher, the source and every backend are unchanged):
#   linear        pT [GeV]
#   log           log(pT / GeV)
#   fraction      pT / sum of the jet's constituent pT (the 100 hardest, as fed)
#   log_fraction  log of that fraction: the jet's energy SHARING, blind to its pT scale (issue 12)
PT_MODES = ("linear", "log", "fraction", "log_fraction")
_LOG_FLOOR = {"log": 1e-6, "log_fraction": 1e-12}  # finite dummy for padded rows (masked later)


def check_pt_mode(mode: str) -> str:
    """``mode`` if it is one of PT_MODES, else a ValueError naming the choices."""
    if mode not in PT_MODES:
        raise ValueError(f"pt_mode {mode!r}: choose one of {', '.join(PT_MODES)}")
    return mode


def transform_pt(x: Any, mode: str) -> Any:
    """(deta, dphi, pT) -> (deta, dphi, f(pT)) with f given by ``mode`` (see PT_MODES).

    Padded rows (pT = 0) stay 0 in a fraction and get a finite dummy in a log; callers mask them.
    """
    if mode == "linear":
        return x
    pt = x[..., PT_INDEX:PT_INDEX + 1]
    if mode in ("fraction", "log_fraction"):
        pt = pt / ops.maximum(ops.sum(pt, axis=-2, keepdims=True), 1e-6)
    if mode in _LOG_FLOOR:
        pt = ops.log(ops.maximum(pt, _LOG_FLOOR[mode]))
    return ops.concatenate([x[..., :PT_INDEX], pt], axis=-1)


def transform_pt_numpy(jets: Any, mode: str) -> Any:
    """NumPy twin of ``transform_pt`` for (N, P, 3) float arrays (training statistics)."""
    import numpy as np

    out = np.array(jets, dtype=np.float64, copy=True)
    pt = out[..., PT_INDEX]
    if mode in ("fraction", "log_fraction"):
        pt /= np.maximum(pt.sum(axis=-1, keepdims=True), 1e-6)
    if mode in _LOG_FLOOR:
        out[..., PT_INDEX] = np.log(np.maximum(pt, _LOG_FLOOR[mode]))
    return out


def pt_to_log(x: Any) -> Any:
    """(deta, dphi, pT) -> (deta, dphi, log pT); padded rows (pT = 0) get a finite dummy."""
    return transform_pt(x, "log")


def to_metric_space(x: Any, mask: Any, std: Any, log_pt: bool) -> Any:
    """Features in which distances are measured: (deta, dphi, pT or log pT) / training std.

    Dividing by the std makes the three features weigh alike (the mean cancels in differences);
    padded rows are set to 0.  Only for models saved before ``pt_mode`` (the current ones compare
    standardised features directly, ``ChamferScore(standardised=True)``).
    """
    f = pt_to_log(x) if log_pt else x
    inv = ops.convert_to_tensor([1.0 / float(v) for v in std], dtype=x.dtype)
    return f * inv * ops.expand_dims(mask, -1)


def masked_mean(values: Any, mask: Any) -> Any:
    """Mean of ``values`` (N, P) over the entries with mask 1; (N,)."""
    n = ops.maximum(ops.sum(mask, axis=-1), 1.0)
    return ops.sum(values * mask, axis=-1) / n


CHAMFER_WEIGHTINGS = ("uniform", "pt_fraction")


def point_weights(jets: Any, mask: Any, weighting: str) -> Any:
    """Per-slot weights (N, P) of the Chamfer sums, each row summing to 1 over the real constituents.

    ``uniform``: 1/n per real constituent (every constituent counts alike: soft wide-angle ones
    dominate).  ``pt_fraction``: the constituent's share of the jet's pT, so the distance is
    energy-weighted like the energy mover's distance (Komiske, Metodiev, Thaler 2019): the hard
    prongs that carry a jet's substructure dominate, soft radiation barely counts, and the score is
    insensitive to soft and collinear splittings.  Slot j of the reconstruction (pT rank j) takes
    the weight of input slot j.
    """
    if weighting == "uniform":
        return mask / ops.maximum(ops.sum(mask, axis=-1, keepdims=True), 1.0)
    if weighting == "pt_fraction":
        pt = jets[..., PT_INDEX] * mask
        return pt / ops.maximum(ops.sum(pt, axis=-1, keepdims=True), 1e-6)
    raise ValueError(f"chamfer weighting {weighting!r}: choose one of {', '.join(CHAMFER_WEIGHTINGS)}")


def chamfer_distance(x: Any, y: Any, mask: Any, weights: Any = None) -> Any:
    """Symmetric Chamfer distance per jet between point sets x and y (N, P, F); returns (N,).

    All P x P squared distances come from ONE batched matmul of augmented vectors,
    [x, |x|^2 + far, 1] . [-2y, 1, |y|^2 + far]^T = |x - y|^2 (+ far), followed by two min-reductions:
    no gathers, no arg-min, no broadcast difference tensor, one mask term.  ``far`` is a huge constant
    on padded points (mask 0), so a padded point is never a nearest neighbour; the rows and columns
    of padded points drop out of the means.  Score = mean over real x of min_y d + mean over real y
    of min_x d; both sets use the input's mask.

    Precision: the matrix-product form cancels in float32 for a hard constituent and its close
    reconstruction (|x|^2 ~ 1e3, d ~ 1e-2), so each distance carries an absolute error of ~1e-7 x
    (|x|^2 + |y|^2).  TensorFlow and ONNX Runtime sum the 5 products in different orders; on the
    shipped samples their scores differ by < 1e-4 relative (the project's agreement criterion,
    checked by tools/physics/export_onnx.py and tests/test_models.py).  The summed minima are clamped at 0, so
    a cancellation never makes a distance negative.  Gradients flow through the selected minima, as
    with an explicit nearest-neighbour search.
    """
    far = (1.0 - mask) * _FAR                       # (N, P): 0 on real points, huge on padding
    xx = ops.expand_dims(ops.sum(x * x, axis=-1) + far, -1)
    yy = ops.expand_dims(ops.sum(y * y, axis=-1) + far, -1)
    ones = ops.ones_like(xx)
    xa = ops.concatenate([x, xx, ones], axis=-1)    # (N, P, F + 2)
    ya = ops.concatenate([-2.0 * y, ones, yy], axis=-1)
    d = ops.matmul(xa, ops.transpose(ya, (0, 2, 1)))  # (N, P, P): d[i, j] = |x_i - y_j|^2 (+ far)
    # x_i's nearest y plus y_i's nearest x, slot by slot: both sets use the same mask, so the sum of
    # the two means is one mean (one mask product, one reduction)
    nearest = ops.min(d, axis=2) + ops.min(d, axis=1)  # (N, P)
    if weights is not None:  # weighted sum (point_weights: rows sum to 1, zero on padding)
        return ops.sum(ops.maximum(nearest, 0.0) * weights, axis=-1)
    return masked_mean(ops.maximum(nearest, 0.0), mask)


def _exp_m1_minus(v: Any) -> Any:
    """exp(v) - 1 - v without float32 cancellation (a Taylor series where |v| < 0.5).

    Near the prior (v ~ 0) the direct form loses all digits, which made TF and ONNX Runtime disagree
    at the 1e-3 level for the GCN-VAE's small KL; float64 would fix it but TensorRT has no float64.
    Series truncated after v^8/8!: relative error < 1e-8 on |v| < 0.5; outside, the direct form
    loses < 3e-6 relative.
    """
    series = v * v * (1 / 2 + v * (1 / 6 + v * (1 / 24 + v * (1 / 120 + v * (1 / 720 + v * (1 / 5040 + v / 40320))))))
    return ops.where(ops.abs(v) < 0.5, series, ops.exp(v) - 1.0 - v)


def kl_per_dimension(z_mean: Any, z_log_var: Any) -> Any:
    """KL(q(z|x) || N(0, 1)) per jet and latent dimension; (N, latent): 0.5 * (mean^2 + [exp(v) - 1 - v])."""
    return 0.5 * _twice_kl_terms(z_mean, z_log_var)


def _twice_kl_terms(z_mean: Any, z_log_var: Any) -> Any:
    """mean^2 + [exp(v) - 1 - v] per latent dimension, the bracket computed stably (see above)."""
    return ops.square(z_mean) + _exp_m1_minus(z_log_var)


def kl_divergence(z_mean: Any, z_log_var: Any) -> Any:
    """KL(q(z|x) || N(0, 1)) per jet, summed over latent dimensions; (N,)."""
    return 0.5 * ops.sum(_twice_kl_terms(z_mean, z_log_var), axis=-1)
