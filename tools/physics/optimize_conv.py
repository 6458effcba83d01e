"""Rewrite the shipped Conv-VAE ONNX graph into a leaner formulation with the same weights (issue 21 item 3).

The shipped graph is tf2onnx's form of the Keras model: channels-last tensors, every 1-D convolution
written as a 2-D one on (N, C, 1, L) with a Transpose before and after, the first Conv2D on the
(100, 3) "image", an Unsqueeze/Tile/Reshape up-sampling, ConvTranspose decoders, the per-feature
constants and the mask broadcast over trailing axes of length 1, a Cast/Not/Mul/Add select in the KL.
This tool reads the trained tensors out of that file (by node name, shapes asserted) and writes the same
network; the defaults are the formulation kept in docs/inference.md ("Issue 21 item 3"):

* channels-first (N, C, L) throughout: the input is transposed once; the first Conv2D (1 -> 16, 3x3
  on (100, 3)) is a Conv1D with the three features as input channels; the last ConvTranspose2D
  (16 -> 1, 3x3) a convolution with three output channels; the Keras flatten order (L, C) is folded
  into the rows of the first dense layer and the columns of the last one;
* the decoder without ConvTranspose (``--decoder polyphase``): the x2 nearest up-sampling folded into
  the first ConvTranspose (stride 2, kernel 4: V0 = W0, V1 = W0 + W1, V2 = W1 + W2, V3 = W2), that and
  the two stride-1 ConvTransposes written as Convs with kernel 2 and pads 1 on the sequence held as
  (even, odd) positions side by side in the channels (``polyphase_conv``), one Transpose at the end;
* the average pooling as phases (``--pool phases``): the last encoder Conv at stride 2 with kernel 4,
  even and odd outputs as 2 x 24 channels, the pool one ReduceSum, its 1/2 folded into dense 1;
* Elu as ORT's Elu op on small tensors (one kernel, fused into FusedGemm) and as
  Max(x, Exp(Min(x, 0)) - 1) on large ones (ORT's Elu evaluates exp value by value), ``--elu-op-below``;
* the Chamfer score's augmented vectors with the mask itself in place of the column of ones
  (padded-padded pairs then meet at 0, but only padded rows see them and those are masked out of
  the sum), Where(mask, |x|^2, 1e30) in place of |x|^2 + (1 - mask) * 1e30 (equal in float32:
  |x|^2 << ulp(1e30)), and the factor -2 folded into the last convolution's weights and bias
  (exact: a power of two);
* the KL's float32 series for exp(v) - 1 - v with one Where (``--kl-float64``: in float64, 4-5 %
  faster at batch 2 but no float64 tensor can reach TensorRT; ``--kl-direct``: straight float32).

The other options are the attempts recorded in docs/inference.md (ConvTranspose decoders, NCHWc 4-D
tensors, the batch laid end to end, channels-last im2col Gemms, ...). Every choice keeps the trained
weights; the scores agree with the shipped graph within float32 rounding (``--check``: every shipped
sample, the card's two cuts). The file's hltrun.* metadata travels with it.

    python tools/physics/optimize_conv.py --out /tmp/conv_vae_rewritten.onnx --check
    python tools/physics/optimize_conv.py --out /tmp/x.onnx --time other=/tmp/y.onnx   # interleaved timing
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hltrun.framework.atomic import write_bytes, write_text
from hltrun.tools.bench.runner import positive_int
from hltrun.tools.catalogue import require_files, usage_error
from hltrun.tools.physics.conv_agreement import agreement, print_agreement
from hltrun.tools.physics.conv_weights import (DATA, SHIPPED, folded_upsample, polyphase_conv,  # noqa: F401
                                               shipped_weights, upsampled_polyphase)

PROG = "optimize_conv"

if TYPE_CHECKING:
    import onnx



class _Graph:
    """The nodes and initialisers of a graph being written: constants as float32 (``_f64`` names keep
    float64), every node named by its scope, op and a running number."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self._count = 0

    def const(self, name: str, value: Any) -> str:
        from onnx import numpy_helper

        arr = np.asarray(value)
        if arr.dtype == np.float64 and not name.endswith("_f64"):
            arr = arr.astype(np.float32)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, ins: list[str], scope: str, **attrs: Any) -> str:
        from onnx import helper

        self._count += 1
        out = f"{scope}/{op}_{self._count}"
        self.nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def chamfer_score(self, d: str, mask: str, zero: str, one: str, ax1: str, s: str) -> None:
        """The score output from the (N, 100, 100) squared distances ``d`` and the (N, 100) mask of real
        constituents: the masked mean of the two nearest-neighbour minima, floored at 0."""
        from onnx import helper

        node = self.node
        mx = node("ReduceMin", [d], s, axes=[2], keepdims=0)
        my = node("ReduceMin", [d], s, axes=[1], keepdims=0)
        both = node("Max", [node("Add", [mx, my], s), zero], s)
        tot = node("ReduceSum", [node("Mul", [both, mask], s), ax1], s, keepdims=0)
        cnt = node("Max", [node("ReduceSum", [mask, ax1], s, keepdims=0), one], s)
        self.nodes.append(helper.make_node("Div", [tot, cnt], ["score"], name="score/out"))

    def model(self, name: str) -> "onnx.ModelProto":
        """The checked model: input jets (N, 100, 3), outputs kl and score (N,)."""
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
            [helper.make_tensor_value_info("kl", TensorProto.FLOAT, ["N"]),
             helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                  producer_name="hltrun.optimize_conv")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

