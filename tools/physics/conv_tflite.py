"""The Conv-VAE as TensorFlow Lite flatbuffers, for the engine attempts of docs/inference.md (issue 21 item 3).

TFLite reads no ONNX, so there are two routes to the same trained network, one flatbuffer per static batch:

* ``convert_keras``: the shipped ``.keras`` model as Keras built it (Conv2D on the (100, 3) "image",
  ConvTranspose decoder, up-sampling layer);
* ``convert_rewrite``: the weights read out of the shipped ONNX file (``conv_weights.shipped_weights``)
  and written in TensorFlow ops in the formulation ``optimize_conv`` keeps for ONNX Runtime, but
  channels-last, TFLite's native layout: the first Conv2D a convolution with the three features as
  channels, the decoder's up-sampling folded into the first ConvTranspose and all three written as
  kernel-2 convolutions on the (even, odd) positions side by side in the channels (so the final
  reshape to (N, 100, 3) is free), the -2 of the Chamfer distance folded into the last kernel, Elu as
  TFLite's ELU (XNNPACK evaluates it vectorised, unlike ONNX Runtime). On top, choices for XNNPACK,
  TFLite's CPU delegate (``rewrite_function``'s options): (N, 1, L, C) tensors, the mask without ops it does
  not run (GREATER, CAST, SELECT: each splits the graph into another delegate partition; the LOG of the pT
  share and the KL's series select still run outside it), no narrow slices and concatenations, the Chamfer
  distances in groups of 8 jets for a static batch (the L2 cache).

Both are timed beside ONNX Runtime by ``optimize_conv.py --time NAME=tflite:PREFIX``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hltrun.framework.atomic import write_bytes
from hltrun.tools.catalogue import require_files, usage_error
from hltrun.tools.physics.conv_agreement import card_names, print_agreement
from hltrun.tools.physics.conv_weights import SHIPPED, polyphase_conv, shipped_weights, upsampled_polyphase


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def decoder_kernels(w: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The three decoder layers as (TF conv1d kernel (2, Cin, Cout), bias) acting on polyphase
    sequences: the x2 up-sampling + first ConvTranspose, the second ConvTranspose, the last one
    (16 -> 3 features) times -2. The algebra of ``conv_weights``, as ``optimize_conv.build``'s polyphase decoder."""
    wc1 = upsampled_polyphase(w["t1_w"][:, :, 0].astype(np.float64))   # (out, in, tap), from (24 in, 20 out, 3)
    wc2 = polyphase_conv(w["t2_w"][:, :, 0].astype(np.float64))
    t3 = w["t3_w"][:, 0].transpose(0, 2, 1).astype(np.float64) * -2.0   # (16 in, 3 features out, 3 taps)
    wc3 = polyphase_conv(t3)
    biases = [np.tile(w["t1_b"].ravel(), 2), np.tile(w["t2_b"].ravel(), 2),
              np.tile(np.repeat(w["t3_b"].ravel() * np.float32(-2.0), 3), 2)]
    # ONNX (out, in, tap) cross-correlation -> TF (tap, in, out); the channel order r * C + c is kept
    return [(wc.transpose(2, 1, 0).astype(np.float32), b.astype(np.float32)) for wc, b in zip((wc1, wc2, wc3), biases)]


