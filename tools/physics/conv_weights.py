"""The trained tensors of the shipped Conv-VAE, read out of its tf2onnx file by layer, and the polyphase
algebra of its decoder: what every rewrite of the network (``optimize_conv`` for ONNX, ``conv_tflite`` for
TensorFlow Lite) starts from, so that each writes the same weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hltrun.tools.catalogue import data_dir, models_dir

DATA = data_dir()  # the shipped samples and models, in a checkout or installed
SHIPPED = models_dir() / "conv_vae.onnx"
P = "conv_vae_1/"


def shipped_weights(path: Path) -> dict[str, np.ndarray]:
    """The trained tensors of the shipped Conv-VAE, by layer, in ONNX's (Keras-derived) layouts."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    if any(p.key == "hltrun.rewrite" for p in m.metadata_props):
        raise SystemExit(f"conv_weights: {path} is already a rewritten graph; give the tf2onnx export "
                         "(git show HEAD~N:data/models/conv_vae.onnx, or tools/physics/export_onnx.py)")
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}

    def arg(node: str, i: int) -> np.ndarray:
        return init[nodes[P + node].input[i]]

    w: dict[str, np.ndarray] = {}
    w["std_scale"] = arg("encoder_1/std_normalize_1/mul", 1)[:3]
    w["std_offset"] = arg("encoder_1/std_normalize_1/add", 1)[:3]
    assert np.array_equal(arg("encoder_1/std_normalize_1/mul", 1), np.tile(w["std_scale"], 100))
    assert np.array_equal(arg("encoder_1/std_normalize_1/add", 1), np.tile(w["std_offset"], 100))
    w["min_sum"] = arg("encoder_1/std_normalize_1/Maximum", 1)
    w["min_share"] = arg("encoder_1/std_normalize_1/Maximum_1", 1)
    w["c0_w"], w["c0_b"] = arg("encoder_1/conv2d_1/BiasAdd", 1), arg("encoder_1/conv2d_1/BiasAdd", 2)
    w["c1_w"], w["c1_b"] = arg("encoder_1/conv1d_1/convolution", 1), arg("encoder_1/conv1d_1/BiasAdd", 1)
    w["c2_w"], w["c2_b"] = arg("encoder_1/conv1d_1_2/convolution", 1), arg("encoder_1/conv1d_1_2/BiasAdd", 1)
    for name, layer in [("d1", "encoder_1/dense_1"), ("d2", "encoder_1/dense_1_2"), ("mu", "encoder_1/z_mean_1"),
                        ("lv", "encoder_1/z_log_var_1"), ("d3", "decoder_1/dense_2_1"), ("d4", "decoder_1/dense_3_1"),
                        ("d5", "decoder_1/dense_4_1")]:
        w[name + "_w"], w[name + "_b"] = arg(layer + "/MatMul", 1), arg(layer + "/BiasAdd", 1)
    w["t1_w"], w["t1_b"] = arg("decoder_1/conv1d_transpose_1/conv_transpose", 1), arg("decoder_1/conv1d_transpose_1/BiasAdd", 1)
    w["t2_w"], w["t2_b"] = (arg("decoder_1/conv1d_transpose_1_2/conv_transpose", 1),
                            arg("decoder_1/conv1d_transpose_1_2/BiasAdd", 1))
    w["t3_w"], w["t3_b"] = arg("decoder_1/conv2d_transpose_1/conv_transpose", 1), arg("decoder_1/conv2d_transpose_1/Add", 1)
    w["far"] = arg("score_1/mul", 1)
    # the shapes this rewrite assumes (the shipped architecture)
    shapes = {"c0_w": (16, 1, 3, 3), "c1_w": (20, 16, 1, 3), "c2_w": (24, 20, 1, 3), "d1_w": (1128, 136),
              "d5_w": (136, 1128), "t1_w": (24, 20, 1, 3), "t2_w": (20, 16, 1, 3), "t3_w": (16, 1, 3, 3)}
    for k, s in shapes.items():
        if w[k].shape != s:
            raise SystemExit(f"conv_weights: {path}: {k} has shape {w[k].shape}, expected {s}")
    return w


def polyphase_conv(t: np.ndarray) -> np.ndarray:
    """Conv weight (2 Cout, 2 Cin, 2) that applies the stride-1 ConvTranspose with weight t (Cin, Cout, 3)
    to a signal held in polyphase form (channel r * Cin + c at pair m = position 2m + r) and returns it in
    polyphase form, as a Conv with kernel 2 and pads 1: out[2a + s] = sum_k t_k^T in[2a + s - k], and
    2a + s - k = 2m + r with m in {a - 1, a} (window rows 0, 1)."""
    ci, co, k = t.shape
    wc = np.zeros((2 * co, 2 * ci, 2), np.float64)
    for s_ in (0, 1):
        for kk in range(k):
            d = s_ - kk
            m, r = d // 2, d % 2                          # m in {-1, 0}
            wc[s_ * co:(s_ + 1) * co, r * ci:(r + 1) * ci, m + 1] += t[:, :, kk].T
    return wc


def folded_upsample(t: np.ndarray) -> np.ndarray:
    """The x2 nearest up-sampling folded into the stride-1 ConvTranspose that follows it (weight t (Cin, Cout,
    3)): one stride-2 ConvTranspose of kernel 4, V = (W0, W0 + W1, W1 + W2, W2), in float64."""
    v4 = np.zeros((*t.shape[:2], 4))
    v4[:, :, 0:3] += t
    v4[:, :, 1:4] += t
    return v4


def upsampled_polyphase(t: np.ndarray) -> np.ndarray:
    """Conv weight (2 Cout, Cin, 2) computing ``folded_upsample(t)`` on the un-upsampled sequence, its output in
    polyphase form (channel r * Cout + c at pair m = position 2m + r), as a Conv with kernel 2 and pads 1:
    out[2m + r] = V_r h[m] + V_{r+2} h[m - 1]."""
    v4 = folded_upsample(t)
    ci, co = t.shape[:2]
    wc = np.zeros((2 * co, ci, 2))
    for r in (0, 1):
        wc[r * co:(r + 1) * co, :, 0] = v4[:, :, r + 2].T
        wc[r * co:(r + 1) * co, :, 1] = v4[:, :, r].T
    return wc