def build(w: dict[str, np.ndarray], elu_op_below: int = 200, fold_upsample: bool = True,
          convt_as_conv: bool = False, four_d: bool = False, polyphase: bool = True,
          pool_in_dense: bool = False, pool_phases: bool = True, flat_encoder: bool = False,
          kl_float32: bool = True) -> "onnx.ModelProto":
    """The Conv-VAE of weights ``w`` in channels-first form; the defaults are the kept formulation."""
    from onnx import TensorProto, helper

    graph = _Graph()
    nodes, const, node = graph.nodes, graph.const, graph.node

    def elu(x: str, size: int, scope: str) -> str:
        if size < elu_op_below:
            return node("Elu", [x], scope)
        m = node("Min", [x, zero], scope)
        e = node("Exp", [m], scope)
        s = node("Sub", [e, one], scope)
        return node("Max", [x, s], scope)

    sp = (lambda k: [1, k]) if four_d else (lambda k: [k])

    def w4(a: np.ndarray) -> np.ndarray:  # (O, I, K) -> (O, I, 1, K) when 4-D
        return a[:, :, None, :] if four_d else a

    def conv(x: str, wt: np.ndarray, b: np.ndarray, scope: str, pad: int = 0) -> str:
        return node("Conv", [x, const(scope + "/W", w4(wt)), const(scope + "/B", b)], scope,
                    kernel_shape=sp(wt.shape[2]), pads=(([0, pad, 0, pad]) if four_d else [pad, pad]))

    def convt(x: str, wt: np.ndarray, b: np.ndarray, scope: str, stride: int = 1) -> str:
        """wt: (Cin, Cout, K) ConvTranspose weight."""
        if convt_as_conv and stride == 1:
            k = wt.shape[2]
            return conv(x, np.ascontiguousarray(wt.transpose(1, 0, 2)[:, :, ::-1]), b, scope, pad=k - 1)
        return node("ConvTranspose", [x, const(scope + "/W", w4(wt)), const(scope + "/B", b)], scope,
                    kernel_shape=sp(wt.shape[2]), strides=sp(stride))

    zero = const("zero", np.float32(0.0))
    one = const("one", np.float32(1.0))

    # ---- standardisation, channels-first
    s = "encoder/std"
    xt = node("Transpose", ["jets"], s, perm=[0, 2, 1])                        # (N, 3, 100)
    pt = node("Slice", [xt, const(s + "/s2", [2]), const(s + "/e3", [3]), const(s + "/ax1", [1])], s)
    etaphi = node("Slice", [xt, const(s + "/s0", [0]), const(s + "/e2", [2]), s + "/ax1"], s)
    tot = node("ReduceSum", [pt, const(s + "/ax2", [2])], s, keepdims=1)
    tot = node("Max", [tot, const(s + "/min_sum", w["min_sum"])], s)
    share = node("Div", [pt, tot], s)
    share = node("Max", [share, const(s + "/min_share", w["min_share"])], s)
    logshare = node("Log", [share], s)
    real = node("Greater", [pt, zero], "mask")                                  # (N, 1, 100) bool
    mask = node("Cast", [real], "mask", to=TensorProto.FLOAT)
    z = node("Concat", [etaphi, logshare], s, axis=1)
    z = node("Mul", [z, const(s + "/scale", w["std_scale"].reshape(3, 1))], s)
    z = node("Add", [z, const(s + "/offset", w["std_offset"].reshape(3, 1))], s)
    x = node("Mul", [z, mask], s)                                               # x_std (N, 3, 100)

    # ---- encoder
    c0 = w["c0_w"][:, 0].transpose(0, 2, 1)            # Conv2D (16, 1, 3 taps, 3 features) -> (16, 3 features, 3 taps)
    c2 = w["c2_w"][:, :, 0]
    c2_phases = np.zeros((48, 20, 4), np.float32)      # stride 2, kernel 4: even outputs taps 0-2, odd ones 1-3
    c2_phases[:24, :, 0:3] = c2
    c2_phases[24:, :, 1:4] = c2
    c2_b2 = np.tile(w["c2_b"].ravel(), 2)
    d1 = w["d1_w"].reshape(47, 24, 136).transpose(1, 0, 2)                     # rows (l, c) -> (c, l)
    h = x
    if flat_encoder:
        # the batch laid end to end along L: (1, C, N * 100), each conv ONE Gemm over all jets; outputs that
        # straddle two jets (the last 2, 4 of every 100 slots, the last 3 of every 50 after the stride-2 conv)
        # are computed and never used: the first dense layer has zero rows for them
        h = node("Transpose", [h], "encoder/flat", perm=[1, 0, 2])           # (3, N, 100)
        h = node("Reshape", [h, const("encoder/flat/s", [1, 3, -1])], "encoder/flat")
        h = elu(conv(h, c0, w["c0_b"], "encoder/conv0"), 1568, "encoder/conv0")
        h = elu(conv(h, w["c1_w"][:, :, 0], w["c1_b"].ravel(), "encoder/conv1"), 1920, "encoder/conv1")
        h = node("Conv", [h, const("encoder/conv2/W", c2_phases), const("encoder/conv2/B", c2_b2)],
                 "encoder/conv2", kernel_shape=[4], strides=[2])
        h = elu(h, 2256, "encoder/conv2")                                       # (1, 2 x 24, N * 50 - 3)
        h = node("Pad", [h, const("encoder/pool/pads", [0, 0, 0, 0, 0, 3])], "encoder/pool")
        h = node("Reshape", [h, const("encoder/pool/s", [2, -1])], "encoder/pool")
        h = node("ReduceSum", [h, const("ax0", [0])], "encoder/pool", keepdims=0)
        h = node("Reshape", [h, const("encoder/pool/s2", [24, -1, 50])], "encoder/pool")
        h = node("Transpose", [h], "encoder/pool", perm=[1, 0, 2])              # (N, 24, 50)
        h = node("Reshape", [h, const("encoder/flat", [-1, 1200])], "encoder/flatten")
        d1 = np.concatenate([d1 * np.float32(0.5), np.zeros((24, 3, 136), np.float32)], axis=1).reshape(1200, 136)
    else:
        if four_d:
            h = node("Unsqueeze", [h, const("ax2", [2])], "encoder")
        h = elu(conv(h, c0, w["c0_b"], "encoder/conv0"), 1568, "encoder/conv0")
        h = elu(conv(h, w["c1_w"][:, :, 0], w["c1_b"].ravel(), "encoder/conv1"), 1920, "encoder/conv1")
        if pool_phases:   # even and odd outputs as 2 x 24 channels; the average pool = their sum / 2
            h = node("Conv", [h, const("encoder/conv2/W", c2_phases[:, :, None, :] if four_d else c2_phases),
                              const("encoder/conv2/B", c2_b2)], "encoder/conv2", kernel_shape=sp(4), strides=sp(2))
            h = elu(h, 2256, "encoder/conv2")                                   # (N, 2 x 24, 47)
            h = node("Reshape", [h, const("encoder/phases", [-1, 2, 1128])], "encoder/pool")
            h = node("ReduceSum", [h, const("encoder/pool/ax1", [1])], "encoder/pool", keepdims=0)  # (N, 1128), (c, l)
            d1 = (d1 * np.float32(0.5)).reshape(1128, 136)
        elif pool_in_dense:                                                     # rows (c, l of 94), x 0.5
            h = elu(conv(h, c2, w["c2_b"].ravel(), "encoder/conv2"), 2256, "encoder/conv2")
            h = node("Reshape", [h, const("encoder/flat", [-1, 2256])], "encoder/flatten")
            d1 = (np.repeat(d1, 2, axis=1) * np.float32(0.5)).reshape(2256, 136)
        else:
            h = elu(conv(h, c2, w["c2_b"].ravel(), "encoder/conv2"), 2256, "encoder/conv2")
            h = node("AveragePool", [h], "encoder/pool", kernel_shape=sp(2), strides=sp(2))   # (N, 24, 47)
            h = node("Reshape", [h, const("encoder/flat", [-1, 1128])], "encoder/flatten")
            d1 = d1.reshape(1128, 136)
    h = elu(node("Gemm", [h, const("encoder/d1/W", d1), const("encoder/d1/B", w["d1_b"])], "encoder/d1"), 136, "encoder/d1")
    h = elu(node("Gemm", [h, const("encoder/d2/W", w["d2_w"]), const("encoder/d2/B", w["d2_b"])], "encoder/d2"), 32, "encoder/d2")
    mu = node("Gemm", [h, const("encoder/mu/W", w["mu_w"]), const("encoder/mu/B", w["mu_b"])], "encoder/mu")
    lv = node("Gemm", [h, const("encoder/lv/W", w["lv_w"]), const("encoder/lv/B", w["lv_b"])], "encoder/lv")

    # ---- KL: 0.5 * sum(mu^2 + exp(v) - 1 - v)
    s = "kl"
    if kl_float32 == "direct":   # exp(v) - 1 - v straight in float32 (cancels for small |v|: measured, not kept)
        t = node("ReduceSum", [node("Sub", [node("Sub", [node("Exp", [lv], s), one], s), lv], s),
                               const(s + "/ax", [1])], s, keepdims=0)
    elif kl_float32:   # the shipped graph's float32 series (no float64 tensor: TensorRT has none), one Where
        series = node("Mul", [lv, const(s + "/c8", np.float32(1.0 / 40320))], s)
        for c in (1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6):
            series = node("Mul", [lv, node("Add", [series, const(f"{s}/c{round(1 / c)}", np.float32(c))], s)], s)
        series = node("Add", [series, const(s + "/c2", np.float32(0.5))], s)
        series = node("Mul", [node("Mul", [lv, lv], s), series], s)          # v^2 (1/2 + v/6 + ... + v^6/8!)
        direct = node("Sub", [node("Sub", [node("Exp", [lv], s), one], s), lv], s)
        small = node("Less", [node("Abs", [lv], s), const(s + "/half_", np.float32(0.5))], s)
        t = node("ReduceSum", [node("Where", [small, series, direct], s), const(s + "/ax", [1])], s, keepdims=0)
    else:
        v = node("Cast", [lv], s, to=TensorProto.DOUBLE)
        t = node("Sub", [node("Exp", [v], s), v], s)
        t = node("ReduceSum", [t, const(s + "/ax", [1])], s, keepdims=0)
        t = node("Sub", [t, const(s + "/eight_f64", np.float64(w["lv_w"].shape[1]))], s)
        t = node("Cast", [t], s, to=TensorProto.FLOAT)
    m2 = node("ReduceSumSquare", [mu], s, axes=[1], keepdims=0)
    klsum = node("Add", [m2, t], s)
    nodes.append(helper.make_node("Mul", [klsum, const(s + "/half", np.float32(0.5))], ["kl"], name="kl/out"))

    # ---- decoder
    h = elu(node("Gemm", [mu, const("decoder/d3/W", w["d3_w"]), const("decoder/d3/B", w["d3_b"])], "decoder/d3"), 32, "decoder/d3")
    h = elu(node("Gemm", [h, const("decoder/d4/W", w["d4_w"]), const("decoder/d4/B", w["d4_b"])], "decoder/d4"), 136, "decoder/d4")
    d5 = w["d5_w"].reshape(136, 47, 24).transpose(0, 2, 1).reshape(136, 1128)   # columns (l, c) -> (c, l)
    d5b = w["d5_b"].reshape(47, 24).T.ravel()
    h = elu(node("Gemm", [h, const("decoder/d5/W", d5), const("decoder/d5/B", d5b)], "decoder/d5"), 1128, "decoder/d5")
    h = node("Reshape", [h, const("decoder/shape", [-1, 24, 1, 47] if four_d else [-1, 24, 47])], "decoder/reshape")
    t1 = w["t1_w"][:, :, 0]                                                     # (24 in, 20 out, 3)
    if polyphase:
        wc = upsampled_polyphase(t1.astype(np.float64))   # out[2m + r] = V_r h[m] + V_{r+2} h[m - 1]
        h = elu(conv(h, wc.astype(np.float32), np.tile(w["t1_b"].ravel(), 2), "decoder/convt1", pad=1), 1920,
                "decoder/convt1")                                              # (N, 2 x 20, 48)
        h = elu(conv(h, polyphase_conv(w["t2_w"][:, :, 0]).astype(np.float32), np.tile(w["t2_b"].ravel(), 2),
                     "decoder/convt2", pad=1), 1568, "decoder/convt2")          # (N, 2 x 16, 49)
        t3 = w["t3_w"][:, 0].transpose(0, 2, 1).astype(np.float64) * -2.0      # (16 in, 3 features out, 3 taps)
        y2 = conv(h, polyphase_conv(t3).astype(np.float32), np.tile(np.repeat(w["t3_b"].ravel() * np.float32(-2.0), 3), 2),
                  "decoder/convt3", pad=1)                                      # (N, 2 x 3, 50)
        y2 = node("Reshape", [y2, const("decoder/phases", [-1, 2, 3, 50])], "decoder/unphase")
        y2 = node("Transpose", [y2], "decoder/unphase", perm=[0, 2, 3, 1])
        y2 = node("Reshape", [y2, const("decoder/l100", [-1, 3, 100])], "decoder/unphase")   # -2 y, (N, 3, 100)
    elif fold_upsample:
        v4 = folded_upsample(t1.astype(np.float64))
        h = convt(h, v4.astype(np.float32), w["t1_b"].ravel(), "decoder/convt1", stride=2)
    else:
        h = node("Unsqueeze", [h, const("decoder/ax_last", [-1])], "decoder/up")
        h = node("Expand", [h, const("decoder/up2", [1, 1, 1, 2] if not four_d else [1, 1, 1, 1, 2])], "decoder/up")
        h = node("Reshape", [h, const("decoder/upshape", [-1, 24, 1, 94] if four_d else [-1, 24, 94])], "decoder/up")
        h = convt(h, t1, w["t1_b"].ravel(), "decoder/convt1")
    if not polyphase:
        h = elu(h, 1920, "decoder/convt1")
        h = elu(convt(h, w["t2_w"][:, :, 0], w["t2_b"].ravel(), "decoder/convt2"), 1568, "decoder/convt2")
        t3 = w["t3_w"][:, 0]                                                    # (16, 3 taps, 3 features)
        t3 = np.ascontiguousarray(t3.transpose(0, 2, 1)) * np.float32(-2.0)    # (16 in, 3 features out, 3 taps)
        y2 = convt(h, t3, np.repeat(w["t3_b"].ravel() * np.float32(-2.0), 3), "decoder/convt3")  # -2 y, (N, 3, 100)
    if four_d and not polyphase:
        y2 = node("Squeeze", [y2, "ax2"], "decoder")
        # x stays 3-D for the score (only the encoder's copy was unsqueezed)

    # ---- Chamfer score: A = [x, where(m, |x|^2, far), m], B = [-2y, m, where(m, |y|^2, far)]
    s = "score"
    far = const(s + "/far", w["far"])
    ax1 = const(s + "/ax1", [1])
    nx = node("ReduceSumSquare", [x], s, axes=[1], keepdims=1)
    nx = node("Where", [real, nx, far], s)
    ny = node("ReduceSumSquare", [y2], s, axes=[1], keepdims=1)
    ny = node("Mul", [ny, const(s + "/quarter", np.float32(0.25))], s)
    ny = node("Where", [real, ny, far], s)
    a = node("Concat", [x, nx, mask], s, axis=1)                                # (N, 5, 100)
    b = node("Concat", [y2, mask, ny], s, axis=1)
    at = node("Transpose", [a], s, perm=[0, 2, 1])
    d = node("MatMul", [at, b], s)                                              # (N, 100 x, 100 y)
    mflat = node("Squeeze", [mask, ax1], s)                                     # (N, 100)
    graph.chamfer_score(d, mflat, zero, one, ax1, s)
    return graph.model("conv_vae_ncl")