def rewrite_function(w: dict[str, np.ndarray], four_d: bool = True, std: str = "affine", mask_by: str = "ceil",
                     fuse_heads: bool = True, pool: str = "phases", kl: str = "series", score_group: int = 8) -> Callable:
    """``jets (N, 100, 3) -> {kl, score}`` in TensorFlow ops, channels-last, for a static N or a dynamic one. The defaults are
    the formulation kept in docs/inference.md; each option undoes one of its choices (the attempts there):

    * ``four_d``: tensors (N, 1, L, C) and CONV_2D straight away (False: tf.nn.conv1d, a RESHAPE either side
      of every convolution);
    * ``std``: "affine" standardises as jets * (s0, s1, 0) + log share * (0, 0, s2) + offset ("concat":
      slices and a CONCATENATION of one- and two-wide rows);
    * ``mask_by``: "ceil" builds the 0/1 mask as max(ceil(min(pt, 1)), 0) and the far term as
      (1 - mask) * far, ops XNNPACK runs ("compare": GREATER, CAST and SELECT, which TFLite runs outside
      the delegate). Equal for every finite pt; non-finite jets never reach a model (the scorer drops them);
    * ``fuse_heads``: mu and log sigma^2 as one 32 x 16 product, then sliced;
    * ``pool``: "phases" (the last encoder conv at stride 2, even/odd outputs as 2 x 24 channels, summed;
      the 1/2 in dense 1) or "op" (AVERAGE_POOL_2D);
    * ``kl``: "series" (the shipped graph's float32 series for |v| < 0.5) or "direct" (exp(v) - 1 - v);
    * ``score_group``: the Chamfer distances in groups of this many jets (0, or a dynamic batch: the batch at once).
    """
    for name, value, allowed in (("std", std, ("affine", "concat")), ("mask_by", mask_by, ("ceil", "compare")),
                                 ("pool", pool, ("phases", "op")), ("kl", kl, ("series", "direct"))):
        if value not in allowed:
            raise ValueError(f"{name}={value!r} (allowed: {', '.join(allowed)})")
    tf = _tf()
    f32 = np.float32
    const = lambda a: tf.constant(np.asarray(a, f32))  # noqa: E731
    c0 = w["c0_w"][:, 0].transpose(1, 2, 0)             # Conv2D (16, 1, tap, feature) -> (tap, feature, 16)
    c1 = w["c1_w"][:, :, 0].transpose(2, 1, 0)          # (20, 16, tap) -> (tap, 16, 20)
    c2_onnx = w["c2_w"][:, :, 0]                         # (24, 20, 3)
    if pool == "phases":
        ph = np.zeros((48, 20, 4), f32)
        ph[:24, :, 0:3] = c2_onnx
        ph[24:, :, 1:4] = c2_onnx
        c2, c2b, d1 = ph.transpose(2, 1, 0), np.tile(w["c2_b"].ravel(), 2), w["d1_w"] * f32(0.5)
    else:
        c2, c2b, d1 = c2_onnx.transpose(2, 1, 0), w["c2_b"].ravel(), w["d1_w"]
    kernels = [(const(k[None] if four_d else k), const(b)) for k, b in
               [(c0, w["c0_b"].ravel()), (c1, w["c1_b"].ravel()), (c2, c2b), *decoder_kernels(w)]]
    dense = {n: (const(w[n + "_w"]), const(w[n + "_b"].ravel())) for n in ("d2", "mu", "lv", "d3", "d4", "d5")}
    dense["d1"] = (const(d1), const(w["d1_b"].ravel()))
    dense["heads"] = (const(np.concatenate([w["mu_w"], w["lv_w"]], axis=1)),
                      const(np.concatenate([w["mu_b"].ravel(), w["lv_b"].ravel()])))
    scale, offset = w["std_scale"].ravel(), const(w["std_offset"].ravel())
    keep_etaphi, only_share = const(scale * np.array([1, 1, 0], f32)), const(scale * np.array([0, 0, 1], f32))
    scale = const(scale)
    min_sum, min_share, far = (f32(np.asarray(w[k]).ravel()[0]) for k in ("min_sum", "min_share", "far"))
    n_latent = w["lv_w"].shape[1]

    def lin(h, name):
        k, b = dense[name]
        return tf.matmul(h, k) + b

    def conv(h, layer: int, stride: int = 1, pad: int = 0):
        k, b = kernels[layer]
        if four_d:
            h = tf.pad(h, [[0, 0], [0, 0], [pad, pad], [0, 0]]) if pad else h
            return tf.nn.conv2d(h, k, (1, stride), "VALID") + b
        h = tf.pad(h, [[0, 0], [pad, pad], [0, 0]]) if pad else h
        return tf.nn.conv1d(h, k, stride, "VALID") + b

    def standardised(jets):
        """(x, mask, real): the standardised, masked constituents (N, 100, 3) and the (N, 100, 1) mask."""
        pt = jets[:, :, 2:3]
        tot = tf.maximum(tf.reduce_sum(pt, axis=1, keepdims=True), min_sum)
        logshare = tf.math.log(tf.maximum(pt / tot, min_share))
        real = pt > 0.0 if mask_by == "compare" else None
        mask = tf.cast(real, tf.float32) if mask_by == "compare" else tf.nn.relu(tf.math.ceil(tf.minimum(pt, 1.0)))
        if std == "concat":
            z = tf.concat([jets[:, :, 0:2], logshare], axis=2) * scale + offset
        else:   # exact: the zero columns add +0.0
            z = jets * keep_etaphi + logshare * only_share + offset
        return z * mask, mask, real

    def encoded(x):
        h = tf.reshape(x, [-1, 1, 100, 3]) if four_d else x
        h = tf.nn.elu(conv(h, 0))                                          # L 98, 16 channels
        h = tf.nn.elu(conv(h, 1))                                          # L 96, 20
        if pool == "phases":
            h = tf.nn.elu(conv(h, 2, stride=2))                            # L 47, 2 x 24
            h = h[..., :24] + h[..., 24:]                                  # 2 x the average pool
        else:
            h = tf.nn.elu(conv(h, 2))                                      # L 94, 24
            h = tf.nn.avg_pool2d(h, (1, 2), (1, 2), "VALID") if four_d else tf.nn.avg_pool1d(h, 2, 2, "VALID")
        h = tf.nn.elu(lin(tf.reshape(h, [-1, d1.shape[0]]), "d1"))                   # Keras' flatten order (l, c)
        h = tf.nn.elu(lin(h, "d2"))
        if fuse_heads:
            ml = lin(h, "heads")
            return ml[:, :n_latent], ml[:, n_latent:]
        return lin(h, "mu"), lin(h, "lv")

    def kl_divergence(mu, lv):
        """0.5 sum(mu^2 + exp(v) - 1 - v)."""
        t = tf.exp(lv) - 1.0 - lv
        if kl == "series":
            series = lv * f32(1 / 40320)
            for c in (1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6):
                series = lv * (series + f32(c))
            t = tf.where(tf.abs(lv) < 0.5, lv * lv * (series + f32(0.5)), t)
        return 0.5 * (tf.reduce_sum(mu * mu, axis=1) + tf.reduce_sum(t, axis=1))

    def decoded(mu):
        """-2 y, (N, 100, 3): the (even, odd) phases of the last layer are neighbouring positions."""
        h = tf.nn.elu(lin(mu, "d3"))
        h = tf.nn.elu(lin(h, "d4"))
        h = tf.reshape(tf.nn.elu(lin(h, "d5")), [-1, 1, 47, 24] if four_d else [-1, 47, 24])
        h = tf.nn.elu(conv(h, 3, pad=1))                                   # L 48, 2 x 20
        h = tf.nn.elu(conv(h, 4, pad=1))                                   # L 49, 2 x 16
        return tf.reshape(conv(h, 5, pad=1), [-1, 100, 3])

    def nearest_sums(a, b, n):
        """min_j d_ij + min_i d_ij for d = a b^T, in groups of ``score_group`` jets: at batch 64 the whole
        (N, 100, 100) would be 2.5 MB, out of the L2 cache between the product and the two minima."""
        if not score_group or n is None or n <= score_group:   # a dynamic batch: one group
            d = tf.matmul(a, b, transpose_b=True)
            return tf.reduce_min(d, axis=2) + tf.reduce_min(d, axis=1)
        sizes = [score_group] * (n // score_group) + [n % score_group]
        parts = []
        for aa, bb in zip(tf.split(a, [s for s in sizes if s]), tf.split(b, [s for s in sizes if s])):
            d = tf.matmul(aa, bb, transpose_b=True)
            parts.append(tf.reduce_min(d, axis=2) + tf.reduce_min(d, axis=1))
        return tf.concat(parts, 0)

    def fn(jets):
        n = jets.shape[0]
        x, mask, real = standardised(jets)
        mu, lv = encoded(x)
        y2 = decoded(mu)
        nx, ny = tf.reduce_sum(x * x, axis=2, keepdims=True), 0.25 * tf.reduce_sum(y2 * y2, axis=2, keepdims=True)
        if mask_by == "compare":
            nx, ny = tf.where(real, nx, far), tf.where(real, ny, far)
        else:   # the shipped graph's |x|^2 + (1 - m) far: equal in float32 (|x|^2 << ulp(far))
            faraway = (1.0 - mask) * far
            nx, ny = nx + faraway, ny + faraway
        a = tf.concat([x, nx, mask], axis=2)                               # a_i . b_j = |x_i - y_j|^2, far for padding
        b = tf.concat([y2, mask, ny], axis=2)
        both = tf.maximum(nearest_sums(a, b, n), 0.0)
        m = tf.reshape(mask, [-1, 100])
        score = tf.reduce_sum(both * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
        return {"kl": kl_divergence(mu, lv), "score": score}

    return fn


def _write(fn: Callable, out: Path, batches: list[int | None]) -> list[Path]:
    """One flatbuffer per batch (None: a dynamic batch, ``OUT-bN.tflite``), variables frozen into constants,
    outputs named by ``fn``'s dict keys in its serving signature, which hltrun's ``tflite`` backend reads."""
    tf = _tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    written = []
    for b in batches:
        spec = tf.TensorSpec((b, 100, 3), tf.float32, name="jets")
        traced = tf.function(fn, autograph=False, input_signature=[spec]).get_concrete_function()
        names = sorted(traced.structured_outputs)         # the frozen graph's outputs come flat, in key order
        frozen = convert_variables_to_constants_v2(traced)
        holder = tf.Module()   # a trackable owner: the converter then writes a signature with the output names
        holder.fn = tf.function(lambda x: dict(zip(names, frozen(x))), autograph=False, input_signature=[spec])
        blob = tf.lite.TFLiteConverter.from_concrete_functions([holder.fn.get_concrete_function()], holder).convert()
        target = out.with_name(f"{out.stem}-b{b or 'N'}.tflite")
        write_bytes(target, blob, "conv_tflite")  # whole or not at all (framework/atomic.py)
        written.append(target)
        print(f"wrote {target}: {len(blob)} bytes")
    return written


def convert_keras(keras_path: Path, out: Path, batches: list[int | None]) -> list[Path]:
    """The Keras model (the same trained network) as one frozen flatbuffer per static batch."""
    import keras

    import hltrun.modules.models.layers  # noqa: F401  (registers the shipped models' custom layers)

    _tf()
    model = keras.saving.load_model(str(keras_path), compile=False)
    def named(x):
        y = model(x, training=False)
        return y if isinstance(y, dict) else dict(zip(model.output_names, y))

    return _write(named, out, batches)


def convert_rewrite(onnx_path: Path, out: Path, batches: list[int | None], **options: Any) -> list[Path]:
    """The kept formulation in TF ops, from the trained tensors of the shipped ONNX file."""
    return _write(rewrite_function(shipped_weights(onnx_path), **options), out, batches)


def main(argv: list[str] | None = None) -> int:
    """Write the Conv-VAE (the rewrite), or any Keras model as Keras built it (--keras: the GCN-VAE's
    ``data/models/gcn_vae.tflite``), as one dynamic-batch TFLite file for hltrun's ``tflite`` backend, and check it
    against the ONNX file (--model) on every shipped sample at that model's cuts."""
    from hltrun.framework.stdio import standard_streams

    standard_streams()  # stderr closed, or its reader gone: a refusal keeps its exit code, nothing in stdout
    import argparse
    import tempfile

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--out", type=Path, required=True, help="the .tflite file to write (e.g. data/models/conv_vae.tflite)")
    p.add_argument("--model", type=Path, default=SHIPPED,
                   help="the ONNX file: the rewrite reads the Conv-VAE's weights from it; --check compares with it, "
                        "at the cuts of the model its name gives (thresholds.json)")
    p.add_argument("--keras", type=Path, default=None, metavar="KERAS",
                   help="convert this Keras model as Keras built it instead of the rewrite "
                        "(e.g. --keras data/models/gcn_vae.keras --model data/models/gcn_vae.onnx)")
    p.add_argument("--check", action="store_true", help="agreement with --model on every shipped sample, on the backend")
    p.add_argument("--card", default=None, help="the model's name in thresholds.json whose cuts --check applies "
                                                "(default: --model's file name, e.g. gcn_vae)")
    args = p.parse_args(argv)
    require_files("conv_tflite", model=args.model, keras=args.keras)
    if args.out.suffix != ".tflite":
        usage_error("conv_tflite", f"--out {args.out} must end in .tflite (the tflite backend reads .tflite files)")
    card = args.card or args.model.stem
    if args.check and card not in card_names():
        usage_error("conv_tflite", f"--check: thresholds.json has no model {card!r} (it has {', '.join(card_names())}): "
                                   f"give --card")
    with tempfile.TemporaryDirectory(prefix="hltrun-tflite-") as tmp:
        stem = Path(tmp) / "model.tflite"
        made = (convert_keras(args.keras, stem, [None]) if args.keras is not None
                else convert_rewrite(args.model, stem, [None]))
        write_bytes(args.out, made[0].read_bytes(), "conv_tflite output")
    print(f"wrote {args.out}")
    if args.check and not print_agreement(backend_agreement(args.model, args.out, card=card),
                                          f"tflite backend, {args.out}"):
        return 1
    return 0


def backend_agreement(onnx_path: Path, tflite_path: Path, card: str = "conv_vae") -> dict[str, Any]:
    """``conv_agreement.agreement`` of the ``tflite`` backend (its buckets, padding and slices) against ONNX Runtime,
    at the cuts of ``card`` (the model's name in thresholds.json)."""
    from hltrun.modules.inference import create_backend
    from hltrun.tools.physics.conv_agreement import agreement

    engine = create_backend("tflite", tflite_path).load()
    engine.warm_up()
    try:
        def run(jets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = engine.run(jets)
            return out["score"], out["kl"]

        return agreement(onnx_path, run, card=card)
    finally:
        engine.close()



if __name__ == "__main__":
    raise SystemExit(main())