def build_nlc(w: dict[str, np.ndarray], elu_op_below: int = 200, pool_in_dense: bool = True,
              std_first: bool = True, shifted_sum: bool = False) -> "onnx.ModelProto":
    """Channels-last (N, L, C) network with every convolution lowered to ONE Gemm over N * L rows:
    im2col by Slices + Concat of the K shifted windows (the batch folded into the Gemm's rows);
    each stride-1 ConvTranspose a convolution of the input padded by K - 1 with the flipped kernel;
    the first decoder ConvTranspose with the up-sampling folded in, in polyphase form
    (out[2m + r] = V_r h[m] + V_{r+2} h[m-1]: one Gemm of the 2-row windows to 2 x 20 columns, which
    a free Reshape interleaves); the average pooling folded into the first dense layer's rows."""
    from onnx import TensorProto, helper

    graph = _Graph()
    nodes, const, node = graph.nodes, graph.const, graph.node

    zero = const("zero", np.float32(0.0))
    one = const("one", np.float32(1.0))
    ax1 = const("ax1", [1])

    def elu(x: str, size: int, scope: str) -> str:
        if size < elu_op_below:
            return node("Elu", [x], scope)
        m = node("Min", [x, zero], scope)
        e = node("Exp", [m], scope)
        return node("Max", [x, node("Sub", [e, one], scope)], scope)

    def windows(x: str, length: int, k: int, scope: str) -> str:
        """(N, length, C) -> (N, length - k + 1, k * C): the k shifted windows side by side."""
        parts = [node("Slice", [x, const(f"{scope}/s{j}", [j]), const(f"{scope}/e{j}", [length - k + 1 + j]), ax1], scope)
                 for j in range(k)]
        return node("Concat", parts, scope, axis=2)

    def gemm(x2d: str, wm: np.ndarray, b: np.ndarray, scope: str) -> str:
        return node("Gemm", [x2d, const(scope + "/W", wm), const(scope + "/B", b)], scope)

    def conv_layer(x: str, length: int, cin: int, wk: np.ndarray, b: np.ndarray, scope: str, pad: int = 0) -> str:
        """x (N, length, cin) -> Gemm output (N * lout, cout); wk (K, cin, cout) per tap."""
        k = wk.shape[0]
        if pad:
            x = node("Pad", [x, const(scope + "/pads", [0, pad, 0, 0, pad, 0])], scope)
            length += 2 * pad
        if shifted_sum:   # sum over taps of (shifted window) @ W_tap: no copy for a compiler to make
            lout = length - k + 1
            acc = None
            for j in range(k):
                xs = node("Slice", [x, const(f"{scope}/s{j}", [j]), const(f"{scope}/e{j}", [lout + j]), ax1], scope)
                y = node("MatMul", [xs, const(f"{scope}/W{j}", wk[j])], scope)
                acc = y if acc is None else node("Add", [acc, y], scope)
            acc = node("Add", [acc, const(scope + "/B", b)], scope)
            return node("Reshape", [acc, const(scope + "/col", [-1, wk.shape[2]])], scope)
        col = windows(x, length, k, scope)
        col = node("Reshape", [col, const(scope + "/col", [-1, k * cin])], scope)
        return gemm(col, wk.reshape(k * cin, -1), b, scope)

    # ---- standardisation
    s = "encoder/std"
    if std_first:
        xt = node("Transpose", ["jets"], s, perm=[0, 2, 1])                    # (N, 3, 100)
        pt = node("Slice", [xt, const(s + "/s2", [2]), const(s + "/e3", [3]), ax1], s)
        etaphi = node("Slice", [xt, const(s + "/s0", [0]), const(s + "/e2", [2]), ax1], s)
        tot = node("ReduceSum", [pt, const(s + "/ax2", [2])], s, keepdims=1)
        tot = node("Max", [tot, const(s + "/min_sum", w["min_sum"])], s)
        share = node("Max", [node("Div", [pt, tot], s), const(s + "/min_share", w["min_share"])], s)
        real = node("Greater", [pt, zero], "mask")                              # (N, 1, 100)
        mask = node("Cast", [real], "mask", to=TensorProto.FLOAT)
        z = node("Concat", [etaphi, node("Log", [share], s)], s, axis=1)
        z = node("Add", [node("Mul", [z, const(s + "/scale", w["std_scale"].reshape(3, 1))], s),
                         const(s + "/offset", w["std_offset"].reshape(3, 1))], s)
        xcf = node("Mul", [z, mask], s)
        x = node("Transpose", [xcf], s, perm=[0, 2, 1])                        # x_std (N, 100, 3)
        real = node("Reshape", [real, const("mask/nl1", [-1, 100, 1])], "mask")  # same memory order
        mask = node("Reshape", [mask, "mask/nl1"], "mask")
    else:
        raise NotImplementedError

    # ---- encoder
    c0 = w["c0_w"][:, 0].transpose(1, 2, 0)                                    # (3 taps, 3 features, 16)
    h = elu(conv_layer(x, 100, 3, c0, w["c0_b"], "encoder/conv0"), 1568, "encoder/conv0")
    h = node("Reshape", [h, const("encoder/l98", [-1, 98, 16])], "encoder/conv0")
    c1 = w["c1_w"][:, :, 0].transpose(2, 1, 0)                                 # (3, 16, 20)
    h = elu(conv_layer(h, 98, 16, c1, w["c1_b"].ravel(), "encoder/conv1"), 1920, "encoder/conv1")
    h = node("Reshape", [h, const("encoder/l96", [-1, 96, 20])], "encoder/conv1")
    c2 = w["c2_w"][:, :, 0].transpose(2, 1, 0)                                 # (3, 20, 24)
    h = elu(conv_layer(h, 96, 20, c2, w["c2_b"].ravel(), "encoder/conv2"), 2256, "encoder/conv2")
    if pool_in_dense:
        h = node("Reshape", [h, const("encoder/flat", [-1, 94 * 24])], "encoder/flatten")
        d1 = np.repeat(w["d1_w"].reshape(47, 1, 24, 136), 2, axis=1).reshape(94 * 24, 136) * np.float32(0.5)
    else:
        h = node("Reshape", [h, const("encoder/l94", [-1, 47, 2, 24])], "encoder/pool")
        h = node("ReduceMean", [h], "encoder/pool", axes=[2], keepdims=0)
        h = node("Reshape", [h, const("encoder/flat", [-1, 1128])], "encoder/flatten")
        d1 = w["d1_w"]
    h = elu(gemm(h, d1, w["d1_b"], "encoder/d1"), 136, "encoder/d1")
    h = elu(gemm(h, w["d2_w"], w["d2_b"], "encoder/d2"), 32, "encoder/d2")
    mu = gemm(h, w["mu_w"], w["mu_b"], "encoder/mu")
    lv = gemm(h, w["lv_w"], w["lv_b"], "encoder/lv")

    # ---- KL: 0.5 * sum(mu^2 + exp(v) - 1 - v), exp(v) - v in float64
    s = "kl"
    v = node("Cast", [lv], s, to=TensorProto.DOUBLE)
    t = node("ReduceSum", [node("Sub", [node("Exp", [v], s), v], s), ax1], s, keepdims=0)
    t = node("Cast", [node("Sub", [t, const(s + "/eight_f64", np.float64(w["lv_w"].shape[1]))], s)], s, to=TensorProto.FLOAT)
    klsum = node("Add", [node("ReduceSumSquare", [mu], s, axes=[1], keepdims=0), t], s)
    nodes.append(helper.make_node("Mul", [klsum, const(s + "/half", np.float32(0.5))], ["kl"], name="kl/out"))

    # ---- decoder
    h = elu(gemm(mu, w["d3_w"], w["d3_b"], "decoder/d3"), 32, "decoder/d3")
    h = elu(gemm(h, w["d4_w"], w["d4_b"], "decoder/d4"), 136, "decoder/d4")
    h = elu(gemm(h, w["d5_w"], w["d5_b"], "decoder/d5"), 1128, "decoder/d5")   # (N, 47 * 24), (l, c) order
    h = node("Reshape", [h, const("decoder/l47", [-1, 47, 24])], "decoder/reshape")
    v4 = folded_upsample(w["t1_w"][:, :, 0].astype(np.float64))                # (24 in, 20 out, 4), up-sampling folded in
    wp = np.zeros((2, 24, 2, 20))                                               # (window row, cin, phase, cout)
    for r in (0, 1):
        wp[0, :, r] = v4[:, :, r + 2]                                           # h[m - 1]
        wp[1, :, r] = v4[:, :, r]                                               # h[m]
    h = conv_layer(h, 47, 24, wp.reshape(2, 24, 40).astype(np.float32), np.tile(w["t1_b"].ravel(), 2),
                   "decoder/convt1", pad=1)                                     # (N * 48, 2 * 20)
    h = elu(h, 1920, "decoder/convt1")
    h = node("Reshape", [h, const("decoder/l96", [-1, 96, 20])], "decoder/convt1")
    t2 = w["t2_w"][:, :, 0][:, :, ::-1].transpose(2, 0, 1)                     # (3 window rows, 20, 16)
    h = elu(conv_layer(h, 96, 20, np.ascontiguousarray(t2), w["t2_b"].ravel(), "decoder/convt2", pad=2), 1568,
            "decoder/convt2")
    h = node("Reshape", [h, const("decoder/l98", [-1, 98, 16])], "decoder/convt2")
    t3 = w["t3_w"][:, 0][:, ::-1, :].transpose(1, 0, 2) * np.float32(-2.0)     # (3 window rows, 16, 3 features)
    y2 = conv_layer(h, 98, 16, np.ascontiguousarray(t3), np.repeat(w["t3_b"].ravel() * np.float32(-2.0), 3),
                    "decoder/convt3", pad=2)                                    # -2 y, (N * 100, 3)
    y2 = node("Reshape", [y2, const("decoder/l100", [-1, 100, 3])], "decoder/convt3")

    # ---- Chamfer score, channels-last: A = [x, where(m, |x|^2, far), m], B = [-2y, m, where(m, |y|^2, far)]
    s = "score"
    far = const(s + "/far", w["far"])
    nx = node("Where", [real, node("ReduceSumSquare", [x], s, axes=[2], keepdims=1), far], s)
    ny = node("Mul", [node("ReduceSumSquare", [y2], s, axes=[2], keepdims=1), const(s + "/quarter", np.float32(0.25))], s)
    ny = node("Where", [real, ny, far], s)
    a = node("Concat", [x, nx, mask], s, axis=2)                                # (N, 100, 5)
    b = node("Concat", [y2, mask, ny], s, axis=2)
    d = node("MatMul", [a, node("Transpose", [b], s, perm=[0, 2, 1])], s)       # (N, 100 x, 100 y)
    mflat = node("Reshape", [mask, const(s + "/n100", [-1, 100])], s)
    graph.chamfer_score(d, mflat, zero, one, ax1, s)
    return graph.model("conv_vae_nlc")


def carry_metadata(source: Path, model: "onnx.ModelProto", how: str) -> "onnx.ModelProto":
    """The shipped file's metadata (hltrun.model, hltrun.source, the declared inputs) and description,
    plus a line saying the graph was rewritten and how."""
    import onnx

    src = onnx.load(str(source), load_external_data=False)
    del model.metadata_props[:]
    for prop in src.metadata_props:
        model.metadata_props.add(key=prop.key, value=prop.value)
    model.metadata_props.add(key="hltrun.rewrite", value=how)
    model.doc_string = src.doc_string
    return model


def rewrite(source: Path = SHIPPED, lowering: str = "conv", **options) -> "onnx.ModelProto":
    """The shipped Conv-VAE file -> the rewritten graph (``options``: build()'s / build_nlc()'s keywords;
    none = the kept formulation), its metadata carried over."""
    w = shipped_weights(source)
    model = build_nlc(w, **options) if lowering == "matmul" else build(w, **options)
    how = "tools/physics/optimize_conv.py " + " ".join(f"{k}={v}" for k, v in sorted(options.items()))
    return carry_metadata(source, model, how.strip() if options or lowering != "conv" else
                          "tools/physics/optimize_conv.py (kept formulation of issue 21 item 3)")


def main(argv: list[str] | None = None) -> int:
    from hltrun.framework.stdio import standard_streams

    standard_streams()  # stderr closed, or its reader gone: a refusal keeps its exit code, nothing in stdout
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=SHIPPED, help="the shipped Conv-VAE ONNX file to rewrite")
    p.add_argument("--out", type=Path, required=True, help="where to write the rewritten graph")
    p.add_argument("--elu-op-below", type=int, default=200,
                   help="values per jet under which Elu stays ORT's one-kernel Elu op")
    p.add_argument("--decoder", choices=["polyphase", "convtranspose"], default="polyphase",
                   help="polyphase (kept): Convs with kernel 2 on the even/odd positions side by side; "
                        "convtranspose: ConvTranspose ops (stride 2 with the up-sampling folded in)")
    p.add_argument("--pool", choices=["phases", "op", "dense"], default="phases",
                   help="phases (kept): last encoder conv at stride 2 with even/odd outputs as channels, the "
                        "pooling one ReduceSum; op: AveragePool; dense: folded into the first dense layer's rows")
    p.add_argument("--keep-upsample", action="store_true", help="convtranspose decoder: the x2 up-sampling as its own op")
    p.add_argument("--convt-as-conv", action="store_true", help="convtranspose decoder: stride-1 ones as padded Convs")
    p.add_argument("--flat-encoder", action="store_true",
                   help="encoder convolutions on the batch laid end to end: one Gemm per layer for all jets")
    p.add_argument("--four-d", action="store_true", help="(N, C, 1, L) tensors (ORT's NCHWc convolutions)")
    p.add_argument("--kl-direct", action="store_true",
                   help="the KL's exp(v) - 1 - v straight in float32 (3 kernels; loses digits for small |v|)")
    p.add_argument("--kl-float64", action="store_true",
                   help="the KL's exp(v) - 1 - v in float64 (Cast, Exp, Sub) instead of the shipped float32 series "
                        "(as fast; TensorRT has no float64)")
    p.add_argument("--lowering", choices=["conv", "matmul"], default="conv",
                   help="conv (kept): ONNX Conv, channels-first; matmul: channels-last, im2col Gemms")
    p.add_argument("--shifted-sum", action="store_true",
                   help="matmul lowering: one MatMul per tap on the shifted input instead of im2col")
    p.add_argument("--check", action="store_true", help="agreement with --model on every shipped sample")
    p.add_argument("--iree", nargs="?", const="", default=None, metavar="FLAGS",
                   help="also compile --out with IREE for each --batch-sizes (OUT-b{batch}.vmfb beside it; "
                        "FLAGS: extra iree-compile flags in one string)")
    tfl = p.add_mutually_exclusive_group()
    tfl.add_argument("--tflite", type=Path, default=None, metavar="KERAS",
                     help="also convert this Keras model to TensorFlow Lite for each --batch-sizes "
                          "(OUT-b{batch}.tflite beside --out; an engine attempt: TFLite reads no ONNX)")
    tfl.add_argument("--tflite-rewrite", nargs="*", default=None, metavar="KEY=VALUE",
                     help="also write --model's weights in TensorFlow ops as TensorFlow Lite for each --batch-sizes "
                          "(OUT-b{batch}.tflite; tools/physics/conv_tflite.py): the kept TFLite formulation, or with "
                          "these options of conv_tflite.rewrite_function (e.g. four_d=0 score_group=0 kl=direct)")
    p.add_argument("--time", nargs="*", metavar="NAME=FILE", default=None,
                   help="time --model, --out and these interleaved with the sgemm floor; FILE#key=value,... adds "
                        "ORT session settings, iree:PREFIX times PREFIX-b{batch}.vmfb, tflite:PREFIX "
                        "PREFIX-b{batch}.tflite, backend:NAME:FILE an hltrun backend as the path runs it")
    p.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[2, 64],
                   help="jets per call: the batches --iree compiles, --tflite/--tflite-rewrite convert and --time times "
                        "(default 2 64)")
    p.add_argument("--rounds", type=positive_int, default=20, help="--time: interleaved timing rounds (default 20)")
    p.add_argument("--json", type=Path, default=None, help="write the timing here")
    args = p.parse_args(argv)
    require_files(PROG, model=args.model)
    import onnx

    if args.out.resolve() == args.model.resolve():
        usage_error(PROG, "--out must differ from --model (the check compares the two); write elsewhere, check, then copy")
    options = tflite_rewrite_options(args.tflite_rewrite, args.model)  # before --out is written
    if args.lowering == "matmul":
        opts = {"elu_op_below": args.elu_op_below, "pool_in_dense": args.pool != "op", "shifted_sum": args.shifted_sum}
    else:
        opts = {"elu_op_below": args.elu_op_below, "fold_upsample": not args.keep_upsample,
                "convt_as_conv": args.convt_as_conv, "four_d": args.four_d, "polyphase": args.decoder == "polyphase",
                "pool_in_dense": args.pool == "dense", "pool_phases": args.pool == "phases",
                "flat_encoder": args.flat_encoder, "kl_float32": "direct" if args.kl_direct else not args.kl_float64}
    defaults = {"kl_float32": True, "elu_op_below": 200, "fold_upsample": True, "convt_as_conv": False, "four_d": False,
                "polyphase": True, "pool_in_dense": False, "pool_phases": True, "flat_encoder": False}
    if args.lowering == "conv":
        opts = {k: v for k, v in opts.items() if defaults[k] != v}     # the kept formulation: no options
    model = rewrite(args.model, args.lowering, **opts)
    write_bytes(args.out, model.SerializeToString(), "optimize_conv --out")  # whole or not at all
    print(f"wrote {args.out}: {len(model.graph.node)} nodes")
    if args.check and not print_agreement(agreement(args.model, args.out), str(args.out)):
        return 1
    if args.iree is not None:
        compile_iree(args.out, args.batch_sizes, args.iree.split())
    if args.tflite is not None:
        from hltrun.tools.physics import conv_tflite

        conv_tflite.convert_keras(args.tflite, args.out, args.batch_sizes)
    if options is not None:
        from hltrun.tools.physics import conv_tflite

        conv_tflite.convert_rewrite(args.model, args.out, args.batch_sizes, **options)
    if args.check and (args.tflite is not None or args.tflite_rewrite is not None):
        for b in args.batch_sizes:   # every file: each batch is its own converted graph
            flat = f"tflite:{args.out.with_name(f'{args.out.stem}-b{b}')}"
            if not print_agreement(agreement(args.model, flat), flat):
                return 1
    if args.time is not None:
        paths = {"shipped": str(args.model), args.out.stem: str(args.out)}
        paths.update(dict(t.split("=", 1) for t in args.time))
        res = time_interleaved(paths, args.batch_sizes, rounds=args.rounds)
        print_timing(res)
        if args.json:
            write_text(args.json, json.dumps(res, indent=1), "optimize_conv --json")
    return 0


def tflite_rewrite_options(pairs: list[str] | None, model: Path) -> dict[str, Any] | None:
    """``--tflite-rewrite``'s keywords (None when not given), each value tried on ``model``'s weights: a value
    ``rewrite_function`` refuses is one line now, not after --out was written."""
    if pairs is None:
        return None
    from hltrun.tools.physics.conv_tflite import rewrite_function

    options = tflite_options(pairs)
    try:
        rewrite_function(shipped_weights(model), **options)
    except ValueError as exc:
        usage_error(PROG, f"--tflite-rewrite: {exc}")
    return options


def tflite_options(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings as ``conv_tflite.rewrite_function`` keywords, each converted to its default's type (a
    flag takes 0/1/true/false); an unknown key or a value of the wrong type stops the tool in one line."""
    import inspect

    from hltrun.tools.physics.conv_tflite import rewrite_function

    defaults = {k: v.default for k, v in inspect.signature(rewrite_function).parameters.items() if k != "w"}
    opts: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            usage_error(PROG, f"--tflite-rewrite takes KEY=VALUE, not {pair!r}")
        if key not in defaults:
            usage_error(PROG, f"--tflite-rewrite: no option {key!r} (options: {', '.join(defaults)})")
        kind = type(defaults[key])
        flags = {"1": True, "true": True, "0": False, "false": False}
        if kind is bool and value.lower() not in flags or kind is int and not value.isdigit():
            usage_error(PROG, f"--tflite-rewrite: {key}={value!r} is not a {kind.__name__}")
        opts[key] = flags[value.lower()] if kind is bool else kind(value)
    return opts


def compile_iree(path: Path, batches: list[int], flags: list[str]) -> None:
    """PATH -> PATH-without-suffix-b{batch}.vmfb per batch, as hltrun's iree backend compiles (host CPU)."""
    import onnx

    from hltrun.modules.inference.iree_backend import compile_bucket

    model = onnx.load(str(path))
    for b in batches:
        out = path.with_name(f"{path.stem}-b{b}.vmfb")
        write_bytes(out, compile_bucket(model, b, flags), "optimize_conv --iree")
        print(f"compiled {out}")


# ------------------------------------------------------------------------------------ timing
def time_interleaved(paths: dict[str, Path], batches: list[int], rounds: int = 20, slice_s: float = 0.08,
                     sample: Path | None = None, session_options: dict | None = None) -> dict:
    """µs per jet of every model at every batch, interleaved A/B/A/B with a one-core 256^3 sgemm in
    the same process: per round each model (and the sgemm) runs for ``slice_s`` seconds; returned per
    model and batch: fastest call, median of the per-round medians, and the same as × floor (FLOP of
    the FIRST model / sgemm rate: fastest call against the best sgemm rate, medians against the
    round's median rate) and as a ratio to the first model (median of per-round ratios)."""
    import statistics
    import time

    import onnxruntime as ort
    from onnx import TensorProto, helper

    from hltrun.tools.bench.flops import count_macs
    from hltrun.modules.inference.iree_backend import host_copy
    from hltrun.modules.models.preprocess import load_jets

    jets = load_jets(str(sample or DATA / "qcd_dijet.root"), max_events=200)[0]
    names = list(paths)
    macs = count_macs(Path(str(paths[names[0]]).partition("#")[0]))
    flop = 2.0 * (macs["weights"] + macs["data"])

    def sess_of(path: Path, extra: dict | None) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        for k, v in (extra or {}).items():
            if k == "graph_optimization_level":
                so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, v)
            elif k == "enable_mem_pattern":
                so.enable_mem_pattern = bool(v)
            elif k == "enable_cpu_mem_arena":
                so.enable_cpu_mem_arena = bool(v)
            else:
                so.add_session_config_entry(k, str(v))
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    class Iree:
        """Compiled IREE modules, one per batch (``iree:PREFIX`` -> PREFIX-b{batch}.vmfb), ORT's run()."""

        def __init__(self, prefix: str):
            import iree.runtime as rt

            self.fns = {}
            for b in batches:
                config = rt.Config("local-sync")
                ctx = rt.SystemContext(config=config)
                mod = rt.VmModule.mmap(config.vm_instance, f"{prefix}-b{b}.vmfb")
                ctx.add_vm_module(mod)
                entry = [f for f in mod.function_names if not f.startswith("__") and "$" not in f][0]
                self.fns[b] = ctx.modules[mod.name][entry]

        def run(self, _names, feed):
            x = feed["jets"]
            return [host_copy(r, len(x)) for r in self.fns[len(x)](x)]  # owned memory, not a dead mapping

    class TfLite:
        """TensorFlow Lite flatbuffers, one per batch (``tflite:PREFIX`` -> PREFIX-b{batch}.tflite), one
        thread, XNNPACK delegate (TFLite's default for float models), ORT's run()."""

        def __init__(self, prefix: str):
            from hltrun.modules.inference.tflite_backend import allocate, interpreter_class, io_indices, open_interpreter

            cls = interpreter_class()[0]
            self.calls = {}  # batch -> (interpreter, input index, output indices): looked up once, not timed
            for b in batches:
                interp = open_interpreter(cls, Path(f"{prefix}-b{b}.tflite").read_bytes(), 1)
                allocate(interp)
                inputs, outputs = io_indices(interp)
                self.calls[b] = (interp, inputs[0]["index"], [outputs["kl"], outputs["score"]])

        def run(self, _names, feed):
            x = feed["jets"]
            interp, inp, outs = self.calls[len(x)]
            interp.set_tensor(inp, x)
            interp.invoke()
            return [interp.get_tensor(i) for i in outs]

    class Backend:
        """An hltrun backend as the path runs it (``backend:NAME:FILE``: buckets, padding, slices, its checks)."""

        def __init__(self, spec: str):
            from hltrun.modules.inference import create_backend

            name, _, model = spec.partition(":")
            self.engine = create_backend(name, model).load()
            self.engine.warm_up()

        def run(self, _names, feed):
            out = self.engine.run(feed["jets"])
            return [out["kl"], out["score"]]

    sessions = {}
    for n in names:
        if str(paths[n]).startswith("backend:"):
            sessions[n] = Backend(str(paths[n])[8:])
            continue
        if str(paths[n]).startswith("iree:"):
            sessions[n] = Iree(str(paths[n])[5:])
            continue
        if str(paths[n]).startswith("tflite:"):
            sessions[n] = TfLite(str(paths[n])[7:])
            continue
        path, _, opt = str(paths[n]).partition("#")
        extra = dict(kv.split("=", 1) for kv in opt.split(",") if kv) if opt else None
        sessions[n] = sess_of(Path(path), {**(session_options or {}), **(extra or {})})  # noqa: E501
    n_mm = 256
    a = np.random.default_rng(1).standard_normal((n_mm, n_mm)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n_mm, n_mm]) for k in "ab"],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n_mm, n_mm])])
    mm_model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    mm_model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    mm = ort.InferenceSession(mm_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {b: {"jets": np.ascontiguousarray(np.tile(jets, (-(-b // len(jets)), 1, 1))[:b])} for b in batches}

    def burst(fn, secs):
        times, t_end = [], time.perf_counter() + secs
        while time.perf_counter() < t_end or len(times) < 3:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times), statistics.median(times)

    for s in sessions.values():
        for b in batches:
            s.run(None, feeds[b])
    rates, rec = [], {n: {b: [] for b in batches} for n in names}
    for _ in range(rounds):
        rates.append(2.0 * n_mm ** 3 / burst(lambda: mm.run(None, {"a": a, "b": a}), slice_s)[0] / 1e9)
        for b in batches:
            for n in names:
                lo, med = burst(lambda: sessions[n].run(None, feeds[b]), slice_s)
                rec[n][b].append((lo / b * 1e6, med / b * 1e6))
    best_rate, med_rate = max(rates), statistics.median(rates)
    floor_best, floor_med = flop / best_rate / 1e3, flop / med_rate / 1e3    # µs per jet
    out = {"flop_per_jet": flop, "sgemm_gflops_best": best_rate, "sgemm_gflops_median": med_rate,
           "floor_us_best": floor_best, "floor_us_median": floor_med, "rounds": rounds, "models": {}}
    for n in names:
        out["models"][n] = {}
        for b in batches:
            fastest = min(r[0] for r in rec[n][b])
            median = statistics.median(r[1] for r in rec[n][b])
            ratio = statistics.median(r[1] / r0[1] for r, r0 in zip(rec[n][b], rec[names[0]][b]))
            out["models"][n][b] = {"fastest": fastest, "median": median, "x_floor_fastest": fastest / floor_best,
                                   "x_floor_median": median / floor_med, "vs_first": ratio}
    return out


def print_timing(res: dict) -> None:
    print(f"FLOP per jet of the first model {res['flop_per_jet'] / 1e6:.2f} M; sgemm 256^3 one core "
          f"{res['sgemm_gflops_best']:.0f} (best) / {res['sgemm_gflops_median']:.0f} (median) GFLOP/s -> floor "
          f"{res['floor_us_best']:.2f} / {res['floor_us_median']:.2f} µs per jet; {res['rounds']} interleaved rounds")
    print(f"{'model':<34} {'batch':>5} {'fastest':>8} {'x floor':>8} {'median':>8} {'x floor':>8} {'vs first':>8}")
    for n, per in res["models"].items():
        for b, r in per.items():
            print(f"{n:<34} {b:>5} {r['fastest']:8.2f} {r['x_floor_fastest']:8.2f} {r['median']:8.2f} "
                  f"{r['x_floor_median']:8.2f} {r['vs_first']:8.3f}")


if __name__ == "__main__":
    sys.exit(main())
